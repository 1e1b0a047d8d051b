"""Batch processing: collecting inputs, planning outputs, skipping, conflicts, manifests, progress.

A batch is decided before any model is loaded (:func:`plan_batch`: which inputs are unreadable,
finished or to do, and where each stem goes), then run (:func:`run_batch`): the model is loaded
once, short clips share network calls (:meth:`Separator.separate_batch`), long ones stream, and
one failing input never stops the batch.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import soxr

from .audio import FFMPEG_EXTENSIONS, SOUNDFILE_EXTENSIONS, AudioStreamWriter, check_input_file, complete_interrupted, duration_seconds
from .errors import ITEM_ERRORS, ConfigError, OutputExistsError, one_line
from .naming import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, InputItem, check_template, output_paths
from .stems import Stems, StreamedStems

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS

__all__ = [
    "DEFAULT_TEMPLATE", "TEMPLATE_FIELDS", "BatchPlan", "BatchProgress", "BatchReport", "InputItem", "ItemResult",
    "Job", "Manifest", "OutputPlan", "check_output_dir", "collect_inputs", "find_conflicts", "format_duration",
    "plan_batch", "read_list_file", "run_batch", "separate_jobs", "write_stems",
]


# -- inputs -------------------------------------------------------------------------------------


def read_list_file(from_list: str) -> list[str]:
    """Input paths of a list file (one per line; ``#`` comments and blank lines skipped; ``-``:
    stdin). A :class:`ConfigError` names a missing, folder or binary list file."""
    if from_list == "-":
        text = sys.stdin.read()
    else:
        path = Path(from_list)
        if not path.exists():
            raise ConfigError(f"--from-list {path}: no such file")
        if path.is_dir():
            raise ConfigError(f"--from-list {path}: is a folder; give a text file with one input path per line")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"--from-list {path}: is not a UTF-8 text file (one input path per line)") from None
        except OSError as exc:
            raise ConfigError(f"--from-list {path}: cannot be read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise ConfigError(f"--from-list {from_list}: holds binary data, not one input path per line")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def collect_inputs(
    specs: Iterable[str | os.PathLike], *, recursive: bool = False, from_list: str | None = None
) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files, folders and globs (and a list file, ``-`` for stdin) into input items.

    Returns (items, problems): a folder or pattern that matches nothing is a problem
    ``(spec, reason)``. Folders yield their audio and video files (with ``recursive``,
    subfolders too), sorted. A path that is not there stays an item: :func:`plan_batch` fails
    it with its reason, before any model is loaded.
    """
    specs = [str(s) for s in specs]
    if from_list is not None:
        specs += read_list_file(from_list)
    items: list[InputItem] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path) -> None:
        key = Path(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            items.append(InputItem(path, root))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                subfolders = not recursive and any(p.is_dir() for p in path.iterdir())
                problems.append((spec, "folder holds no audio files" + (" (its subfolders may: add --recursive)" if subfolders else "")))
            for p in found:
                add(p, path)
        elif path.exists() or path.is_symlink() or not glob.has_magic(spec):
            add(path, path.parent)
        else:
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                problems.append((spec, "pattern matches no file"))
            base = Path(spec.split("*")[0].split("?")[0].split("[")[0] or ".")
            root = base if base.is_dir() else base.parent
            for p in found:
                add(p, root)
    return items, problems


# -- outputs ------------------------------------------------------------------------------------


def check_output_dir(path: Path) -> None:
    """A :class:`ConfigError` unless ``path`` is (or can be made as) a writable folder; nothing
    is created here."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is" if probe == path else f"cannot be made: {probe}"
        raise ConfigError(f"output folder {path} {what} is not a folder" if probe == path
                          else f"output folder {path} cannot be made: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {path} is not writable" + ("" if probe == path else f" ({probe} is read-only for you)"))


@dataclass
class OutputPlan:
    """How and where stems are written.

    ``stems`` are the labels to write (empty: all the separator's); ``template`` names each
    file below ``output_dir`` (see :mod:`uvrsep.naming`); ``sample_rate`` / ``mono`` convert
    the stems (soxr_hq) before writing.
    """

    output_dir: Path = Path(".")
    template: str = DEFAULT_TEMPLATE
    fmt: str = "wav"
    bit_depth: str = "16"
    stems: tuple[str, ...] = ()
    sample_rate: int | None = None
    mono: bool = False
    mirror_tree: bool = False
    overwrite: bool = False
    model: str = "model"

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        check_template(self.template, len(self.stems) or None)

    def paths(self, item: InputItem, stems: Iterable[str]) -> dict[str, Path]:
        return output_paths(item, tuple(stems), output_dir=self.output_dir, template=self.template, fmt=self.fmt,
                            model=self.model, mirror_tree=self.mirror_tree)

    def write(self, stems, item: InputItem, on_block: Callable[[float], None] | None = None) -> dict[str, Path]:
        """Write the wanted stems of one input (see :func:`write_stems`); returns their paths."""
        targets = self.paths(item, self.stems or stems.names)
        return write_stems(stems, targets, sample_rate=self.sample_rate, mono=self.mono, bit_depth=self.bit_depth,
                           overwrite=self.overwrite, on_block=on_block)


def write_stems(
    stems,
    targets: dict[str, Path],
    *,
    sample_rate: int | None = None,
    mono: bool = False,
    bit_depth: str = "16",
    overwrite: bool = False,
    on_block: Callable[[float], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> dict[str, Path]:
    """Write stems to ``{stem: path}``, converted as asked; atomic per file. The one writer of
    uvrsep's outputs.

    ``stems`` is :class:`~uvrsep.stems.Stems` (in memory) or :class:`~uvrsep.stems.StreamedStems`
    (written block by block as the separation goes; no file appears unless all complete).
    ``sample_rate`` resamples with soxr_hq (as a stream: librosa's one-call samples and length),
    ``mono`` averages the channels. ``on_block`` gets the seconds of audio each block covered.
    A target another process wrote meanwhile is kept (:class:`OutputExistsError` once all are done).
    ``before_commit`` is called once every file is complete, before the first is renamed into place.
    """
    if not isinstance(stems, StreamedStems):
        stems = stems.as_stream()  # one block: the same writer serves both
    sr = stems.sample_rate
    out_sr = sample_rate or sr
    channels = 1 if mono else 2
    writers: dict[str, AudioStreamWriter] = {}
    converters = {name: soxr.ResampleStream(sr, out_sr, channels, dtype="float32", quality="soxr_hq")
                  for name in targets} if out_sr != sr else {}
    # librosa's length rule for a resampled signal (its fix_length pads or trims to it).
    length = int(np.ceil(stems.n_samples * (float(out_sr) / sr))) if converters else stems.n_samples
    written = dict.fromkeys(targets, 0)

    def convert(wave: np.ndarray, converter, last: bool) -> np.ndarray:
        if mono and wave.shape[0] > 1:
            wave = wave.mean(axis=0, keepdims=True)
        if converter is None:
            return wave
        return converter.resample_chunk(np.ascontiguousarray(wave.T), last=last).T

    def put(name: str, wave: np.ndarray) -> None:
        wave = wave[:, : length - written[name]]
        writers[name].write(wave)
        written[name] += wave.shape[1]

    kept: list[str] = []
    try:
        for name, path in targets.items():
            writers[name] = AudioStreamWriter(path, out_sr, channels, bit_depth=bit_depth, overwrite=overwrite)
        for chunk in stems:
            for name in writers:
                put(name, convert(chunk[name], converters.get(name), last=False))
            if on_block is not None and chunk:
                on_block(next(iter(chunk.values())).shape[1] / sr)
        for name in writers:
            if name in converters:
                put(name, convert(np.zeros((channels, 0), np.float32), converters[name], last=True))
            put(name, np.zeros((channels, length - written[name]), np.float32))
        for writer in writers.values():  # all complete before the first is renamed into place
            writer.finish()
        if before_commit is not None:
            before_commit()
        for name, writer in writers.items():
            try:
                writer.commit()
            except OutputExistsError:
                kept.append(str(targets[name]))
    except BaseException:
        for writer in writers.values():
            writer.abort()
        stems.close()
        raise
    if kept and len(kept) == len(targets):
        raise OutputExistsError(f"{', '.join(kept)}: written by another run meanwhile; kept as they are")
    return targets


def find_conflicts(items: list[InputItem], plan: OutputPlan, stems: tuple[str, ...]) -> list[str]:
    """Output paths that two inputs would both write (reported before any work starts)."""
    owners: dict[Path, Path] = {}
    conflicts = []
    for item in items:
        for path in plan.paths(item, stems).values():
            key = Path(os.path.abspath(path))
            if key in owners and owners[key] != item.path:
                conflicts.append(f"{owners[key]} and {item.path} would both write {path}")
            owners.setdefault(key, item.path)
    return conflicts


# -- results, manifest ----------------------------------------------------------------------------


@dataclass
class ItemResult:
    """What happened to one input (one manifest record)."""

    input: str
    status: str  # "ok", "skipped" or "failed"
    outputs: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    seconds: float = 0.0
    error: str = ""


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``0:00:07``, ``12:03:45``)."""
    total = int(round(max(0.0, seconds)))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


@dataclass
class BatchReport:
    results: list[ItemResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: Manifest lines that could not be read (skipped with a warning each).
    manifest_warnings: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def audio_seconds(self) -> float:
        return sum(r.duration_s for r in self.results if r.status == "ok")

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600

    def summary(self) -> str:
        """``3 processed, 1 skipped, 0 failed; 0:01:23 of audio in 0:00:41 (2.0x faster than real time)``."""
        audio, wall = self.audio_seconds, self.wall_seconds
        text = (f"{self.count('ok')} processed, {self.count('skipped')} skipped, {self.count('failed')} failed; "
                f"{format_duration(audio)} of audio in {format_duration(wall)}")
        if audio > 0 and wall > 0:
            ratio = audio / wall
            text += f" ({ratio:.1f}x faster than real time)" if ratio >= 1 else f" ({1 / ratio:.1f}x slower than real time)"
        if self.manifest_warnings:
            text += f"; {self.manifest_warnings} unreadable manifest line(s) skipped"
        return text


class Manifest:
    """JSONL record of a batch, one line per event; a re-run with it resumes.

    Format (one JSON object per line, UTF-8, append-only): ``input`` (path as given),
    ``status`` (``ok`` / ``skipped`` / ``failed``), ``outputs`` (paths written or found),
    ``duration_s`` (seconds of audio), ``seconds`` (processing time; clips that shared network
    calls share its time by their windows), ``error`` (one line). The last record of an input
    wins. An input whose last record is ``ok`` with exactly the outputs asked for now, all
    present, is finished: a re-run skips it and writes no new record. Unreadable lines (a
    line cut by a kill, stray text) are skipped with one warning each and never swallow the
    next record.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self.last: dict[str, dict] = {}
        self.warnings: list[str] = []
        self.write_error: str | None = None
        if self.path is None:
            return
        if self.path.is_dir():
            raise ConfigError(f"--manifest {self.path}: is a folder; give a file path")
        if self.path.exists():
            if not os.access(self.path, os.R_OK | os.W_OK):
                raise ConfigError(f"--manifest {self.path}: cannot be read and appended to (permissions)")
            self._read()
        else:
            check_output_dir(self.path.parent)

    def _read(self) -> None:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--manifest {self.path}: cannot be read ({exc.strerror or exc})") from None
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
                if not isinstance(rec, dict) or not isinstance(rec.get("input"), str):
                    raise ValueError("not a record with an input")
                if rec.get("status") not in ("ok", "skipped", "failed"):
                    raise ValueError(f"unknown status {rec.get('status')!r}")
                outputs = rec.get("outputs", [])
                if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
                    raise ValueError("outputs is not a list of paths")
            except (UnicodeDecodeError, ValueError) as exc:
                self.warnings.append(f"{self.path}:{number}: unreadable manifest line skipped ({exc})")
                continue
            self.last[rec["input"]] = rec

    def finished(self, item: InputItem, targets: dict[str, Path]) -> bool:
        """Whether the last record of ``item`` says it is done with these very outputs, all present."""
        rec = self.last.get(str(item.path))
        if rec is None or rec["status"] != "ok":
            return False
        outputs = rec.get("outputs", [])
        return sorted(outputs) == sorted(map(str, targets.values())) and all(Path(p).is_file() for p in outputs)

    def record(self, result: ItemResult) -> None:
        """Append one record (a cut last line first gets its newline). A failure to write is
        kept in :attr:`write_error` (reported once) and the batch goes on."""
        previous = self.last.get(result.input)
        self.last[result.input] = result.__dict__
        if self.path is None or self.write_error is not None:
            return
        if result.status == "skipped" and previous is not None and previous["status"] != "failed":
            return  # finished or skipped before: nothing new to say about it
        line = (json.dumps(result.__dict__, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        line = b"\n" + line
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            reason = "disk full" if exc.errno in (28, 122) else (exc.strerror or str(exc))
            self.write_error = f"--manifest {self.path}: cannot be written ({reason}); resuming from it will redo this run's inputs"


# -- planning and running ---------------------------------------------------------------------------


@dataclass
class Job:
    """One input to separate: where its stems go and its duration (seconds)."""

    item: InputItem
    targets: dict[str, Path]
    duration: float


@dataclass
class BatchPlan:
    """The outcome of :func:`plan_batch`: ``jobs`` to run and ``done`` (inputs already decided:
    skipped or failed before any model is loaded)."""

    jobs: list[Job]
    done: list[ItemResult]

    @property
    def audio_seconds(self) -> float:
        return sum(job.duration for job in self.jobs)


def _duration_or_zero(path: Path) -> float:
    try:
        return round(duration_seconds(path), 3)
    except ITEM_ERRORS:
        return 0.0


def plan_batch(items: Sequence[InputItem], plan: OutputPlan, labels: Sequence[str], manifest: Manifest) -> BatchPlan:
    """Decide each input before any model is loaded: unreadable (failed, one line), finished
    per the manifest (skipped, no new record), its outputs exist (skipped unless
    ``plan.overwrite``), or to do (with its duration from the file header)."""
    stems = plan.stems or tuple(labels)
    jobs: list[Job] = []
    done: list[ItemResult] = []
    for item in items:
        targets = plan.paths(item, stems)
        try:
            check_input_file(item.path)
        except ITEM_ERRORS as exc:
            done.append(ItemResult(str(item.path), "failed", error=one_line(exc, item.path)))
            continue
        if not plan.overwrite:
            if manifest.finished(item, targets):
                done.append(ItemResult(str(item.path), "skipped", [str(p) for p in targets.values()], error="done (manifest)"))
                continue
            existing = [p for p in targets.values() if p.exists()]
            if len(existing) == len(targets):
                done.append(ItemResult(str(item.path), "skipped", [str(p) for p in targets.values()], error="outputs exist"))
                continue
            if existing and complete_interrupted(targets.values()):  # a killed run's, finished now
                done.append(ItemResult(str(item.path), "ok", [str(p) for p in targets.values()],
                                       _duration_or_zero(item.path)))
                continue
            if existing:
                done.append(ItemResult(str(item.path), "skipped",
                                       error=f"{', '.join(map(str, existing))} exist(s); --overwrite replaces"))
                continue
        try:
            duration = duration_seconds(item.path)
        except ITEM_ERRORS as exc:
            done.append(ItemResult(str(item.path), "failed", error=one_line(exc, item.path)))
            continue
        jobs.append(Job(item, targets, duration))
    return BatchPlan(jobs, done)


class BatchProgress:
    """Progress of a batch in seconds of audio, also inside a long file.

    On a terminal: a tqdm bar. Otherwise (logs of long jobs): one line every ``interval``
    seconds (files, audio done of total, elapsed, ETA). :meth:`write` prints a message line
    without breaking the bar.
    """

    def __init__(self, total_seconds: float, total_files: int, *, stream: TextIO | None = None,
                 interval: float = 30.0, terminal: bool | None = None):
        from tqdm import tqdm

        self.stream = stream or sys.stderr
        self.total, self.files_total = total_seconds, total_files
        self.done = 0.0
        self.files = 0
        self.interval = interval
        self.started = self.last_line = time.monotonic()
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self.terminal = is_tty if terminal is None else terminal
        self.bar = None
        if self.terminal:
            self.bar = tqdm(total=round(total_seconds, 1), unit="s", unit_scale=False, file=self.stream,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}] {postfix}",
                            dynamic_ncols=True, leave=False)

    def advance(self, seconds: float) -> None:
        """``seconds`` more of audio are done."""
        self.done += seconds
        if self.bar is not None:
            self.bar.update(round(seconds, 3))
        else:
            self._maybe_line()

    def file_done(self, remaining: float = 0.0) -> None:
        """One more input finished (``remaining``: its audio not yet counted by :meth:`advance`)."""
        self.files += 1
        self.done += remaining
        if self.bar is not None:
            self.bar.update(round(remaining, 3))
            self.bar.set_postfix_str(f"{self.files}/{self.files_total} files", refresh=False)
        else:
            self._maybe_line()

    def _maybe_line(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_line < self.interval:
            return
        self.last_line = now
        elapsed = now - self.started
        eta = "?"
        if self.done > 0 and self.total > self.done:
            eta = format_duration(elapsed * (self.total - self.done) / self.done)
        elif self.total <= self.done:
            eta = "0:00:00"
        print(f"progress: {self.files}/{self.files_total} files, {format_duration(self.done)} of "
              f"{format_duration(self.total)} audio, {format_duration(elapsed)} elapsed, ETA {eta}",
              file=self.stream, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def separate_jobs(
    separator,
    jobs: Sequence[Job],
    plan: OutputPlan,
    *,
    group_windows: int = 8,
    on_block: Callable[[float], None] | None = None,
    before_commit: Callable[[Job], None] | None = None,
) -> Iterator[ItemResult]:
    """Separate ``jobs`` and write their stems: one :class:`ItemResult` per job, in order.

    The work of a batch, wherever it runs (here for :func:`run_batch`, or inside a worker of
    :mod:`uvrsep.cluster`): ``separator`` (a :class:`~uvrsep.Separator` or a
    :class:`~uvrsep.chain.Chain`) separates them with :meth:`~uvrsep.Separator.separate_batch`
    (short clips share network calls, long ones stream) and :func:`write_stems` writes each to
    ``job.targets``. Stems held in memory (short clips) are written by a background thread
    while the next clips are separated; streamed ones are written as they are separated. Any
    exception while separating or writing one input fails that input with a one-line reason;
    only an interruption stops it, and then no partial file is left (a file being written in
    the background is finished, whole, or not at all). ``on_block`` gets the seconds of audio
    each written block covered; ``before_commit(job)`` is called once a job's files are
    complete, just before the first is renamed into place.
    """
    jobs = {job.item.path: job for job in jobs}
    clock = time.perf_counter()

    def write(job: Job, stems, blocks: Callable[[float], None] | None) -> tuple[str, str, list[str], float]:
        """(status, error, outputs, seconds spent) of writing one input's stems."""
        status, error, outputs = "ok", "", []
        start = time.perf_counter()
        try:
            written = write_stems(stems, job.targets, sample_rate=plan.sample_rate, mono=plan.mono,
                                  bit_depth=plan.bit_depth, overwrite=plan.overwrite, on_block=blocks,
                                  before_commit=None if before_commit is None else lambda: before_commit(job))
            outputs = [str(p) for p in written.values()]
        except OutputExistsError as exc:
            status, error, outputs = "skipped", str(exc), [str(p) for p in job.targets.values()]
        except ITEM_ERRORS as exc:
            status, error = "failed", one_line(exc, job.item.path)
        return status, error, outputs, time.perf_counter() - start

    def finished(wait: bool) -> Iterator[ItemResult]:
        """The results of the background writes done so far (all of them with ``wait``), in order."""
        nonlocal clock
        while pending and (wait or pending[0][2].done()):
            job, stems, future = pending.popleft()
            status, error, outputs, spent = future.result()
            if on_block is not None and status == "ok":
                on_block(stems.duration)  # one block: the whole clip, counted here, in order
            yield ItemResult(str(job.item.path), status, outputs, round(stems.duration, 3),
                             round(stems.seconds + spent, 3), error)
            clock = time.perf_counter()

    pending: deque[tuple[Job, Stems, Future]] = deque()
    outcomes = separator.separate_batch(list(jobs), group_windows=group_windows,
                                        durations={path: job.duration for path, job in jobs.items()})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uvrsep-writer") as writer:
        try:
            for path, outcome in outcomes:
                job = jobs[path]
                if isinstance(outcome, Stems) and outcome.seconds is not None:
                    pending.append((job, outcome, writer.submit(write, job, outcome, None)))
                    yield from finished(wait=False)
                    continue
                yield from finished(wait=True)  # results stay in the inputs' order
                if isinstance(outcome, Exception):
                    yield ItemResult(str(path), "failed", duration_s=round(job.duration, 3), error=one_line(outcome, path))
                else:  # streamed: separated while it is written; the time since the last input
                    status, error, outputs, _ = write(job, outcome, on_block)
                    yield ItemResult(str(path), status, outputs, round(outcome.duration, 3),
                                     round(time.perf_counter() - clock, 3), error)
                clock = time.perf_counter()
            yield from finished(wait=True)
        except BaseException:
            for _, _, future in pending:
                future.cancel()
            raise


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
        manifest.record(result)
        if on_result is not None:
            on_result(result)

    for result in items.done:
        finish(result)
    counted = 0.0

    def on_block(seconds: float) -> None:
        nonlocal counted
        counted += seconds
        if progress is not None:
            progress.advance(seconds)

    try:
        if execute is None:
            results = separate_jobs(separator, items.jobs, plan, group_windows=group_windows, on_block=on_block)
        else:
            results = execute(items.jobs, on_block)
        for result in results:
            finish(result)
            if progress is not None:
                progress.file_done(max(0.0, result.duration_s - counted))
            counted = 0.0
    finally:
        report.wall_seconds = time.perf_counter() - started
    return report
