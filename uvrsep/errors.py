"""The small exception hierarchy of uvrsep.

Every error a user can cause (a missing file, unreadable audio, a weight file that does not fit,
a band configuration that makes no sense) is a :class:`UvrsepError`. The CLI prints its message
on one line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class UvrsepError(Exception):
    """Base class of every error uvrsep raises on purpose."""


class ConfigError(UvrsepError, ValueError):
    """A band configuration or a setting is wrong or unknown."""


class AudioReadError(UvrsepError, OSError):
    """An input file is missing, unreadable or holds no usable audio."""


class AudioWriteError(UvrsepError, OSError):
    """An output file could not be written (or would overwrite something it must not)."""


class IncompatibleCheckpointError(UvrsepError, ValueError):
    """A weight file is unreadable or does not fit the network it is loaded into."""
