"""A batch's progress and summary: a terminal bar, or log lines at least every 30 s, and the
one-line summary at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from .manifest import ItemResult


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``0:00:07``, ``12:03:45``)."""
    total = round(max(0.0, seconds))
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
        text = (
            f"{self.count('ok')} processed, {self.count('skipped')} skipped, {self.count('failed')} failed; "
            f"{format_duration(audio)} of audio in {format_duration(wall)}"
        )
        if audio > 0 and wall > 0:
            ratio = audio / wall
            text += (
                f" ({ratio:.1f}x faster than real time)" if ratio >= 1 else f" ({1 / ratio:.1f}x slower than real time)"
            )
        if self.manifest_warnings:
            text += f"; {self.manifest_warnings} unreadable manifest line(s) skipped"
        return text


class BatchProgress:
    """Progress of a batch in seconds of audio, also inside a long file.

    On a terminal: a tqdm bar. Otherwise (logs of long jobs): one line at least every
    ``interval`` seconds (files, audio done of total, elapsed, ETA), from a background timer, so
    a long file or segment still shows the run is alive; :meth:`close` prints the last one, at
    the :attr:`elapsed` time the summary gives. :meth:`write` prints a message line without
    breaking the bar.
    """

    def __init__(
        self,
        total_seconds: float,
        total_files: int,
        *,
        stream: TextIO | None = None,
        interval: float = 30.0,
        terminal: bool | None = None,
    ):
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
            self.bar = tqdm(
                total=round(total_seconds, 3),
                unit="s",
                unit_scale=False,
                file=self.stream,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}] {postfix}",
                dynamic_ncols=True,
                leave=False,
            )
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
        bar = self.bar
        if bar is None:
            return
        step = min(round(seconds, 3), bar.total - bar.n)
        if step > 0:
            bar.update(step)

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
            print(
                f"progress: {self.files}/{self.files_total} files, {format_duration(done)} of "
                f"{format_duration(self.total)} audio, {format_duration(elapsed)} elapsed, ETA {eta}",
                file=self.stream,
                flush=True,
            )

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            with self._lock:
                print(line, file=self.stream, flush=True)

    def close(self, *, failed: bool = False) -> None:
        """End the bar or the timer; off a terminal, print the last progress line (after a
        ``failed`` run only if some work was done: an error before the first input stays one line)."""
        if self.closed_at is not None:
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        self.closed_at = time.monotonic()
        if self.bar is not None:
            self.bar.close()
        elif self.files_total and (not failed or self.files or self.done):
            self._maybe_line(force=True)
