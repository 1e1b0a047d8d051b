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


def one_line(exc: BaseException, path: object = None) -> str:
    """A one-line reason for a failed input: a :class:`UvrsepError`'s own message (which names
    the file), else ``"<path>: <Type>: <first line>"`` for anything a library raised."""
    if isinstance(exc, UvrsepError):
        text = str(exc)
    else:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if path is not None:
            text = f"{path}: {text}"
    return " ".join(text.split())
