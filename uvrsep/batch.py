"""Batch processing: collecting inputs, planning outputs, skipping, conflicts, manifests, progress.

A batch is decided before any model is loaded (:func:`plan_batch`: which inputs are unreadable,
finished or to do, and where each stem goes), then run (:func:`run_batch`): the model is loaded
once, short clips share network calls (:meth:`Separator.separate_batch`), long ones stream, and
one failing input never stops the batch.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import logging
import math
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import soxr

from .audio import (
    FFMPEG_EXTENSIONS,
    SOUNDFILE_EXTENSIONS,
    AudioStreamWriter,
    check_input_file,
    check_output_settings,
    complete_interrupted,
    duration_seconds,
)
from .errors import ITEM_ERRORS, AudioWriteError, ConfigError, OutputExistsError, one_line
from .naming import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, InputItem, check_template, output_paths
from .stems import Stems, StreamedStems

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS

__all__ = [
    "DEFAULT_TEMPLATE", "TEMPLATE_FIELDS", "BatchPlan", "BatchProgress", "BatchReport", "Conflicts", "InputItem", "ItemResult",
    "Job", "Manifest", "OutputPlan", "check_output_dir", "collect_inputs", "find_conflicts", "format_duration",
    "plan_batch", "read_list_file", "run_batch", "separate_jobs", "write_stems",
]


# -- inputs -------------------------------------------------------------------------------------


#: Longest line of a list file or a manifest (bytes); a path is at most a few KiB.
MAX_LINE_BYTES = 1 << 20


def regular_file(path: Path, option: str, *, may_be_missing: bool = False) -> bool:
    """Whether ``path`` (named by ``option``) exists; a :class:`ConfigError` unless it is a
    regular file (a FIFO would hang the run, ``/dev/zero`` fill its memory, a folder is no file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if may_be_missing:
            return False
        raise ConfigError(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{option} {path}: is a folder; give a file path")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device or special file"
        raise ConfigError(f"{option} {path}: is {kind}, not a regular file")
    return True


def bounded_lines(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """``(number, line)`` for each line of a binary stream, without its newline; a line longer
    than ``limit`` bytes comes as ``None`` (its bytes are read past, never held)."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while True:  # skip the rest of the over-long line
                more = stream.readline(1 << 16)
                if not more or more.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line.rstrip(b"\r\n")


def read_list_file(from_list: str) -> list[str]:
    """Input paths of a list file (one per line; ``#`` comments and blank lines skipped; ``-``:
    stdin). A :class:`ConfigError` names a missing, folder, special (FIFO, device) or binary list
    file, or a line too long to be a path."""
    name = "standard input" if from_list == "-" else from_list
    if from_list != "-":
        regular_file(Path(from_list), "--from-list")
    paths = []
    try:
        with contextlib.ExitStack() as stack:
            if from_list == "-":
                stream = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode("utf-8"))
            else:
                stream = stack.enter_context(open(from_list, "rb"))
            for number, raw in bounded_lines(stream):
                if raw is None:
                    raise ConfigError(f"--from-list {name}: line {number} is over {MAX_LINE_BYTES} bytes, not a path")
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise ConfigError(f"--from-list {name}: is not a UTF-8 text file (one input path per line)") from None
                if "\x00" in line:
                    raise ConfigError(f"--from-list {name}: holds binary data, not one input path per line")
                if line and not line.startswith("#"):
                    paths.append(line)
    except OSError as exc:
        raise ConfigError(f"--from-list {name}: cannot be read ({exc.strerror or exc})") from None
    return paths


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


def check_output_dir(path: Path, what: str | None = None) -> None:
    """A :class:`ConfigError` unless ``path`` is (or can be made as) a writable folder; nothing
    is created here. ``what`` names it in the message (default: the output folder)."""
    what = what or f"output folder {path}"
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} is not a folder" if probe == path
                          else f"{what} cannot be made: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} is not writable" + ("" if probe == path else f" ({probe} is read-only for you)"))


@dataclass
class OutputPlan:
    """How and where stems are written.

    ``stems`` are the labels to write (empty: all the separator's); ``template`` names each
    file below ``output_dir`` (see :mod:`uvrsep.naming`); ``sample_rate`` / ``mono`` convert
    the stems (soxr_hq) before writing; ``bit_depth`` (lossless formats only; ``None``: 16-bit).
    A combination that cannot be written is a :class:`ConfigError` here, before any work.
    """

    output_dir: Path = Path(".")
    template: str = DEFAULT_TEMPLATE
    fmt: str = "wav"
    bit_depth: str | None = None
    stems: tuple[str, ...] = ()
    sample_rate: int | None = None
    mono: bool = False
    mirror_tree: bool = False
    overwrite: bool = False
    model: str = "model"

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        check_output_settings(self.fmt, self.bit_depth, self.sample_rate)
        check_template(self.template, len(self.stems) or None, self.fmt)

    def paths(self, item: InputItem, stems: Iterable[str], *, contained: bool = True) -> dict[str, Path]:
        """``{stem: path}`` of one input; an :class:`AudioWriteError` naming it when one would
        not stay inside ``output_dir`` (see :func:`uvrsep.naming.output_paths`)."""
        return output_paths(item, tuple(stems), output_dir=self.output_dir, template=self.template, fmt=self.fmt,
                            model=self.model, mirror_tree=self.mirror_tree, contained=contained)

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
    bit_depth: str | None = None,
    overwrite: bool = False,
    on_block: Callable[[float], None] | None = None,
    before_commit: Callable[[], None] | None = None,
    on_clipped: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write stems to ``{stem: path}``, converted as asked; atomic per file. The one writer of
    uvrsep's outputs.

    ``stems`` is :class:`~uvrsep.stems.Stems` (in memory) or :class:`~uvrsep.stems.StreamedStems`
    (written block by block as the separation goes; no file appears unless all complete).
    ``sample_rate`` resamples with soxr_hq (as a stream: librosa's one-call samples and length),
    ``mono`` averages the channels. ``on_block`` gets the seconds of audio each block covered.
    A target another process wrote meanwhile is kept (:class:`OutputExistsError` once all are done).
    ``before_commit`` is called once every file is complete, before the first is renamed into place.
    ``on_clipped`` gets one line when integer PCM or a lossy format clipped a stem noticeably
    (:data:`uvrsep.audio.CLIP_WARN_PEAK`, :data:`uvrsep.audio.CLIP_WARN_FRACTION`):
    ``"vocals (peak +90.3 dBFS, 99.97 % of samples)"``.
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
        for path in targets.values():  # a folder that appeared meanwhile: no half set of stems
            if (path.exists() or path.is_symlink()) and not (path.is_file() or path.is_symlink()):
                raise AudioWriteError(f"{path}: is a folder or special file, not an audio file; it is never replaced")
        clipped = [f"{name} ({w.clips.describe()})" for name, w in writers.items() if w.clips.noticeable]
        if clipped and on_clipped is not None:
            on_clipped(", ".join(clipped))
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


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (hard links and every path to it share it), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


@dataclass
class Conflicts:
    """What must stop a run before any work (see :func:`find_conflicts`), one line each."""

    shared: list[str] = field(default_factory=list)  #: outputs two inputs would both write
    overwrites: list[str] = field(default_factory=list)  #: outputs that would replace an input
    #: Whether inputs that share an output are in one folder (``clip.mp4``, ``clip.m4a``) / in two.
    same_folder: bool = False
    other_folders: bool = False

    def __bool__(self) -> bool:
        return bool(self.shared or self.overwrites)

    def advice(self) -> str:
        """What keeps the outputs apart (one line)."""
        if self.overwrites:
            return "choose another --output-dir or --name-template (an input is never overwritten)"
        fields = (["{parent}"] if self.other_folders else []) + (["{input_ext}"] if self.same_folder else [])
        example = "{name}_{input_ext}_{stem}.{ext}" if not self.other_folders else (
            "{parent}/{name}_{stem}.{ext}" if not self.same_folder else "{parent}/{name}_{input_ext}_{stem}.{ext}")
        return (f"put {' and '.join(fields)} in --name-template (e.g. '{example}')"
                + (" or use --mirror-tree" if self.other_folders and not self.same_folder else "")
                + " to keep them apart")


def find_conflicts(
    items: list[InputItem], plan: OutputPlan, stems: tuple[str, ...], protected: dict[Path, str] | None = None
) -> Conflicts:
    """Outputs that two inputs would both write, and outputs that resolve to an input file or
    to one of the ``protected`` files (``{path: what it is}``: the manifest, the list of inputs)
    — the same path, a symbolic link to it or a hard link of it — with or without
    ``overwrite``, naming both paths. Outputs that would leave the output folder are left to
    :func:`plan_batch` (their input fails alone)."""
    keep: dict[str | tuple[int, int], str] = {}
    named = [(item.path, "the input") for item in items] + list((protected or {}).items())
    for path, what in named:
        keep.setdefault(os.path.realpath(path), f"{what} {path}")
        ident = _identity(Path(path))
        if ident is not None:
            keep.setdefault(ident, f"{what} {path}")
    owners: dict[str, Path] = {}
    found = Conflicts()
    for item in items:
        for path in plan.paths(item, stems, contained=False).values():
            key = os.path.realpath(path)
            victim = keep.get(key) or keep.get(_identity(path) or key)
            if victim is not None:
                found.overwrites.append(f"{path} would overwrite {victim}")
            elif key in owners and owners[key] != item.path:
                found.shared.append(f"{owners[key]} and {item.path} would both write {path}")
                one_folder = os.path.realpath(owners[key].parent) == os.path.realpath(item.path.parent)
                found.same_folder |= one_folder
                found.other_folders |= not one_folder
            owners.setdefault(key, item.path)
    return found


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
    #: One-line warnings about the result (stems clipped at full scale).
    warnings: list[str] = field(default_factory=list)


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
    present, is finished: a re-run skips it and writes no new record. Each record is appended
    and flushed to disk as soon as its input is decided (an input's ``ok`` once its stems are in
    place), so a run stopped in any way leaves a record for every finished input.

    Runs may share a manifest: records are appended under a lock file beside it
    (``<manifest>.lock``; in the cache's ``locks/`` when its folder is read-only), and a ``skipped`` record never follows an ``ok`` of the same input,
    whichever run wrote it. Unreadable lines (a line cut by a kill, stray text, a line over
    :data:`MAX_LINE_BYTES`, JSON nested too deeply) are skipped with one warning each and never
    swallow the next record. The manifest must be a regular file (or not exist yet).
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self.last: dict[str, dict] = {}
        self.warnings: list[str] = []
        self.write_error: str | None = None
        self._offset = 0  # bytes read so far: what other runs append comes after
        self._lines = 0
        self._mutex = threading.Lock()  # records come from the writer thread and the main one
        if self.path is None:
            return
        self._lock = Path(str(self.path) + ".lock")
        if regular_file(self.path, "--manifest", may_be_missing=True):
            if not os.access(self.path, os.R_OK | os.W_OK):
                raise ConfigError(f"--manifest {self.path}: cannot be read and appended to (permissions)")
            if not os.access(self.path.parent, os.W_OK | os.X_OK):  # no lock file beside it: one in the cache
                from .hub import home_dir

                digest = hashlib.sha256(os.path.realpath(self.path).encode("utf-8", "surrogateescape")).hexdigest()
                self._lock = home_dir() / "locks" / f"manifest-{digest[:24]}.lock"
            try:
                with open(self.path, "rb") as fh:
                    self._parse(fh, whole=True)
            except OSError as exc:
                raise ConfigError(f"--manifest {self.path}: cannot be read ({exc.strerror or exc})") from None
        else:
            check_output_dir(self.path.parent, f"--manifest {self.path}: its folder {self.path.parent}")

    def _parse(self, fh: BinaryIO, whole: bool) -> None:
        """Take the records from the read position on: every line (``whole``), or only the
        complete ones (a run appending meanwhile may be mid-line)."""
        if not whole:
            data = fh.read()
            fh = io.BytesIO(data[: data.rfind(b"\n") + 1])
        start = self._offset
        for _, line in bounded_lines(fh):
            self._lines += 1
            if line is not None and not line.strip():
                continue
            rec, problem = _parse_record(line) if line is not None else (None, f"over {MAX_LINE_BYTES} bytes")
            if problem is not None:
                self.warnings.append(f"{self.path}:{self._lines}: unreadable manifest line skipped ({problem})")
                continue
            self.last[rec["input"]] = rec
        self._offset = start + fh.tell()

    def finished(self, item: InputItem, targets: dict[str, Path]) -> bool:
        """Whether the last record of ``item`` says it is done with these very outputs, all present."""
        rec = self.last.get(str(item.path))
        if rec is None or rec["status"] != "ok":
            return False
        outputs = rec.get("outputs", [])
        return sorted(outputs) == sorted(map(str, targets.values())) and all(Path(p).is_file() for p in outputs)

    def record(self, result: ItemResult) -> None:
        """Append one record and flush it to disk (a cut last line first gets its newline); safe
        from several threads and processes. A failure to write is kept in :attr:`write_error`
        (reported once) and the batch goes on."""
        with self._mutex:
            if self.path is None or self.write_error is not None:
                self._remember(result)
                return
            try:
                from filelock import FileLock

                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(self._lock), open(self.path, "a+b") as fh:
                    fh.seek(self._offset)
                    self._parse(fh, whole=False)  # what other runs recorded meanwhile
                    if self._remember(result):
                        _append_line(fh, (json.dumps(result.__dict__, ensure_ascii=False) + "\n").encode("utf-8"))
                        self._offset = fh.tell()
                        self._lines += 1
            except OSError as exc:
                reason = "disk full" if exc.errno in (28, 122) else (exc.strerror or str(exc))
                self.write_error = (f"--manifest {self.path}: cannot be written ({reason}); "
                                    "resuming from it will redo this run's inputs")

    def _remember(self, result: ItemResult) -> bool:
        """Take ``result`` as its input's last record; whether it says something new (a
        ``skipped`` after an ``ok`` or ``skipped`` of the same input does not)."""
        previous = self.last.get(result.input)
        if result.status == "skipped" and previous is not None and previous["status"] != "failed":
            return False
        self.last[result.input] = dict(result.__dict__)
        return True


def _parse_record(line: bytes) -> tuple[dict | None, str | None]:
    """(record, None) for a readable manifest line, else (None, why not)."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except RecursionError:
        return None, "JSON nested too deeply"
    except (UnicodeDecodeError, ValueError) as exc:
        return None, str(exc)
    if not isinstance(rec, dict) or not isinstance(rec.get("input"), str):
        return None, "not a record with an input"
    if rec.get("status") not in ("ok", "skipped", "failed"):
        return None, f"unknown status {rec.get('status')!r}"
    outputs = rec.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        return None, "outputs is not a list of paths"
    return rec, None


def _append_line(fh: BinaryIO, line: bytes) -> None:
    """Append ``line`` at the end of ``fh`` (after a newline, if a cut line ends the file) and
    flush it to disk."""
    fh.seek(0, os.SEEK_END)
    if fh.tell() > 0:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            line = b"\n" + line
    fh.write(line)
    fh.flush()
    os.fsync(fh.fileno())


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


def _check_targets(targets: dict[str, Path]) -> None:
    """An :class:`AudioWriteError` when something that is no regular file (a folder, a FIFO, a
    device) stands at an output's name: it is never replaced, with or without ``overwrite``."""
    for path in targets.values():
        if path.exists() and not path.is_file():
            raise AudioWriteError(f"{path}: a folder or special file stands at this output name; "
                                  "remove it or choose another --name-template")


def plan_batch(items: Sequence[InputItem], plan: OutputPlan, labels: Sequence[str], manifest: Manifest) -> BatchPlan:
    """Decide each input before any model is loaded: unreadable (failed, one line), finished
    per the manifest (skipped, no new record), its outputs exist (skipped unless
    ``plan.overwrite``), or to do (with its duration from the file header)."""
    stems = plan.stems or tuple(labels)
    jobs: list[Job] = []
    done: list[ItemResult] = []
    for item in items:
        try:
            targets = plan.paths(item, stems)
            check_input_file(item.path)
            _check_targets(targets)
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

    On a terminal: a tqdm bar. Otherwise (logs of long jobs): one line at least every
    ``interval`` seconds (files, audio done of total, elapsed, ETA), from a background timer, so
    a long file or segment still shows the run is alive; :meth:`close` prints the last one, at
    the :attr:`elapsed` time the summary gives. :meth:`write` prints a message line without
    breaking the bar.
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
        self.closed_at: float | None = None
        self._lock = threading.Lock()
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self.terminal = is_tty if terminal is None else terminal
        self.bar = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if self.terminal:
            self.bar = tqdm(total=round(total_seconds, 3), unit="s", unit_scale=False, file=self.stream,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}] {postfix}",
                            dynamic_ncols=True, leave=False)
        elif interval > 0:
            self._timer = threading.Thread(target=self._tick, name="uvrsep-progress", daemon=True)
            self._timer.start()

    @property
    def elapsed(self) -> float:
        """Seconds since the batch started (frozen by :meth:`close`)."""
        return (self.closed_at if self.closed_at is not None else time.monotonic()) - self.started

    def _tick(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self._maybe_line()

    def _bar_update(self, seconds: float) -> None:
        """Move the bar, never past its total (tqdm warns when a bar overruns)."""
        step = min(round(seconds, 3), self.bar.total - self.bar.n)
        if step > 0:
            self.bar.update(step)

    def advance(self, seconds: float) -> None:
        """``seconds`` more of audio are done."""
        with self._lock:
            self.done += seconds
        if self.bar is not None:
            self._bar_update(seconds)
        else:
            self._maybe_line()

    def file_done(self, remaining: float = 0.0) -> None:
        """One more input finished (``remaining``: its audio not yet counted by :meth:`advance`)."""
        with self._lock:
            self.files += 1
            self.done += remaining
        if self.bar is not None:
            self._bar_update(remaining)
            self.bar.set_postfix_str(f"{self.files}/{self.files_total} files", refresh=False)
        else:
            self._maybe_line()

    def _maybe_line(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic() if self.closed_at is None else self.closed_at
            if not force and now - self.last_line < self.interval:
                return
            self.last_line = now
            elapsed = now - self.started
            done = min(self.done, self.total)
            eta = "?"
            if done > 0 and self.total > done:
                eta = format_duration(elapsed * (self.total - done) / done)
            elif self.total <= done:
                eta = "0:00:00"
            print(f"progress: {self.files}/{self.files_total} files, {format_duration(done)} of "
                  f"{format_duration(self.total)} audio, {format_duration(elapsed)} elapsed, ETA {eta}",
                  file=self.stream, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            with self._lock:
                print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar or the timer; off a terminal, print the last progress line."""
        if self.closed_at is not None:
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        self.closed_at = time.monotonic()
        if self.bar is not None:
            self.bar.close()
        elif self.files_total:
            self._maybe_line(force=True)


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
    while the next clips are separated; streamed ones are written as they are separated. Any
    exception while separating or writing one input fails that input with a one-line reason;
    only an interruption stops it, and then no partial file is left (a file being written in
    the background is finished, whole, or not at all). ``on_block`` gets the seconds of audio
    each written block covered; ``before_commit(job)`` is called once a job's files are
    complete, just before the first is renamed into place; ``record(result)`` is called once
    per job as soon as its result is final (its stems in place), from the thread that
    finished it, before the result is yielded: an interruption never loses the record of a
    finished input.
    """
    jobs = {job.item.path: job for job in jobs}
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

        def result(status: str, outputs: list[str], error: str = "") -> ItemResult:
            now = time.perf_counter()
            spent = now - clock if seconds is None else seconds + now - start
            return ItemResult(str(job.item.path), status, outputs, round(stems.duration, 3), round(spent, 3), error,
                              list(notes))

        def clipped(what: str) -> None:
            depth = "--bit-depth 32f keeps every sample" if plan.fmt in ("wav", "flac") else "wav --bit-depth 32f keeps every sample"
            notes.append(f"{job.item.path}: clipped at full scale: {what}; {depth}, or scale the input down")

        def commit() -> None:
            promised.append(settle(result("ok", [str(p) for p in job.targets.values()])))
            if before_commit is not None:
                before_commit(job)

        try:
            written = write_stems(stems, job.targets, sample_rate=plan.sample_rate, mono=plan.mono,
                                  bit_depth=plan.bit_depth, overwrite=plan.overwrite, on_block=blocks,
                                  before_commit=commit, on_clipped=clipped)
            final = result("ok", [str(p) for p in written.values()])
        except OutputExistsError as exc:
            final = result("skipped", [str(p) for p in job.targets.values()], str(exc))
        except ITEM_ERRORS as exc:
            final = result("failed", [], one_line(exc, job.item.path))
        if promised and final.status == "ok":
            return final  # recorded before the commit
        return settle(final)

    def finished(wait: bool) -> Iterator[ItemResult]:
        """The results of the background writes done so far (all of them with ``wait``), in order."""
        nonlocal clock
        while pending and (wait or pending[0][1].done()):
            stems, future = pending.popleft()
            result = future.result()
            if on_block is not None and result.status == "ok":
                on_block(stems.duration)  # one block: the whole clip, counted here, in order
            yield result
            clock = time.perf_counter()

    pending: deque[tuple[Stems, Future]] = deque()
    outcomes = separator.separate_batch(list(jobs), group_windows=group_windows,
                                        durations={path: job.duration for path, job in jobs.items()})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uvrsep-writer") as writer:
        try:
            for path, outcome in outcomes:
                job = jobs[path]
                if isinstance(outcome, Stems) and outcome.seconds is not None:
                    pending.append((outcome, writer.submit(write, job, outcome, None, outcome.seconds)))
                    yield from finished(wait=False)
                    continue
                yield from finished(wait=True)  # results stay in the inputs' order
                if isinstance(outcome, Exception):
                    yield settle(ItemResult(str(path), "failed", duration_s=round(job.duration, 3),
                                            error=one_line(outcome, path)))
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
        if execute is None:  # each record is written as soon as its stems are in place
            results = separate_jobs(separator, items.jobs, plan, group_windows=group_windows, on_block=on_block,
                                    record=manifest.record)
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
