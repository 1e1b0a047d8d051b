"""The report without a browser: manifest reading, rows, flags, thresholds, CSV, the page's
embedded data and links, pictures (an independent PNG decoder), and build_report's safety."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import struct
import zlib
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from uvrsep.errors import ConfigError, cli_messages
from uvrsep.report import Thresholds, build_report
from uvrsep.report.page import page_data
from uvrsep.report.pictures import HEIGHT, PALETTE, WIDTH, png_bytes, spectrogram_indices
from uvrsep.report.table import clip_rows, output_labels, read_manifest, voice_output

from .report_fixtures import KINDS, SR, write_small_report_inputs


@pytest.fixture
def small(tmp_path, monkeypatch):
    """The small report's inputs under tmp_path, which is the current folder."""
    monkeypatch.chdir(tmp_path)
    return write_small_report_inputs(tmp_path)


def embedded(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.DOTALL)
    return json.loads(found.group(1))


def decode_png(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(indices [h, w], palette [n, 3]) of an 8-bit palette PNG, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (8, 3, 0) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all()  # filter "none" on every line
    return raw[:, 1:], np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3)


def test_the_last_record_of_an_input_wins_and_bad_lines_are_reported(small):
    records, warnings = read_manifest(small)
    assert [r["input"] for r in records] == [f"clips/{k}.wav" for k in KINDS] + ["clips/old.wav", "clips/broken.wav"]
    assert records[0]["status"] == "ok"  # "clean" failed first, then succeeded
    assert len(warnings) == 1 and "manifest.jsonl:" in warnings[0] and "unreadable manifest line" in warnings[0]


def test_each_kind_of_clip_raises_its_flag_and_no_other(small):
    _columns, rows = clip_rows(read_manifest(small)[0], Thresholds())
    flags = {row.values["input"]: row.flags for row in rows}
    for kind, (_, want) in KINDS.items():
        assert flags[f"clips/{kind}.wav"] == want, kind
    assert flags["clips/old.wav"] == []  # no measures: nothing known, nothing flagged
    assert flags["clips/broken.wav"] == ["failed"]
    old = next(row for row in rows if row.values["input"] == "clips/old.wav")
    assert old.values["voice_share"] is None and old.values["duration_s"] == 1.0  # the record's duration


def test_thresholds_are_the_callers():
    records = [
        {
            "input": "a.wav",
            "status": "ok",
            "outputs": [],
            "measures": {"voice_share": 0.2, "voice_active": 0.3, "music_left_db": -35.0, "clipped": 4},
        }
    ]
    assert clip_rows(records, Thresholds())[1][0].flags == ["clipped"]
    strict = Thresholds(music_left_db=-40, voice_share=0.25, voice_active=0.5, clipped=10)
    assert clip_rows(records, strict)[1][0].flags == ["music left", "little voice", "voice rarely active"]
    for bad, message in (
        ({"voice_share": 1.5}, "voice_share 1.5: must be a fraction"),
        ({"clipped": -1}, "clipped -1: must be a whole number"),
        ({"music_left_db": float("nan")}, "music_left_db: must be a number"),
        ({"voice_active": "x"}, "voice_active: must be a number"),
    ):
        with pytest.raises(ConfigError, match=message):
            Thresholds(**bad)
    with cli_messages(), pytest.raises(ConfigError, match="--flag-voice-share 2: must be a fraction"):
        Thresholds(voice_share=2)


def test_the_csv_has_the_tables_columns_and_values(small, tmp_path):
    summary = build_report(small, "report.html", "report.csv", pictures=False)
    assert (summary.clips, summary.flagged) == (7, 5)
    data = embedded(tmp_path / "report.html")
    table = list(csv.reader(io.StringIO((tmp_path / "report.csv").read_text(encoding="utf-8"))))
    assert table[0] == [c["key"] for c in data["columns"]]
    assert len(table) == 1 + len(data["rows"])
    for line, values in zip(table[1:], data["rows"]):
        assert line == ["" if v is None else str(v) for v in values]
    keys = table[0]
    assert keys[:11] == [
        "input",
        "status",
        "flags",
        "duration_s",
        "voice_stem",
        "voice_share",
        "voice_active",
        "music_left_db",
        "clipped",
        "input_peak_dbfs",
        "input_rms_dbfs",
    ]
    assert keys[11:] == [
        f"{s}.{m}" for s in ("instrumental", "vocals") for m in ("peak_dbfs", "rms_dbfs", "clipped")
    ] + ["error"]
    leaky = next(line for line in table if line[0] == "clips/leaky.wav")
    assert leaky[2] == "music left" and -11 < float(leaky[7]) < -10


def test_page_data_is_embedded_safely_and_links_resolve_from_the_page(small, tmp_path):
    # A clip name that would close the script element, with characters URLs must encode.
    weird = tmp_path / "clips" / "a </script><b>x #1 %.wav"  # a folder "a <" holds "script><b>x #1 %.wav"
    weird.parent.mkdir()
    os.link(tmp_path / "clips" / "clean.wav", weird)
    with open(small, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"input": str(weird), "status": "ok", "outputs": []}) + "\n")
    page = tmp_path / "reports" / "r.html"
    page.parent.mkdir()
    build_report(small, page, pictures=False)
    text = page.read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the data's and the script's
    data = embedded(page)
    columns, rows = clip_rows(read_manifest(small)[0], Thresholds())
    assert data["rows"] == page_data(columns, rows, [], Thresholds())["rows"]
    for media in data["media"]:
        href, exists, path = media["input"]
        assert not href.startswith("/") and ":" not in href  # relative to the page's folder
        assert (page.parent / unquote(href)).resolve().is_file() == exists and (path == "") == exists
        for label, href, exists, path in media["outputs"]:
            assert (page.parent / unquote(href)).is_file() == exists
    assert data["media"][0]["input"] == ["../clips/clean.wav", True, ""]
    assert data["media"][0]["outputs"] == [
        ["instrumental", "../out/clean_instrumental.wav", True, ""],
        ["vocals", "../out/clean_vocals.wav", True, ""],
    ]
    assert data["media"][-1]["input"][1] is True and "%23" in data["media"][-1]["input"][0]  # "#" encoded
    assert data["media"][5]["outputs"][0] == [
        "instrumental",
        "../out/old_instrumental.wav",
        False,
        "out/old_instrumental.wav",
    ]  # never written
    assert "Spectrogram pictures were turned off" in text and "pictures=False" in text


def test_relative_paths_are_taken_from_base_dir(small, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    build_report(small, "r.html", pictures=False, base_dir=tmp_path)
    assert embedded(elsewhere / "r.html")["media"][0]["input"] == ["../clips/clean.wav", True, ""]
    build_report(small, "r2.html", pictures=False)  # default: the current folder
    assert embedded(elsewhere / "r2.html")["media"][0]["input"] == ["clips/clean.wav", False, "clips/clean.wav"]


def test_pictures_are_pngs_beside_the_page_and_reused(small, tmp_path):
    summary = build_report(small, "report.html")
    assert summary.pictures == 2 * len(KINDS) + 1  # input and voice stem of each measured ok clip...
    data = embedded(tmp_path / "report.html")
    old = data["media"][5]["pictures"]  # ...and old.wav's input (its stems are missing)
    assert old[0][1] is not None and old[1][1] is None and "no picture" in old[1][2]
    pngs = sorted((tmp_path / "report_files").iterdir())
    for media in data["media"][: len(KINDS)]:
        (_, src_in, _), (label, src_voice, _) = media["pictures"]
        assert label == "vocals stem"
        for src in (src_in, src_voice):
            indices, palette = decode_png((tmp_path / unquote(src)).read_bytes())
            assert indices.shape == (HEIGHT, WIDTH) and (palette == PALETTE).all()
    times = [p.stat().st_mtime_ns for p in pngs]
    build_report(small, "report.html", overwrite=True)  # unchanged audio: the same pictures, not redrawn
    assert sorted((tmp_path / "report_files").iterdir()) == pngs and [p.stat().st_mtime_ns for p in pngs] == times
    (tmp_path / "clips" / "leaky.wav").write_bytes(b"not audio")
    summary = build_report(small, "report.html", overwrite=True)
    note = embedded(tmp_path / "report.html")["media"][1]["pictures"][0][2]
    assert summary.pictures == 2 * len(KINDS) and note.startswith("no picture (") and "leaky.wav" in note
    # A later run found clean.wav's stems there and skipped it: its pictures stay on the page.
    with open(small, "a", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {
                    "input": "clips/clean.wav",
                    "status": "skipped",
                    "error": "outputs exist",
                    "outputs": ["out/clean_instrumental.wav", "out/clean_vocals.wav"],
                }
            )
            + "\n"
        )
    summary = build_report(small, "report.html", overwrite=True)
    assert summary.pictures == 2 * len(KINDS)
    assert [p[0] for p in embedded(tmp_path / "report.html")["media"][0]["pictures"]] == ["input", "vocals stem"]


def test_png_encoder_round_trips():
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 256, (7, 13)).astype(np.uint8)
    got, palette = decode_png(png_bytes(indices, PALETTE))
    assert (got == indices).all() and (palette == PALETTE).all()


def test_a_tone_lights_the_row_of_its_frequency():
    """Rows are mel-spaced from 0 to sr/2, low frequencies at the bottom."""
    freq = 1000.0
    t = np.arange(2 * SR) / SR
    indices = spectrogram_indices(np.sin(2 * np.pi * freq * t)[None, :].astype(np.float32), SR)
    mel = lambda f: 2595 * math.log10(1 + f / 700)
    want_from_bottom = int(mel(freq) / mel(SR / 2) * HEIGHT)
    brightest = HEIGHT - 1 - np.argmax(indices.mean(axis=1))
    assert abs(brightest - want_from_bottom) <= 1
    assert (spectrogram_indices(np.zeros((2, 5000), np.float32), SR) == 0).all()  # silence is dark


def test_the_voice_stems_output_is_found_whatever_the_template():
    cases = [
        (["out/a_instrumental.wav", "out/a_vocals.wav"], "vocals", "out/a_vocals.wav"),
        (["o/vocals/a.flac", "o/instrumental/a.flac"], "vocals", "o/vocals/a.flac"),
        (["v/vocals_take_instrumental.wav", "v/vocals_take_vocals.wav"], "vocals", "v/vocals_take_vocals.wav"),
        (["a_voc.wav", "a_vocals.wav"], "voc", "a_voc.wav"),
        (["a-No Echo-HP.wav", "a-Echo-HP.wav"], "No Echo", "a-No Echo-HP.wav"),
        (["solo_vocals.mp3"], "vocals", "solo_vocals.mp3"),
        (["a_instrumental.wav"], "vocals", None),
        (["x_one.wav", "x_two.wav"], "vocals", None),
    ]
    for outputs, stem, want in cases:
        assert voice_output(outputs, stem) == want, outputs
    assert output_labels(["o/vocals/a.flac", "o/instrumental/a.flac"]) == ["vocals", "instrumental"]


def test_outputs_are_never_replaced_unless_asked(small, tmp_path):
    (tmp_path / "report.html").write_text("mine")
    with pytest.raises(ConfigError, match=r"out_html report.html: already exists \(overwrite=True replaces it\)"):
        build_report(small, "report.html", pictures=False)
    with pytest.raises(ConfigError, match="csv_path mine.csv: already exists"):
        (tmp_path / "mine.csv").write_text("x")
        build_report(small, "new.html", "mine.csv", pictures=False)
    assert (tmp_path / "report.html").read_text() == "mine" and not (tmp_path / "new.html").exists()
    build_report(small, "report.html", pictures=False, overwrite=True)
    assert "uvrsep report" in (tmp_path / "report.html").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    with pytest.raises(ConfigError, match="manifest nothing.jsonl: no such file"):
        build_report("nothing.jsonl", "x.html")
    with pytest.raises(ConfigError, match="manifest clips: is a folder"):
        build_report("clips", "x.html")
    with cli_messages(), pytest.raises(ConfigError, match="--output report.html: already exists"):
        build_report(small, "report.html")
    with pytest.raises(ConfigError, match="out_html manifest.jsonl: is the manifest; give another file"):
        build_report(small, "manifest.jsonl", overwrite=True)
    with pytest.raises(ConfigError, match="csv_path r.html: is also out_html"):
        build_report(small, "r.html", "r.html")
    assert read_manifest(small)[0]  # untouched


def test_an_empty_manifest_gives_an_empty_report_in_a_new_folder(tmp_path):
    (tmp_path / "m.jsonl").write_text("")
    summary = build_report(tmp_path / "m.jsonl", tmp_path / "new" / "deeper" / "r.html", tmp_path / "r.csv")
    assert (summary.clips, summary.flagged, summary.pictures) == (0, 0, 0)
    assert embedded(tmp_path / "new" / "deeper" / "r.html")["rows"] == []
    assert (tmp_path / "r.csv").read_text().startswith("input,status,flags,")


def test_a_huge_report_is_data_not_html(tmp_path):
    """Thousands of clips: the page carries them as JSON (rendered a page at a time), and its
    size grows by well under a kilobyte per clip (10,000 in a browser: test_report_browser)."""
    records = [
        {
            "input": f"clips/c{k:05d}.wav",
            "status": "ok",
            "outputs": [f"out/c{k:05d}_vocals.wav"],
            "measures": {
                "voice_share": (k % 100) / 100,
                "voice_active": 0.5,
                "music_left_db": -30.0,
                "clipped": 0,
                "stems": {"vocals": {"peak_dbfs": -3.0, "rms_dbfs": -20.0, "clipped": 0}},
            },
        }
        for k in range(3000)
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    build_report(manifest, tmp_path / "r.html", pictures=False, base_dir=tmp_path)
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert text.count("<tr") == 1  # the header row only: rows are rendered by the script
    assert len(embedded(tmp_path / "r.html")["rows"]) == 3000 and len(text) < 3000 * 600
