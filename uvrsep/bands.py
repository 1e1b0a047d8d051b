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
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import librosa
import numpy as np

from .config import Band, BandLayout


@dataclass
class Analysis:
    """The result of :func:`analyze`.

    Attributes:
        spec: combined spectrogram, complex64 ``[2, bins + 1, frames]``.
        high_end: the mix's raw top rows of the top band, complex64 ``[2, h, frames]``, kept
            for high-end mirroring (``None`` when the layout has no such rows).
        n_samples: length of the analysed waveform at the layout's rate.
        n_frames: frames the original analysis has for that waveform. ``frames`` exceeds it
            when :func:`analyze` was asked for ``extra_frames`` past the end.
    """

    spec: np.ndarray
    high_end: np.ndarray | None
    n_samples: int
    n_frames: int


def resample(wave: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """Resample along the last axis with the named resampler (librosa's dispatch and length rule)."""
    n = wave.shape[-1]
    if n == 0 or orig_sr == target_sr:
        return wave
    if res_type.startswith("kaiser") and n * target_sr < orig_sr:
        # resampy refuses inputs shorter than one output sample (1-4 samples at 192 kHz). librosa's
        # rule gives ⌊n·ratio⌋ computed samples zero-padded to ⌈n·ratio⌉: here, that is zeros.
        return np.zeros(wave.shape[:-1] + (math.ceil(n * target_sr / orig_sr),), dtype=wave.dtype)
    return librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr, res_type=res_type)


def _to_channels(wave: np.ndarray, mode: str) -> np.ndarray:
    """Apply a band's channel transform (``BandLayout.channel_modes``) to a float32 ``[2, T]`` waveform."""
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


def _from_channels(wave: np.ndarray, mode: str) -> np.ndarray:
    """Undo :func:`_to_channels` (with the original's inverse formulas)."""
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
    channels = _to_channels(wave, mode)
    with warnings.catch_warnings():
        # Clips shorter than n_fft are fine: frames are zero-padded (centred STFT).
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        return np.stack(
            [librosa.stft(np.asfortranarray(ch), n_fft=band.n_fft, hop_length=band.hop_length) for ch in channels]
        )


def istft(spec: np.ndarray, band: Band, mode: str) -> np.ndarray:
    """Inverse of :func:`stft` for a ``[2, rows, frames]`` spectrogram (float64 for complex128 input)."""
    channels = [librosa.istft(ch, hop_length=band.hop_length) for ch in spec]
    return _from_channels(np.stack(channels), mode)


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


def apply_lowpass(spec: np.ndarray, start: int, stop: int) -> None:
    """In place: ramp rows ``start .. stop-1`` down, zero rows ``>= stop`` (axis 1)."""
    for row, g in zip(range(start, stop), lowpass_gains(start, stop)):
        spec[:, row, :] = g * spec[:, row, :]
    spec[:, max(stop, 0) :, :] = 0


def apply_highpass(spec: np.ndarray, start: int, stop: int) -> None:
    """In place: ramp rows ``start`` down to ``stop+1``, zero rows ``<= stop`` (axis 1)."""
    for row, g in zip(range(start, stop, -1), highpass_gains(start, stop)):
        spec[:, row, :] = g * spec[:, row, :]
    if stop + 1 > 0:
        spec[:, : stop + 1, :] = 0


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


def combine(specs: list[np.ndarray], layout: BandLayout, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Stack frames ``start .. stop - 1`` of each band's STFT (complex64 ``[2, n_fft/2 + 1, frames]``)
    into the combined spectrogram ``[2, bins + 1, stop - start]``, pre-filtered; also returns the
    top band's raw high-end rows ``[2, h, stop - start]`` (``None`` when the layout has none)."""
    bands = layout.bands
    combined = np.zeros((2, layout.bins + 1, stop - start), dtype=np.complex64)
    row = 0
    for band, spec in zip(bands, specs):
        combined[:, row : row + band.width, :] = spec[:, band.crop[0] : band.crop[1], start:stop]
        row += band.width

    if layout.pre_filter is not None:
        pf_start, pf_stop = layout.pre_filter
        if layout.pre_filter_shape == "ramp":
            combined[:, pf_start - 1 : pf_stop, :] *= ramp_gains(pf_start, pf_stop)[:, None]
            combined[:, pf_stop:, :] = 0
        elif len(bands) == 1:
            apply_lowpass(combined, pf_start, pf_stop)
        else:
            gp = 1.0
            for b in range(pf_start + 1, pf_stop):
                g = math.pow(10, -(b - pf_start) * (3.5 - gp) / 20.0)
                gp = g
                combined[:, b, :] *= g

    high_end = None
    h = layout.high_end_rows
    if h > 0:
        top = layout.top
        high_end = specs[-1][:, top.n_fft // 2 - h : top.n_fft // 2, start:stop]
    return combined, high_end


def analyze(wave: np.ndarray, layout: BandLayout, extra_frames: int = 0) -> Analysis:
    """Analyse a float32 stereo waveform ``[2, T]`` at ``layout.sample_rate``.

    Returns the combined spectrogram (complex64 ``[2, bins + 1, frames]``, pre-filtered) and the
    raw high end used for mirroring. ``frames`` is the smallest band's frame count, plus
    ``extra_frames`` frames past the end, computed from each band's waveform padded with zeros
    (the frames before them are exactly the unpadded analysis: the centred STFT sees zeros past
    the end either way).
    """
    n_samples = wave.shape[-1]
    n_frames = frame_count(n_samples, layout)
    bands = layout.bands
    waves: list[np.ndarray | None] = [None] * len(bands)
    specs: list[np.ndarray | None] = [None] * len(bands)
    waves[-1] = wave
    for i in range(len(bands) - 1, -1, -1):
        band = bands[i]
        if i < len(bands) - 1:
            waves[i] = resample(waves[i + 1], bands[i + 1].sample_rate, band.sample_rate, band.resample_type)
        band_wave = waves[i]
        if extra_frames:
            # Pad each band after its (truncating) resampling, so the lower bands stay exact.
            padded = (n_frames + extra_frames - 1) * band.hop_length
            band_wave = np.pad(band_wave, ((0, 0), (0, max(0, padded - band_wave.shape[-1]))))
        specs[i] = stft(band_wave, band, layout.channel_modes[i])
    total = min(n_frames + extra_frames, min(s.shape[2] for s in specs))
    combined, high_end = combine(specs, layout, 0, total)
    return Analysis(spec=combined, high_end=high_end, n_samples=n_samples, n_frames=n_frames)


def synthesis_resampler(layout: BandLayout, i: int) -> str | None:
    """Resampler taking band ``i``'s partial sum up to band ``i + 1``'s rate (``None`` for the top band)."""
    if i == len(layout.bands) - 1:
        return None
    return layout.synthesis_resamplers[i]


def band_part(spec: np.ndarray, layout: BandLayout, i: int, high_end: np.ndarray | None = None) -> np.ndarray:
    """Band ``i``'s contribution to the synthesis: its rows of the combined spectrogram
    ``[2, bins + 1, frames]`` put back into a zero-filled band buffer, filtered and inverted.

    Returns float64 ``[2, hop_i·(frames − 1)]`` at the band's rate. ``high_end`` (top band only)
    replaces the highest rows, as mirroring produces it.
    """
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


def synthesize(spec: np.ndarray, layout: BandLayout, high_end: np.ndarray | None = None) -> np.ndarray:
    """Invert a combined spectrogram ``[2, bins + 1, frames]`` to float ``[2, hop_top·(frames − 1)]``.

    ``high_end`` (complex ``[2, h, frames]``) replaces the top band's highest rows, as mirroring
    produces it. The output is float64, as the original's complex128 buffers make it. Each band's
    part is added to the partial sum of the bands below, which is then resampled up to the next
    band's rate (:func:`synthesis_resampler`).
    """
    bands = layout.bands
    if spec.shape[2] < 2:
        return np.zeros((2, 0))
    wave = None
    for i, band in enumerate(bands):
        part = band_part(spec, layout, i, high_end if i == len(bands) - 1 else None)
        wave = part if wave is None else np.add(wave, part)
        del part
        if i < len(bands) - 1:
            wave = resample(wave, band.sample_rate, bands[i + 1].sample_rate, synthesis_resampler(layout, i))
    return wave
