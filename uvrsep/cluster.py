"""The batch on a Ray cluster: the same jobs, run by model-holding Ray Data actors.

``uvrsep separate INPUT... --ray [ADDRESS]`` decides the batch exactly as on one machine
(:func:`uvrsep.batch.plan_batch`: inputs, output names, conflicts, the manifest) and records,
shows and sums up the results the same way (:func:`uvrsep.batch.run_batch`); only the jobs run
elsewhere. :class:`RayExecutor` hands them to Ray Data: a dataset of work units
(``from_items``; short clips packed together, long inputs alone, longest first) goes through
``map_batches`` with :class:`_Worker`, a callable class that loads the model once per actor and
runs uvrsep's own batch code on its unit (:func:`uvrsep.batch.separate_jobs`: cross-clip
batching, segmented streaming, the one atomic writer). Each unit comes back as one row per
input; the driver turns rows into :class:`~uvrsep.batch.ItemResult` as they arrive.

Ray schedules and retries; uvrsep makes a retry safe. Ray Data restarts a worker whose process
or node died and runs its unit again. Files are only ever renamed into place complete, so a dead
worker leaves at most hidden temporary files, which the driver removes when the run ends (every
worker registers its ``host-pid`` with the run's :class:`RunLedger`, so this works for workers
on other nodes of a shared folder too, where the owner's liveness cannot be checked). A worker
marks an input in the ledger just before renaming its files into place, so the retry knows
which existing files its dead predecessor committed: those inputs come back ``ok`` (missing
files of a half-committed input are written), never ``skipped``. A unit run again is run one
input at a time, and an input during which a worker died :data:`MAX_ATTEMPTS` times fails with
a one-line reason instead of being retried forever.

Needs Ray Data (``pip install "uvrsep[ray]"``): :data:`uvrsep.rayconnect.MIN_RAY` or newer, for
the non-deprecated ``compute=ActorPoolStrategy(size=...)`` form of ``map_batches``. Starting or
joining Ray (within a deadline, Ray's own output kept off the terminal) is
:mod:`uvrsep.rayconnect`'s; nothing here or there touches Ray's private modules.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .audio import owner_tag, remove_temporaries
from .batch import ItemResult, Job, OutputPlan, separate_jobs
from .errors import ConfigError, UvrsepError, one_line
from .naming import InputItem
from .rayconnect import check_address, connect

log = logging.getLogger(__name__)

#: How many times a worker may die while separating one input before it is failed.
MAX_ATTEMPTS = 3
#: Work units hold at most this much audio (seconds) and this many inputs.
UNIT_MAX_SECONDS = 120.0
UNIT_MIN_SECONDS = 5.0
UNIT_MAX_ITEMS = 64


# -- how many workers, with what --------------------------------------------------------------


@dataclass(frozen=True)
class WorkerLayout:
    """The actor pool: ``workers`` actors, each reserving ``cpus`` CPUs and ``gpus`` GPUs and
    running the network with ``threads`` torch threads."""

    workers: int
    cpus: float
    gpus: float
    threads: int

    def describe(self, nodes: int) -> str:
        each = f"{self.cpus:g} CPU" + (f", {self.gpus:g} GPU" if self.gpus else "")
        return f"ray: {self.workers} worker(s) ({each} each) on a cluster of {nodes} node(s)"


def plan_workers(node_cpus: Sequence[float], gpus: float, *, device: str = "auto",
                 workers: int | None = None, gpus_per_worker: float | None = None) -> WorkerLayout:
    """The worker layout for a cluster whose nodes have ``node_cpus`` CPUs and ``gpus`` GPUs in all.

    GPUs per worker: ``gpus_per_worker``, else 1 where the cluster has a GPU and ``device``
    allows it (``auto`` / ``cuda``), else 0. Workers: ``workers``, else one per GPU share, else
    one per 2 CPUs. CPUs per worker: the most whole CPUs that still fit all CPU workers on the
    nodes (fractions when there are more workers than CPUs); GPU workers take one CPU (less
    where that does not fit). A layout the cluster cannot hold is a :class:`ConfigError` (Ray
    would wait for it forever).
    """
    total_cpus = float(sum(node_cpus))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 and (device == "auto" or device.startswith("cuda")) else 0.0
        if device.startswith("cuda") and gpus_per_worker == 0:
            raise ConfigError(f"--device {device}: the Ray cluster has no GPU")
    elif gpus_per_worker > 0 and device in ("cpu", "mps"):
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g} with --device {device}: use --device auto or cuda")
    elif device.startswith("cuda") and gpus_per_worker == 0:
        raise ConfigError(f"--device {device} needs --gpus-per-worker above 0 on a Ray cluster")
    if gpus_per_worker > 0 and gpus < gpus_per_worker:
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
    if workers is None:
        workers = int(gpus // gpus_per_worker) if gpus_per_worker > 0 else max(1, int(total_cpus // 2))
    if workers < 1:
        raise ConfigError("--ray-workers must be at least 1")
    if gpus_per_worker > 0 and workers * gpus_per_worker > gpus + 1e-9:
        raise ConfigError(f"--ray-workers {workers} with --gpus-per-worker {gpus_per_worker:g} needs "
                          f"{workers * gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}")
    if total_cpus <= 0:
        raise ConfigError("the Ray cluster has no CPU to run workers on")
    cpus = _cpus_per_worker(node_cpus, workers)
    if gpus_per_worker > 0:
        cpus = min(1.0, cpus)
    return WorkerLayout(workers=workers, cpus=cpus, gpus=gpus_per_worker, threads=max(1, int(cpus)))


def _cpus_per_worker(node_cpus: Sequence[float], workers: int) -> float:
    """The largest whole number of CPUs such that ``workers`` actors of that size fit on the
    nodes; a fraction (in hundredths) when even one CPU each does not fit."""
    for c in range(int(max(node_cpus)), 0, -1):
        if sum(int(n // c) for n in node_cpus) >= workers:
            return float(c)
    share = math.floor(100 * sum(node_cpus) / workers) / 100
    return max(share, 0.01)


def pack_units(jobs: Sequence[Job], *, long_seconds: float, workers: int) -> list[list[int]]:
    """Indices of ``jobs`` in work units, the order they are handed out.

    Inputs longer than ``long_seconds`` (separated in segments) go alone, longest first; the
    others, sorted by length, are packed into units of a few clips that share network calls:
    about a quarter of each worker's share of the short audio, between :data:`UNIT_MIN_SECONDS`
    and :data:`UNIT_MAX_SECONDS` (at most :data:`UNIT_MAX_ITEMS` inputs), so every worker gets
    several units and a retry redoes little.
    """
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].duration)
    long = [[i] for i in order if jobs[i].duration > long_seconds]
    short = [i for i in order if jobs[i].duration <= long_seconds]
    total = sum(jobs[i].duration for i in short)
    target = min(UNIT_MAX_SECONDS, max(UNIT_MIN_SECONDS, total / (4 * max(1, workers))))
    units: list[list[int]] = []
    unit: list[int] = []
    seconds = 0.0
    for i in short:
        unit.append(i)
        seconds += jobs[i].duration
        if seconds >= target or len(unit) >= UNIT_MAX_ITEMS:
            units.append(unit)
            unit, seconds = [], 0.0
    if unit:
        units.append(unit)
    return long + units


def worker_device(device: str, gpu_ids: Sequence, cuda_available: bool) -> tuple[str, str | None]:
    """(device, note) for a worker's model, following what Ray assigned it: the GPU Ray gave it
    (Ray sets ``CUDA_VISIBLE_DEVICES``, so it is ``cuda``), the CPU for ``auto`` without one (never
    a GPU it did not reserve), and the CPU with a note where Ray gave it a GPU that CUDA cannot
    see (GPUs declared on a machine without them)."""
    if gpu_ids and (device == "auto" or device.startswith("cuda")):
        if cuda_available:
            return "cuda", None
        ids = ", ".join(str(g) for g in gpu_ids)
        return "cpu", f"a worker was given GPU {ids} by Ray but CUDA is not available to it: it runs on the CPU"
    if device == "auto":
        return "cpu", None
    return device, None


# -- what the workers of one run share --------------------------------------------------------


class RunLedger:
    """The bookkeeping that makes a rerun unit safe, kept for one run by one small actor beside
    the driver: the attempts at each unit, the starts of each input in reruns, the inputs whose
    files a worker began to rename into place, and the ``host-pid`` of every worker."""

    def __init__(self):
        self._attempts: dict[int, int] = {}
        self._starts: dict[int, int] = {}
        self._committing: set[int] = set()
        self._writers: set[str] = set()

    def register(self, owner: str) -> None:
        self._writers.add(owner)

    def writers(self) -> list[str]:
        return sorted(self._writers)

    def begin(self, unit: int) -> int:
        """Count an attempt at ``unit``; returns its number (1: the first)."""
        self._attempts[unit] = self._attempts.get(unit, 0) + 1
        return self._attempts[unit]

    def start(self, index: int) -> int:
        """Count a start of input ``index`` in a rerun unit; returns how many there were."""
        self._starts[index] = self._starts.get(index, 0) + 1
        return self._starts[index]

    def committing(self, index: int) -> None:
        self._committing.add(index)

    def committed(self, indices: list[int]) -> list[int]:
        """Those of ``indices`` whose files a worker of this run began to rename into place."""
        return [i for i in indices if i in self._committing]


class _Worker:
    """The callable class of ``map_batches``: loads the model once (per actor process), then
    separates work units with :func:`~uvrsep.batch.separate_jobs`. A batch holds units (columns
    ``unit``, ``jobs``: JSON ``[[index, input, {stem: target}, duration], ...]``, absolute paths);
    the answer holds one row per input: ``index``, ``input``, ``status``, ``outputs`` (JSON
    list), ``duration_s``, ``seconds``, ``error``, ``notes`` (JSON list, on a worker's first row)."""

    def __init__(self, *, models: list, options: dict, plan: OutputPlan, ledger, threads: int, version: str):
        import ray
        import torch

        if version != __version__:
            raise ConfigError(f"a Ray worker has uvrsep {__version__}, the driver {version}: install the same on every node")
        torch.set_num_threads(threads)
        self.ledger = ledger
        ray.get(ledger.register.remote(owner_tag()))
        options = dict(options)
        options["device"], note = worker_device(options.get("device", "auto"), ray.get_gpu_ids(), torch.cuda.is_available())
        from .chain import load_models

        self.separator = load_models(models, **options)
        self.plan = plan
        self.notes = ([note] if note else []) + list(getattr(self.separator, "notes", []))

    def _call(self, method: str, *args):
        import ray

        return ray.get(getattr(self.ledger, method).remote(*args))

    def __call__(self, batch: dict) -> dict:
        rows: list[dict] = []
        for unit, payload in zip(batch["unit"], batch["jobs"]):
            rows += self.run_unit(int(unit), json.loads(payload))
        if rows and self.notes:
            rows[0]["notes"] = json.dumps(self.notes)
            self.notes = []
        return {key: np.array([row[key] for row in rows]) for key in _ROW_KEYS}

    def run_unit(self, unit: int, entries: list) -> list[dict]:
        """Separate one unit; its rows. A unit seen before (its worker died) is rerun one input
        at a time; inputs whose files the dead worker committed come back ``ok``."""
        jobs = {int(i): Job(InputItem(Path(inp), Path(inp).parent), {k: Path(v) for k, v in targets.items()}, float(d))
                for i, inp, targets, d in entries}
        attempt = self._call("begin", unit)
        rows: list[dict] = []
        full: dict[int, dict[str, Path]] = {}
        if not self.plan.overwrite:
            # Planned with none of their files present: any there now were made since. Those a
            # worker of this run committed (it died before its rows came back) are this run's.
            present = [i for i, job in jobs.items() if any(p.exists() for p in job.targets.values())]
            for i in self._call("committed", present) if present else []:
                job = jobs[i]
                missing = {k: p for k, p in job.targets.items() if not p.exists()}
                if not missing:
                    rows.append(_row(i, ItemResult(str(job.item.path), "ok", [str(p) for p in job.targets.values()],
                                                   round(job.duration, 3), 0.0)))
                    del jobs[i]
                else:
                    full[i] = job.targets
                    jobs[i] = Job(job.item, missing, job.duration)
        index = {job.item.path: i for i, job in jobs.items()}

        def before_commit(job: Job) -> None:
            self._call("committing", index[job.item.path])

        if attempt == 1:
            results = separate_jobs(self.separator, list(jobs.values()), self.plan, before_commit=before_commit)
        else:
            results = self._one_at_a_time(jobs, before_commit)
        for result in results:
            i = index[Path(result.input)]
            if result.status == "ok" and i in full:
                result.outputs = [str(p) for p in full[i].values()]
            rows.append(_row(i, result))
        return rows

    def _one_at_a_time(self, jobs: dict[int, Job], before_commit) -> Iterator[ItemResult]:
        for i, job in jobs.items():
            starts = self._call("start", i)
            if starts >= MAX_ATTEMPTS:  # the first, grouped attempt was not counted here
                yield ItemResult(str(job.item.path), "failed", duration_s=round(job.duration, 3),
                                 error=f"{job.item.path}: a Ray worker died {starts} times while separating it "
                                       "(out of memory? a crash in a decoder?); not retried again")
                continue
            yield from separate_jobs(self.separator, [job], self.plan, before_commit=before_commit)


_ROW_KEYS = ("index", "input", "status", "outputs", "duration_s", "seconds", "error", "warnings", "notes", "measures")


def _row(index: int, result: ItemResult) -> dict:
    return {"index": index, "input": result.input, "status": result.status, "outputs": json.dumps(result.outputs),
            "duration_s": float(result.duration_s), "seconds": float(result.seconds), "error": result.error,
            "warnings": json.dumps(result.warnings), "notes": "[]", "measures": json.dumps(result.measures)}


# -- the driver ----------------------------------------------------------------------------------


class RayExecutor:
    """Runs a batch's jobs on Ray: the ``execute`` of :func:`uvrsep.batch.run_batch`.

    ``models`` and ``options`` are what :func:`uvrsep.chain.load_models` gets on one machine
    (every ``separate`` setting), ``plan`` the batch's :class:`~uvrsep.batch.OutputPlan`.
    ``address``: ``local`` (a Ray instance started here for the run, stopped after it), ``auto``
    or ``HOST:PORT``; a process already connected to Ray uses that connection. Inputs and the
    output folder must be at the same paths on every node (one machine, or a shared mount).
    Use as a context manager: leaving it removes what dead workers left and stops a Ray it started.
    """

    def __init__(self, models: list, options: dict, plan: OutputPlan, *, address: str = "local",
                 workers: int | None = None, gpus_per_worker: float | None = None,
                 on_note: Callable[[str], None] | None = None):
        self.models = [str(Path(m).absolute()) if m is not None and _is_path(m) else m for m in models]
        self.options = dict(options)
        if self.options.get("params") is not None and _is_path(self.options["params"]):
            self.options["params"] = str(Path(self.options["params"]).absolute())
        self.plan = plan
        self.address = check_address(address)
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.on_note = on_note or (lambda note: log.info("%s", note))
        self._started = False
        self._runs: list = []
        self._targets: list[Path] = []
        self._writers: list[str] = []

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop what still runs (after an interruption), remove the temporary files no worker
        will finish, stop the Ray this started."""
        for run in self._runs:
            run.close()  # its clean-up: the dataset stops, the ledger says who wrote
        self._runs = []
        folders: dict[Path, set[str]] = {}
        for target in self._targets:
            folders.setdefault(target.parent, set()).add(target.name)
        for folder, names in folders.items():
            remove_temporaries(folder, names, self._writers)
        self._targets = []
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def layout(self) -> tuple[WorkerLayout, int]:
        """The worker layout for the connected cluster, and its number of nodes."""
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
        gpus = sum(float(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
        layout = plan_workers(node_cpus, gpus, device=str(self.options.get("device", "auto")),
                              workers=self.workers, gpus_per_worker=self.gpus_per_worker)
        return layout, len(nodes)

    def __call__(self, jobs: Sequence[Job], on_block: Callable[[float], None] | None = None) -> Iterator[ItemResult]:
        """Run ``jobs`` on the cluster; yields one result per job as its unit comes back.
        (``on_block`` is not called: progress advances per finished input.)"""
        run = self._run(list(jobs))
        self._runs.append(run)
        return run

    def _run(self, jobs: list[Job]) -> Iterator[ItemResult]:
        if not jobs:
            return
        self._started = connect(self.address) or self._started
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        layout, n_nodes = self.layout()
        self.on_note(layout.describe(n_nodes))
        _quiet_ray_data()
        ledger = ray.remote(RunLedger).options(
            num_cpus=0, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        ).remote()
        for job in jobs:
            self._targets += [Path(os.path.abspath(p)) for p in job.targets.values()]
        # Inputs the workers separate in segments go alone; with the memory-driven default
        # (segment_threshold None) the driver cannot know the workers' memory: those longer
        # than a whole unit go alone.
        threshold = self.options.get("segment_threshold")
        units = pack_units(jobs, long_seconds=UNIT_MAX_SECONDS if threshold is None else float(threshold),
                           workers=layout.workers)
        items = [{"unit": u, "jobs": json.dumps([[i, os.path.abspath(jobs[i].item.path),
                                                  {k: os.path.abspath(p) for k, p in jobs[i].targets.items()},
                                                  jobs[i].duration] for i in unit])}
                 for u, unit in enumerate(units)]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _Worker,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=layout.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=layout.cpus,
            num_gpus=layout.gpus or None,
            fn_constructor_kwargs=dict(models=self.models, options=self.options, plan=self.plan, ledger=ledger,
                                       threads=layout.threads, version=__version__),
        )
        seen: set[int] = set()
        notes: set[str] = set()
        rows = dataset.iter_rows()
        try:
            try:
                for row in rows:
                    i = int(row["index"])
                    if i in seen:  # a unit's rows delivered twice by a retry: the first counts
                        continue
                    seen.add(i)
                    for note in json.loads(row["notes"] or "[]"):
                        if note not in notes:
                            notes.add(note)
                            self.on_note(note)
                    yield _driver_result(jobs[i], row)
            except (KeyboardInterrupt, GeneratorExit, UvrsepError):
                raise
            except Exception as exc:  # Ray's errors: a worker that cannot start, a lost cluster
                raise UvrsepError(f"the Ray run stopped: {_ray_reason(exc)}") from None
            for i, job in enumerate(jobs):
                if i not in seen:
                    yield ItemResult(str(job.item.path), "failed", duration_s=round(job.duration, 3),
                                     error=f"{job.item.path}: no result came back from the Ray cluster")
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
            try:
                self._writers = ray.get(ledger.writers.remote(), timeout=30)
                ray.kill(ledger)
            except Exception as exc:  # the run is over either way
                log.warning("the Ray run's ledger could not be read (%s)", one_line(exc))


def _is_path(value) -> bool:
    text = str(value)
    return text.endswith((".pth", ".json")) or os.sep in text or Path(text).exists()


def _driver_result(job: Job, row: dict) -> ItemResult:
    """A worker's row as the driver's result: paths as the user gave them, not absolute."""
    given = {os.path.abspath(p): str(p) for p in job.targets.values()}
    given[os.path.abspath(job.item.path)] = str(job.item.path)
    outputs = [given.get(o, o) for o in json.loads(row["outputs"])]
    texts = [str(row["error"]), *json.loads(row["warnings"] or "[]")]
    for absolute in sorted(given, key=len, reverse=True):
        texts = [text.replace(absolute, given[absolute]) for text in texts]
    return ItemResult(str(job.item.path), str(row["status"]), outputs, float(row["duration_s"]), float(row["seconds"]),
                      texts[0], texts[1:], json.loads(row["measures"]))


def _ray_reason(exc: BaseException) -> str:
    """The one line that matters in a Ray error (the uvrsep error inside it, if any)."""
    cause = exc
    while cause is not None:
        if isinstance(cause, UvrsepError):
            return str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(exc)
    for line in text.splitlines():
        m = re.search(r"uvrsep\.errors\.\w+: (.*)", line)
        if m:
            return m.group(1).strip()
    return one_line(exc)


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or start-up lines: the batch shows its own progress."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
