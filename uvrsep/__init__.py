"""uvrsep: vocal / accompaniment separation with UVR5's VR-architecture models.

Public API::

    from uvrsep import Separator
    sep = Separator("HP2_all_vocals.pth", device="auto")
    stems = sep.separate("song.wav")          # stems["vocals"], stems["instrumental"]: [2, T]
    stems.write("out/", "song")               # out/song_vocals.wav, out/song_instrumental.wav
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("uvrsep")
except PackageNotFoundError:  # running from a source checkout
    __version__ = "0.1.0"

from .config import BandLayout, list_band_layouts, load_band_layout  # noqa: E402
from .errors import (  # noqa: E402
    AudioReadError,
    AudioWriteError,
    ConfigError,
    EmptyAudioError,
    IncompatibleCheckpointError,
    OutOfMemoryError,
    UnsupportedFormatError,
    UvrsepError,
)
from .separator import Separator  # noqa: E402
from .stems import Stems  # noqa: E402

__all__ = [
    "AudioReadError",
    "AudioWriteError",
    "BandLayout",
    "ConfigError",
    "EmptyAudioError",
    "IncompatibleCheckpointError",
    "OutOfMemoryError",
    "Separator",
    "Stems",
    "UnsupportedFormatError",
    "UvrsepError",
    "__version__",
    "list_band_layouts",
    "load_band_layout",
]
