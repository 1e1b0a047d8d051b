"""A batch's manifest: the JSONL record of what happened to each input (:class:`ItemResult`),
read to resume a run, appended as each input is decided, shared safely by concurrent runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock

from ..audio import check_output_dir
from ..errors import ConfigError
from ..naming import InputItem
from .inputs import MAX_LINE_BYTES, bounded_lines, regular_file


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
    #: The clip's measures (:func:`uvrsep.report.measure_clip`'s dict) for an ``ok`` input
    #: separated now; ``None`` otherwise (failed, skipped, or found done by a Ray run's recovery).
    measures: dict | None = None


class Manifest:
    """JSONL record of a batch, one line per event; a re-run with it resumes.

    Format (one JSON object per line, UTF-8, append-only): ``input`` (path as given),
    ``status`` (``ok`` / ``skipped`` / ``failed``), ``outputs`` (paths written or found),
    ``duration_s`` (seconds of audio), ``seconds`` (processing time; clips that shared network
    calls share its time by their windows), ``error`` (one line), ``measures`` (an input
    separated and written now: its per-clip measures, i.e. levels, voice share and activity,
    music left; docs/report.md; ``null`` in other records), then the fields of ``run`` that
    every record of this run carries (``uvrsep separate``: ``model``, the models as ``{model}``
    names them, and for an ensemble ``ensemble``: its ``algorithm`` and ``weights``). The last
    record of an input wins. An input whose last record is ``ok`` with exactly the outputs asked
    for now, all present, is finished: a re-run skips it and writes no new record. Each record is
    appended and flushed to disk as soon as its input is decided (an input's ``ok`` once its
    stems are in place), so a run stopped in any way leaves a record for every finished input.

    Runs may share a manifest: records are appended under a lock file beside it
    (``<manifest>.lock``; in the cache's ``locks/`` when its folder is read-only), and a ``skipped`` record never follows an ``ok`` of the same input,
    whichever run wrote it. Unreadable lines (a line cut by a kill, stray text, a line over
    :data:`MAX_LINE_BYTES`, JSON nested too deeply) are skipped with one warning each and never
    swallow the next record. The manifest must be a regular file (or not exist yet).
    """

    def __init__(self, path: Path | None, run: dict | None = None):
        self.path = Path(path) if path is not None else None
        self.run = dict(run or {})
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
                from ..hub import home_dir

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
        last, warnings, self._lines = read_records(fh, self.path, self._lines)
        self.last.update(last)
        self.warnings += warnings
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
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(self._lock), open(self.path, "a+b") as fh:
                    fh.seek(self._offset)
                    self._parse(fh, whole=False)  # what other runs recorded meanwhile
                    if self._remember(result):
                        _append_line(
                            fh, (json.dumps(self.last[result.input], ensure_ascii=False) + "\n").encode("utf-8")
                        )
                        self._offset = fh.tell()
                        self._lines += 1
            except OSError as exc:
                reason = "disk full" if exc.errno in (28, 122) else (exc.strerror or str(exc))
                self.write_error = (
                    f"--manifest {self.path}: cannot be written ({reason}); "
                    "resuming from it will redo this run's inputs"
                )

    def _remember(self, result: ItemResult) -> bool:
        """Take ``result`` as its input's last record; whether it says something new (a
        ``skipped`` after an ``ok`` or ``skipped`` of the same input does not)."""
        previous = self.last.get(result.input)
        if result.status == "skipped" and previous is not None and previous["status"] != "failed":
            return False
        self.last[result.input] = {**result.__dict__, **self.run}
        return True


def read_records(fh: BinaryIO, path: object, lines_before: int = 0) -> tuple[dict[str, dict], list[str], int]:
    """The records of a manifest stream from its position on: ``(last record of each input, in
    the order inputs first appear; one warning per unreadable line; the line count so far)``.
    ``lines_before`` numbers the lines of a stream read from the middle of the file."""
    last: dict[str, dict] = {}
    warnings = []
    number = lines_before
    for _, line in bounded_lines(fh):
        number += 1
        if line is not None and not line.strip():
            continue
        rec, problem = _parse_record(line) if line is not None else (None, f"over {MAX_LINE_BYTES} bytes")
        if rec is None:
            warnings.append(f"{path}:{number}: unreadable manifest line skipped ({problem})")
        else:
            last[rec["input"]] = rec
    return last, warnings, number


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
