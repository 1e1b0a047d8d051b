"""``uvrsep separate --ray`` on a local Ray instance (127.0.0.1, CPU actors, a tiny random HP
net): the same files and manifest as the local batch, failures per input, a worker and the
driver killed mid-run, the GPU form on declared GPUs, a chain (``--then``), an ensemble
(``-m A -m B``); an unreachable address failing within the deadline, and a process that
imported Ray first. Slow; skipped where Ray is not installed.

One Ray instance serves the module (2 CPUs, 2 declared GPUs); the first test runs before it
exists, because it checks that a bare ``--ray`` starts (and stops) a private one. In-process
runs use the module's instance; subprocess drivers connect to it by address.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from tests.test_chain import dereverb_weights  # noqa: F401  (a fixture)
from tests.test_ensemble_run import second_weights  # noqa: F401  (a fixture)
from uvrsep.cli import app
from uvrsep.rayconnect import CONNECT_DEADLINE_S, DEADLINE_ENV, DEBUG_ENV, LOOPBACK_ENV

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason='Ray is not installed (pip install "uvrsep[ray]")'
    ),
]

runner = CliRunner()
#: The 5.5 s clip is separated in segments (streamed), the others whole.
SEGMENT_THRESHOLD = "5"
GOOD = {  # name: (seconds, sample rate, channels)
    "a.wav": (0.3, SR, 2),
    "b.flac": (0.5, SR, 2),
    "c_48k.wav": (0.6, 48000, 2),
    "d_22k_mono.wav": (0.8, 22050, 1),
    "e.wav": (1.0, SR, 2),
    "f_32k.wav": (0.4, 32000, 2),
    "g_16k_mono.wav": (0.6, 16000, 1),
    "h.wav": (0.2, SR, 2),
    "i.wav": (0.7, SR, 2),
    "long.wav": (5.5, SR, 2),
}
#: nan.wav passes the driver's checks and fails on a worker; random.wav fails before any work.
BAD = {"nan.wav": "holds NaN or infinite samples", "random.wav": "cannot decode audio"}
# Subprocess drivers connect by address, and Ray only sends its token to an address it is told to.
ENV = dict(os.environ, PYTHONUNBUFFERED="1", RAY_AUTH_MODE="token")
for _var in ("RAY_ADDRESS", "RAY_BACKEND_LOG_LEVEL", DEADLINE_ENV, DEBUG_ENV, LOOPBACK_ENV):
    ENV.pop(_var, None)
#: A log line of Ray's C++ core: ``[2026-12-07 05:30:05,991 E 27541 27541] core_worker.cc:2465: ...``.
RAY_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z] \d+ \d+\]", re.MULTILINE)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_corpus")
    for k, (name, (seconds, sr, channels)) in enumerate(GOOD.items()):
        sf.write(root / name, music_like(seconds, sr=sr, channels=channels, seed=k).T, sr)
    nan = music_like(0.3).T.copy()
    nan[100, 0] = np.nan
    sf.write(root / "nan.wav", nan, SR, subtype="FLOAT")
    (root / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    return root


def separate_args(corpus: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return [
        "separate",
        str(corpus),
        "-m",
        str(weights),
        "-o",
        str(out),
        "--device",
        "cpu",
        "--segment-threshold",
        SEGMENT_THRESHOLD,
        *extra,
    ]


def records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference(corpus, tiny_weights, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The local batch's files and manifest, with one torch thread, as each Ray worker here has
    (the number of threads changes the order of float sums in the CPU convolutions: ±1 LSB)."""
    out = tmp_path_factory.mktemp("local") / "out"
    manifest = out.parent / "m.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.invoke(app, separate_args(corpus, tiny_weights, out, "--manifest", str(manifest)))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 1, result.output
    assert "10 processed, 0 skipped, 2 failed" in result.output
    return out, records(manifest)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance for the module: 2 CPUs and 2 declared GPUs, loopback only (uvrsep
    imports Ray itself, in its single-machine mode)."""
    from uvrsep.rayconnect import start_local

    start_local(num_cpus=2, num_gpus=2)
    import ray

    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def assert_same_files(reference_out: Path, out: Path, tolerance: float = 0.0) -> None:
    """The same outputs; byte for byte, or within ``tolerance`` (plus one 16-bit step) as audio."""
    names = sorted(p.name for p in reference_out.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    assert len(names) == 2 * len(GOOD)
    for name in names:
        if tolerance == 0.0:
            assert (out / name).read_bytes() == (reference_out / name).read_bytes(), name
        else:
            got, sr = sf.read(out / name, dtype="float32")
            want, sr_want = sf.read(reference_out / name, dtype="float32")
            assert sr == sr_want and got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=1e-6 + 1 / 32768, err_msg=name)


def assert_no_temporaries(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def ray_processes() -> set[int]:
    """PIDs of Ray's daemons (gcs_server, raylet) on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"gcs_server" in cmd or b"/raylet" in cmd:
                found.add(int(entry.name))
    return found


def test_bare_flag_starts_a_private_instance_and_stops_it(corpus, tiny_weights, reference, tmp_path):
    """``--ray`` with no address (here last on the line): a Ray instance on this machine for the
    run, gone after it; the outputs are the local batch's (threads differ: within one LSB)."""
    before = ray_processes()
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        "separate",
        str(corpus / "a.wav"),
        str(corpus / "long.wav"),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--device",
        "cpu",
        "--segment-threshold",
        SEGMENT_THRESHOLD,
        "--ray-workers",
        "1",
        "--ray",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "note: ray: 1 worker(s)" in done.stderr and "2 processed, 0 skipped, 0 failed" in done.stderr
    assert not RAY_LOG_LINE.search(done.stderr) and "core_worker" not in done.stderr, done.stderr  # Ray's own lines
    for name in ("a_vocals.wav", "long_instrumental.wav"):
        got, _ = sf.read(out / name, dtype="float32")
        want, _ = sf.read(reference[0] / name, dtype="float32")
        np.testing.assert_allclose(got, want, atol=1e-6 + 1 / 32768)
    deadline = time.monotonic() + 30
    while ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ray_processes() - before, "the run left Ray running"


def test_same_files_and_manifest_as_the_local_batch(corpus, tiny_weights, reference, ray_address, tmp_path):
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    result = runner.invoke(
        app,
        separate_args(corpus, tiny_weights, out, "--manifest", str(manifest), "--ray", "local", "--ray-workers", "2"),
    )
    assert result.exit_code == 1, result.output
    assert "note: ray: 2 worker(s) (1 CPU each)" in result.output
    assert "10 processed, 0 skipped, 2 failed" in result.output
    for name, reason in BAD.items():
        assert f"error: {corpus / name}: {reason}" in result.output
    assert_same_files(reference[0], out)
    assert_no_temporaries(out)

    def comparable(recs):
        return sorted(
            (r["input"], r["status"], sorted(Path(o).name for o in r["outputs"]), r["duration_s"], r["error"])
            for r in recs
        )

    assert comparable(records(manifest)) == comparable(reference[1])
    # The workers measured every clip as the local batch did (threads differ: within rounding).
    local = {r["input"]: r["measures"] for r in reference[1]}
    for rec in records(manifest):
        want = local[rec["input"]]
        assert (rec["measures"] is None) == (want is None) == (rec["status"] != "ok"), rec["input"]
        if want is not None:
            assert rec["measures"]["voice_share"] == pytest.approx(want["voice_share"], abs=2e-4)
            assert rec["measures"]["stems"]["vocals"]["rms_dbfs"] == pytest.approx(
                want["stems"]["vocals"]["rms_dbfs"], abs=0.02
            )
    # ... and the report of the Ray run's manifest lists them.
    table = tmp_path / "report.csv"
    made = runner.invoke(
        app, ["report", str(manifest), "-o", str(tmp_path / "report.html"), "--csv", str(table), "--no-pictures"]
    )
    assert made.exit_code == 0 and "report: 12 clips, " in made.output, made.output
    rows = table.read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 12 and sum(",ok," in row and ",vocals," in row for row in rows) == 10


def test_a_worker_killed_mid_run_loses_nothing(corpus, tiny_weights, reference, ray_address, tmp_path):
    """SIGKILL to the worker writing the long input: Ray restarts it and reruns its unit; every
    good input ends with exactly one ok record and the local batch's files, nothing half written."""
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        *separate_args(
            corpus, tiny_weights, out, "--manifest", str(manifest), "--ray", ray_address, "--ray-workers", "2"
        ),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for part in out.glob(".*.part") if out.is_dir() else []:
            victim = int(part.name.split(".")[-2].rsplit("-", 2)[1])  # .<name>.<host>-<pid>-<rand>.part
            break
        time.sleep(0.02)
    assert victim is not None, "no worker was seen writing"
    assert b"ray::" in Path(f"/proc/{victim}/cmdline").read_bytes()  # a Ray worker, not the driver
    os.kill(victim, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    assert "10 processed, 0 skipped, 2 failed" in output
    assert_same_files(reference[0], out)
    assert_no_temporaries(out)
    recs = records(manifest)
    for name in GOOD:
        mine = [r for r in recs if Path(r["input"]).name == name]
        assert [r["status"] for r in mine] == ["ok"], (name, mine)
    assert {Path(r["input"]).name for r in recs if r["status"] == "failed"} == set(BAD)


def test_the_driver_killed_and_rerun_redoes_nothing_finished(corpus, tiny_weights, reference, ray_address, tmp_path):
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        *separate_args(
            corpus, tiny_weights, out, "--manifest", str(manifest), "--ray", ray_address, "--ray-workers", "2"
        ),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and '"ok"' in manifest.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {r["input"] for r in records(manifest) if r["status"] == "ok"}
    assert 1 <= len(finished) < len(GOOD)
    time.sleep(2)  # Ray ends the dead driver's workers
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*.wav")}

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 1, rerun.stderr
    for path, mtime in kept.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was written again"
    assert_same_files(reference[0], out)
    assert_no_temporaries(out)
    last = {}
    for rec in records(manifest):
        last[rec["input"]] = rec
    # Inputs recorded before the kill are skipped without a new record; any whose files the
    # killed run committed before it could record them are skipped as existing outputs.
    skipped = [r for r in last.values() if r["status"] == "skipped"]
    processed = len(GOOD) - len(finished) - len(skipped)
    assert f"{processed} processed, {len(finished) + len(skipped)} skipped, 2 failed" in rerun.stderr
    assert all(r["status"] in ("ok", "skipped") for name, r in last.items() if Path(name).name in GOOD)


def test_gpu_form_one_worker_per_declared_gpu(corpus, tiny_weights, reference, ray_address, tmp_path):
    """``--gpus-per-worker 1`` on an instance with 2 declared GPUs (none real): two workers, one
    per GPU; each sees no CUDA and runs on the CPU. At --batch-size 4 the files are within the
    local batch's cross-clip tolerance of its one-window-at-a-time files."""
    out = tmp_path / "out"
    args = separate_args(corpus, tiny_weights, out, "--ray", "local", "--gpus-per-worker", "1", "--batch-size", "4")
    args[args.index("--device") + 1] = "auto"
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "note: ray: 2 worker(s) (1 CPU, 1 GPU each)" in result.output
    for gpu in (0, 1):
        assert (
            f"a worker was given GPU {gpu} by Ray but CUDA is not available to it: it runs on the CPU" in result.output
        )
    assert "10 processed, 0 skipped, 2 failed" in result.output
    assert_same_files(reference[0], out, tolerance=1e-4)
    assert_no_temporaries(out)


def chain_args(corpus: Path, names: list[str], weights: Path, second: Path, out: Path, *extra: str) -> list[str]:
    return [
        "separate",
        *(str(corpus / n) for n in names),
        "-m",
        str(weights),
        "--then",
        str(second),
        "-o",
        str(out),
        "--device",
        "cpu",
        "--params",
        "4band_v2",
        "--segment-threshold",
        SEGMENT_THRESHOLD,
        *extra,
    ]


def test_a_chain_over_ray_writes_the_local_chains_files(
    corpus,
    tiny_weights,
    dereverb_weights,  # noqa: F811
    ray_address,
    tmp_path,
):
    """``--then`` on the workers: the HP net, then the DeReverb net on its vocals (the long input
    streamed through both); the same bytes as the same chain run here with one torch thread."""
    names = ["a.wav", "c_48k.wav", "d_22k_mono.wav", "long.wav"]
    local, out = tmp_path / "local", tmp_path / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.invoke(app, chain_args(corpus, names, tiny_weights, dereverb_weights, local))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, chain_args(corpus, names, tiny_weights, dereverb_weights, out, "--ray", "local", "--ray-workers", "2")
    )
    assert result.exit_code == 0, result.output
    assert "4 processed, 0 skipped, 0 failed" in result.output
    files = sorted(p.name for p in local.iterdir())
    assert files == sorted(
        f"{Path(n).stem}_{stem}.wav" for n in names for stem in ("instrumental", "vocals_no_reverb", "vocals_reverb")
    )
    assert sorted(p.name for p in out.iterdir()) == files
    for name in files:
        assert (out / name).read_bytes() == (local / name).read_bytes(), name


def test_an_ensemble_over_ray_writes_the_local_ensembles_files(
    corpus,
    tiny_weights,
    second_weights,  # noqa: F811
    ray_address,
    tmp_path,
):
    """``-m A -m B`` on the workers (each loads both models; the long input streams through both
    members side by side): the same bytes and records as the same ensemble run here."""
    names = ["a.wav", "c_48k.wav", "long.wav"]
    local, out = tmp_path / "local", tmp_path / "out"

    def args(folder: Path, *extra: str) -> list[str]:
        return [
            "separate",
            *(str(corpus / n) for n in names),
            "-m",
            str(tiny_weights),
            "-m",
            str(second_weights),
            "--ensemble-algorithm",
            "avg_fft",
            "--ensemble-weights",
            "1,2",
            "-o",
            str(folder),
            "--device",
            "cpu",
            "--segment-threshold",
            SEGMENT_THRESHOLD,
            "--manifest",
            str(folder.parent / f"{folder.name}.jsonl"),
            *extra,
        ]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.invoke(app, args(local))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, args(out, "--ray", "local", "--ray-workers", "2"))
    assert result.exit_code == 0, result.output
    assert "3 processed, 0 skipped, 0 failed" in result.output
    files = sorted(p.name for p in local.iterdir())
    assert files == sorted(f"{Path(n).stem}_{stem}.wav" for n in names for stem in ("instrumental", "vocals"))
    assert sorted(p.name for p in out.iterdir()) == files
    for name in files:
        assert (out / name).read_bytes() == (local / name).read_bytes(), name
    ran = records(tmp_path / "out.jsonl")
    assert {r["model"] for r in ran} == {"tiny_fp32&tiny_b"}
    assert all(r["ensemble"] == {"algorithm": "avg_fft", "weights": [1.0, 2.0]} for r in ran)
    here = {r["input"]: r["measures"] for r in records(tmp_path / "local.jsonl")}
    for rec in ran:  # the long input's too: an ensemble's streamed stems carry the input's meter
        assert rec["measures"] is not None and here[rec["input"]] is not None, rec["input"]
        assert rec["measures"]["voice_share"] == pytest.approx(here[rec["input"]]["voice_share"], abs=2e-4)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("listening", [False, True], ids=["nothing-listens", "silent-listener"])
def test_an_unreachable_address_fails_within_the_deadline_in_one_line(short_wav, tiny_weights, tmp_path, listening):
    """Issue 24: a closed port fails at once; a port where something accepts connections but no
    Ray answers fails when the deadline (here set to 3 s) has passed. One ``error:`` line naming
    the address, no traceback, none of Ray's own lines. (Before: Ray retried for about 14 minutes,
    printing a line every few seconds.)"""
    env = dict(ENV)
    with socket.socket() as server:
        if listening:
            server.bind(("127.0.0.1", 0))
            server.listen(8)  # the kernel accepts; nobody answers
            port, deadline = server.getsockname()[1], 3.0
            env[DEADLINE_ENV] = "3"
        else:
            port, deadline = _closed_port(), CONNECT_DEADLINE_S
        address = f"127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "uvrsep",
            "separate",
            str(short_wav),
            "--ray",
            address,
            "-m",
            str(tiny_weights),
            "-o",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
        start = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=deadline + 60)
        elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --ray {address}: "), done.stderr
    assert ("no Ray cluster answered within 3 s" if listening else "connection refused") in lines[0]
    assert "Traceback" not in done.stderr and "core_worker" not in done.stderr and not done.stdout
    # Python, uvrsep and Ray start in a few seconds (more on a loaded machine); the rest is the deadline.
    assert elapsed < deadline + 20, elapsed
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_ray_imported_before_is_left_as_it_is(tmp_path):
    """A process that imported Ray outside its single-machine mode gets a one-line error for a
    loopback address, and Ray's own setting is left as it was (uvrsep changed it in
    ``ray._private.ray_constants`` before); no Ray is started."""
    script = tmp_path / "imported_first.py"
    script.write_text(
        "import ray\n"
        "before = ray._private.ray_constants.ENABLE_RAY_CLUSTER\n"
        "from uvrsep.cluster import connect\n"
        "from uvrsep.errors import ConfigError\n"
        "try:\n"
        "    connect('local')\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n"
        "print('setting:', before, ray._private.ray_constants.ENABLE_RAY_CLUSTER)\n"
        "print('started:', ray.is_initialized())\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (
        "refused: --ray local: Ray was imported before uvrsep could keep it on 127.0.0.1: set "
        f"{LOOPBACK_ENV}=0 before importing ray" in done.stdout
    )
    assert "setting: True True" in done.stdout and "started: False" in done.stdout
