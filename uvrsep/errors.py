"""The small exception hierarchy of uvrsep.

Every error a user can cause (a missing file, unreadable audio, a weight file that does not fit,
a band configuration that makes no sense) is a :class:`UvrsepError`. The CLI prints its message
on one line and exits non-zero; it never shows a traceback for these.

    UvrsepError
    ├── ConfigError                  bad setting, band config or model name
    ├── AudioReadError               missing / unreadable input
    │   ├── EmptyAudioError          zero samples
    │   └── UnsupportedFormatError   no decoder for it, or no audio stream
    ├── AudioWriteError              output folder not writable, output exists, ...
    ├── IncompatibleCheckpointError  weights unreadable or not fitting
    ├── OutOfMemoryError             the network ran out of memory
    └── (hub) DownloadError           a model could not be downloaded (one line, with what to do)
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


class IncompatibleCheckpointError(UvrsepError, ValueError):
    """A weight file is unreadable or does not fit the network it is loaded into."""


class OutOfMemoryError(UvrsepError, MemoryError):
    """The network ran out of (GPU or CPU) memory; a smaller --batch-size may help."""


#: Errors that fail one input of a batch and let the batch go on (anything else stops it).
ITEM_ERRORS = (UvrsepError, MemoryError, RuntimeError, ValueError, OSError)
