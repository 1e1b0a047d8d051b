"""Multi-band analysis and synthesis (UVR's ``combine_spectrograms`` / ``cmb_spectrogram_to_wave``).

Analysis: the stereo mix at the layout's rate is resampled band by band (top to bottom, each
band from the one above, with the band's own resampler), STFT'd, cropped and stacked into one
combined spectrogram of ``bins + 1`` rows; the top rows are attenuated by the pre-filter.

Synthesis inverts a combined spectrogram: each band's rows are put back into a zero-filled
buffer (the original used an uninitialised one), filtered, inverted and resampled up the
cascade with the layout's ``synthesis_resamplers`` (RVC: band 1 ``sinc_fastest``, middle bands
FFT resampling; UVR: ``sinc_fastest`` throughout).

The dtypes follow the original exactly (complex64 analysis, complex128 synthesis) because the
parity target is 60 dB SDR against its output.

Tensors in, tensors out, on the tensors' device; every step runs in torch (:mod:`uvrsep.dsp`)
except libsamplerate's and soxr's, which run on the CPU. The original's numpy steps, the tests'
oracle, live in ``tests/oracle.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .config import Band, BandLayout
from .dsp import bands as dsp_bands
from .dsp import resampling


@dataclass
class Analysis:
    """The result of :func:`analyze`, tensors on the waveform's device.

    Attributes:
        spec: combined spectrogram, complex64 ``[2, bins + 1, frames]``.
        high_end: the mix's raw top rows of the top band, complex64 ``[2, h, frames]``, kept
            for high-end mirroring (``None`` when the layout has no such rows).
        n_samples: length of the analysed waveform at the layout's rate.
        n_frames: frames the original analysis has for that waveform. ``frames`` exceeds it
            when :func:`analyze` was asked for ``extra_frames`` past the end.
    """

    spec: torch.Tensor
    high_end: torch.Tensor | None
    n_samples: int
    n_frames: int


def resample(x: torch.Tensor, orig_sr: int, target_sr: int, res_type: str) -> torch.Tensor:
    """Resample ``x`` ``[..., n]`` along its last axis as ``librosa.resample`` does with ``res_type``
    (its length rule ``⌈n·ratio⌉``, ``x``'s dtype and device; :mod:`uvrsep.dsp.resampling`)."""
    n = x.shape[-1]
    if n == 0 or orig_sr == target_sr:
        return x
    if res_type.startswith("kaiser") and n * target_sr < orig_sr:
        # resampy refuses inputs shorter than one output sample (1-4 samples at 192 kHz). librosa's
        # rule gives ⌊n·ratio⌋ computed samples zero-padded to ⌈n·ratio⌉: here, that is zeros.
        return x.new_zeros(*x.shape[:-1], math.ceil(n * target_sr / orig_sr))
    return resampling.resample(x, orig_sr, target_sr, res_type)


def stft(wave: torch.Tensor, band: Band, mode: str) -> torch.Tensor:
    """STFT of a float32 ``[2, T]`` waveform (channel transform ``mode``): complex64
    ``[2, n_fft/2 + 1, 1 + T // hop]`` (librosa's: Hann window, centred, zero padding)."""
    return dsp_bands.band_stft(wave, band, mode)


def band_lengths(n_samples: int, layout: BandLayout) -> list[int]:
    """Length of each band's waveform in the analysis of ``n_samples`` samples (librosa's
    ``ceil`` rule for each resampling down the cascade)."""
    lengths = [0] * len(layout.bands)
    length = n_samples
    for i in range(len(layout.bands) - 1, -1, -1):
        if i < len(layout.bands) - 1:
            length = math.ceil(length * layout.bands[i].sample_rate / layout.bands[i + 1].sample_rate)
        lengths[i] = length
    return lengths


def frame_count(n_samples: int, layout: BandLayout) -> int:
    """Frames of the combined spectrogram for ``n_samples`` samples (the smallest band's count)."""
    return min(1 + length // band.hop_length for band, length in zip(layout.bands, band_lengths(n_samples, layout)))


def combine(
    specs: list[torch.Tensor], layout: BandLayout, start: int, stop: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack frames ``start .. stop - 1`` of each band's STFT (complex64 ``[2, n_fft/2 + 1, frames]``)
    into the combined spectrogram ``[2, bins + 1, stop - start]``, pre-filtered; also returns the
    top band's raw high-end rows ``[2, h, stop - start]`` (``None`` when the layout has none).
    The pre-filter's gains multiply as the original's numpy does (the chained gains in the
    spectrogram's precision, the ramp in float64, stored as complex64)."""
    bands = layout.bands
    combined = specs[-1].new_zeros(2, layout.bins + 1, stop - start)
    row = 0
    for band, spec in zip(bands, specs):
        combined[:, row : row + band.width] = spec[:, band.crop[0] : band.crop[1], start:stop]
        row += band.width

    if layout.pre_filter is not None:
        pf_start, pf_stop = layout.pre_filter
        if layout.pre_filter_shape == "ramp":
            gains = np.ones(layout.bins + 1)
            gains[pf_start - 1 : pf_stop] = dsp_bands.ramp_gains(pf_start, pf_stop)
            dsp_bands.scale_rows(combined, gains)
            combined[:, pf_stop:] = 0
        elif len(bands) == 1:
            dsp_bands.apply_lowpass(combined, pf_start, pf_stop)
        else:
            gp = 1.0
            for b in range(pf_start + 1, pf_stop):
                g = math.pow(10, -(b - pf_start) * (3.5 - gp) / 20.0)
                gp = g
                torch.view_as_real(combined[:, b]).mul_(g)

    high_end = None
    h = layout.high_end_rows
    if h > 0:
        top = layout.top
        high_end = specs[-1][:, top.n_fft // 2 - h : top.n_fft // 2, start:stop].clone()
    return combined, high_end


def band_spectra(
    wave: torch.Tensor,
    layout: BandLayout,
    *,
    fit: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    frames: int = 0,
) -> list[torch.Tensor]:
    """Each band's STFT of a float32 stereo waveform ``[2, T]`` at the layout's rate, top to
    bottom, each band resampled from the one above with its resampler. ``fit(i, band_wave)``
    replaces band ``i``'s waveform (for its STFT and the bands below it); ``frames`` pads each
    band's waveform with zeros for its STFT alone, to give at least that many frames."""
    bands = layout.bands
    specs: list[torch.Tensor | None] = [None] * len(bands)
    for i in range(len(bands) - 1, -1, -1):
        band = bands[i]
        if i < len(bands) - 1:
            wave = resample(wave, bands[i + 1].sample_rate, band.sample_rate, band.resample_type)
        if fit is not None:
            wave = fit(i, wave)
        padded = wave
        need = (frames - 1) * band.hop_length - wave.shape[-1]
        if frames and need > 0:
            # Padded after the (truncating) resampling, so the lower bands stay exact.
            padded = torch.nn.functional.pad(wave, (0, need))
        specs[i] = stft(padded, band, layout.channel_modes[i])
    return [s for s in specs if s is not None]  # every band's, filled above


def analyze(wave: torch.Tensor, layout: BandLayout, extra_frames: int = 0) -> Analysis:
    """Analyse a float32 stereo waveform ``[2, T]`` at ``layout.sample_rate``, on its device.

    Returns the combined spectrogram (complex64 ``[2, bins + 1, frames]``, pre-filtered) and the
    raw high end used for mirroring. ``frames`` is the smallest band's frame count, plus
    ``extra_frames`` frames past the end, computed from each band's waveform padded with zeros
    (the frames before them are exactly the unpadded analysis: the centred STFT sees zeros past
    the end either way).
    """
    n_samples = wave.shape[-1]
    n_frames = frame_count(n_samples, layout)
    specs = band_spectra(wave, layout, frames=n_frames + extra_frames if extra_frames else 0)
    total = min(n_frames + extra_frames, min(s.shape[2] for s in specs))
    combined, high_end = combine(specs, layout, 0, total)
    return Analysis(spec=combined, high_end=high_end, n_samples=n_samples, n_frames=n_frames)


def synthesis_resampler(layout: BandLayout, i: int) -> str:
    """Resampler taking band ``i``'s partial sum up to band ``i + 1``'s rate (a band below the top)."""
    if not 0 <= i < len(layout.bands) - 1:
        raise ValueError(f"band {i}: only the bands below the top one are resampled in the synthesis")
    return layout.synthesis_resamplers[i]


def band_part(spec: torch.Tensor, layout: BandLayout, i: int, high_end: torch.Tensor | None = None) -> torch.Tensor:
    """Band ``i``'s contribution to the synthesis: its rows of the combined spectrogram
    ``[2, bins + 1, frames]`` put back into a zero-filled band buffer (complex128), filtered
    (UVR's low-/high-pass rows) and inverted.

    Returns float64 ``[2, hop_i·(frames − 1)]`` at the band's rate. ``high_end`` (top band only)
    replaces the highest rows, as mirroring produces it.
    """
    return dsp_bands.band_part(spec, layout, i, high_end)


def synthesize(spec: torch.Tensor, layout: BandLayout, high_end: torch.Tensor | None = None) -> torch.Tensor:
    """Invert a combined spectrogram ``[2, bins + 1, frames]`` to float64 ``[2, hop_top·(frames − 1)]``
    (the original's complex128 buffers make it float64), on the spectrogram's device.

    ``high_end`` (complex ``[2, h, frames]``) replaces the top band's highest rows, as mirroring
    produces it. Each band's part is added to the partial sum of the bands below, which is then
    resampled up to the next band's rate (:func:`synthesis_resampler`; libsamplerate's steps on
    the CPU).
    """
    bands = layout.bands
    if spec.shape[2] < 2:
        return torch.zeros((2, 0), dtype=torch.float64, device=spec.device)
    wave: torch.Tensor | None = None
    for i, band in enumerate(bands):
        high = high_end if i == len(bands) - 1 else None
        part = band_part(spec, layout, i, high)
        wave = part if wave is None else wave.add_(part)
        del part
        if i < len(bands) - 1:
            wave = resample(wave, band.sample_rate, bands[i + 1].sample_rate, synthesis_resampler(layout, i))
    assert wave is not None  # a layout has at least one band
    return wave
