"""The shape of a batch on a Ray cluster, decided on the driver without Ray: the actor pool
(:func:`plan_workers`: how many workers, with how many CPUs and GPUs), the work units handed to
them (:func:`pack_units`) and the device each worker's model runs on (:func:`worker_device`).
:mod:`uvrsep.cluster` runs the batch with these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .batch import Job
from .errors import ConfigError

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


def plan_workers(
    node_cpus: Sequence[float],
    gpus: float,
    *,
    device: str = "auto",
    workers: int | None = None,
    gpus_per_worker: float | None = None,
) -> WorkerLayout:
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
        raise ConfigError(
            f"--ray-workers {workers} with --gpus-per-worker {gpus_per_worker:g} needs "
            f"{workers * gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}"
        )
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
