"""Hostile use: every failure is one line and one input, signals and concurrent runs leave
nothing behind, and a fuzzed batch never shows a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep.cli import app

runner = CliRunner()


def uvrsep_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "uvrsep", "separate", *map(str, args)]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_any_exception_fails_only_its_input(tmp_path, tiny_weights, monkeypatch):
    """A library error that is no uvrsep error (librosa's ParameterError, say) used to stop the
    whole run with a traceback; it now fails its input with one line and the next goes on."""
    import librosa

    from uvrsep import bands

    sf.write(tmp_path / "a.wav", music_like(0.3).T, SR)
    sf.write(tmp_path / "b.wav", music_like(0.5).T, SR)
    real = bands.stft

    def flaky(wave, band, mode):  # a's top band (0.3 s at 44.1 kHz) raises, as librosa can
        if band.sample_rate == SR and wave.shape[-1] < 0.4 * SR:
            raise librosa.util.exceptions.ParameterError("Audio buffer is not finite everywhere")
        return real(wave, band, mode)

    monkeypatch.setattr(bands, "stft", flaky)
    result = runner.invoke(
        app,
        [
            "separate",
            str(tmp_path / "a.wav"),
            str(tmp_path / "b.wav"),
            "-m",
            str(tiny_weights),
            "-o",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "a.wav: ParameterError: Audio buffer is not finite everywhere" in result.output
    assert "1 processed, 0 skipped, 1 failed" in result.output


def test_fifo_and_disk_full_are_named(tmp_path, tiny_weights, monkeypatch):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    sf.write(tmp_path / "ok.wav", music_like(0.3).T, SR)
    import shutil as _shutil

    from uvrsep import audio

    real_write = audio.sf.SoundFile.write

    def full(self, data):
        raise audio.sf.LibsndfileError(0, "System error.")

    monkeypatch.setattr(audio.sf.SoundFile, "write", full)
    monkeypatch.setattr(_shutil, "disk_usage", lambda p: _shutil._ntuple_diskusage(10, 10, 0))
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["separate", str(fifo), str(tmp_path / "ok.wav"), "-m", str(tiny_weights), "-o", str(out), "--device", "cpu"],
    )
    monkeypatch.setattr(audio.sf.SoundFile, "write", real_write)
    assert result.exit_code == 1, result.output
    assert "pipe.wav: is a FIFO (named pipe); give a regular audio file" in result.output
    assert f"cannot write: disk full (no space left in {out})" in result.output
    assert not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_sigterm_is_ctrl_c_and_leaves_nothing(tmp_path, tiny_weights):
    """timeout / kill / job schedulers send SIGTERM: exit 143, no .part file, no decoded copy."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    long_mp3 = tmp_path / "long.mp3"  # compressed: decoded to a temporary file to stream it
    sf.write(long_mp3, music_like(20.0).T, SR)
    stale = tmpdir / f"uvrsep-decode-{_host()}-{dead_pid()}-abc123"
    stale.mkdir()
    (stale / "decoded.wav").write_bytes(b"left by a killed run")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(tmpdir))
    proc = subprocess.Popen(
        uvrsep_cmd(long_mp3, "-m", tiny_weights, "-o", out, "--device", "cpu", "--segment-threshold", "5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(out.glob(".*.part")) if out.is_dir() else []
        if parts and all(p.stat().st_size > 44 for p in parts):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be stopped"
    assert not stale.exists()  # a killed run's decoded copy is cleaned up by the next run
    assert [p.name.startswith("uvrsep-decode-") for p in tmpdir.iterdir()] == [True]  # ours, live
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output
    assert "terminated" in output and "Traceback" not in output
    assert list(out.iterdir()) == [] and list(tmpdir.iterdir()) == []


def _host() -> str:
    from uvrsep.audio import owner_tag

    return owner_tag().rsplit("-", 1)[0]


def test_stale_part_files_of_live_processes_are_kept(tmp_path):
    """The cleanup of a killed run's temporary files must not delete a live run's."""
    from uvrsep.audio import AudioStreamWriter

    live = tmp_path / f".x.wav.{_host()}-{os.getpid()}-live01.part"
    live.write_bytes(b"being written")
    dead = tmp_path / f".x.wav.{_host()}-{dead_pid()}-dead01.part"
    dead.write_bytes(b"abandoned")
    foreign = tmp_path / ".x.wav.otherhost-1-fresh1.part"
    foreign.write_bytes(b"another machine, recent")
    with AudioStreamWriter(tmp_path / "x.wav", SR, 2) as writer:
        writer.write(np.zeros((2, 10), np.float32))
        writer.commit()
    assert live.exists() and foreign.exists() and not dead.exists()


@pytest.mark.slow
def test_two_identical_runs_at_once(tmp_path, tiny_weights):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(4):
        sf.write(clips / f"c{i}.wav", music_like(0.5, seed=i).T, SR)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [
        subprocess.Popen(
            uvrsep_cmd(clips, "-m", tiny_weights, "-o", out, "--device", "cpu", "--manifest", tmp_path / f"m{k}.jsonl"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for k in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for k in range(2):
        records = [json.loads(x) for x in (tmp_path / f"m{k}.jsonl").read_text().splitlines()]
        assert sorted(Path(r["input"]).name for r in records) == [f"c{i}.wav" for i in range(4)]
        assert {r["status"] for r in records} <= {"ok", "skipped"}
    reference = tmp_path / "reference"
    alone = subprocess.run(
        uvrsep_cmd(clips, "-m", tiny_weights, "-o", reference, "--device", "cpu"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert alone.returncode == 0, alone.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes()


def _hostile_inputs(root: Path, rng: np.random.Generator, count: int) -> list[Path]:
    """Random WAV/FLAC subtypes, channel counts and rates, extreme values, random bytes behind
    valid headers, truncations."""
    subtypes = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"]
    paths = []
    for k in range(count):
        kind = rng.integers(0, 5)
        path = root / f"in{k:02d}.wav"
        channels = int(rng.integers(1, 7))
        rate = int(rng.choice([1000, 8000, 22050, 44100, 48000, 96000, 192000]))
        n = int(rng.integers(1, 6000))
        if kind == 0:  # a valid file, any subtype
            data = rng.uniform(-1, 1, (n, channels)).astype(np.float32)
            sf.write(path, data, rate, subtype=str(rng.choice(subtypes)))
        elif kind == 1:  # extreme float values
            data = rng.choice([0.0, 1.0, -1.0, 3e38, -3e38, 1e-45, np.nan, np.inf], (n, channels)).astype(np.float32)
            sf.write(path, data, rate, subtype="FLOAT")
        elif kind == 2:  # a valid header, random bytes after it
            sf.write(path, np.zeros((n, channels), np.float32), rate, subtype="PCM_16")
            raw = path.read_bytes()
            path.write_bytes(raw[:44] + rng.bytes(len(raw) - 44 + int(rng.integers(0, 100))))
        elif kind == 3:  # truncated anywhere
            sf.write(path, rng.uniform(-1, 1, (n, channels)).astype(np.float32), rate, subtype="PCM_24")
            raw = path.read_bytes()
            path.write_bytes(raw[: int(rng.integers(0, len(raw)))])
        else:  # flac, truncated or not
            path = path.with_suffix(".flac")
            sf.write(path, rng.uniform(-1, 1, (n, min(channels, 8))).astype(np.float32), rate)
            if rng.random() < 0.5:
                raw = path.read_bytes()
                path.write_bytes(raw[: int(rng.integers(1, len(raw)))])
        paths.append(path)
    return paths


@pytest.mark.slow
def test_fuzzed_batch(tmp_path, tiny_weights):
    """Seeded and bounded: exit 0 or 1, no traceback, every input reported exactly once, every
    output complete and readable or absent."""
    rng = np.random.default_rng(20261130)
    inputs = tmp_path / "in"
    inputs.mkdir()
    paths = _hostile_inputs(inputs, rng, 24)
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    proc = subprocess.run(
        uvrsep_cmd(
            inputs, "-m", tiny_weights, "-o", out, "--manifest", manifest, "--device", "cpu", "--batch-size", "4"
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["input"] for r in records) == sorted(map(str, paths))
    for rec in records:
        assert rec["status"] in ("ok", "failed")
        if rec["status"] == "failed":
            assert "\n" not in rec["error"] and Path(rec["input"]).name in rec["error"], rec
            assert not list(out.glob(Path(rec["input"]).stem + "_*"))
        else:
            for output in rec["outputs"]:
                info = sf.info(output)
                data, _ = sf.read(output)
                assert len(data) == info.frames and np.isfinite(data).all()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
