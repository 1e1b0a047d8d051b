"""The helper scripts: checkpoint splitting and the reproducible validation set."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, SHARED, music_like

SHARED_DATA = SHARED / "data"


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, check=True, cwd=REPO)


def test_split_and_join_are_byte_exact(tmp_path):
    data = np.random.default_rng(0).bytes(3 * 2**20 + 123)
    (tmp_path / "ckpt.pth").write_bytes(data)
    run("scripts/split_checkpoint.py", "split", tmp_path / "ckpt.pth", tmp_path / "out" / "last.pth", "--max-mib", "1")
    parts = sorted((tmp_path / "out").glob("last.pth.part*"))
    assert len(parts) == 4 and all(p.stat().st_size <= 2**20 for p in parts)
    run("scripts/split_checkpoint.py", "join", tmp_path / "out" / "last.pth", tmp_path / "back.pth")
    assert (tmp_path / "back.pth").read_bytes() == data
    parts[1].write_bytes(b"corrupt")
    with pytest.raises(subprocess.CalledProcessError):
        run("scripts/split_checkpoint.py", "join", tmp_path / "out" / "last.pth", tmp_path / "again.pth")


@pytest.mark.skipif(
    not (SHARED_DATA / "manifest.csv").is_file(),
    reason="the shared data folder ($UVRSEP_SHARED or ../shared)/data is not present",
)
@pytest.mark.slow
def test_validation_set_is_reproducible(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(4):
        rng = np.random.default_rng(i)
        sf.write(music / f"t{i}.flac", (0.1 * rng.standard_normal((44100 * 9, 2))).astype(np.float32), 44100)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run(
            "scripts/build_valset.py",
            out,
            "--music",
            music,
            "--shared-data",
            SHARED_DATA,
            "--hold-out",
            "0.5",
            "--singing-items",
            "2",
            "--dialog-items",
            "1",
        )
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.wav"))
    assert len(files) == 9
    for rel in files:  # compare samples: float WAV headers carry a timestamp (PEAK chunk)
        a, sr_a = sf.read(outs[0] / rel, dtype="float32")
        b, sr_b = sf.read(outs[1] / rel, dtype="float32")
        assert sr_a == sr_b == 44100 and np.array_equal(a, b), rel


@pytest.mark.slow
def test_join_speech_chunks_each_voice(tmp_path):
    src = tmp_path / "src"
    (src / "clips").mkdir(parents=True)
    rows = ["file\tvoice"]
    rng = np.random.default_rng(0)
    for voice, count in (("a", 6), ("b", 2)):
        for i in range(count):
            tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)  # 1 s at 16 kHz
            clip = np.concatenate([np.zeros(4000), tone, np.zeros(4000)]) + 1e-5 * rng.standard_normal(24000)
            sf.write(src / "clips" / f"{voice}{i}.wav", clip.astype(np.float32), 16000)
            rows.append(f"clips/{voice}{i}.wav\t{voice}")
    (src / "clips" / "0broken.wav").write_bytes(b"not audio")  # first in path order
    rows.append("clips/0broken.wav\ta")
    (src / "manifest.tsv").write_text("\n".join(rows) + "\n")
    (src / "pkg").mkdir()
    (src / "pkg" / "copyright").write_text("licence")
    out = tmp_path / "out"
    result = run(
        "scripts/join_speech.py",
        src,
        out,
        "--group",
        "voice",
        "--chunk-s",
        "2.5",
        "--gap-s",
        "0.5",
        "--max-group-s",
        "4.5",
    )
    assert "0broken.wav" in result.stderr  # reported, skipped, the rest goes on
    manifest = (out / "manifest.csv").read_text().splitlines()
    # voice a: ~1 s clips (silence trimmed), 0.5 s gaps: a chunk is written at 2.5 s (two clips); the
    # 4.5 s cap stops the group after 4 clips (two chunks), not 6; voice b: its 2 clips, one chunk.
    a = [line for line in manifest[1:] if ",a," in line]
    b = [line for line in manifest[1:] if ",b," in line]
    assert len(a) == 2 and len(b) == 1
    first, sr = sf.read(out / "a" / "a_000.flac")
    assert sr == 44100 and abs(first.shape[0] / sr - 2.5) < 0.1 and np.abs(first).max() <= 0.99
    assert (out / "licences" / "pkg__copyright").read_text() == "licence"


@pytest.mark.slow
def test_compact_valset_round_trip(tmp_path):
    valset = tmp_path / "valset"
    rng = np.random.default_rng(1)
    n = 44100 * 2 + 17
    t = np.arange(n) / 44100
    for name in ("singing_00", "dialog_00"):
        (valset / name).mkdir(parents=True)
        voc = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t))
        acc = 0.05 * rng.standard_normal((2, n))
        stems = {"vocals": np.stack([voc, voc]), "accompaniment": acc}
        stems["mixture"] = stems["vocals"] + acc
        for stem, wave in stems.items():
            sf.write(valset / name / f"{stem}.wav", wave.T.astype(np.float32), 44100, subtype="FLOAT")
    (valset / "valset.json").write_text('{"seed": 0, "items": []}')
    run("scripts/compact_valset.py", "pack", valset, tmp_path / "carry")
    size = sum(p.stat().st_size for p in (tmp_path / "carry").rglob("*.opus"))
    assert size < 0.2 * sum(p.stat().st_size for p in valset.rglob("*.wav"))
    run("scripts/compact_valset.py", "unpack", tmp_path / "carry", tmp_path / "back")
    for name in ("singing_00", "dialog_00"):
        back = {
            s: sf.read(tmp_path / "back" / name / f"{s}.wav", dtype="float32")[0].T
            for s in ("mixture", "vocals", "accompaniment")
        }
        assert all(w.shape == (2, n) for w in back.values())
        assert np.array_equal(back["mixture"], back["vocals"] + back["accompaniment"])
        ref = sf.read(valset / name / "vocals.wav", dtype="float32")[0].T
        snr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - back["vocals"]) ** 2))
        assert snr > 10, snr  # a lossy copy, but of the same signal and aligned in time


@pytest.mark.slow
def test_bench_separate_suite_writes_its_table(tmp_path, tiny_weights):
    """The suite as a GPU run will use it (here on the CPU, small): a row per precision and
    input, the files in the folder given, bf16 measured against fp32."""
    import json

    out = tmp_path / "bench"
    run(
        REPO / "scripts" / "bench_separate.py",
        "--suite",
        out,
        "--devices",
        "cpu",
        "--song-seconds",
        "2",
        "--clips",
        "1",
        "--model",
        tiny_weights,
    )
    rows = json.loads((out / "bench_separate.json").read_text())
    assert [(r["device"], r["precision"], r["status"]) for r in rows] == [("cpu", "fp32", "ok"), ("cpu", "bf16", "ok")]
    assert rows[0]["clips"]["count"] == 1 and rows[0]["song"]["windows"] > 0 and rows[0]["flops_per_window"] > 0
    assert rows[0]["sdr_vs_fp32"] is None and np.isfinite(rows[1]["sdr_vs_fp32"])  # tiny random net: any value
    table = (out / "bench_separate.md").read_text()
    assert table.count("| cpu | fp32 |") == 2 and table.count("| cpu | bf16 |") == 2
    assert "song 2 s" in table and "1 clips of 3 s" in table


@pytest.mark.slow
def test_bench_separate_compares_whole_and_segmented_processing(tmp_path, tiny_weights):
    """Scope 3's measurement: the same file whole and in segments, alternating; equal results."""
    path = tmp_path / "song.wav"
    sf.write(path, music_like(6.0).T, 44100, subtype="PCM_16")
    out = run(
        REPO / "scripts" / "bench_separate.py",
        path,
        "--model",
        tiny_weights,
        "--repeat",
        "1",
        "--segment-threshold",
        "0",
        "--segment-windows",
        "1",
        "--compare-segments",
    ).stdout
    assert "whole: whole; segments: segments of 256 frames" in out
    assert "    whole |    median" in out and " segments |    median" in out
    ratio, cpu, quality = re.search(
        r"segments / whole: total ([\d.]+), CPU ([\d.]+), .*; SDR between them ([\d.]+) dB", out
    ).groups()
    assert float(ratio) > 0 and float(cpu) > 0 and float(quality) >= 90


@pytest.mark.slow
def test_bench_dsp_prints_a_table_of_every_step():
    out = run("scripts/bench_dsp.py", "--seconds", "1", "--repeats", "1", "--threads", "1").stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "step" not in line]
    names = [row[0].strip() for row in rows]
    assert "input 48000->44100 kaiser_fast" in names and "synthesis, one stem (bands.synthesize)" in names
    assert sum(name.startswith("stft ") for name in names) == 4  # 4band_v2: one per band
    for row in rows:
        ref_wall, torch_wall, quality = float(row[2]), float(row[3]), float(row[8])
        assert ref_wall >= 0 and torch_wall >= 0 and quality >= 100, row


@pytest.mark.slow
def test_bench_measures_prints_the_cost_of_measuring(tmp_path, tiny_weights):
    path = tmp_path / "clip.wav"
    sf.write(path, music_like(1.0).T, 44100)
    out = run(REPO / "scripts" / "bench_measures.py", path, "--model", tiny_weights, "--repeat", "2").stdout
    assert out.count("\nrun ") + out.startswith("run ") == 2
    row = out.splitlines()[-2]
    assert re.fullmatch(r"\| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ % \|", row), row
    assert re.search(r"measuring costs [0-9.]+ % of separating \((within|OVER) the 2 % bound\)", out)
