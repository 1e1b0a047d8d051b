"""The report's table: one row per clip of a manifest, its columns, its flags, and the CSV.

A manifest is JSONL, one record per event (see :class:`uvrsep.batch.Manifest`); the last record
of an input wins, and clips keep the order in which their inputs first appear. A record with
``measures`` (:func:`uvrsep.report.measures.measure_clip`'s dict) fills the measure columns;
one without (an older run, a failed or skipped input) leaves them empty.

Columns, in order (``key``: what; the CSV header is the key):

- ``input``, ``status``, ``flags`` (the flag names, ``;``-separated), ``duration_s``,
  ``voice_stem``, ``voice_share``, ``voice_active`` (fractions 0-1), ``music_left_db``,
  ``clipped``, ``input_peak_dbfs``, ``input_rms_dbfs``;
- per stem name (in the order first seen): ``<stem>.peak_dbfs``, ``<stem>.rms_dbfs``,
  ``<stem>.clipped``;
- ``error``.

Flags (:class:`Thresholds`, each settable): ``music left`` when ``music_left_db`` is above
``music_left_db`` (default −20 dB); ``little voice`` when ``voice_share`` is below
``voice_share`` (default 0.05); ``voice rarely active`` when ``voice_active`` is below
``voice_active`` (default 0.10); ``clipped`` when ``clipped`` is above ``clipped`` (default 0
samples); ``failed`` for a failed input.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..batch.inputs import regular_file
from ..batch.manifest import read_records
from ..errors import ConfigError, option


@dataclass(frozen=True)
class Thresholds:
    """When a clip is flagged (see the module docstring); checked on creation."""

    music_left_db: float = -20.0  # flag above (dB)
    voice_share: float = 0.05  # flag below (0-1)
    voice_active: float = 0.10  # flag below (0-1)
    clipped: int = 0  # flag above (samples)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            name = option(f"flag_{f.name}", f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name}: must be a number, got {value!r}")
            if f.name in ("voice_share", "voice_active") and not 0 <= value <= 1:
                raise ConfigError(f"{name} {value}: must be a fraction from 0 to 1")
            if f.name == "clipped" and (value < 0 or value != int(value)):
                raise ConfigError(f"{name} {value}: must be a whole number of samples, 0 or more")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # "text", "number", "fraction" (0-1, shown as %), "db", "count"
    help: str = ""


FIXED_COLUMNS = (
    Column("input", "clip", "text", "the input as the manifest names it"),
    Column("status", "status", "text", "ok, skipped or failed (the last record of the input)"),
    Column("flags", "flags", "text", "why the clip is suspect (thresholds above)"),
    Column("duration_s", "duration s", "number", "seconds of audio"),
    Column("voice_stem", "voice stem", "text", "the stem measured as the voice"),
    Column("voice_share", "voice share", "fraction", "voice stem's energy / all stems' energy"),
    Column("voice_active", "voice active", "fraction", "share of the duration in which the voice stem is active"),
    Column(
        "music_left_db",
        "music left dB",
        "db",
        "median level of the voice stem in its pauses relative to the input (higher: more left)",
    ),
    Column("clipped", "clipped", "count", "samples over full scale, all stems"),
    Column("input_peak_dbfs", "input peak dBFS", "db", "input's peak"),
    Column("input_rms_dbfs", "input RMS dBFS", "db", "input's RMS level"),
)
ERROR_COLUMN = Column("error", "error", "text", "why the input failed")


@dataclass
class ClipRow:
    """One clip: its last manifest record, the values of the columns and its flags."""

    record: dict
    values: dict = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def measures(self) -> dict | None:
        m = self.record.get("measures")
        return m if isinstance(m, dict) else None


def read_manifest(path: Path) -> tuple[list[dict], list[str]]:
    """The last record of every input of the manifest at ``path``, in the order inputs first
    appear, and one warning per unreadable line (read as a run resuming from it reads it). A
    :class:`ConfigError` when it cannot be read."""
    regular_file(path, "manifest")
    try:
        with open(path, "rb") as fh:
            last, warnings, _ = read_records(fh, path)
    except OSError as exc:
        raise ConfigError(f"manifest {path}: cannot be read ({exc.strerror or exc})") from None
    return list(last.values()), warnings


def _number(value: object) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _stem_names(rows_measures: list[dict | None]) -> list[str]:
    names: dict[str, None] = {}
    for m in rows_measures:
        stems = m.get("stems") if m else None
        if isinstance(stems, dict):
            names.update(dict.fromkeys(name for name in stems if isinstance(name, str)))
    return list(names)


def columns_for(stem_names: list[str]) -> list[Column]:
    """The table's columns for clips with these stems."""
    per_stem = [
        Column(f"{name}.{what}", f"{name} {label}", kind, f"{name} stem's {label}")
        for name in stem_names
        for what, label, kind in (
            ("peak_dbfs", "peak dBFS", "db"),
            ("rms_dbfs", "RMS dBFS", "db"),
            ("clipped", "clipped", "count"),
        )
    ]
    return [*FIXED_COLUMNS, *per_stem, ERROR_COLUMN]


def _values(record: dict, measures: dict | None) -> dict:
    m = measures or {}
    levels: dict = m["input"] if isinstance(m.get("input"), dict) else {}
    values = {
        "input": record["input"],
        "status": record["status"],
        "duration_s": _number(m.get("duration_s", record.get("duration_s"))),
        "voice_stem": m.get("voice_stem") if isinstance(m.get("voice_stem"), str) else None,
        "voice_share": _number(m.get("voice_share")),
        "voice_active": _number(m.get("voice_active")),
        "music_left_db": _number(m.get("music_left_db")),
        "clipped": _number(m.get("clipped")),
        "input_peak_dbfs": _number(levels.get("peak_dbfs")),
        "input_rms_dbfs": _number(levels.get("rms_dbfs")),
        "error": record.get("error") if isinstance(record.get("error"), str) else "",
    }
    stems: dict = m["stems"] if isinstance(m.get("stems"), dict) else {}
    for name, stem in stems.items():
        if isinstance(stem, dict):
            for what in ("peak_dbfs", "rms_dbfs", "clipped"):
                values[f"{name}.{what}"] = _number(stem.get(what))
    return values


def flags_for(values: dict, thresholds: Thresholds) -> list[str]:
    """The flags a clip's column values raise."""
    flags = []
    if values["status"] == "failed":
        flags.append("failed")
    checks = (
        ("music left", "music_left_db", lambda v: v > thresholds.music_left_db),
        ("little voice", "voice_share", lambda v: v < thresholds.voice_share),
        ("voice rarely active", "voice_active", lambda v: v < thresholds.voice_active),
        ("clipped", "clipped", lambda v: v > thresholds.clipped),
    )
    flags += [name for name, key, test in checks if values.get(key) is not None and test(values[key])]
    return flags


def clip_rows(records: list[dict], thresholds: Thresholds) -> tuple[list[Column], list[ClipRow]]:
    """The columns and one :class:`ClipRow` per record."""
    rows = [ClipRow(rec) for rec in records]
    columns = columns_for(_stem_names([row.measures for row in rows]))
    for row in rows:
        row.values = _values(row.record, row.measures)
        row.flags = flags_for(row.values, thresholds)
        row.values["flags"] = "; ".join(row.flags)
    return columns, rows


def csv_text(columns: list[Column], rows: list[ClipRow]) -> str:
    """The table as CSV: a header of column keys, one line per clip; empty cells where a
    measure is missing."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow(["" if row.values.get(c.key) is None else row.values[c.key] for c in columns])
    return out.getvalue()


def _tokens(text: str) -> list[str]:
    return re.findall(r"[0-9a-z]+", text.lower())


def output_labels(outputs: list[str]) -> list[str]:
    """What tells a record's outputs apart: each path without the start and end all of them
    share (cut at a separator, so ``a_voc.wav`` / ``a_vocals.wav`` give ``voc`` / ``vocals``); a
    lone output's label is its file name without extension."""
    if len(outputs) < 2:
        return [Path(p).stem for p in outputs]
    start = len(os.path.commonprefix(outputs))
    end = min(len(os.path.commonprefix([p[::-1] for p in outputs])), min(map(len, outputs)) - start)
    first = outputs[0]
    while start > 0 and first[start - 1].isalnum():
        start -= 1
    while end > 0 and first[len(first) - end].isalnum():
        end -= 1
    return [p[start : len(p) - end] or Path(p).stem for p in outputs]


def voice_output(outputs: list[str], voice_stem: str | None) -> str | None:
    """The output that holds the voice stem: the one whose label (:func:`output_labels`) is the
    stem's name (compared as lower-case words), else the only one whose label contains it; else None."""
    if not voice_stem or not _tokens(voice_stem):
        return None
    want = _tokens(voice_stem)
    labels = [_tokens(label) for label in output_labels(outputs)]
    exact = [p for p, label in zip(outputs, labels) if label == want]
    if len(exact) == 1:
        return exact[0]
    n = len(want)
    within = [
        p for p, label in zip(outputs, labels) if any(label[i : i + n] == want for i in range(len(label) - n + 1))
    ]
    return within[0] if len(within) == 1 else None
