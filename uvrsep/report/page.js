// uvrsep report: renders one page of clips at a time from the JSON embedded in the page.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cols = data.columns;
  const flagsAt = cols.findIndex((c) => c.key === "flags");
  const keyAt = Object.fromEntries(cols.map((c, i) => [c.key, i]));
  const state = { sort: null, dir: 1, onlyFlagged: false, search: "", page: 0, size: 50 };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function show(col, v) {
    if (v === null || v === undefined || v === "") return col.kind === "text" ? "" : "\u2013";
    switch (col.kind) {
      case "fraction": return (100 * v).toFixed(1) + " %";
      case "db": return v.toFixed(1);
      case "count": return v.toLocaleString("en-US");
      case "number": return v.toFixed(2);
      default: return String(v);
    }
  }

  // A measure past its flag threshold is shown in red.
  function bad(key, v) {
    const t = data.thresholds;
    if (v === null || v === undefined) return false;
    if (key === "music_left_db") return v > t.music_left_db;
    if (key === "voice_share") return v < t.voice_share;
    if (key === "voice_active") return v < t.voice_active;
    if (key === "clipped") return v > t.clipped;
    return false;
  }

  function compare(i, dir) {
    const text = cols[i].kind === "text";
    return (a, b) => {
      const x = data.rows[a][i], y = data.rows[b][i];
      const nx = x === null || x === undefined || x === "", ny = y === null || y === undefined || y === "";
      if (nx || ny) return nx === ny ? a - b : nx ? 1 : -1; // missing values last, either way
      if (text) return dir * (x < y ? -1 : x > y ? 1 : 0) || a - b;
      return dir * (x - y) || a - b;
    };
  }

  function view() {
    let idx = data.rows.map((_, i) => i);
    if (state.onlyFlagged) idx = idx.filter((i) => data.rows[i][flagsAt]);
    if (state.search) {
      const s = state.search.toLowerCase();
      idx = idx.filter((i) => String(data.rows[i][keyAt.input]).toLowerCase().includes(s));
    }
    if (state.sort !== null) idx.sort(compare(state.sort, state.dir));
    return idx;
  }

  function player(label, media) {
    const box = el("div", { class: "player" });
    box.appendChild(el("span", {}, label));
    if (!media[1]) box.appendChild(el("span", { class: "missing" }, "missing: " + media[2]));
    else box.appendChild(el("audio", { controls: "", preload: "none", src: media[0] }));
    return box;
  }

  function mediaRow(i) {
    const m = data.media[i];
    const td = el("td", { colspan: String(cols.length) });
    const box = el("div", { class: "media-box" });
    const players = el("div", { class: "players" });
    players.appendChild(player("input", m.input));
    for (const [label, ...media] of m.outputs) players.appendChild(player(label, media));
    box.appendChild(players);
    for (const [label, src, note] of m.pictures) {
      const fig = el("figure");
      if (src) fig.appendChild(el("img", { src: src, loading: "lazy", width: "320", height: "96", alt: label + " spectrogram" }));
      fig.appendChild(el("figcaption", {}, note ? label + ": " + note : label));
      box.appendChild(fig);
    }
    td.appendChild(box);
    const tr = el("tr", { class: "media" });
    tr.appendChild(td);
    return tr;
  }

  function clipRow(i) {
    const row = data.rows[i];
    const flags = row[flagsAt];
    const tr = el("tr", { class: "clip" + (flags ? " flagged" : "") + (row[keyAt.status] === "failed" ? " failed" : "") });
    tr.dataset.index = String(i);
    cols.forEach((col, c) => {
      const v = row[c];
      const cls = [col.kind === "text" ? "text" : "num"];
      if (v === null || v === undefined) cls.push("na");
      if (bad(col.key, v)) cls.push("bad");
      const td = el("td", { class: cls.join(" ") });
      if (c === flagsAt && flags) for (const f of flags.split("; ")) td.appendChild(el("span", { class: "flag" }, f));
      else td.textContent = show(col, v);
      if (col.kind === "text" && v) td.title = String(v);
      tr.appendChild(td);
    });
    return tr;
  }

  function render() {
    const idx = view();
    const pages = Math.max(1, Math.ceil(idx.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * state.size;
    const body = el("tbody", { id: "rows" });
    for (const i of idx.slice(start, start + state.size)) {
      body.appendChild(clipRow(i));
      body.appendChild(mediaRow(i));
    }
    $("rows").replaceWith(body);
    const flagged = data.rows.filter((r) => r[flagsAt]).length;
    $("page-info").textContent = idx.length
      ? `clips ${start + 1}\u2013${Math.min(start + state.size, idx.length)} of ${idx.length} shown (page ${state.page + 1} of ${pages}); ${flagged} of ${data.rows.length} flagged`
      : `no clip to show; ${flagged} of ${data.rows.length} flagged`;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    document.querySelectorAll("#head th").forEach((th, c) => {
      if (c === state.sort) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }

  function header() {
    const tr = $("head");
    cols.forEach((col, c) => {
      const th = el("th", { class: col.kind === "text" ? "text" : "num", title: col.help + " (click to sort)" }, col.label);
      th.dataset.key = col.key;
      th.addEventListener("click", () => {
        state.dir = state.sort === c ? -state.dir : col.kind === "text" ? 1 : -1;
        state.sort = c;
        state.page = 0;
        render();
      });
      tr.appendChild(th);
    });
  }

  header();
  $("show-media").addEventListener("change", (e) => document.body.classList.toggle("no-media", !e.target.checked));
  $("only-flagged").addEventListener("change", (e) => { state.onlyFlagged = e.target.checked; state.page = 0; render(); });
  $("search").addEventListener("input", (e) => { state.search = e.target.value; state.page = 0; render(); });
  $("page-size").addEventListener("change", (e) => { state.size = Number(e.target.value); state.page = 0; render(); });
  $("prev").addEventListener("click", () => { state.page -= 1; render(); window.scrollTo(0, 0); });
  $("next").addEventListener("click", () => { state.page += 1; render(); window.scrollTo(0, 0); });
  render();
  performance.mark("uvrsep-first-rows");
  document.body.dataset.rendered = "1";
})();
