"""Many files through one separator: short clips grouped to share network calls, each group read
on a background thread while the one before it is separated (:meth:`uvrsep.Separator.separate_batch`);
inputs held whole run their windows in shared network calls (:func:`run_whole`).

The reader thread decodes and converts rates on the CPU only (:meth:`Separator.load`), so it never
runs work on the GPU beside the network (:func:`uvrsep.device.network_scope`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from .audio import duration_seconds
from .errors import ITEM_ERRORS
from .stems import Stems, StreamedStems

if TYPE_CHECKING:
    from .job import Job


def separate_batch(
    sep, paths: Iterable[str | Path], *, group_windows: int = 8, durations: Mapping[Path, float] | None = None
) -> Generator[tuple[Path, Stems | StreamedStems | Exception], None, None]:
    """:meth:`uvrsep.Separator.separate_batch` of ``sep`` (see there)."""
    reader = ThreadPoolExecutor(1, thread_name_prefix="uvrsep-read")
    pending: list[tuple[list[Path], Future]] = []

    def submit(group: list[Path]) -> Iterator[tuple[Path, Stems | Exception]]:
        if group:
            pending.append((group, reader.submit(_read_group, sep, group)))
        while len(pending) > (1 if group else 0):
            done, future = pending.pop(0)
            yield from _run_group(sep, done, future.result())

    group: list[Path] = []
    windows = 0
    try:
        for path in map(Path, paths):
            try:
                seconds = durations[path] if durations is not None and path in durations else duration_seconds(path)
            except ITEM_ERRORS as exc:
                yield from submit(group)
                yield from submit([])
                group, windows = [], 0
                yield path, exc
                continue
            if sep.streams(seconds):
                yield from submit(group)
                yield from submit([])
                group, windows = [], 0
                try:
                    result = sep.separate_streamed(path)
                except ITEM_ERRORS as exc:
                    result = exc
                yield path, result
                continue
            group.append(path)
            windows += sep.n_windows(sep._frames_for(seconds))
            if windows >= group_windows:
                yield from submit(group)
                group, windows = [], 0
        yield from submit(group)
        yield from submit([])
    finally:
        reader.shutdown(wait=True, cancel_futures=True)


def _read_group(sep, group: list[Path]) -> list[tuple[np.ndarray | Exception, float]]:
    """Each input of a group read as :meth:`Separator.load` reads it (or the error), with the seconds it took."""
    loaded = []
    for path in group:
        t0 = time.perf_counter()
        try:
            wave: np.ndarray | Exception = sep.load(path)
        except ITEM_ERRORS as exc:
            wave = exc
        loaded.append((wave, time.perf_counter() - t0))
    return loaded


def _run_group(
    sep, group: list[Path], loaded: list[tuple[np.ndarray | Exception, float]]
) -> Iterator[tuple[Path, Stems | Exception]]:
    """Separate a group read by :func:`_read_group`, in order; an input that could not be
    read fails alone. When the shared run fails, each input is redone alone so that each
    error lands on the input that caused it."""
    ready = [k for k, (wave, _) in enumerate(loaded) if not isinstance(wave, Exception)]
    results: dict[int, Stems | Exception] = {
        k: wave for k, (wave, _) in enumerate(loaded) if isinstance(wave, Exception)
    }
    if len(ready) > 1:
        t0 = time.perf_counter()
        try:
            shared = sep._separate_waves([loaded[k][0] for k in ready], sum(loaded[k][1] for k in ready))
        except ITEM_ERRORS:
            shared = None
        if shared is not None:
            _share_time(shared, time.perf_counter() - t0, [sep.n_windows(sep._frames_for(r.duration)) for r in shared])
            results.update(zip(ready, shared))
            ready = []
    for k in ready:
        t0 = time.perf_counter()
        try:
            result = sep._separate_waves([loaded[k][0]], loaded[k][1])[0]
            result.seconds = time.perf_counter() - t0
        except ITEM_ERRORS as exc:
            result = exc
        results[k] = result
    for k, path in enumerate(group):
        yield path, results.pop(k)


def _share_time(results: list[Stems], seconds: float, weights: list[int]) -> None:
    """Give each result of a shared run its share of the run's time, by its network windows."""
    total = sum(weights)
    for result, weight in zip(results, weights):
        result.seconds = seconds * weight / total


def run_whole(sep, jobs: list[Job], on_window: Callable[[int], None] | None) -> list[Stems]:
    """``sep``'s whole-input jobs, their windows in shared network calls; each clip's arrays are
    released as soon as its stems exist (:meth:`uvrsep.Separator.separate_many`)."""
    if not jobs:
        return []
    requests = [job.request(0) for job in jobs]
    t0 = sep.clock()
    total = sum(last - first for block, _ in requests if block.coef > 0 for _, first, last in block.windows)
    with tqdm(total=total, unit="win", disable=None if sep.progress else True, leave=False) as bar:
        ests = jobs[0].stage.estimate([block for block, _ in requests], on_window or bar.update)
    sep.times.network += sep.clock() - t0
    for job, request, est in zip(jobs, requests, ests):
        job.keep(0, request, est)
    del requests, ests
    results = []
    held: list[Job | None] = list(jobs)
    del jobs
    for k in range(len(held)):
        current, held[k] = held[k], None
        assert current is not None
        waves = next(current.run())
        del current
        results.append(
            Stems(waves=waves, sample_rate=sep.layout.sample_rate, primary=sep.primary, notes=list(sep.notes))
        )
    return results
