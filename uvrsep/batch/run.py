"""Running a batch: separating its jobs and writing their stems, here (:func:`separate_jobs`,
also inside each Ray worker) or through an executor (:func:`run_batch`), with every result
recorded in the manifest as soon as it is final. One failing input never stops the batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import ITEM_ERRORS, OutputExistsError, one_line
from ..naming import InputItem
from ..stems import Stems
from ..writer import write_stems
from .manifest import ItemResult, Manifest
from .plan import BatchPlan, Job, OutputPlan, plan_batch
from .progress import BatchProgress, BatchReport

#: Clips separated but not yet written, at most: the network waits for the writer beyond this, so a
#: slow writer (mp3 through ffmpeg, a network drive) never makes separated clips pile up in memory.
MAX_QUEUED_WRITES = 8


def separate_jobs(
    separator,
    jobs: Sequence[Job],
    plan: OutputPlan,
    *,
    group_windows: int = 8,
    on_block: Callable[[float], None] | None = None,
    before_commit: Callable[[Job], None] | None = None,
    record: Callable[[ItemResult], None] | None = None,
) -> Iterator[ItemResult]:
    """Separate ``jobs`` and write their stems: one :class:`ItemResult` per job, in order.

    The work of a batch, wherever it runs (here for :func:`run_batch`, or inside a worker of
    :mod:`uvrsep.cluster`): ``separator`` (a :class:`~uvrsep.Separator` or a
    :class:`~uvrsep.chain.Chain`) separates them with :meth:`~uvrsep.Separator.separate_batch`
    (short clips share network calls, long ones stream) and :func:`write_stems` writes each to
    ``job.targets``. Stems held in memory (short clips) are written by a background thread
    while the next clips are separated (at most :data:`MAX_QUEUED_WRITES` waiting); streamed
    ones are written as they are separated. Any exception while separating or writing one
    input fails that input with a one-line reason; only an interruption stops it, and then no partial file is left (a file being written in
    the background is finished, whole, or not at all). ``on_block`` gets the seconds of audio
    each written block covered; ``before_commit(job)`` is called once a job's files are
    complete, just before the first is renamed into place; ``record(result)`` is called once
    per job as soon as its result is final (its stems in place), from the thread that
    finished it, before the result is yielded: an interruption never loses the record of a
    finished input. Every ``ok`` result carries the clip's measures, taken by the writer.
    """
    by_path = {job.item.path: job for job in jobs}
    clock = time.perf_counter()

    def settle(result: ItemResult) -> ItemResult:
        if record is not None:
            record(result)
        return result

    def write(job: Job, stems, blocks: Callable[[float], None] | None, seconds: float | None) -> ItemResult:
        """Write one input's stems; its result (``seconds``: its processing time so far, or
        ``None`` for the time since the last input). The ``ok`` record is made once every file
        is complete, before the first is renamed into place (a kill after that leaves complete
        files the next run puts in place); a rename that then fails records what happened."""
        start = time.perf_counter()
        promised: list[ItemResult] = []
        notes: list[str] = []

        measured: list[dict | None] = [None]

        def result(status: str, outputs: list[str], error: str = "") -> ItemResult:
            now = time.perf_counter()
            spent = now - clock if seconds is None else seconds + now - start
            return ItemResult(
                str(job.item.path),
                status,
                outputs,
                round(stems.duration, 3),
                round(spent, 3),
                error,
                list(notes),
                measured[0] if status == "ok" else None,
            )

        def measures(values: dict | None) -> None:
            measured[0] = values

        def clipped(what: str) -> None:
            depth = (
                "--bit-depth 32f keeps every sample"
                if plan.fmt in ("wav", "flac")
                else "wav --bit-depth 32f keeps every sample"
            )
            notes.append(f"{job.item.path}: clipped at full scale: {what}; {depth}, or scale the input down")

        def commit() -> None:
            promised.append(settle(result("ok", [str(p) for p in job.targets.values()])))
            if before_commit is not None:
                before_commit(job)

        try:
            written = write_stems(
                stems,
                job.targets,
                sample_rate=plan.sample_rate,
                mono=plan.mono,
                bit_depth=plan.bit_depth,
                overwrite=plan.overwrite,
                on_block=blocks,
                before_commit=commit,
                on_clipped=clipped,
                on_measures=measures,
            )
            final = result("ok", [str(p) for p in written.values()])
        except OutputExistsError as exc:
            final = result("skipped", [str(p) for p in job.targets.values()], str(exc))
        except ITEM_ERRORS as exc:
            final = result("failed", [], one_line(exc, job.item.path))
        if promised and final.status == "ok":
            return final  # recorded before the commit
        return settle(final)

    def finished(wait: bool, keep: int = 0) -> Iterator[ItemResult]:
        """The results of the background writes done so far, in order; with ``wait``, waiting
        for all but the last ``keep``."""
        nonlocal clock
        while pending and ((wait and len(pending) > keep) or pending[0][1].done()):
            stems, future = pending.popleft()
            result = future.result()
            if on_block is not None and result.status == "ok":
                on_block(stems.duration)  # one block: the whole clip, counted here, in order
            yield result
            clock = time.perf_counter()

    pending: deque[tuple[Stems, Future]] = deque()
    outcomes = separator.separate_batch(
        list(by_path), group_windows=group_windows, durations={path: job.duration for path, job in by_path.items()}
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uvrsep-writer") as writer:
        try:
            for path, outcome in outcomes:
                job = by_path[path]
                if isinstance(outcome, Stems) and outcome.seconds is not None:
                    pending.append((outcome, writer.submit(write, job, outcome, None, outcome.seconds)))
                    yield from finished(wait=True, keep=MAX_QUEUED_WRITES)
                    continue
                yield from finished(wait=True)  # results stay in the inputs' order
                if isinstance(outcome, Exception):
                    yield settle(
                        ItemResult(
                            str(path), "failed", duration_s=round(job.duration, 3), error=one_line(outcome, path)
                        )
                    )
                else:  # streamed: separated while it is written; the time since the last input
                    yield write(job, outcome, on_block, None)
                clock = time.perf_counter()
            yield from finished(wait=True)
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise


def _recorded(manifest: Manifest, result: ItemResult) -> ItemResult:
    manifest.record(result)
    return result


def run_batch(
    separator,
    items: Sequence[InputItem] | BatchPlan,
    plan: OutputPlan,
    *,
    manifest: Manifest | None = None,
    group_windows: int = 8,
    on_result: Callable[[ItemResult], None] | None = None,
    progress: BatchProgress | None = None,
    execute: Callable[[Sequence[Job], Callable[[float], None]], Iterable[ItemResult]] | None = None,
) -> BatchReport:
    """Separate the inputs and write their stems; one bad input never stops the batch.

    ``items`` is a :class:`BatchPlan` (from :func:`plan_batch`) or the input items (planned
    here). ``separator`` is a :class:`~uvrsep.Separator` or a :class:`~uvrsep.chain.Chain`. Any
    exception while separating or writing one input fails that input with a one-line reason;
    only an interruption (:class:`KeyboardInterrupt`, SIGTERM) stops the batch, and then no
    partial file is left.

    The jobs run here (:func:`separate_jobs`) unless ``execute`` runs them elsewhere: a callable
    ``(jobs, on_block)`` yielding one :class:`ItemResult` per job as each finishes, in any order
    (:class:`uvrsep.cluster.RayExecutor`: on a Ray cluster). Either way the results are recorded
    in ``manifest``, passed to ``on_result`` and counted by ``progress`` here, the same way.
    """
    manifest = manifest or Manifest(None)
    started = time.perf_counter()
    if not isinstance(items, BatchPlan):
        items = plan_batch(items, plan, separator.labels, manifest)
    report = BatchReport(manifest_warnings=len(manifest.warnings))

    def finish(result: ItemResult) -> None:
        report.results.append(result)
        if on_result is not None:
            on_result(result)

    for result in items.done:
        manifest.record(result)
        finish(result)
    counted = 0.0

    def on_block(seconds: float) -> None:
        nonlocal counted
        counted += seconds
        if progress is not None:
            progress.advance(seconds)

    try:
        if not items.jobs:  # every input decided beforehand: no model is needed (``separator`` may be None)
            results: Iterable[ItemResult] = ()
        elif execute is None:  # each record is written as soon as its stems are in place
            results = separate_jobs(
                separator, items.jobs, plan, group_windows=group_windows, on_block=on_block, record=manifest.record
            )
        else:  # the workers put the stems in place; recorded as their results arrive
            results = (_recorded(manifest, result) for result in execute(items.jobs, on_block))
        for result in results:
            finish(result)
            if progress is not None:
                progress.file_done(max(0.0, result.duration_s - counted))
            counted = 0.0
    finally:
        report.wall_seconds = time.perf_counter() - started
    return report
