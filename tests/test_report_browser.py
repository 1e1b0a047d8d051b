"""The report page in a real headless browser (Debian's Chromium, over the DevTools pipe).

Marked ``browser``; skipped where Chromium is absent (/usr/bin/chromium or ``chromium`` on the
PATH). Set ``UVRSEP_SCREENSHOTS`` to a folder to keep screenshots of the pages tested.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import pytest
from typer.testing import CliRunner

from uvrsep.cli import app
from uvrsep.report import build_report

from .cdp import Browser, find_chromium
from .report_fixtures import KINDS, run_real_batch, write_big_manifest, write_small_report_inputs

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or not hasattr(os, "posix_spawn"),
        reason="Chromium is not installed (apt-get install chromium)",
    ),
]
RENDERED = "document.body && document.body.dataset.rendered === '1'"
ROW_INDICES = "[...document.querySelectorAll('tr.clip')].map(tr => Number(tr.dataset.index))"


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM)
    yield b
    b.close()


def screenshot(browser: Browser, name: str) -> None:
    folder = os.environ.get("UVRSEP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(folder) / name)


def open_page(browser: Browser, page: Path) -> float:
    """Open ``page`` and wait for its first rows; the seconds that took."""
    browser.open("about:blank")
    browser.wait_for("document.readyState === 'complete' && location.href === 'about:blank'")
    start = time.perf_counter()
    browser.open(page.as_uri())
    browser.wait_for(RENDERED, timeout=30)
    return time.perf_counter() - start


def file_of(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(url2pathname(unquote(parsed.path)))


@pytest.fixture(scope="module")
def small_page(tmp_path_factory):
    root = tmp_path_factory.mktemp("small_report")
    manifest = write_small_report_inputs(root)
    page = root / "reports" / "report.html"  # a subfolder: every link climbs out of it
    page.parent.mkdir()
    build_report(manifest, page, base_dir=root)
    return page


def test_the_table_renders_with_players_and_pictures(browser, small_page):
    open_page(browser, small_page)
    assert browser.evaluate("document.querySelectorAll('tr.clip').length") == len(KINDS) + 2
    columns = browser.evaluate("[...document.querySelectorAll('#head th')].map(th => th.dataset.key)")
    assert columns[:3] == ["input", "status", "flags"] and columns[-1] == "error"
    first = browser.evaluate("[...document.querySelector('tr.clip').cells].map(td => td.textContent)")
    assert first[0] == "clips/clean.wav" and first[1] == "ok"
    assert browser.evaluate("document.getElementById('page-info').textContent").endswith("5 of 7 flagged")
    # Pictures: every one on the page loads (scrolled into view: they load lazily).
    count = browser.evaluate("document.images.length")
    assert count == 2 * len(KINDS) + 1
    browser.evaluate("[...document.images].forEach(i => i.loading = 'eager')")
    browser.wait_for("[...document.images].every(i => i.complete)")
    assert browser.evaluate("[...document.images].map(i => i.naturalWidth)") == [320] * count
    # Players: no audio is fetched before play; every src is an existing file beside the page.
    players = browser.evaluate("[...document.querySelectorAll('audio')].map(a => [a.preload, a.src])")
    assert len(players) == 3 * len(KINDS) + 1  # input + 2 stems of each measured clip, old.wav's input
    for preload, src in players:
        assert preload == "none" and file_of(src).is_file(), src
    missing = browser.evaluate("[...document.querySelectorAll('span.missing')].map(s => s.textContent)")
    assert missing == ["missing: out/old_instrumental.wav", "missing: out/old_vocals.wav", "missing: clips/broken.wav"]
    # A player really plays from its relative path: its metadata loads (1 s of audio).
    duration = browser.evaluate("""new Promise((ok, fail) => {
        const a = document.querySelector('audio'); a.preload = 'metadata';
        a.onloadedmetadata = () => ok(a.duration); a.onerror = () => fail(String(a.error && a.error.code));
        a.load(); })""")
    assert abs(duration - 1.0) < 0.01
    screenshot(browser, "small_report.png")


def test_sorting_by_a_column_reorders_the_rows(browser, small_page):
    open_page(browser, small_page)
    before = browser.evaluate(ROW_INDICES)
    assert before == list(range(len(KINDS) + 2))
    values = browser.evaluate("JSON.parse(document.getElementById('report-data').textContent).rows.map(r => r[7])")
    browser.evaluate("document.querySelector('th[data-key=music_left_db]').click()")
    order = browser.evaluate(ROW_INDICES)
    measured = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: (-values[i], i))
    assert order == measured + [i for i, v in enumerate(values) if v is None]  # highest first, missing last
    assert (
        order != before
        and browser.evaluate("document.querySelector('th[data-key=music_left_db]').getAttribute('aria-sort')")
        == "descending"
    )
    browser.evaluate("document.querySelector('th[data-key=music_left_db]').click()")
    ascending = browser.evaluate(ROW_INDICES)
    assert ascending[: len(measured)] == sorted(measured, key=lambda i: (values[i], i))
    browser.evaluate("document.querySelector('th[data-key=input]').click()")
    names = browser.evaluate("[...document.querySelectorAll('tr.clip td:first-child')].map(td => td.textContent)")
    assert names == sorted(names)


def test_only_flagged_keeps_the_flagged_clips(browser, small_page):
    open_page(browser, small_page)
    browser.evaluate("const c = document.getElementById('only-flagged'); c.click();")
    rows = browser.evaluate(
        "[...document.querySelectorAll('tr.clip')].map(tr => "
        "[tr.cells[0].textContent, [...tr.querySelectorAll('span.flag')].map(s => s.textContent)])"
    )
    want = {f"clips/{k}.wav": flags for k, (_, flags) in KINDS.items() if flags}
    want["clips/broken.wav"] = ["failed"]
    assert dict(rows) == want
    screenshot(browser, "small_report_flagged.png")
    browser.evaluate("document.getElementById('only-flagged').click()")
    assert browser.evaluate("document.querySelectorAll('tr.clip').length") == len(KINDS) + 2


@pytest.fixture(scope="module")
def real_page(tmp_path_factory, tiny_weights):
    """The page ``uvrsep report`` makes of a real (resumed) batch, in a folder of its own beside
    the batch's: every sound and picture is linked by a relative path that climbs out of it."""
    root = tmp_path_factory.mktemp("real_report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UVRSEP_HOME", str(tmp_path_factory.mktemp("uvrsep_home")))
        run_real_batch(root, tiny_weights)
        mp.chdir(root)
        result = CliRunner().invoke(
            app,
            [
                "report",
                "manifest.jsonl",
                "-o",
                "pages/report.html",
                "--csv",
                "pages/report.csv",
                "--flag-voice-active",
                "0.75",
            ],
        )
    assert result.exit_code == 0, result.output
    return root / "pages" / "report.html"


@pytest.mark.slow
def test_the_page_of_a_real_batch_made_by_the_command(browser, real_page):
    """Rows, sorting, flags, players and pictures of a page made by ``uvrsep report`` from the
    manifest of a ``uvrsep separate`` run (resumed: a failed attempt, then ok)."""
    open_page(browser, real_page)
    names = browser.evaluate("[...document.querySelectorAll('tr.clip td:first-child')].map(td => td.textContent)")
    assert names == ["clips/a.wav", "clips/b.wav"]  # one row per input: the last record won
    cells = browser.evaluate(
        "[...document.querySelectorAll('tr.clip')].map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert [c[1] for c in cells] == ["ok", "ok"] and all(c[5].endswith("%") for c in cells)  # voice share shown
    shares = browser.evaluate("JSON.parse(document.getElementById('report-data').textContent).rows.map(r => r[5])")
    assert all(isinstance(v, float) for v in shares)
    browser.evaluate("document.querySelector('th[data-key=voice_share]').click()")
    assert browser.evaluate(ROW_INDICES) == sorted(range(2), key=lambda i: (-shares[i], i))
    browser.evaluate("document.querySelector('th[data-key=voice_share]').click()")
    assert browser.evaluate(ROW_INDICES) == sorted(range(2), key=lambda i: (shares[i], i))
    browser.evaluate("document.getElementById('only-flagged').click()")
    flagged = browser.evaluate(
        "[...document.querySelectorAll('tr.clip')].map(tr => "
        "[tr.cells[0].textContent, [...tr.querySelectorAll('span.flag')].map(s => s.textContent)])"
    )
    assert flagged == [["clips/b.wav", ["voice rarely active"]]]
    browser.evaluate("document.getElementById('only-flagged').click()")
    browser.evaluate("[...document.images].forEach(i => i.loading = 'eager')")
    browser.wait_for("[...document.images].every(i => i.complete)")
    pictures = browser.evaluate("[...document.images].map(i => [i.naturalWidth, i.getAttribute('src')])")
    assert len(pictures) == 4 and all(w == 320 and src.startswith("report_files/") for w, src in pictures)
    players = browser.evaluate("[...document.querySelectorAll('audio')].map(a => [a.getAttribute('src'), a.src])")
    assert len(players) == 6  # input and two stems of each clip
    for relative, src in players:
        assert relative.startswith("../") and file_of(src).is_file(), relative
    durations = browser.evaluate("""Promise.all([...document.querySelectorAll('audio')].map(a => new Promise((ok, fail) => {
        a.preload = 'metadata'; a.onloadedmetadata = () => ok(a.duration);
        a.onerror = () => fail(String(a.error && a.error.code)); a.load(); })))""")
    assert sorted(round(d, 2) for d in durations) == [0.4] * 3 + [0.5] * 3  # each clip's players: its length
    screenshot(browser, "real_batch_report.png")


@pytest.fixture
def big_manifest(tmp_path):
    """10,000 clips (30,000 links to three audio files), in memory (/dev/shm) where there is
    one: on this machine's shared disk, making and removing them took from 10 s to a minute."""
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="uvrsep-report-", dir=shm)) if shm.is_dir() else tmp_path
    try:
        yield write_big_manifest(root, 10000)
    finally:
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_report_of_10000_clips_opens_within_2_seconds(browser, big_manifest):
    manifest, tmp_path = big_manifest, big_manifest.parent
    start = time.perf_counter()
    summary = build_report(manifest, tmp_path / "big.html", tmp_path / "big.csv", base_dir=tmp_path)
    build_s = time.perf_counter() - start
    assert summary.clips == 10000 and summary.pictures == 20000
    assert len(list((tmp_path / "big_files").iterdir())) == 2  # one file behind every link: two pictures
    wall = open_page(browser, tmp_path / "big.html")
    timing = browser.evaluate("""(() => { const n = performance.getEntriesByType('navigation')[0];
        return [performance.getEntriesByName('uvrsep-first-rows')[0].startTime, n.domContentLoadedEventEnd]; })()""")
    first_rows_ms, dom_ready_ms = timing
    print(
        f"10,000 clips: built in {build_s:.2f} s; opened in {wall:.2f} s (wall, navigation to first rows "
        f"seen); first rows at {first_rows_ms:.0f} ms, DOMContentLoaded at {dom_ready_ms:.0f} ms; "
        f"page {(tmp_path / 'big.html').stat().st_size / 1e6:.1f} MB"
    )
    assert wall < 2.0 and first_rows_ms < 2000
    assert browser.evaluate("document.querySelectorAll('tr.clip').length") == 50
    browser.evaluate("document.getElementById('next').click()")
    assert browser.evaluate(ROW_INDICES) == list(range(50, 100))
    shares = browser.evaluate("JSON.parse(document.getElementById('report-data').textContent).rows.map(r => r[5])")
    browser.evaluate("document.querySelector('th[data-key=voice_share]').click()")
    assert browser.evaluate(ROW_INDICES) == sorted(range(10000), key=lambda i: (-shares[i], i))[:50]
    browser.evaluate("document.getElementById('only-flagged').click()")
    info = browser.evaluate("document.getElementById('page-info').textContent")
    assert info.startswith("clips 1\u201350 of ") and "flagged" in info
    browser.evaluate("[...document.images].slice(0, 4).forEach(i => i.loading = 'eager')")
    browser.wait_for("[...document.images].slice(0, 4).every(i => i.complete && i.naturalWidth === 320)")
    screenshot(browser, "report_10000.png")
    browser.evaluate("document.getElementById('show-media').click()")  # the compact table
    assert browser.evaluate("getComputedStyle(document.querySelector('tr.media')).display") == "none"
    screenshot(browser, "report_10000_compact.png")
