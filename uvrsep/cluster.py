"""The batch on a Ray cluster: the same jobs, run by model-holding Ray Data actors.

``uvrsep separate INPUT... --ray [ADDRESS]`` decides the batch exactly as on one machine
(:func:`uvrsep.batch.plan_batch`: inputs, output names, conflicts, the manifest) and records,
shows and sums up the results the same way (:func:`uvrsep.batch.run_batch`); only the jobs run
elsewhere. :class:`RayExecutor` hands them to Ray Data: a dataset of work units
(``from_items``; short clips packed together, long inputs alone, longest first) goes through
``map_batches`` with :class:`_Worker`, a callable class that loads the model once per actor and
runs uvrsep's own batch code on its unit (:func:`uvrsep.batch.separate_jobs`: cross-clip
batching, segmented streaming, the one atomic writer). Each unit comes back as one row per
input; the driver turns rows into :class:`~uvrsep.batch.ItemResult` as they arrive. The pool's
size and the units are decided beforehand, without Ray (:mod:`uvrsep.clusterplan`).

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
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .audio import owner_tag, remove_temporaries
from .batch import ItemResult, Job, OutputPlan, separate_jobs
from .clusterplan import UNIT_MAX_SECONDS, WorkerLayout, pack_units, plan_workers, worker_device
from .errors import ConfigError, UvrsepError, one_line
from .naming import InputItem
from .rayconnect import check_address, connect, quiet_ray_data, ray_reason

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

log = logging.getLogger(__name__)

#: How many times a worker may die while separating one input before it is failed.
MAX_ATTEMPTS = 3


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
            raise ConfigError(
                f"a Ray worker has uvrsep {__version__}, the driver {version}: install the same on every node"
            )
        torch.set_num_threads(threads)
        self.ledger = ledger
        ray.get(ledger.register.remote(owner_tag()))
        options = dict(options)
        options["device"], note = worker_device(
            options.get("device", "auto"), ray.get_gpu_ids(), torch.cuda.is_available()
        )
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
        jobs = {
            int(i): Job(InputItem(Path(inp), Path(inp).parent), {k: Path(v) for k, v in targets.items()}, float(d))
            for i, inp, targets, d in entries
        }
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
                    rows.append(
                        _row(
                            i,
                            ItemResult(
                                str(job.item.path),
                                "ok",
                                [str(p) for p in job.targets.values()],
                                round(job.duration, 3),
                                0.0,
                            ),
                        )
                    )
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
                yield ItemResult(
                    str(job.item.path),
                    "failed",
                    duration_s=round(job.duration, 3),
                    error=f"{job.item.path}: a Ray worker died {starts} times while separating it "
                    "(out of memory? a crash in a decoder?); not retried again",
                )
                continue
            yield from separate_jobs(self.separator, [job], self.plan, before_commit=before_commit)


_ROW_KEYS = ("index", "input", "status", "outputs", "duration_s", "seconds", "error", "warnings", "notes", "measures")


def _row(index: int, result: ItemResult) -> dict:
    return {
        "index": index,
        "input": result.input,
        "status": result.status,
        "outputs": json.dumps(result.outputs),
        "duration_s": float(result.duration_s),
        "seconds": float(result.seconds),
        "error": result.error,
        "warnings": json.dumps(result.warnings),
        "notes": "[]",
        "measures": json.dumps(result.measures),
    }


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

    def __init__(
        self,
        models: list,
        options: dict,
        plan: OutputPlan,
        *,
        address: str = "local",
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        on_note: Callable[[str], None] | None = None,
    ):
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

    def __enter__(self) -> Self:
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
        layout = plan_workers(
            node_cpus,
            gpus,
            device=str(self.options.get("device", "auto")),
            workers=self.workers,
            gpus_per_worker=self.gpus_per_worker,
        )
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
        quiet_ray_data()
        ledger = (
            ray.remote(RunLedger)
            .options(
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
            )
            .remote()
        )
        for job in jobs:
            self._targets += [Path(os.path.abspath(p)) for p in job.targets.values()]
        # Inputs the workers separate in segments go alone; with the memory-driven default
        # (segment_threshold None) the driver cannot know the workers' memory: those longer
        # than a whole unit go alone.
        threshold = self.options.get("segment_threshold")
        units = pack_units(
            jobs, long_seconds=UNIT_MAX_SECONDS if threshold is None else float(threshold), workers=layout.workers
        )
        items = [
            {
                "unit": u,
                "jobs": json.dumps(
                    [
                        [
                            i,
                            os.path.abspath(jobs[i].item.path),
                            {k: os.path.abspath(p) for k, p in jobs[i].targets.items()},
                            jobs[i].duration,
                        ]
                        for i in unit
                    ]
                ),
            }
            for u, unit in enumerate(units)
        ]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _Worker,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=layout.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=layout.cpus,
            num_gpus=layout.gpus or None,
            fn_constructor_kwargs=dict(
                models=self.models,
                options=self.options,
                plan=self.plan,
                ledger=ledger,
                threads=layout.threads,
                version=__version__,
            ),
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
                raise UvrsepError(f"the Ray run stopped: {ray_reason(exc)}") from None
            for i, job in enumerate(jobs):
                if i not in seen:
                    yield ItemResult(
                        str(job.item.path),
                        "failed",
                        duration_s=round(job.duration, 3),
                        error=f"{job.item.path}: no result came back from the Ray cluster",
                    )
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
            try:
                self._writers = ray.get(ledger.writers.remote(), timeout=30)  # type: ignore[attr-defined]  # Ray's stubs: an actor handle's methods
                ray.kill(ledger)  # type: ignore[arg-type]  # Ray's stubs: .options().remote() is an actor handle
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
    return ItemResult(
        str(job.item.path),
        str(row["status"]),
        outputs,
        float(row["duration_s"]),
        float(row["seconds"]),
        texts[0],
        texts[1:],
        json.loads(row["measures"]),
    )
