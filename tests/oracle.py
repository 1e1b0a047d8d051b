"""The original's DSP steps with librosa / scipy / resampy on the CPU: the tests' oracle.

uvrsep runs every step in torch (:mod:`uvrsep.dsp`, orchestrated by :mod:`uvrsep.bands`); these
are the same steps as the original computes them (RVC's / UVR's ``spec_utils`` with librosa 0.11,
resampy 0.4.3 and scipy), numpy in and out in the original's dtypes (complex64 analysis,
complex128 / float64 synthesis). The tests check the torch steps against them; the benchmarks
(``scripts/bench_dsp.py``) time them side by side. Nothing in the package imports this.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.signal

from uvrsep.config import Band, BandLayout


def resample(wave: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """``librosa.resample`` along the last axis (zeros for a resampy input shorter than one
    output sample, which resampy refuses and uvrsep gives as librosa's length of zeros)."""
    n = wave.shape[-1]
    if n == 0 or orig_sr == target_sr:
        return wave
    if res_type.startswith("kaiser") and n * target_sr < orig_sr:
        return np.zeros((*wave.shape[:-1], math.ceil(n * target_sr / orig_sr)), dtype=wave.dtype)
    return librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr, res_type=res_type)


def to_channels(wave: np.ndarray, mode: str) -> np.ndarray:
    """A band's channel transform (``BandLayout.channel_modes``) of a float32 ``[2, T]`` waveform."""
    left, right = wave[0], wave[1]
    if mode == "reverse":
        return np.stack([left[::-1], right[::-1]])
    if mode == "mid_side":
        return np.stack([np.add(left, right) / 2, np.subtract(left, right)])
    if mode == "mid_side_b2":
        return np.stack([np.add(right, left * 0.5), np.subtract(left, right * 0.5)])
    if mode == "mid_side_c":
        return np.stack([np.add(left, right * 0.25), np.subtract(right, left * 0.25)])
    if mode == "stereo_n":
        return np.stack([np.add(left, right * 0.25) / 0.9375, np.add(right, left * 0.25) / 0.9375])
    return wave


def from_channels(wave: np.ndarray, mode: str) -> np.ndarray:
    """Undo :func:`to_channels` (with the original's inverse formulas)."""
    left, right = wave[0], wave[1]
    if mode == "reverse":
        return np.stack([left[::-1], right[::-1]])
    if mode == "mid_side":
        return np.stack([np.add(left, right / 2), np.subtract(left, right / 2)])
    if mode == "mid_side_b2":
        return np.stack([np.add(right / 1.25, 0.4 * left), np.subtract(left / 1.25, 0.4 * right)])
    if mode == "mid_side_c":
        return np.stack([np.subtract(left / 1.0625, right / 4.25), np.add(right / 1.0625, left / 4.25)])
    if mode == "stereo_n":
        return np.stack([np.subtract(left, right * 0.25), np.subtract(right, left * 0.25)])
    return wave


def stft(wave: np.ndarray, band: Band, mode: str) -> np.ndarray:
    """STFT of a float32 ``[2, T]`` waveform (channel transform ``mode``): complex64 ``[2, n_fft/2 + 1, 1 + T // hop]``."""
    channels = to_channels(wave, mode)
    with warnings.catch_warnings():
        # Clips shorter than n_fft are fine: frames are zero-padded (centred STFT).
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        return np.stack(
            [librosa.stft(np.asfortranarray(ch), n_fft=band.n_fft, hop_length=band.hop_length) for ch in channels]
        )


def istft(spec: np.ndarray, band: Band, mode: str) -> np.ndarray:
    """Inverse of :func:`stft` for a ``[2, rows, frames]`` spectrogram (float64 for complex128 input)."""
    channels = [librosa.istft(ch, hop_length=band.hop_length) for ch in spec]
    return from_channels(np.stack(channels), mode)


def apply_lowpass(spec: np.ndarray, start: int, stop: int) -> None:
    """In place, UVR's ``fft_lp_filter``: ramp rows ``start .. stop-1`` down, zero rows ``>= stop`` (axis 1).

    The gain is a float64 scalar, so each row is scaled in double precision and stored in the
    array's dtype (what uvrsep does; the original scales complex64 rows in single precision,
    which differs by rounding only)."""
    g = np.float64(1.0)
    for row in range(start, stop):
        g -= 1 / (stop - start)
        spec[:, row, :] = g * spec[:, row, :]
    spec[:, max(stop, 0) :, :] = 0


def apply_highpass(spec: np.ndarray, start: int, stop: int) -> None:
    """In place, UVR's ``fft_hp_filter``: ramp rows ``start`` down to ``stop+1``, zero rows ``<= stop``
    (axis 1); the gain in double precision, as in :func:`apply_lowpass`."""
    g = np.float64(1.0)
    for row in range(start, stop, -1):
        g -= 1 / (start - stop)
        spec[:, row, :] = g * spec[:, row, :]
    if stop + 1 > 0:
        spec[:, : stop + 1, :] = 0


def band_part(spec: np.ndarray, layout: BandLayout, i: int, high_end: np.ndarray | None = None) -> np.ndarray:
    """Band ``i``'s rows of a combined spectrogram in a zero-filled complex128 buffer, filtered
    and inverted (float64 ``[2, hop_i·(frames − 1)]``)."""
    bands = layout.bands
    band = bands[i]
    row = sum(b.width for b in bands[:i])
    buf = np.zeros((2, band.n_rows, spec.shape[2]), dtype=np.complex128)
    buf[:, band.crop[0] : band.crop[1], :] = spec[:, row : row + band.width, :]
    if i == len(bands) - 1:
        if high_end is not None and high_end.shape[1] > 0:
            h = high_end.shape[1]
            buf[:, band.n_fft // 2 - h : band.n_fft // 2, :] = high_end
        if band.highpass is not None and band.highpass[0] > 0:
            apply_highpass(buf, band.highpass[0], band.highpass[1] - 1)
    elif i == 0:
        apply_lowpass(buf, *band.lowpass)
    else:
        apply_highpass(buf, band.highpass[0], band.highpass[1] - 1)
        apply_lowpass(buf, *band.lowpass)
    return istft(buf, band, layout.channel_modes[i])


def convolve_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``scipy.signal.fftconvolve(x, taps, mode='valid')`` along the last axis of ``x`` ``[C, n]``."""
    return scipy.signal.fftconvolve(x, taps[None], mode="valid", axes=1)


def combine(specs: list[np.ndarray], layout: BandLayout, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The original's ``combine_spectrograms`` of frames ``start .. stop - 1`` of each band's
    STFT: cropped rows stacked, pre-filtered (UVR's chained gains, its 1-band low-pass, or the
    VR 5.1 ramp); plus the top band's raw high-end rows (``None`` when the layout has none)."""
    combined = np.zeros((2, layout.bins + 1, stop - start), dtype=np.complex64)
    row = 0
    for band, spec in zip(layout.bands, specs):
        combined[:, row : row + band.width, :] = spec[:, band.crop[0] : band.crop[1], start:stop]
        row += band.width
    if layout.pre_filter is not None:
        pf_start, pf_stop = layout.pre_filter
        if layout.pre_filter_shape == "ramp":
            combined[:, pf_start - 1 : pf_stop, :] *= np.linspace(1, 0, pf_stop - pf_start + 1)[:, None]
            combined[:, pf_stop:, :] = 0
        elif len(layout.bands) == 1:
            apply_lowpass(combined, pf_start, pf_stop)
        else:
            gp = 1.0
            for b in range(pf_start + 1, pf_stop):
                g = math.pow(10, -(b - pf_start) * (3.5 - gp) / 20.0)
                gp = g
                combined[:, b, :] *= g  # a Python float: in the array's precision, as the original
    high_end = None
    h = layout.high_end_rows
    if h > 0:
        top = layout.top
        high_end = specs[-1][:, top.n_fft // 2 - h : top.n_fft // 2, start:stop].copy()
    return combined, high_end


@dataclass
class Analysis:
    """:func:`analyze`'s result, numpy (as :class:`uvrsep.bands.Analysis`)."""

    spec: np.ndarray
    high_end: np.ndarray | None
    n_samples: int
    n_frames: int


def band_spectra(wave: np.ndarray, layout: BandLayout, extra_frames: int = 0) -> tuple[list[np.ndarray], int]:
    """Each band's STFT, top to bottom, each band resampled from the one above, and the frames
    of the original's analysis (the smallest band's ``1 + length // hop``). With ``extra_frames``
    each band's waveform is zero-padded, for its STFT alone, to give that many frames more."""
    bands = layout.bands
    waves: list[np.ndarray] = [None] * len(bands)
    for i in range(len(bands) - 1, -1, -1):
        if i < len(bands) - 1:
            wave = resample(wave, bands[i + 1].sample_rate, bands[i].sample_rate, bands[i].resample_type)
        waves[i] = wave
    n_frames = min(1 + w.shape[-1] // b.hop_length for w, b in zip(waves, bands))
    specs = []
    for i, (w, band) in enumerate(zip(waves, bands)):
        need = (n_frames + extra_frames - 1) * band.hop_length - w.shape[-1]
        padded = np.pad(w, ((0, 0), (0, need))) if extra_frames and need > 0 else w
        specs.append(stft(padded, band, layout.channel_modes[i]))
    return specs, n_frames


def analyze(wave: np.ndarray, layout: BandLayout, extra_frames: int = 0) -> Analysis:
    """The original's analysis of a float32 ``[2, T]`` waveform, with ``extra_frames`` frames past
    the end analysed from zero-padded band signals (as :func:`uvrsep.bands.analyze`)."""
    specs, n_frames = band_spectra(wave, layout, extra_frames)
    total = min(n_frames + extra_frames, min(s.shape[2] for s in specs))
    spec, high = combine(specs, layout, 0, total)
    return Analysis(spec, high, wave.shape[-1], n_frames)


def synthesize(spec: np.ndarray, layout: BandLayout, high_end: np.ndarray | None = None) -> np.ndarray:
    """The original's ``cmb_spectrogram_to_wave``: each band's part added to the partial sum of
    the bands below, resampled up to the next band's rate with the layout's synthesis resampler."""
    if spec.shape[2] < 2:
        return np.zeros((2, 0))
    wave = None
    last = len(layout.bands) - 1
    for i, band in enumerate(layout.bands):
        part = band_part(spec, layout, i, high_end if i == last else None)
        wave = part if wave is None else wave + part
        if i < last:
            wave = resample(wave, band.sample_rate, layout.bands[i + 1].sample_rate, layout.synthesis_resamplers[i])
    return wave
