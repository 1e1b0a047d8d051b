"""A batch's output plan: where each stem of each input goes (:class:`OutputPlan`), what stops a
run before any work (outputs two inputs share, outputs that would replace an input:
:func:`find_conflicts`), and each input's fate decided before any model is loaded
(:func:`plan_batch`: failed, finished, skipped, or a :class:`Job`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import (
    check_input_file,
    check_output_settings,
    complete_interrupted,
    duration_seconds,
)
from ..errors import ITEM_ERRORS, AudioWriteError, ConfigError, one_line, option
from ..naming import DEFAULT_TEMPLATE, InputItem, check_template, output_paths
from .manifest import ItemResult, Manifest


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
        return output_paths(
            item,
            tuple(stems),
            output_dir=self.output_dir,
            template=self.template,
            fmt=self.fmt,
            model=self.model,
            mirror_tree=self.mirror_tree,
            contained=contained,
        )


def select_stems(wanted: str | Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """The stems to write: ``wanted`` (labels, or one comma-separated string; repeats dropped,
    order kept) checked against the ``available`` ones, or all of them for ``None``; a
    :class:`ConfigError` for an unknown label or an empty choice."""
    if wanted is None:
        return tuple(available)
    parts = wanted.split(",") if isinstance(wanted, str) else wanted
    chosen = tuple(dict.fromkeys(v.strip() for v in parts if v.strip()))
    if not chosen or any(v not in available for v in chosen):
        shown = wanted if isinstance(wanted, str) else ",".join(wanted)
        raise ConfigError(f"{option('stems')} {shown!r}: this model writes {', '.join(available)}")
    return chosen


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
        example = (
            "{name}_{input_ext}_{stem}.{ext}"
            if not self.other_folders
            else (
                "{parent}/{name}_{stem}.{ext}" if not self.same_folder else "{parent}/{name}_{input_ext}_{stem}.{ext}"
            )
        )
        return (
            f"put {' and '.join(fields)} in --name-template (e.g. '{example}')"
            + (" or use --mirror-tree" if self.other_folders and not self.same_folder else "")
            + " to keep them apart"
        )


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
            raise AudioWriteError(
                f"{path}: a folder or special file stands at this output name; "
                "remove it or choose another --name-template"
            )


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
                done.append(
                    ItemResult(str(item.path), "skipped", [str(p) for p in targets.values()], error="done (manifest)")
                )
                continue
            existing = [p for p in targets.values() if p.exists()]
            if len(existing) == len(targets):
                done.append(
                    ItemResult(str(item.path), "skipped", [str(p) for p in targets.values()], error="outputs exist")
                )
                continue
            if existing and complete_interrupted(targets.values()):  # a killed run's, finished now
                done.append(
                    ItemResult(str(item.path), "ok", [str(p) for p in targets.values()], _duration_or_zero(item.path))
                )
                continue
            if existing:
                done.append(
                    ItemResult(
                        str(item.path),
                        "skipped",
                        error=f"{', '.join(map(str, existing))} exist(s); --overwrite replaces",
                    )
                )
                continue
        try:
            duration = duration_seconds(item.path)
        except ITEM_ERRORS as exc:
            done.append(ItemResult(str(item.path), "failed", error=one_line(exc, item.path)))
            continue
        jobs.append(Job(item, targets, duration))
    return BatchPlan(jobs, done)
