"""The band steps of :mod:`uvrsep.bands` in torch: channel transforms, band STFTs, UVR's row
filters (their gains included) and each band's inverse.

In the original's dtypes (complex64 analysis, complex128 / float64 synthesis); the tests check
each against the original's numpy steps (``tests/oracle.py``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..config import Band, BandLayout
from .spectrum import istft_from_blocks, stft

# -- channels ----------------------------------------------------------------------------------


def to_channels(wave: torch.Tensor, mode: str) -> torch.Tensor:
    """A band's channel transform (``BandLayout.channel_modes``) of a real ``[2, T]`` waveform."""
    left, right = wave[0], wave[1]
    if mode == "reverse":
        return wave.flip(-1)
    if mode == "mid_side":
        return torch.stack([(left + right) / 2, left - right])
    if mode == "mid_side_b2":
        return torch.stack([right + left * 0.5, left - right * 0.5])
    if mode == "mid_side_c":
        return torch.stack([left + right * 0.25, right - left * 0.25])
    if mode == "stereo_n":
        return torch.stack([(left + right * 0.25) / 0.9375, (right + left * 0.25) / 0.9375])
    return wave


def from_channels(wave: torch.Tensor, mode: str) -> torch.Tensor:
    """Undo :func:`to_channels` with the original's inverse formulas."""
    left, right = wave[0], wave[1]
    if mode == "reverse":
        return wave.flip(-1)
    if mode == "mid_side":
        return torch.stack([left + right / 2, left - right / 2])
    if mode == "mid_side_b2":
        return torch.stack([right / 1.25 + 0.4 * left, left / 1.25 - 0.4 * right])
    if mode == "mid_side_c":
        return torch.stack([left / 1.0625 - right / 4.25, right / 1.0625 + left / 4.25])
    if mode == "stereo_n":
        return torch.stack([left - right * 0.25, right - left * 0.25])
    return wave


def band_stft(wave: torch.Tensor, band: Band, mode: str) -> torch.Tensor:
    """STFT of a float32 ``[2, T]`` waveform: complex64 ``[2, n_fft/2 + 1, 1 + T // hop]``."""
    return stft(to_channels(wave, mode), band.n_fft, band.hop_length)


# -- row filters -------------------------------------------------------------------------------


def lowpass_gains(start: int, stop: int) -> np.ndarray:
    """Row gains of UVR's ``fft_lp_filter`` for rows ``start .. stop - 1`` (rows >= stop are zeroed)."""
    gains, g = [], 1.0
    for _ in range(start, stop):
        g -= 1 / (stop - start)
        gains.append(g)
    return np.asarray(gains, dtype=np.float64)


def highpass_gains(start: int, stop: int) -> np.ndarray:
    """Row gains of UVR's ``fft_hp_filter`` for rows ``start, start-1 .. stop+1`` (rows <= stop are zeroed)."""
    gains, g = [], 1.0
    for _ in range(start, stop, -1):
        g -= 1 / (start - stop)
        gains.append(g)
    return np.asarray(gains, dtype=np.float64)


def ramp_gains(start: int, stop: int) -> np.ndarray:
    """Row gains of UVR's ``get_lp_filter_mask`` for rows ``start - 1 .. stop - 1``: a linear ramp
    from 1 to 0 (rows below are kept, rows >= stop are zeroed)."""
    return np.linspace(1, 0, stop - start + 1)


def scale_rows(spec: torch.Tensor, gains: np.ndarray) -> None:
    """In place: row ``r`` of ``spec`` ``[..., rows, T]`` times ``gains[r]`` (float64, as numpy
    multiplies by a float64 scalar: in double precision, stored in ``spec``'s dtype); only the
    span of rows whose gain is not 1 is touched."""
    moved = np.flatnonzero(gains != 1.0)
    if moved.size == 0:
        return
    lo, hi = int(moved[0]), int(moved[-1]) + 1
    g = torch.as_tensor(gains[lo:hi], device=spec.device)[:, None, None]
    rows = torch.view_as_real(spec[..., lo:hi, :])
    rows.copy_(rows.to(torch.float64) * g)


@functools.lru_cache(maxsize=256)
def _filter_gains(kind: str, n_rows: int, start: int, stop: int) -> np.ndarray:
    """Per-row gains of UVR's low-pass (``kind='low'``) or high-pass filter on ``n_rows`` rows."""
    if kind == "low":
        return _ramp(n_rows, range(start, stop), lowpass_gains(start, stop))
    return _ramp(n_rows, range(start, stop, -1), highpass_gains(start, stop))


def _ramp(n_rows: int, rows: range, gains: np.ndarray) -> np.ndarray:
    """Per-row gains after the original's loop ``spec[:, row] = g · spec[:, row]`` (numpy's
    index rules: negative rows count from the end)."""
    out = np.ones(n_rows)
    for row, g in zip(rows, gains):
        out[row] = g * out[row]
    return out


def apply_lowpass(spec: torch.Tensor, start: int, stop: int) -> None:
    """In place (``[..., rows, T]``): UVR's ``fft_lp_filter``: rows ``start .. stop-1`` ramp down,
    rows ``>= stop`` are zeroed."""
    scale_rows(spec, _filter_gains("low", spec.shape[-2], start, stop))
    spec[..., max(stop, 0) :, :] = 0


def apply_highpass(spec: torch.Tensor, start: int, stop: int) -> None:
    """In place (``[..., rows, T]``): UVR's ``fft_hp_filter``: rows ``start`` down to ``stop+1``
    ramp down, rows ``<= stop`` are zeroed."""
    scale_rows(spec, _filter_gains("high", spec.shape[-2], start, stop))
    if stop + 1 > 0:
        spec[..., : stop + 1, :] = 0


# -- synthesis ---------------------------------------------------------------------------------


def band_part(spec: torch.Tensor, layout: BandLayout, i: int, high_end: torch.Tensor | None = None) -> torch.Tensor:
    """Band ``i``'s contribution to the synthesis: its rows of
    the combined spectrogram ``[2, bins + 1, frames]`` in a zero-filled complex128 band buffer,
    filtered and inverted: float64 ``[2, hop_i·(frames − 1)]`` at the band's rate. ``high_end``
    (top band) replaces the highest rows.

    The band buffer is built block by block of frames inside the iSTFT (never whole: a few MB
    at a time on the CPU), stored frame by frame for the inverse FFT.
    """
    bands = layout.bands
    band = bands[i]
    row = sum(b.width for b in bands[:i])
    rows = spec[:, row : row + band.width]
    top = i == len(bands) - 1
    h = high_end.shape[1] if top and high_end is not None else 0
    work: list[torch.Tensor] = []

    def block_of(f0: int, f1: int) -> torch.Tensor:
        if not work:  # one buffer for every block (the last one uses the start of it)
            work.append(torch.empty(2, f1 - f0, band.n_rows, dtype=torch.complex128, device=spec.device))
        buf = work[0][:, : f1 - f0]
        buf.zero_()
        view = buf.transpose(1, 2)
        view[:, band.crop[0] : band.crop[1]] = rows[:, :, f0:f1]
        if top:
            if h > 0 and high_end is not None:
                view[:, band.n_fft // 2 - h : band.n_fft // 2] = high_end[:, :, f0:f1]
            if band.highpass is not None and band.highpass[0] > 0:
                apply_highpass(view, band.highpass[0], band.highpass[1] - 1)
        elif i == 0:
            assert band.lowpass is not None, "a lower band has a low-pass (config check)"
            apply_lowpass(view, *band.lowpass)
        else:
            assert band.lowpass is not None and band.highpass is not None, "a middle band has both (config check)"
            apply_highpass(view, band.highpass[0], band.highpass[1] - 1)
            apply_lowpass(view, *band.lowpass)
        return buf

    wave = istft_from_blocks(block_of, 2, spec.shape[-1], band.n_fft, band.hop_length, torch.float64, spec.device)
    return from_channels(wave, layout.channel_modes[i])
