"""uvrsep: vocal / accompaniment separation with UVR5's VR-architecture models.

Public API::

    from uvrsep import Separator
    sep = Separator("HP2_all_vocals.pth", device="auto")
    stems = sep.separate("song.wav")          # stems["vocals"], stems["instrumental"]: [2, T]
    stems.write("out/", "song")               # out/song_vocals.wav, out/song_instrumental.wav

``Separator()`` with no model uses the default (``HP2_all_vocals``, downloaded on first use).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("uvrsep")
except PackageNotFoundError:  # running from a source checkout
    __version__ = "0.1.0"

from .config import BandLayout, list_band_layouts, load_band_layout
from .errors import (
    AudioReadError,
    AudioWriteError,
    ConfigError,
    EmptyAudioError,
    IncompatibleCheckpointError,
    OutOfMemoryError,
    UnsupportedFormatError,
    UvrsepError,
)
from .lazy import lazy_names

#: Names imported on first use: they bring in torch (seconds), which `uvrsep --help` must not pay.
_LAZY = {
    "Separator": ".separator",
    "Ensemble": ".separator",
    "Stems": ".stems",
    "StreamedStems": ".stems",
    "Chain": ".chain",
}

__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)


__all__ = [
    "AudioReadError",
    "AudioWriteError",
    "BandLayout",
    "Chain",
    "ConfigError",
    "EmptyAudioError",
    "Ensemble",
    "IncompatibleCheckpointError",
    "OutOfMemoryError",
    "Separator",
    "Stems",
    "StreamedStems",
    "UnsupportedFormatError",
    "UvrsepError",
    "__version__",
    "list_band_layouts",
    "load_band_layout",
]
