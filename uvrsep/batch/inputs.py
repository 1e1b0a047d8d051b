"""A batch's inputs: files, folders (``--recursive``), globs and list files (``--from-list``,
``-`` for stdin), read within bounds: list files and manifests must be regular files, lines are
capped at :data:`MAX_LINE_BYTES`.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..audio import FFMPEG_EXTENSIONS, SOUNDFILE_EXTENSIONS
from ..errors import ConfigError
from ..naming import InputItem

AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS

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
                    raise ConfigError(
                        f"--from-list {name}: is not a UTF-8 text file (one input path per line)"
                    ) from None
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
    given = [str(s) for s in specs]
    if from_list is not None:
        given += read_list_file(from_list)
    items: list[InputItem] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path) -> None:
        key = Path(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            items.append(InputItem(path, root))

    for spec in given:
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                subfolders = not recursive and any(p.is_dir() for p in path.iterdir())
                problems.append(
                    (
                        spec,
                        "folder holds no audio files"
                        + (" (its subfolders may: add --recursive)" if subfolders else ""),
                    )
                )
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
