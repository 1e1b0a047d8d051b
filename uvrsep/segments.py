"""Inputs in segments: the analysis and synthesis of a range of frames, giving the whole-file result.

A long input is never held whole. It is read block by block (:mod:`uvrsep.sources`), analysed
frame range by frame range (:func:`analyze_frames`: the band resamplers and STFTs are local,
so a range read with a few frames of margin is exactly the whole-file analysis), run through
the network window by window (the windows are those of the whole file), and synthesised
segment by segment (:class:`SegmentedSynthesis`); :mod:`uvrsep.job` drives it.

The synthesis resamples each band's partial sum up to the next band's rate, with the layout's
synthesis resampler for that step:

- FFT resampling (RVC's middle bands: ``scipy.signal.resample`` over the whole file, which
  treats the signal as periodic) is the one global step. Its output at a sample is a weighted
  sum over the whole file with the periodic interpolation kernel ``K_L`` of the file's length
  ``L``; here that sum runs over the ``±FFT_KERNEL_HALF`` nearest samples (indices taken
  modulo ``L``, so the wrap-around at the file's two ends is the original's), with the outer
  half of the kernel tapered. The bands are low-passed well below Nyquist, so the neglected
  tail is far below audibility (its SDR against the whole-file resampling: docs/performance.md).
- libsamplerate (``sinc_fastest`` between all bands in UVR semantics) is stateful and runs
  forwards: a :class:`SequentialResampler` feeds it the partial sum in order and gives exactly
  the whole-file ``librosa.resample`` output (the same float32 samples), so the stems are
  produced in order, as they are written.

The steps run in torch on the separator's DSP device (:mod:`uvrsep.bands`): band sums, the
periodic kernel's convolution and the partial sums stay there; libsamplerate's steps cross to
the CPU and back once per call (:mod:`uvrsep.transfer`).

tests/test_segments.py holds the end-to-end equality. Streaming needs band layouts whose bands
share one frame grid, whose lower bands are analysed with ``polyphase``, and where no FFT step
lies above a libsamplerate step (it would need the finished lower sum at the file's far end);
:func:`unsupported_reason` says why others are processed whole.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import samplerate
import torch

from . import bands, transfer
from .config import BandLayout
from .dsp.resampling import convolve_valid
from .sources import zero_outside

#: Half-width, in input samples, of the kernel standing in for a whole-file FFT resampling ...
FFT_KERNEL_HALF = 16384
#: ... of which the samples beyond this distance are tapered (raised cosine) to zero.
FFT_KERNEL_FLAT = 8192
#: Input samples fed to a libsamplerate step beyond what the wanted outputs need (its filter's
#: look-ahead; sinc_fastest needs 20 at the rates here, others more, fed in further rounds).
SEQUENTIAL_LOOKAHEAD = 64
#: Synthesis resamplers that are FFT resampling over the whole file, and libsamplerate's.
FFT_RESAMPLERS = frozenset({"scipy", "fft"})
SAMPLERATE_RESAMPLERS = frozenset({"sinc_best", "sinc_medium", "sinc_fastest", "linear", "zero_order_hold"})


def unsupported_reason(layout: BandLayout) -> str | None:
    """Why ``layout`` cannot be processed in segments (``None`` when it can)."""
    if "reverse" in layout.channel_modes:
        return "its 'reverse' stereo mode runs each STFT backwards from the end of the file"
    chain = layout.bands
    sequential_below = False
    for i in range(len(chain) - 1):
        lo, hi = chain[i], chain[i + 1]
        if lo.hop_length * hi.sample_rate != hi.hop_length * lo.sample_rate:
            return f"bands {i + 1} and {i + 2} do not share one frame grid"
        if lo.sample_rate == hi.sample_rate:
            continue
        if lo.resample_type != "polyphase":
            return f"band {i + 1} is analysed with the {lo.resample_type} resampler"
        resampler = bands.synthesis_resampler(layout, i)
        if resampler in SAMPLERATE_RESAMPLERS:
            sequential_below = True
        elif resampler not in FFT_RESAMPLERS:
            return f"band {i + 1}'s synthesis resampler {resampler} cannot be run in segments"
        elif sequential_below:
            return (
                f"band {i + 1}'s synthesis FFT resampling needs the whole lower sum, which libsamplerate "
                "makes in order across rates below it"
            )
        elif hi.sample_rate % lo.sample_rate:
            return f"band {i + 1}'s rate does not divide band {i + 2}'s"
    return None


# -- analysis ---------------------------------------------------------------------------------


def analysis_margin(layout: BandLayout) -> int:
    """Frames of margin that make a range's analysis exact (STFT support plus resampler taps)."""
    return max(math.ceil(b.n_fft / (2 * b.hop_length)) for b in layout.bands) + 2


def analyze_frames(
    read: Callable[[int, int], np.ndarray],
    layout: BandLayout,
    n_samples: int,
    start: int,
    stop: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frames ``start .. stop - 1`` of :func:`bands.analyze` of the whole input, from a reader.

    ``read(a, b)`` gives the input's samples ``a .. b - 1`` at the layout's rate (float32
    ``[2, b - a]``, zeros outside the file); ``n_samples`` is the input's length. Frames past the
    original's count are those ``analyze(..., extra_frames)`` gives. Returns the combined
    spectrogram ``[2, bins + 1, stop - start]`` and the raw high end ``[2, h, stop - start]``,
    tensors computed on ``device`` (the samples cross to it once).
    """
    lengths = bands.band_lengths(n_samples, layout)
    m = analysis_margin(layout)
    g0 = start - m
    wave = transfer.to_device(read(g0 * layout.top.hop_length, (stop + m) * layout.top.hop_length), device)

    def fit(i: int, band_wave: torch.Tensor) -> torch.Tensor:
        # The whole-file band waveform ends at its own length: what lies past it is zeros.
        return zero_outside(band_wave, g0 * layout.bands[i].hop_length, lengths[i])

    specs = bands.band_spectra(wave, layout, fit=fit)
    return bands.combine(specs, layout, m, m + stop - start)


# -- synthesis --------------------------------------------------------------------------------


def periodic_kernel(
    length: int, ratio: int, phase: int, half: int = FFT_KERNEL_HALF, flat: int = FFT_KERNEL_FLAT
) -> np.ndarray:
    """Taps ``j = -half .. half`` of ``scipy.signal.resample``'s upsampling by ``ratio`` of a
    real signal of ``length`` samples, for output phase ``phase`` (``1 .. ratio - 1``).

    The FFT resampler computes ``y[r·m + φ] = Σ_k x[k] · K_L(m + φ/r − k) / L`` with the
    periodic kernel ``K_L(t) = sin(πt) / sin(πt/L)`` for odd ``L`` and ``sin(πt)·cot(πt/L)`` for
    even ``L`` (scipy halves the Nyquist bin); tap ``j`` is ``K_L(j + φ/r) / L``, tapered beyond
    ``flat``. Phase 0 is the input itself.
    """
    j = np.arange(-half, half + 1)
    t = j + phase / ratio
    angle = np.pi * t / length
    taps = math.sin(math.pi * phase / ratio) * np.where(j % 2 == 0, 1.0, -1.0) / np.sin(angle) / length
    if length % 2 == 0:
        taps *= np.cos(angle)
    far = np.abs(j) > flat
    taps[far] *= 0.5 * (1 + np.cos(np.pi * (np.abs(j[far]) - flat) / (half - flat)))
    return taps


def _step(layout: BandLayout, i: int) -> str | None:
    """How band ``i``'s partial sum reaches band ``i + 1``'s rate: ``None`` (same rate), ``fft``
    or ``sequential`` (libsamplerate)."""
    if layout.bands[i + 1].sample_rate == layout.bands[i].sample_rate:
        return None
    return "sequential" if bands.synthesis_resampler(layout, i) in SAMPLERATE_RESAMPLERS else "fft"


def min_frames(layout: BandLayout, half: int = FFT_KERNEL_HALF) -> int:
    """Fewest frames an input needs to be synthesised in segments (an FFT kernel must fit in it)."""
    need = 2
    for i, band in enumerate(layout.bands[:-1]):
        if _step(layout, i) == "fft":
            need = max(need, (2 * half + 2) // band.hop_length + 2)
    return need


def synthesis_reach(layout: BandLayout, half: int = FFT_KERNEL_HALF) -> int:
    """Frames on either side of an output range that :class:`SegmentedSynthesis` reads."""
    reach = 0
    for i, band in enumerate(layout.bands):
        reach += math.ceil(band.n_fft / (2 * band.hop_length)) + 2
        step = _step(layout, i) if i < len(layout.bands) - 1 else None
        if step == "fft":
            reach += math.ceil((half + 1) / band.hop_length) + 1
        elif step == "sequential":
            reach += math.ceil(SEQUENTIAL_LOOKAHEAD / band.hop_length) + 1
    return reach


class SequentialResampler:
    """``librosa.resample(x, res_type=<libsamplerate converter>)`` of a long signal, produced in order.

    ``source(a, b)`` gives samples ``a .. b - 1`` of ``x`` (float ``[2, b - a]``, ``length`` in
    all); it is asked for consecutive ranges. :meth:`read` gives the resampled signal's samples
    in order (each range starting where the previous one stopped, or later). libsamplerate's
    converters are stateful, so feeding the signal piece by piece gives the one-shot samples
    exactly; past the end the converter is fed zeros, which is what its end-of-input padding
    uses, and the output has librosa's ``ceil(length · ratio)`` samples (float64 of the float32
    values, as librosa returns them for float64 input).
    """

    def __init__(self, source: Callable[[int, int], np.ndarray], length: int, ratio: float, converter: str):
        self.source = source
        self.length = length
        self.ratio = ratio
        self.out_length = math.ceil(length * ratio)
        self._converters = [samplerate.Resampler(converter, channels=1) for _ in range(2)]
        self._fed = 0
        self._buf = np.zeros((2, 0))
        self._base = 0  # output index of _buf's first column

    def _feed(self, upto: int) -> None:
        """Produce outputs until index ``upto`` (exclusive) is available."""
        while self._base + self._buf.shape[1] < upto:
            want = math.ceil(upto / self.ratio) + SEQUENTIAL_LOOKAHEAD - self._fed
            want = max(want, SEQUENTIAL_LOOKAHEAD)
            if self._fed < self.length:
                chunk = self.source(self._fed, min(self.length, self._fed + want))
            else:  # past the end: the zeros of the end-of-input padding
                chunk = np.zeros((2, want))
            self._fed += chunk.shape[1]
            chunk = chunk.astype(np.float32)
            new = np.stack(
                [conv.process(ch, self.ratio, end_of_input=False) for conv, ch in zip(self._converters, chunk)]
            )
            self._buf = np.concatenate([self._buf, new.astype(np.float64)], axis=1)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Output samples ``start .. stop - 1`` (float64 ``[2, stop - start]``; zeros past the end)."""
        if start < self._base:
            raise ValueError(f"sequential resampler: samples from {start} were asked for after {self._base}")
        self._feed(min(stop, self.out_length))
        out = np.zeros((2, stop - start))
        have = min(stop, self.out_length) - start
        if have > 0:
            out[:, :have] = self._buf[:, start - self._base : start - self._base + have]
        drop = min(stop, self._base + self._buf.shape[1]) - self._base
        self._buf, self._base = self._buf[:, drop:], self._base + drop
        return out


class SegmentedSynthesis:
    """:func:`bands.synthesize` of a long stem spectrogram, computed one output range at a time.

    ``frames(a, b)`` returns the stem's combined spectrogram and high end for frames
    ``a .. b - 1`` (``0 <= a < b <= n_frames``), tensors on ``device``. :meth:`output` gives a
    range of the whole-file synthesis (float64 ``[2, stop - start]`` on ``device``, of
    ``hop_top·(n_frames − 1)`` samples in all) while touching only the frames near it, those near
    the file's ends (wrap-around of FFT steps), and, with libsamplerate steps, the frames just
    ahead of it (ranges then come in order).
    """

    def __init__(
        self,
        layout: BandLayout,
        n_frames: int,
        frames: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]],
        *,
        half: int = FFT_KERNEL_HALF,
        flat: int = FFT_KERNEL_FLAT,
        device: torch.device | str = "cpu",
    ):
        reason = unsupported_reason(layout)
        if reason is not None:
            raise ValueError(f"band config {layout.name} cannot be synthesised in segments: {reason}")
        self.layout = layout
        self.n_frames = n_frames
        self.frames = frames
        self.device = torch.device(device)
        self.half, self.flat = half, flat
        self.lengths = [b.hop_length * (n_frames - 1) for b in layout.bands]
        for i in range(len(layout.bands) - 1):
            if _step(layout, i) == "fft" and self.lengths[i] <= 2 * half + 1:
                raise ValueError(f"input too short for segments ({n_frames} frames)")
        self._kernels: dict[int, torch.Tensor] = {}
        self._sequential = {
            i: SequentialResampler(
                functools.partial(self._level_on_host, i),
                self.lengths[i],
                layout.bands[i + 1].sample_rate / band.sample_rate,
                bands.synthesis_resampler(layout, i),
            )
            for i, band in enumerate(layout.bands[:-1])
            if _step(layout, i) == "sequential"
        }

    def output(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start .. stop - 1`` of the whole-file synthesis (top band's rate). With a
        libsamplerate step in the layout, ranges must come in order (each starting where the
        previous one stopped, or later)."""
        return self._level(len(self.layout.bands) - 1, start, stop)

    def _level_on_host(self, i: int, start: int, stop: int) -> np.ndarray:
        """:meth:`_level` in host memory (what libsamplerate reads)."""
        return transfer.to_host(self._level(i, start, stop))

    def _level(self, i: int, start: int, stop: int) -> torch.Tensor:
        """Band ``i``'s partial sum (bands ``0 .. i``), samples ``start .. stop - 1`` within ``0 .. L_i``."""
        band = self.layout.bands[i]
        hop = band.hop_length
        reach = math.ceil(band.n_fft / (2 * hop)) + 1
        f0 = max(0, start // hop - reach)
        f1 = min(self.n_frames, -(-stop // hop) + reach + 1)
        spec, high = self.frames(f0, f1)
        top = i == len(self.layout.bands) - 1
        part = bands.band_part(spec, self.layout, i, high if top else None)
        part = part[:, start - f0 * hop : stop - f0 * hop]
        if i == 0:
            return part
        return self._upsampled(i - 1, start, stop).add_(part)

    def _fetch(self, i: int, start: int, stop: int) -> torch.Tensor:
        """Band ``i``'s partial sum over ``start .. stop - 1`` taken modulo its length (periodic)."""
        length = self.lengths[i]
        pieces, pos = [], start
        while pos < stop:
            lo = pos % length
            hi = min(length, lo + stop - pos)
            pieces.append(self._level(i, lo, hi))
            pos += hi - lo
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def _taps(self, i: int, ratio: int) -> torch.Tensor:
        """The periodic kernel's taps for band ``i``'s FFT step, one row per output phase
        ``1 .. ratio − 1``: float64 ``[ratio − 1, 2·half + 1]`` on the device (computed once)."""
        if i not in self._kernels:
            taps = np.stack(
                [periodic_kernel(self.lengths[i], ratio, phase, self.half, self.flat) for phase in range(1, ratio)]
            )
            self._kernels[i] = transfer.to_device(taps, self.device)
        return self._kernels[i]

    def _upsampled(self, i: int, start: int, stop: int) -> torch.Tensor:
        """Band ``i``'s partial sum resampled to band ``i + 1``'s rate, samples ``start .. stop - 1``."""
        lo_band, hi_band = self.layout.bands[i], self.layout.bands[i + 1]
        step = _step(self.layout, i)
        if step is None:
            return self._level(i, start, stop)
        if step == "sequential":
            return transfer.to_device(self._sequential[i].read(start, stop), self.device)
        r = hi_band.sample_rate // lo_band.sample_rate
        m0, m1 = start // r, -(-stop // r)
        x = self._fetch(i, m0 - self.half, m1 + self.half)
        out = x.new_empty((2, m1 - m0, r))
        out[:, :, 0] = x[:, self.half : self.half + m1 - m0]  # phase 0 is the input itself
        out[:, :, 1:] = convolve_valid(x, self._taps(i, r)).transpose(1, 2)
        return out.reshape(2, r * (m1 - m0))[:, start - r * m0 : stop - r * m0]
