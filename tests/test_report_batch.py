"""The measures in a real batch's manifest, and the ``uvrsep report`` command on it.

A batch (``uvrsep separate``, a tiny random net) records every clip's measures through the one
writer; they are checked against the plain-Python reference of test_report_measures (from the
documented formulas) on the very samples written (32-bit float stems) and the input as read.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from uvrsep.cli import app
from uvrsep.report import SignalMeter, measure_clip
from uvrsep.sources import ArraySource, MeteredSource
from uvrsep.stems import voice_stem_of

from .report_fixtures import run_real_batch
from .test_report_measures import assert_matches, reference

runner = CliRunner()


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_weights) -> Path:
    """The folder of a real, resumed batch (see :func:`run_real_batch`)."""
    root = tmp_path_factory.mktemp("real_batch")
    with pytest.MonkeyPatch.context() as mp:  # a cache of its own, as every test has (conftest)
        mp.setenv("UVRSEP_HOME", str(tmp_path_factory.mktemp("uvrsep_home")))
        run_real_batch(root, tiny_weights)
    return root


def records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def written(root: Path, record: dict) -> tuple[np.ndarray, dict]:
    """(the input as the model heard it, {stem: samples as written}) of a record, float32 [C, T]."""
    x, _ = sf.read(root / record["input"], dtype="float32", always_2d=True)
    stems = {
        Path(p).stem.rsplit("_", 1)[1]: sf.read(root / p, dtype="float32", always_2d=True)[0].T
        for p in record["outputs"]
    }
    return x.T, stems


def test_every_ok_record_carries_the_measures_of_what_was_written(batch):
    recs = records(batch / "manifest.jsonl")
    assert [(r["input"], r["status"]) for r in recs] == [
        ("clips/a.wav", "failed"),
        ("clips/a.wav", "ok"),
        ("clips/b.wav", "ok"),
    ]
    assert recs[0]["measures"] is None  # a failed input has none
    for rec in recs[1:]:
        x, stems = written(batch, rec)
        got = rec["measures"]
        assert got["voice_stem"] == "vocals" and got["version"] == 1
        assert_matches(got, reference(x, stems, "vocals", 44100))  # plain Python, the docs' formulas
        assert got == measure_clip(x, stems, "vocals", 44100)  # and the module on the files, exactly
    assert recs[2]["measures"]["voice_active"] < 0.75  # b.wav is nearly silent in its first half


def run_report(*args: str):
    result = runner.invoke(app, ["report", *map(str, args)])
    return result, result.output.strip().splitlines()


def test_the_report_command_on_a_resumed_batch(batch, tmp_path, monkeypatch):
    monkeypatch.chdir(batch)
    page, table = tmp_path / "rep" / "report.html", tmp_path / "rep" / "report.csv"
    result, lines = run_report("manifest.jsonl", "-o", page, "--csv", table, "--flag-voice-active", "0.75")
    assert result.exit_code == 0, result.output
    assert lines[-1] == f"report: 2 clips, 1 flagged, 4 pictures; wrote {page} and {table}"
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    recs = {r["input"]: r for r in records(batch / "manifest.jsonl")}  # the last record of each input
    assert [row["input"] for row in rows] == ["clips/a.wav", "clips/b.wav"]
    for row in rows:
        m = recs[row["input"]]["measures"]
        assert row["status"] == "ok" and float(row["voice_share"]) == m["voice_share"]
        assert float(row["vocals.rms_dbfs"]) == m["stems"]["vocals"]["rms_dbfs"]
    assert [row["flags"] for row in rows] == ["", "voice rarely active"]  # the threshold given
    assert len(list((page.parent / "report_files").glob("*.png"))) == 4
    assert "no measures" not in page.read_text(encoding="utf-8")


def test_records_without_measures_are_listed_and_noted(batch, tmp_path):
    manifest = tmp_path / "old.jsonl"
    old = {
        "input": str(batch / "clips/b.wav"),
        "status": "ok",
        "outputs": [str(batch / "out/b_vocals.wav")],
        "duration_s": 0.4,
        "seconds": 1.0,
        "error": "",
    }  # a record as uvrsep wrote it before the measures
    manifest.write_text(json.dumps(old) + "\n", encoding="utf-8")
    result, _ = run_report(manifest, "-o", tmp_path / "old.html", "--csv", tmp_path / "old.csv", "--no-pictures")
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader((tmp_path / "old.csv").open(encoding="utf-8")))
    assert row["status"] == "ok" and row["voice_share"] == "" and row["flags"] == ""
    text = (tmp_path / "old.html").read_text(encoding="utf-8")
    assert "1 clip(s) have no measures" in text and "--overwrite" in text


def test_report_command_errors_are_one_line(batch, tmp_path):
    manifest = batch / "manifest.jsonl"
    cases = [
        (["missing.jsonl"], "error: manifest missing.jsonl: no such file"),
        ([tmp_path], f"error: manifest {tmp_path}: is a folder; give a file path"),
        ([manifest, "-o", manifest], f"error: --output {manifest}: is the manifest; give another file"),
        ([manifest, "--flag-voice-share", "2"], "error: --flag-voice-share 2.0: must be a fraction from 0 to 1"),
        (
            [manifest, "--flag-clipped", "1.5"],
            "error: --flag-clipped 1.5: must be a whole number of samples, 0 or more",
        ),
    ]
    existing = tmp_path / "exists.html"
    existing.write_text("mine", encoding="utf-8")
    cases.append(([manifest, "-o", existing], f"error: --output {existing}: already exists (--overwrite replaces it)"))
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    cases.append(
        (
            [manifest, "-o", blocked / "r.html"],
            f"error: --output {blocked / 'r.html'}: its folder {blocked} is not a folder",
        )
    )
    if sys.platform != "win32" and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(
            (
                [manifest, "-o", locked / "r.html"],
                f"error: --output {locked / 'r.html'}: its folder {locked} is not writable",
            )
        )
    for args, message in cases:
        result, lines = run_report(*args)
        assert result.exit_code != 0 and lines == [message], (args, result.output)
    assert existing.read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["exists.html", "file"] + (["locked"] if (tmp_path / "locked").exists() else [])
    )  # nothing else written
    result, _ = run_report(manifest, "-o", existing, "--overwrite", "--no-pictures", "--base-dir", batch)
    assert result.exit_code == 0 and "<!DOCTYPE html>" in existing.read_text(encoding="utf-8")


def test_the_voice_stem_of_single_models_and_chains():
    assert voice_stem_of(("instrumental", "vocals")) == "vocals"
    assert voice_stem_of(("no_echo", "echo")) == "no_echo"
    assert voice_stem_of(("instrumental", "vocals_no_reverb", "vocals_reverb")) == "vocals_no_reverb"
    assert (
        voice_stem_of(("instrumental", "vocals_echo", "vocals_no_echo_no_noise", "vocals_no_echo_noise"))
        == "vocals_no_echo_no_noise"
    )
    assert voice_stem_of(("drums", "no_drums")) is None
    assert voice_stem_of(("instrumental", "vocals_drums", "vocals_no_drums")) is None


def test_stems_without_a_voice_stem_are_measured_without_voice_measures():
    x = np.random.default_rng(0).standard_normal((2, 5000)).astype(np.float32) * 0.1
    got = measure_clip(x, {"drums": x * 0.5, "no_drums": x * 0.5}, None, 44100)
    assert got["voice_stem"] is None and got["voice_share"] is None and got["voice_active"] is None
    assert got["music_left_db"] is None and got["stems"]["drums"]["rms_dbfs"] == pytest.approx(-26.02, abs=0.02)


def test_a_metered_source_measures_each_sample_once_whatever_the_reads():
    wave = np.random.default_rng(1).standard_normal((2, 10007)).astype(np.float32)
    metered = MeteredSource(ArraySource(wave), SignalMeter(44100))
    for a, b in [(-300, 2000), (1500, 4000), (200, 900), (6000, 7000), (6500, 12000)]:  # overlaps, a gap, past the end
        np.testing.assert_array_equal(metered.read(a, b)[:, max(0, -a) : 10007 - a], wave[:, max(a, 0) : min(b, 10007)])
    metered.complete()
    whole = SignalMeter(44100)
    whole.add(wave)
    assert metered.meter.samples == 10007
    np.testing.assert_allclose(metered.meter.finish()[0], whole.finish()[0], rtol=1e-6)
    assert metered.meter.peak == whole.peak and metered.meter.clipped == whole.clipped


def test_the_writer_measures_every_stem_written_or_not(tmp_path):
    """``--stems`` writes some stems; the measures hold all of them (voice share needs them)."""
    from uvrsep.stems import Stems
    from uvrsep.writer import write_stems

    x = np.random.default_rng(2).standard_normal((2, 9000)).astype(np.float32) * 0.2
    waves = {"instrumental": 0.7 * x, "vocals": 0.3 * x}
    meter = SignalMeter(44100)
    meter.add(x)
    got: list = []
    write_stems(
        Stems(waves, 44100, "instrumental", input_meter=meter),
        {"vocals": tmp_path / "v.wav"},
        sample_rate=16000,
        mono=True,
        on_measures=got.append,
    )
    assert got == [measure_clip(x, waves, "vocals", 44100)]  # as separated: before the rate and channels change
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.wav"]
    none: list = []
    write_stems(Stems(waves, 44100, "instrumental"), {"vocals": tmp_path / "w.wav"}, on_measures=none.append)
    assert none == [None]  # stems that carry no input meter: nothing to measure against


@pytest.mark.slow
def test_a_streamed_input_through_a_chain_is_measured_against_its_voice_stem(tmp_path, tiny_weights, monkeypatch):
    """A 3 s input separated in segments (streamed through the writer block by block) by a chain
    whose voice stem is ``vocals_no_reverb``: its measures are those of the files written."""
    import torch

    from uvrsep.network import Architecture

    from .conftest import music_like

    torch.manual_seed(1)
    dereverb = tmp_path / "tiny-DeReverb.pth"
    torch.save(Architecture("vr51", 16, bins=672).build(672).state_dict(), dereverb)
    monkeypatch.chdir(tmp_path)
    sf.write("long.wav", music_like(3.0, seed=5).T, 44100, subtype="PCM_16")
    result = runner.invoke(
        app,
        [
            "separate",
            "long.wav",
            "-m",
            str(tiny_weights),
            "--then",
            str(dereverb),
            "--params",
            "4band_v2",
            "-o",
            "out",
            "--device",
            "cpu",
            "--bit-depth",
            "32f",
            "--segment-threshold",
            "1",
            "--manifest",
            "m.jsonl",
        ],
    )
    assert result.exit_code == 0, result.output
    (rec,) = records(tmp_path / "m.jsonl")
    x = sf.read("long.wav", dtype="float32", always_2d=True)[0].T
    stems = {
        Path(p).stem.removeprefix("long_"): sf.read(p, dtype="float32", always_2d=True)[0].T for p in rec["outputs"]
    }
    assert rec["measures"]["voice_stem"] == "vocals_no_reverb"
    assert sorted(rec["measures"]["stems"]) == ["instrumental", "vocals_no_reverb", "vocals_reverb"]
    assert_matches(rec["measures"], measure_clip(x, stems, "vocals_no_reverb", 44100))
