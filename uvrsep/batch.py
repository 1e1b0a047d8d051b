"""Batch processing: collecting inputs, naming outputs, skipping, conflicts, manifests.

The model is loaded once; inputs are separated in groups whose network windows share calls
(:meth:`Separator.separate_many`); one failing input never stops the batch.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import string
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from .audio import FFMPEG_EXTENSIONS, SOUNDFILE_EXTENSIONS, AudioStreamWriter
from .errors import ITEM_ERRORS, AudioWriteError, ConfigError, UvrsepError
from .stems import StreamedStems

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS

DEFAULT_TEMPLATE = "{name}_{stem}.{ext}"
TEMPLATE_FIELDS = {
    "name": "input file name without extension",
    "stem": "stem label (vocals, instrumental, no_echo, ...)",
    "ext": "output format (wav, flac, mp3, ogg)",
    "model": "model name (registry name, or weight file name without .pth)",
    "parent": "name of the input's folder",
}


@dataclass(frozen=True)
class InputItem:
    """One input: its path and the folder it was found under (for ``--mirror-tree``)."""

    path: Path
    root: Path


def collect_inputs(
    specs: Iterable[str | os.PathLike], *, recursive: bool = False, from_list: str | None = None
) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files, folders and globs (and a list file, ``-`` for stdin) into input items.

    Returns (items, problems): a spec that matches nothing is a problem ``(spec, reason)``.
    Folders yield their audio and video files (with ``recursive``, subfolders too), sorted.
    """
    specs = [str(s) for s in specs]
    if from_list is not None:
        lines = sys.stdin.read().splitlines() if from_list == "-" else Path(from_list).read_text(encoding="utf-8").splitlines()
        specs += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    items: list[InputItem] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            items.append(InputItem(path, root))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                problems.append((spec, "folder holds no audio files" + ("" if recursive else " (try --recursive)")))
            for p in found:
                add(p, path)
        elif path.exists() or not glob.has_magic(spec):
            add(path, path.parent)  # a missing file is reported when it is read
        else:
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                problems.append((spec, "pattern matches no file"))
            base = Path(spec.split("*")[0].split("?")[0].split("[")[0] or ".")
            root = base if base.is_dir() else base.parent
            for p in found:
                add(p, root)
    return items, problems


@dataclass
class OutputPlan:
    """How and where stems are written."""

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
        fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f}
        unknown = fields - set(TEMPLATE_FIELDS)
        if unknown:
            raise ConfigError(
                f"--name-template: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(TEMPLATE_FIELDS)})"
            )
        if "stem" not in fields:
            raise ConfigError("--name-template must contain {stem}, or the stems would overwrite each other")

    def paths(self, item: InputItem, stems: Iterable[str]) -> dict[str, Path]:
        folder = self.output_dir
        if self.mirror_tree:
            try:
                folder = folder / item.path.parent.relative_to(item.root)
            except ValueError:
                pass
        return {
            stem: folder / self.template.format(
                name=item.path.stem, stem=stem, ext=self.fmt, model=self.model, parent=item.path.parent.name
            )
            for stem in stems
        }

    def write(self, stems, item: InputItem) -> dict[str, Path]:
        """Write the wanted stems of one input (see :func:`write_stems`) where :meth:`paths` says."""
        return write_stems(stems, self.paths(item, self.stems or stems.names), bit_depth=self.bit_depth,
                           sample_rate=self.sample_rate, mono=self.mono, overwrite=self.overwrite)


def write_stems(
    stems,
    targets: dict[str, Path],
    *,
    bit_depth: str = "16",
    sample_rate: int | None = None,
    mono: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write stem ``name`` of ``stems`` to ``targets[name]`` (resampled / down-mixed as asked);
    atomic per file. Stems not in ``targets`` are not written.

    ``stems`` is :class:`~uvrsep.stems.Stems` (in memory) or :class:`~uvrsep.stems.StreamedStems`
    (written block by block as the separation goes; no file appears unless all complete).
    """
    if not isinstance(stems, StreamedStems):
        stems = stems.as_stream()  # one block: the same writer serves both
    sr = stems.sample_rate
    out_sr = sample_rate or sr
    channels = 1 if mono else 2
    writers: dict[str, AudioStreamWriter] = {}
    # soxr_hq run as a stream: the same samples as librosa's one-call soxr_hq resampling.
    converters = {name: soxr.ResampleStream(sr, out_sr, channels, dtype="float32", quality="soxr_hq")
                  for name in targets} if out_sr != sr else {}
    # librosa's length rule for a resampled signal (its fix_length pads or trims to it).
    length = int(np.ceil(stems.n_samples * (float(out_sr) / sr))) if converters else stems.n_samples
    written = dict.fromkeys(targets, 0)

    def put(name: str, wave: np.ndarray) -> None:
        wave = wave[:, : length - written[name]]
        writers[name].write(wave)
        written[name] += wave.shape[1]

    try:
        for name, path in targets.items():
            writers[name] = AudioStreamWriter(path, out_sr, channels, bit_depth=bit_depth, overwrite=overwrite)
        for chunk in stems:
            for name in writers:
                put(name, _convert(chunk[name], converters.get(name), mono, last=False))
        for name, writer in writers.items():
            if name in converters:
                put(name, _convert(np.zeros((channels, 0), np.float32), converters[name], mono, last=True))
            put(name, np.zeros((channels, length - written[name]), np.float32))
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        stems.close()
        raise
    return targets


def _convert(wave: np.ndarray, converter, mono: bool, last: bool) -> np.ndarray:
    if mono and wave.shape[0] > 1:
        wave = wave.mean(axis=0, keepdims=True)
    if converter is None:
        return wave
    return converter.resample_chunk(np.ascontiguousarray(wave.T), last=last).T


@dataclass
class ItemResult:
    """What happened to one input."""

    input: str
    status: str  # "ok", "skipped" or "failed"
    outputs: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    seconds: float = 0.0
    error: str = ""


@dataclass
class BatchReport:
    results: list[ItemResult] = field(default_factory=list)
    wall_seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def audio_hours(self) -> float:
        return sum(r.duration_s for r in self.results if r.status == "ok") / 3600

    def summary(self) -> str:
        hours = self.audio_hours
        rtf = hours * 3600 / self.wall_seconds if self.wall_seconds > 0 else 0.0
        return (
            f"{self.count('ok')} processed, {self.count('skipped')} skipped, {self.count('failed')} failed; "
            f"{hours:.3f} h of audio in {self.wall_seconds:.1f} s ({rtf:.1f}x real time)"
        )


class Manifest:
    """JSONL record of a batch, one line per input and run; lets a re-run resume."""

    def __init__(self, path: Path | None):
        self.path = path
        self.done: dict[str, list[str]] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if rec.get("status") == "ok":
                    self.done[rec["input"]] = rec.get("outputs", [])
                elif rec.get("input") in self.done and rec.get("status") == "failed":
                    self.done.pop(rec["input"])

    def finished(self, item: InputItem) -> bool:
        outputs = self.done.get(str(item.path))
        return bool(outputs) and all(Path(p).is_file() for p in outputs)

    def record(self, result: ItemResult) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result.__dict__, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def find_conflicts(items: list[InputItem], plan: OutputPlan, stems: tuple[str, ...]) -> list[str]:
    """Output paths that two inputs would both write (reported before any work starts)."""
    owners: dict[Path, Path] = {}
    conflicts = []
    for item in items:
        for path in plan.paths(item, stems).values():
            key = path.resolve()
            if key in owners and owners[key] != item.path:
                conflicts.append(f"{owners[key]} and {item.path} would both write {path}")
            owners.setdefault(key, item.path)
    return conflicts


def run_batch(
    separator,
    items: list[InputItem],
    plan: OutputPlan,
    *,
    manifest: Manifest | None = None,
    group_windows: int = 8,
    on_result: Callable[[ItemResult], None] | None = None,
) -> BatchReport:
    """Separate ``items`` and write their stems; one bad input never stops the batch.

    Inputs whose outputs all exist (or that the manifest lists as done) are skipped unless
    ``plan.overwrite``; short clips share network calls (:meth:`Separator.separate_batch`).
    """
    manifest = manifest or Manifest(None)
    report = BatchReport()
    started = time.perf_counter()
    stems = plan.stems or (separator.primary, separator.secondary)

    def finish(result: ItemResult) -> None:
        report.results.append(result)
        manifest.record(result)
        if on_result is not None:
            on_result(result)

    todo: dict[Path, InputItem] = {}
    for item in items:
        targets = plan.paths(item, stems)
        existing = [p for p in targets.values() if p.exists()]
        if not plan.overwrite and (manifest.finished(item) or len(existing) == len(targets)):
            finish(ItemResult(str(item.path), "skipped", [str(p) for p in targets.values()], error="outputs exist"))
        elif not plan.overwrite and existing:
            finish(ItemResult(str(item.path), "skipped", error=f"{', '.join(map(str, existing))} exist(s); --overwrite replaces"))
        else:
            todo[item.path] = item
    try:
        clock = time.perf_counter()
        for path, outcome in separator.separate_batch(list(todo), group_windows=group_windows):
            item = todo[path]
            elapsed, clock = time.perf_counter() - clock, time.perf_counter()
            if isinstance(outcome, Exception):
                message = str(outcome) if isinstance(outcome, UvrsepError) else f"{path}: {type(outcome).__name__}: {outcome}"
                finish(ItemResult(str(path), "failed", error=message))
                continue
            seconds = outcome.duration
            try:
                written = plan.write(outcome, item)
            except (AudioWriteError, OSError) as exc:
                finish(ItemResult(str(path), "failed", duration_s=seconds, error=str(exc)))
                continue
            except ITEM_ERRORS as exc:  # a long input fails while it is separated and written
                message = str(exc) if isinstance(exc, UvrsepError) else f"{path}: {type(exc).__name__}: {exc}"
                finish(ItemResult(str(path), "failed", duration_s=seconds, error=message))
                continue
            finish(ItemResult(str(path), "ok", [str(p) for p in written.values()], round(seconds, 3),
                              round(elapsed + time.perf_counter() - clock, 3)))
            clock = time.perf_counter()
    finally:
        report.wall_seconds = time.perf_counter() - started
    return report
