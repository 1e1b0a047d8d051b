"""The small exception hierarchy of uvrsep.

Every error a user can cause (a missing file, unreadable audio, a weight file that does not fit,
a band configuration that makes no sense) is a :class:`UvrsepError`. The CLI prints its message
on one line and exits non-zero; it never shows a traceback for these.

    UvrsepError
    ├── ConfigError                  bad setting, band config or model name
    ├── AudioReadError               missing / unreadable input
    │   ├── EmptyAudioError          zero samples
    │   └── UnsupportedFormatError   no decoder for it, or no audio stream
    ├── AudioWriteError              output folder not writable, disk full, output exists, ...
    │   └── OutputExistsError        another process wrote the same output meanwhile
    ├── IncompatibleCheckpointError  weights unreadable or not fitting
    ├── OutOfMemoryError             the network ran out of memory
    └── (hub) DownloadError           a model could not be downloaded (one line, with what to do)

    KeyboardInterrupt
    └── Terminated                   SIGTERM (handled like Ctrl-C)
"""

from __future__ import annotations

import contextlib
import contextvars
import unicodedata
from collections.abc import Iterator


class UvrsepError(Exception):
    """Base class of every error uvrsep raises on purpose."""


class ConfigError(UvrsepError, ValueError):
    """A band configuration or a setting is wrong or unknown."""


class AudioReadError(UvrsepError, OSError):
    """An input file is missing, unreadable or holds no usable audio."""


class EmptyAudioError(AudioReadError):
    """An input decodes to zero samples (every input with at least one sample is separated)."""


class UnsupportedFormatError(AudioReadError):
    """An input no available decoder can read (or a video without an audio stream)."""


class AudioWriteError(UvrsepError, OSError):
    """An output file could not be written (or would overwrite something it must not)."""


class OutputExistsError(AudioWriteError):
    """An output appeared while it was being written (another run made it); it was kept."""


class IncompatibleCheckpointError(UvrsepError, ValueError):
    """A weight file is unreadable or does not fit the network it is loaded into."""


class OutOfMemoryError(UvrsepError, MemoryError):
    """The network ran out of (GPU or CPU) memory; a smaller --batch-size may help."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM, as ``timeout``, ``kill`` and job schedulers send).

    A :class:`KeyboardInterrupt`, so every clean-up that Ctrl-C runs runs for it too; the CLI
    exits with 143 for it (130 for Ctrl-C).
    """


#: Errors that fail one input of a batch and let the batch go on: any exception. Only an
#: interruption (Ctrl-C, SIGTERM: :class:`KeyboardInterrupt`) stops a batch.
ITEM_ERRORS = (Exception,)


def printable(text: str) -> str:
    """``text`` on one line, control characters escaped as Python writes them (a file name
    holding a newline shows as ``a\\nb``, never as two lines or as a space)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " " or unicodedata.category(ch) in ("Zs",):
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def one_line(exc: BaseException, path: object = None) -> str:
    """A one-line reason for a failed input: a :class:`UvrsepError`'s own message (which names
    the file), else ``"<path>: <Type>: <first line>"`` for anything a library raised. Control
    characters (in file names) are escaped, never collapsed."""
    if isinstance(exc, UvrsepError):
        return printable(str(exc))
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if path is not None:
        text = f"{path}: {text}"
    return printable(text)


#: Set while a command of the ``uvrsep`` CLI runs: messages then name options as flags.
_CLI: contextvars.ContextVar[bool] = contextvars.ContextVar("uvrsep_cli", default=False)


@contextlib.contextmanager
def cli_messages() -> Iterator[None]:
    """Within it, :func:`option` names settings as command-line flags (``--params``)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def in_cli() -> bool:
    """Whether a command of the ``uvrsep`` CLI is running (see :func:`cli_messages`)."""
    return _CLI.get()


def option(name: str, python: str | None = None, value: object = None) -> str:
    """How a message names the setting ``name`` (``batch_size``), with ``value`` if given: the
    flag on the command line (``--batch-size``, ``--batch-size 1``), the Python argument
    elsewhere (``batch_size``, ``batch_size=1``; ``python`` when the argument is named otherwise)."""
    if _CLI.get():
        flag = f"--{name.replace('_', '-')}"
        return flag if value is None or value is True else f"{flag} {value}"
    arg = python or name
    return arg if value is None else f"{arg}={value!r}" if isinstance(value, str) else f"{arg}={value}"
