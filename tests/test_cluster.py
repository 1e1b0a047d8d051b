"""The Ray path's own logic, without Ray: worker layouts, work units, devices, the flag, the
ledger-guided rerun of a unit, and the clean-up of temporary files. (tests/test_ray.py runs it
on a real local Ray instance.)"""

from __future__ import annotations

import builtins
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep.audio import owner_tag, remove_temporaries
from uvrsep.batch import InputItem, Job, OutputPlan
from uvrsep.cli import _ray_flag, app
from uvrsep.cluster import (
    MAX_ATTEMPTS,
    RunLedger,
    _driver_result,
    _Worker,
    check_address,
    pack_units,
    plan_workers,
    worker_device,
)
from uvrsep.errors import ConfigError

runner = CliRunner()


def test_default_layout_one_worker_per_gpu_else_per_two_cpus():
    cpu = plan_workers([8, 8], 0)
    assert (cpu.workers, cpu.cpus, cpu.gpus, cpu.threads) == (8, 2.0, 0.0, 2)
    gpu = plan_workers([16, 16], 4)
    assert (gpu.workers, gpu.cpus, gpu.gpus, gpu.threads) == (4, 1.0, 1.0, 1)
    assert plan_workers([16], 4, device="cpu").gpus == 0  # --device cpu never reserves GPUs
    half = plan_workers([16], 2, gpus_per_worker=0.5)
    assert (half.workers, half.gpus) == (4, 0.5)
    assert plan_workers([1], 0).workers == 1


def test_cpus_per_worker_fit_the_nodes():
    # 3 workers on two 8-CPU nodes: with 8 (or 5-7) CPUs each only 2 fit; with 4, two per node.
    assert plan_workers([8, 8], 0, workers=3).cpus == 4.0
    assert plan_workers([8, 8], 0, workers=5).cpus == 2.0
    assert plan_workers([2], 0, workers=2).cpus == 1.0
    assert plan_workers([2], 0, workers=4).cpus == 0.5  # more workers than CPUs: shares


@pytest.mark.parametrize(
    "kwargs, gpus, message",
    [
        (dict(gpus_per_worker=1), 0, "has 0 GPU"),
        (dict(gpus_per_worker=1, device="cpu"), 2, "use --device auto or cuda"),
        (dict(device="cuda"), 0, "has no GPU"),
        (dict(workers=3, gpus_per_worker=1), 2, "needs 3 GPUs; the Ray cluster has 2"),
        (dict(device="cuda", gpus_per_worker=0), 2, "needs --gpus-per-worker above 0"),
    ],
)
def test_layouts_the_cluster_cannot_hold_are_refused(kwargs, gpus, message):
    with pytest.raises(ConfigError, match=message):
        plan_workers([4], gpus, **kwargs)


def _jobs(durations):
    return [
        Job(InputItem(Path(f"c{i}.wav"), Path(".")), {"vocals": Path(f"o{i}.wav")}, d) for i, d in enumerate(durations)
    ]


def test_units_send_long_inputs_alone_first_and_pack_short_clips():
    durations = [0.5] * 40 + [90.0, 61.0] + [3.0] * 4
    units = pack_units(_jobs(durations), long_seconds=60.0, workers=2)
    assert units[:2] == [[40], [41]]  # longest first, one each
    flat = [i for unit in units for i in unit]
    assert sorted(flat) == list(range(len(durations)))  # every job exactly once
    short = units[2:]
    assert len(short) >= 2 and all(len(u) > 1 for u in short[:-1])
    # Units hold about a quarter of each worker's share of the short audio (32 s / 8 = 4 s, at least 5 s).
    assert all(sum(durations[i] for i in u) < 5.0 + 3.0 for u in short)


def test_worker_device_follows_what_ray_assigned():
    assert worker_device("auto", [0], True) == ("cuda", None)
    device, note = worker_device("auto", [1], False)
    assert device == "cpu" and "GPU 1" in note and "CUDA is not available" in note
    assert worker_device("auto", [], True) == ("cpu", None)  # never a GPU it did not reserve
    assert worker_device("cpu", [], False) == ("cpu", None)
    assert worker_device("cuda:1", [3], True) == ("cuda", None)  # Ray's CUDA_VISIBLE_DEVICES: its GPU is cuda:0


def test_addresses_and_the_bare_flag():
    for ok in ("local", "auto", "10.0.0.5:6379", "head-node:6379", "ray://head:10001", "[::1]:6379"):
        assert check_address(ok) == ok
    with pytest.raises(ConfigError, match="put the inputs before --ray"):
        check_address("clips/")
    assert _ray_flag(["separate", "a.wav", "--ray"]) == ["separate", "a.wav", "--ray", "local"]
    assert _ray_flag(["separate", "a.wav", "--ray", "-m", "x"]) == ["separate", "a.wav", "--ray", "local", "-m", "x"]
    assert _ray_flag(["separate", "a.wav", "--ray", "auto"]) == ["separate", "a.wav", "--ray", "auto"]
    assert _ray_flag(["separate", "--", "--ray"]) == ["separate", "--", "--ray"]


def test_without_ray_the_flag_says_how_to_install_it(monkeypatch, short_wav, tiny_weights, tmp_path):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    result = runner.invoke(
        app, ["separate", str(short_wav), "-m", str(tiny_weights), "-o", str(tmp_path / "out"), "--ray", "local"]
    )
    assert result.exit_code == 2, result.output
    assert 'error: --ray needs Ray Data, which is not installed: pip install "uvrsep[ray]"' in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_ray_flags_need_ray(short_wav, tiny_weights, tmp_path):
    result = runner.invoke(app, ["separate", str(short_wav), "-m", str(tiny_weights), "--ray-workers", "2"])
    assert result.exit_code == 2 and "--ray-workers and --gpus-per-worker are for --ray" in result.output


def test_driver_results_name_paths_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = Job(InputItem(Path("in/a.wav"), Path("in")), {"vocals": Path("out/a_vocals.wav")}, 1.0)
    row = {
        "index": 0,
        "input": os.path.abspath("in/a.wav"),
        "status": "ok",
        "outputs": f'["{os.path.abspath("out/a_vocals.wav")}"]',
        "duration_s": 1.0,
        "seconds": 0.5,
        "error": f"{os.path.abspath('in/a.wav')}: holds NaN",
        "notes": "[]",
        "warnings": json.dumps([f"{os.path.abspath('in/a.wav')}: clipped at full scale: vocals"]),
        "measures": json.dumps({"voice_share": 0.25, "music_left_db": None}),
    }
    result = _driver_result(job, row)
    assert (
        result.input == "in/a.wav" and result.outputs == ["out/a_vocals.wav"] and result.error == "in/a.wav: holds NaN"
    )
    assert result.warnings == ["in/a.wav: clipped at full scale: vocals"]  # a worker's warnings reach the driver
    assert result.measures == {"voice_share": 0.25, "music_left_db": None}  # and its measures
    assert _driver_result(job, {**row, "measures": "null"}).measures is None


class _LocalWorker(_Worker):
    """The worker's unit logic with its ledger in this process (no Ray)."""

    def __init__(self, separator, plan, ledger):
        self.separator, self.plan, self.ledger, self.notes = separator, plan, ledger, []

    def _call(self, method, *args):
        return getattr(self.ledger, method)(*args)


@pytest.mark.slow
def test_a_rerun_unit_takes_back_what_its_dead_worker_committed(tmp_path, tiny_weights):
    """A worker died after committing some files of a unit: the rerun reports those inputs ok
    without redoing them, writes the missing file of a half-committed one, does the rest; and
    existing files this run did not commit are never taken for its own."""
    from uvrsep import Separator

    clips = []
    for k in range(4):
        path = tmp_path / f"c{k}.wav"
        sf.write(path, music_like(0.3, seed=k).T, SR)
        clips.append(path)
    out = tmp_path / "out"
    plan = OutputPlan(output_dir=out, stems=("vocals", "instrumental"))
    jobs = [Job(InputItem(c, tmp_path), plan.paths(InputItem(c, tmp_path), plan.stems), 0.3) for c in clips]
    entries = [[i, str(j.item.path), {k: str(p) for k, p in j.targets.items()}, j.duration] for i, j in enumerate(jobs)]
    sep = Separator(tiny_weights, device="cpu")
    ledger = RunLedger()
    worker = _LocalWorker(sep, plan, ledger)

    # The first attempt at unit 7 got through inputs 0 and 1, then its worker died: its rows
    # never reached the driver.
    first = worker.run_unit(7, entries[:2])
    assert [r["status"] for r in first] == ["ok", "ok"]
    reference = {p: p.read_bytes() for j in jobs[:2] for p in j.targets.values()}
    jobs[1].targets["vocals"].unlink()  # died between the two renames of input 1
    sf.write(jobs[3].targets["vocals"], np.zeros((10, 2)), SR)  # someone else's file: never this run's
    mtime0 = jobs[0].targets["vocals"].stat().st_mtime_ns

    rows = worker.run_unit(7, entries)  # the rerun (attempt 2): one input at a time
    by_input = {Path(r["input"]).name: r for r in rows}
    assert [by_input[f"c{k}.wav"]["status"] for k in range(3)] == ["ok", "ok", "ok"]
    assert by_input["c0.wav"]["seconds"] == 0.0  # taken back, not redone
    assert jobs[0].targets["vocals"].stat().st_mtime_ns == mtime0
    assert sorted(json.loads(by_input["c1.wav"]["outputs"])) == sorted(str(p) for p in jobs[1].targets.values())
    for path, data in reference.items():
        assert path.read_bytes() == data  # the missing file is the same file again
    assert by_input["c3.wav"]["status"] == "skipped" and "already exists" in by_input["c3.wav"]["error"]
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_an_input_that_keeps_killing_its_worker_is_failed(tmp_path, tiny_weights):
    from uvrsep import Separator

    clip = tmp_path / "c.wav"
    sf.write(clip, music_like(0.2).T, SR)
    plan = OutputPlan(output_dir=tmp_path / "out", stems=("vocals", "instrumental"))
    item = InputItem(clip, tmp_path)
    entry = [0, str(clip), {k: str(p) for k, p in plan.paths(item, plan.stems).items()}, 0.2]
    ledger = RunLedger()
    worker = _LocalWorker(Separator(tiny_weights, device="cpu"), plan, ledger)
    for _ in range(MAX_ATTEMPTS):  # the grouped attempt, then reruns that each "died" on it
        ledger.begin(3)
    ledger.start(0), ledger.start(0)
    (row,) = worker.run_unit(3, [entry])
    assert row["status"] == "failed" and f"a Ray worker died {MAX_ATTEMPTS} times while separating it" in row["error"]
    assert not (tmp_path / "out").exists()


def test_temporaries_of_finished_or_dead_owners_go_live_ones_stay(tmp_path):
    host = owner_tag().rsplit("-", 1)[0]
    live = tmp_path / f".a.wav.{owner_tag()}-abc.part"  # this process: alive
    dead = tmp_path / f".a.wav.{host}-999999999-abc.part"  # this host, no such process
    worker = tmp_path / ".b.wav.node7-1234-xyz.part"  # another host: a finished run's worker
    foreign = tmp_path / ".b.wav.node8-1234-xyz.part.mp3"  # another host, not known: kept (a day)
    other = tmp_path / f".c.wav.{host}-999999999-abc.part"  # not one of the names asked about
    done = tmp_path / "a.wav"
    for p in (live, dead, worker, foreign, other, done):
        p.write_bytes(b"x")
    assert remove_temporaries(tmp_path, {"a.wav", "b.wav"}, ["node7-1234"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, foreign, other, done))
