"""The report page: one static HTML file, its script and styles inline, its data as embedded JSON.

The page opens from disk (``file://``) with no server and no network. Its audio players and
pictures point at files by paths relative to the page's folder. The rows are data, not HTML:
the script renders one page of clips at a time (50 by default), so a report of 10,000 clips
opens as fast as one of 50. Clicking a column header sorts by it (numbers: highest first, text:
A to Z; again: reversed; missing values always last), "only flagged" keeps the suspect clips,
and a search box filters by the clip's name.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from .table import ClipRow, Column, Thresholds

_HERE = Path(__file__).resolve().parent

#: The page's text when pictures were turned off.
NO_PICTURES = (
    "Spectrogram pictures were turned off for this report ({flag}). To see them, make the report "
    "again without {flag}: they are written beside the page."
)


@dataclass
class ClipMedia:
    """Where one clip's sounds and pictures are, as the page links them.

    ``input`` and ``outputs`` are ``(href, exists, path)`` / ``(label, href, exists, path)``
    (``path``: the manifest's, for a missing file; else empty); ``pictures`` are ``(label, href
    or None, note)``: ``note`` says why a picture is missing."""

    input: tuple[str, bool, str]
    outputs: list[tuple[str, str, bool, str]] = field(default_factory=list)
    pictures: list[tuple[str, str | None, str]] = field(default_factory=list)


def _thresholds_text(t: Thresholds) -> str:
    return (
        f"music left above {t.music_left_db:g} dB; voice share below {100 * t.voice_share:g} %; "
        f"voice active below {100 * t.voice_active:g} %; more than {t.clipped:g} clipped samples; failed"
    )


def page_data(columns: list[Column], rows: list[ClipRow], media: list[ClipMedia], thresholds: Thresholds) -> dict:
    """What the page's script reads: columns, one value list per row (in column order), media."""
    return {
        "columns": [{"key": c.key, "label": c.label, "kind": c.kind, "help": c.help} for c in columns],
        "rows": [[row.values.get(c.key) for c in columns] for row in rows],
        "media": [
            {"input": list(m.input), "outputs": [list(o) for o in m.outputs], "pictures": [list(p) for p in m.pictures]}
            for m in media
        ],
        "thresholds": {
            "music_left_db": thresholds.music_left_db,
            "voice_share": thresholds.voice_share,
            "voice_active": thresholds.voice_active,
            "clipped": thresholds.clipped,
        },
    }


def _definitions(columns: list[Column]) -> str:
    items = "".join(
        f"<dt>{html.escape(c.label)}</dt><dd>{html.escape(c.help)}</dd>" for c in columns if "." not in c.key
    )
    return (
        "<details><summary>What the columns mean</summary><dl>" + items + "<dt>&lt;stem&gt; peak / RMS / "
        "clipped</dt><dd>each stem's peak and RMS level (dBFS) and samples over full scale</dd></dl>"
        '<p class="note">Definitions and formulas: uvrsep\'s docs/report.md.</p></details>'
    )


def page_html(data: dict, *, title: str, subtitle: str, thresholds: Thresholds, notes: list[str]) -> str:
    """The whole page as text."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("<", "\\u003c")  # no "</script>" inside the data ("<" only occurs in strings)
    script = (_HERE / "page.js").read_text(encoding="utf-8")
    style = (_HERE / "page.css").read_text(encoding="utf-8")
    note_html = "".join(f'<p class="note warn">{html.escape(n)}</p>' for n in notes)
    columns = [Column(**c) for c in data["columns"]]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{style}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(subtitle)}</p>
<p class="meta">Flagged when: {html.escape(_thresholds_text(thresholds))}.</p>
{note_html}
{_definitions(columns)}
<div id="controls">
<label><input type="checkbox" id="only-flagged"> only flagged</label>
<label><input type="checkbox" id="show-media" checked> players and pictures</label>
<input type="search" id="search" placeholder="filter by clip name">
<label>rows per page <select id="page-size"><option>25</option><option selected>50</option><option>100</option>
<option>200</option></select></label>
<button id="prev" type="button">&larr; previous</button><button id="next" type="button">next &rarr;</button>
<span id="page-info"></span>
</div>
<div id="wrap"><table><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table></div>
<script type="application/json" id="report-data">{payload}</script>
<script>{script}</script>
</body></html>
"""
