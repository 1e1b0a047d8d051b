"""The run's own files (issue 23): the list of inputs and the manifest are regular files read
within bounds, and the manifest is a true record however the run ends or however many runs
share it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep.batch import ItemResult, Manifest, read_list_file
from uvrsep.cli import app
from uvrsep.errors import ConfigError

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


def uvrsep(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uvrsep", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def in_process(*args):
    """``uvrsep ARGS`` run by typer's test runner in this process (stdout and stderr together)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def records(manifest: Path) -> dict[str, dict]:
    """The last record of each input (lines that are no record skipped)."""
    last = {}
    for line in manifest.read_text().splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        last[rec["input"]] = rec
    return last


# -- 7: regular files only, bounded lines ------------------------------------------------------


@needs_fifo
@pytest.mark.slow  # a child process (opening a FIFO that nobody writes could hang this one)
@pytest.mark.parametrize("option", ["--manifest", "--from-list"])
def test_a_fifo_is_refused_at_once(option, short_wav, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    extra = [short_wav] if option == "--manifest" else []
    started = time.monotonic()
    proc = uvrsep("separate", *extra, option, fifo, "-o", tmp_path / "o", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {option} {fifo}: is a FIFO (named pipe), not a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - started < 60


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("option", ["--manifest", "--from-list"])
def test_a_device_is_refused_at_once(option, short_wav, tmp_path):
    # In-process: read, /dev/zero would end in the list's and the manifest's line bound, not hang.
    link = tmp_path / "zeros.jsonl"
    link.symlink_to("/dev/zero")
    result = in_process("separate", short_wav, option, link, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{option} {link}: is a device or special file, not a regular file" in result.output


def test_standard_input_stays_a_list_source_and_is_bounded(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a.wav\n# note\n\nb.wav\n")))
    assert read_list_file("-") == ["a.wav", "b.wav"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * (3 << 20))))
    with pytest.raises(ConfigError, match="line 1 is over 1048576 bytes"):
        read_list_file("-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00" * (1 << 16))))
    with pytest.raises(ConfigError, match="holds binary data"):
        read_list_file("-")


def test_hostile_manifest_lines_are_skipped_with_a_warning(tmp_path):
    manifest = tmp_path / "run.jsonl"
    good = {"input": "a.wav", "status": "ok", "outputs": []}
    manifest.write_bytes(
        b"[" * 200000
        + b"\n"
        + b'{"a":' * 50000
        + b"\n"
        + b'{"input": "'
        + b"x" * (2 << 20)
        + b'"}\n'
        + json.dumps(good).encode()
        + b"\n"
    )
    journal = Manifest(manifest)
    assert journal.last == {"a.wav": good}
    assert [w.split(": ", 1)[1] for w in journal.warnings] == [
        "unreadable manifest line skipped (JSON nested too deeply)",
        "unreadable manifest line skipped (JSON nested too deeply)",
        "unreadable manifest line skipped (over 1048576 bytes)",
    ]
    assert [w.split(": ", 1)[0] for w in journal.warnings] == [f"{manifest}:1", f"{manifest}:2", f"{manifest}:3"]


def test_a_nesting_bomb_in_the_cli_is_a_warning(short_wav, tiny_weights, tmp_path):
    manifest = tmp_path / "run.jsonl"
    manifest.write_bytes(b"[" * 200000 + b"\n")
    result = in_process(
        "separate", short_wav, "-m", tiny_weights, "-o", tmp_path / "o", "--manifest", manifest, "--device", "cpu"
    )
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert f"warning: {manifest}:1: unreadable manifest line skipped (JSON nested too deeply)" in result.output
    assert records(manifest)[str(short_wav)]["status"] == "ok"


# -- 8: a true record --------------------------------------------------------------------------


def test_a_skipped_never_follows_an_ok_of_another_run(tmp_path):
    manifest = tmp_path / "shared.jsonl"
    first, second = Manifest(manifest), Manifest(manifest)  # both opened before either records
    first.record(ItemResult("a.wav", "ok", ["out/a_vocals.wav"], 1.0, 0.5))
    second.record(ItemResult("a.wav", "skipped", ["out/a_vocals.wav"], error="written by another run meanwhile"))
    second.record(ItemResult("b.wav", "skipped", [], error="outputs exist"))
    assert records(manifest)["a.wav"]["status"] == "ok"
    assert records(manifest)["b.wav"]["status"] == "skipped"
    assert len(manifest.read_text().splitlines()) == 2
    assert second.last["a.wav"]["status"] == "ok"  # it learnt of the other run's record


def test_records_from_two_threads_are_whole_lines(tmp_path):
    import threading

    manifest = Manifest(tmp_path / "m.jsonl")

    def many(prefix: str) -> None:
        for k in range(200):
            manifest.record(ItemResult(f"{prefix}{k}.wav", "ok", [f"{prefix}{k}_vocals.wav"], 1.0, 0.1))

    threads = [threading.Thread(target=many, args=(p,)) for p in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(records(tmp_path / "m.jsonl")) == 400 and Manifest(tmp_path / "m.jsonl").warnings == []


def _clips(folder: Path, count: int, seconds: float = 0.4) -> list[Path]:
    folder.mkdir()
    paths = []
    for k in range(count):
        paths.append(folder / f"c{k:02d}.wav")
        sf.write(paths[-1], music_like(seconds, seed=k).T, SR)
    return paths


def _finished(out: Path, clips: list[Path]) -> list[Path]:
    return [
        c for c in clips if (out / f"{c.stem}_vocals.wav").exists() and (out / f"{c.stem}_instrumental.wav").exists()
    ]


def _default_sigint() -> None:
    """In the child, before exec: Ctrl-C's default disposition, unblocked. A child inherits an
    ignored or blocked SIGINT, and Python then never raises KeyboardInterrupt; in full-suite runs
    the SIGINT case saw the run go on to its end (all 40 written, 11 s after the signal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])  # SIGTERM takes SIGINT's path (test_hardening)
def test_every_finished_input_has_its_ok_record_however_the_run_ends(sig, tiny_weights, tmp_path):
    # 40 clips make 5 groups of 8 windows, and the network runs at most MAX_QUEUED_WRITES clips
    # ahead of the writer: when the first 3 are written, at least 40 - 3 - 8 - 8 are not (before
    # that bound a fast network could finish all 40 while the writer caught up, and did once).
    clips = _clips(tmp_path / "clips", 40, seconds=0.3)
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvrsep",
            "separate",
            str(tmp_path / "clips"),
            "-m",
            str(tiny_weights),
            "-o",
            str(out),
            "--manifest",
            str(manifest),
            "--device",
            "cpu",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and len(_finished(out, clips)) < 3:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be stopped"
    proc.send_signal(sig)
    stderr = proc.communicate(timeout=120)[1]
    done = _finished(out, clips)
    assert 3 <= len(done) < len(clips), (proc.returncode, stderr[-2000:])
    last = records(manifest)
    assert all(last[str(c)]["status"] == "ok" for c in done), (sig, [str(c) for c in done], last)
    # The next run completes the rest without redoing or downgrading what was done.
    again = uvrsep(
        "separate",
        tmp_path / "clips",
        "-m",
        tiny_weights,
        "-o",
        out,
        "--manifest",
        manifest,
        "--device",
        "cpu",
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert all(rec["status"] == "ok" for rec in records(manifest).values())
    assert len(_finished(out, clips)) == len(clips)


@pytest.mark.slow
def test_two_runs_sharing_a_manifest_end_with_ok_for_every_input(tiny_weights, tmp_path):
    clips = _clips(tmp_path / "clips", 6, seconds=0.3)
    out, manifest = tmp_path / "out", tmp_path / "shared.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        "separate",
        str(tmp_path / "clips"),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    last = records(manifest)
    assert sorted(last) == sorted(map(str, clips))
    assert {rec["status"] for rec in last.values()} == {"ok"}, last


def test_a_manifest_in_a_folder_it_cannot_write_takes_its_lock_from_the_cache(tmp_path, isolated_cache, monkeypatch):
    """The lock file goes beside the manifest; where that folder is read-only (the manifest
    itself writable), it goes to the cache's locks/ and records are still appended."""
    folder = tmp_path / "ro"
    folder.mkdir()
    manifest = folder / "run.jsonl"
    manifest.write_text("")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    journal = Manifest(manifest)
    journal.record(ItemResult("a.wav", "ok", ["a_vocals.wav"], 1.0, 0.1))
    assert journal.write_error is None and records(manifest)["a.wav"]["status"] == "ok"
    assert not (folder / "run.jsonl.lock").exists()
    assert list((isolated_cache / "locks").glob("manifest-*.lock"))
