"""The previous DSP steps, with librosa / scipy / resampy on the CPU: the oracle.

:mod:`uvrsep.bands` runs its steps in torch (:mod:`uvrsep.dsp`); these are the same steps as
the original computes them, kept for the tests that check the torch steps against them and for
the benchmarks' side-by-side (``dsp=REFERENCE`` in :mod:`uvrsep.bands`). Arrays are numpy,
in the original's dtypes (complex64 analysis, complex128 / float64 synthesis).
"""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import scipy.signal

from .. import bands as np_bands
from ..config import Band, BandLayout


def resample(wave: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """``librosa.resample`` along the last axis."""
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
    """In place: ramp rows ``start .. stop-1`` down, zero rows ``>= stop`` (axis 1)."""
    for row, g in zip(range(start, stop), np_bands.lowpass_gains(start, stop)):
        spec[:, row, :] = g * spec[:, row, :]
    spec[:, max(stop, 0) :, :] = 0


def apply_highpass(spec: np.ndarray, start: int, stop: int) -> None:
    """In place: ramp rows ``start`` down to ``stop+1``, zero rows ``<= stop`` (axis 1)."""
    for row, g in zip(range(start, stop, -1), np_bands.highpass_gains(start, stop)):
        spec[:, row, :] = g * spec[:, row, :]
    if stop + 1 > 0:
        spec[:, : stop + 1, :] = 0


def band_part(spec: np.ndarray, layout: BandLayout, i: int, high_end: np.ndarray | None = None) -> np.ndarray:
    """:func:`uvrsep.bands.band_part`: band ``i``'s rows in a zero-filled complex128 buffer,
    filtered and inverted (float64 ``[2, hop_i·(frames − 1)]``)."""
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
