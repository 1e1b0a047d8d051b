"""Band layouts: the multi-band STFT recipes of UVR's VR models, as typed, validated objects.

UVR describes each recipe in a "model parameter" JSON (``configs/bands/*.json``, copied unchanged
from UVR). :func:`load_band_layout` parses one by name or path into a :class:`BandLayout`.
Quirks of those files that are accepted on purpose:

- some name the bin count ``n_bins`` instead of ``bins``;
- ``hpf_stop < hpf_start`` is normal (the high-pass ramps *down* from start to stop);
- ``pre_filter_start <= 0`` means "no pre-filter";
- the flags ``mid_side_b`` and ``stereo_w`` are accepted and ignored, as the original does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, option
from .resources import resource_dir

#: Resamplers a band may name, and the library whose numbers each reproduces (as ``librosa.resample``
#: calls it; uvrsep.dsp computes the first five in torch, the others through ``samplerate``).
RESAMPLERS = {
    "kaiser_fast": "resampy",
    "kaiser_best": "resampy",
    "polyphase": "scipy.signal.resample_poly",
    "scipy": "scipy.signal.resample",
    "fft": "scipy.signal.resample",
    "sinc_best": "samplerate",
    "sinc_medium": "samplerate",
    "sinc_fastest": "samplerate",
    "linear": "samplerate",
    "zero_order_hold": "samplerate",
}

#: Channel transforms applied before the STFT (and undone after the iSTFT).
STEREO_MODES = ("stereo", "mid_side", "mid_side_b2", "reverse")
#: Per-band channel transforms a band may name (``convert_channels``; UVR applies them to VR 5.1 nets).
CONVERT_CHANNELS = ("mid_side", "mid_side_c", "stereo_n")
#: Shapes of the pre-filter on the combined spectrogram's top rows: UVR's recursive gains
#: (a low-pass ramp for 1-band layouts), or the linear ramp UVR uses for VR 5.1 nets.
PRE_FILTER_SHAPES = ("gains", "ramp")


@dataclass(frozen=True)
class Band:
    """One band: the mix resampled to ``sample_rate`` and STFT'd with ``n_fft`` / ``hop_length``.

    ``crop`` is the half-open range of this band's STFT rows that go into the combined
    spectrogram. ``lowpass`` / ``highpass`` are the (start, stop) rows of the synthesis
    filters, ``None`` where the band has none. ``convert_channels`` is the band's own channel
    transform (:data:`CONVERT_CHANNELS`), which only UVR's VR 5.1 path uses.
    """

    sample_rate: int
    hop_length: int
    n_fft: int
    crop: tuple[int, int]
    resample_type: str
    lowpass: tuple[int, int] | None = None
    highpass: tuple[int, int] | None = None
    convert_channels: str | None = None

    @property
    def n_rows(self) -> int:
        """Number of STFT rows of this band (``n_fft // 2 + 1``)."""
        return self.n_fft // 2 + 1

    @property
    def width(self) -> int:
        """Number of rows this band contributes to the combined spectrogram."""
        return self.crop[1] - self.crop[0]


@dataclass(frozen=True)
class BandLayout:
    """A whole multi-band recipe. ``bands`` run from the lowest to the highest (full-rate) band.

    The combined spectrogram has ``bins + 1`` rows; the network sees the first ``bins``.

    The last three fields say how the recipe is carried out; a JSON file gives RVC's way, and
    UVR's semantics derive their own with :func:`dataclasses.replace`:

    - ``channel_modes``: the channel transform of each band (default: ``stereo_mode`` for all);
    - ``synthesis_resamplers``: the resampler taking band ``i``'s partial sum up to band
      ``i + 1``'s rate (default RVC's: ``sinc_fastest`` from band 1, FFT resampling above);
    - ``pre_filter_shape``: one of :data:`PRE_FILTER_SHAPES` (default ``gains``).
    """

    name: str
    sample_rate: int
    bins: int
    bands: tuple[Band, ...]
    pre_filter: tuple[int, int] | None
    stereo_mode: str = "stereo"
    channel_modes: tuple[str, ...] = ()
    synthesis_resamplers: tuple[str, ...] = ()
    pre_filter_shape: str = "gains"

    def __post_init__(self) -> None:
        if not self.channel_modes:
            object.__setattr__(self, "channel_modes", (self.stereo_mode,) * len(self.bands))
        if not self.synthesis_resamplers:
            rvc = tuple("sinc_fastest" if i == 0 else "scipy" for i in range(len(self.bands) - 1))
            object.__setattr__(self, "synthesis_resamplers", rvc)
        if len(self.channel_modes) != len(self.bands) or len(self.synthesis_resamplers) != len(self.bands) - 1:
            raise ConfigError(f"band config {self.name}: one channel mode per band and one resampler per step")
        if self.pre_filter_shape not in PRE_FILTER_SHAPES:
            raise ConfigError(f"band config {self.name}: unknown pre-filter shape {self.pre_filter_shape!r}")

    @property
    def top(self) -> Band:
        """The full-rate band (read from the file, the last one synthesised)."""
        return self.bands[-1]

    @property
    def split_bin(self) -> int:
        """Row where aggressiveness switches from the gentle to the strong exponent."""
        return self.bands[0].crop[1]

    @property
    def high_end_rows(self) -> int:
        """Rows of the top band that high-end mirroring replaces (0: none)."""
        top = self.top
        pre = (self.pre_filter[1] - self.pre_filter[0]) if self.pre_filter else 0
        return (top.n_fft // 2 - top.crop[1]) + pre


def _int(raw: dict[str, Any], key: str, where: str) -> int:
    if key not in raw:
        raise ConfigError(f"{where}: missing '{key}'")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
    return value


def _optional_pair(raw: dict[str, Any], start: str, stop: str, where: str) -> tuple[int, int] | None:
    if start not in raw and stop not in raw:
        return None
    begin = _int(raw, start, where)
    if begin <= 0 and stop not in raw:
        return None  # e.g. 1-band layouts: "hpf_start": -1 means no high-pass
    return begin, _int(raw, stop, where)


def _parse_band(raw: Any, where: str) -> Band:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a band must be an object, got {type(raw).__name__}")
    sample_rate = _int(raw, "sr", where)
    hop_length = _int(raw, "hl", where)
    n_fft = _int(raw, "n_fft", where)
    crop = (_int(raw, "crop_start", where), _int(raw, "crop_stop", where))
    resample_type = raw.get("res_type")
    if resample_type not in RESAMPLERS:
        raise ConfigError(f"{where}: unknown res_type {resample_type!r} (known: {', '.join(RESAMPLERS)})")
    convert_channels = raw.get("convert_channels")
    if convert_channels is not None and convert_channels not in CONVERT_CHANNELS:
        raise ConfigError(
            f"{where}: unknown convert_channels {convert_channels!r} (known: {', '.join(CONVERT_CHANNELS)})"
        )
    if sample_rate <= 0 or hop_length <= 0 or n_fft <= 0 or n_fft % 2:
        raise ConfigError(f"{where}: sr, hl must be positive and n_fft positive and even")
    if not 0 <= crop[0] < crop[1] <= n_fft // 2 + 1:
        raise ConfigError(
            f"{where}: crop_start/crop_stop {crop} must satisfy 0 <= start < stop <= n_fft/2+1 = {n_fft // 2 + 1}"
        )
    return Band(
        sample_rate=sample_rate,
        hop_length=hop_length,
        n_fft=n_fft,
        crop=crop,
        resample_type=resample_type,
        lowpass=_optional_pair(raw, "lpf_start", "lpf_stop", where),
        highpass=_optional_pair(raw, "hpf_start", "hpf_stop", where),
        convert_channels=convert_channels,
    )


def parse_band_layout(raw: Any, name: str = "<dict>") -> BandLayout:
    """Build a validated :class:`BandLayout` from a UVR model-parameter dictionary."""
    if not isinstance(raw, dict):
        raise ConfigError(f"band config {name}: expected a JSON object")
    where = f"band config {name}"
    if "bins" in raw:
        bins = _int(raw, "bins", where)
    elif "n_bins" in raw:
        bins = _int(raw, "n_bins", where)
    else:
        raise ConfigError(f"{where}: missing 'bins' (or 'n_bins')")
    bands_raw = raw.get("band")
    if not isinstance(bands_raw, dict) or not bands_raw:
        raise ConfigError(f"{where}: missing 'band' object")
    expected = [str(i) for i in range(1, len(bands_raw) + 1)]
    if sorted(bands_raw, key=lambda k: (len(k), k)) != expected:
        raise ConfigError(f"{where}: bands must be numbered 1..{len(bands_raw)}, got {list(bands_raw)}")
    bands = tuple(_parse_band(bands_raw[k], f"{where}, band {k}") for k in expected)
    sample_rate = _int(raw, "sr", where)

    total = sum(b.width for b in bands)
    if total > bins:
        raise ConfigError(f"{where}: the bands' crops add up to {total} rows, more than bins={bins}")
    top = bands[-1]
    if top.sample_rate != sample_rate:
        raise ConfigError(f"{where}: top band sr {top.sample_rate} differs from the layout sr {sample_rate}")
    for i, band in enumerate(bands):
        # Every band must produce the same number of frames: hop/sr equal across bands.
        if band.hop_length * top.sample_rate != top.hop_length * band.sample_rate:
            raise ConfigError(f"{where}, band {i + 1}: hl/sr differs from the top band's")
        if len(bands) > 1:
            if i < len(bands) - 1 and band.lowpass is None:
                raise ConfigError(f"{where}, band {i + 1}: missing lpf_start/lpf_stop")
            if i > 0 and band.highpass is None:
                raise ConfigError(f"{where}, band {i + 1}: missing hpf_start/hpf_stop")

    pre_filter = None
    if raw.get("pre_filter_start", 0) > 0:
        pre_filter = (_int(raw, "pre_filter_start", where), _int(raw, "pre_filter_stop", where))
        if pre_filter[0] > bins:
            raise ConfigError(f"{where}: pre_filter_start {pre_filter[0]} is beyond bins={bins}")

    stereo_mode = "stereo"
    for mode in ("reverse", "mid_side", "mid_side_b2"):  # the original's order of precedence
        if raw.get(mode):
            stereo_mode = mode
            break
    return BandLayout(
        name=name,
        sample_rate=sample_rate,
        bins=bins,
        bands=bands,
        pre_filter=pre_filter,
        stereo_mode=stereo_mode,
    )


def band_layout_dir() -> Path:
    """Folder holding the shipped band configurations."""
    return resource_dir("configs") / "bands"


def list_band_layouts() -> list[str]:
    """Names of every shipped band configuration (e.g. ``4band_v2``)."""
    return sorted(p.stem for p in band_layout_dir().glob("*.json"))


def load_band_layout(name_or_path: str | Path, given_as: str | None = None) -> BandLayout:
    """Load a shipped band configuration by name (``"4band_v2"``) or a JSON file by path; an
    unknown one is a :class:`ConfigError` naming the setting ``given_as`` if given (``params``:
    ``--params`` on the command line)."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        shipped = band_layout_dir() / f"{name_or_path}.json"
        if not shipped.is_file():
            what = (
                f"{option(given_as, value=str(name_or_path))}: unknown band config"
                if given_as
                else f"unknown band config {str(name_or_path)!r}"
            )
            raise ConfigError(f"{what}; known: {', '.join(list_band_layouts())} (or give a path to a .json file)")
        path = shipped
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"band config {path}: cannot read it as JSON ({exc})") from None
    return parse_band_layout(raw, name=path.stem)
