"""Long inputs in segments: memory bounded whatever the length, the whole-file result.

A long input is never held whole. It is read block by block (:class:`AudioSource`), analysed
frame range by frame range (:func:`analyze_frames`: the band resamplers and STFTs are local,
so a range read with a few frames of margin is exactly the whole-file analysis), run through
the network window by window (the windows are those of the whole file), and synthesised
segment by segment (:class:`SegmentedSynthesis`).

The synthesis resamples each band's partial sum up to the next band's rate, with the layout's
synthesis resampler for that step:

- FFT resampling (RVC's middle bands: ``scipy.signal.resample`` over the whole file, which
  treats the signal as periodic) is the one global step. Its output at a sample is a weighted
  sum over the whole file with the periodic interpolation kernel ``K_L`` of the file's length
  ``L``; here that sum runs over the ``±FFT_KERNEL_HALF`` nearest samples (indices taken
  modulo ``L``, so the wrap-around at the file's two ends is the original's), with the outer
  half of the kernel tapered. The bands are low-passed well below Nyquist, so the neglected
  tail is far below audibility: measured 110–130 dB SDR against the whole-file resampling.
- libsamplerate (``sinc_fastest`` between all bands in UVR semantics) is stateful and runs
  forwards: a :class:`SequentialResampler` feeds it the partial sum in order and gives exactly
  the whole-file ``librosa.resample`` output (the same float32 samples), so the stems are
  produced in order, as they are written.

The steps run in torch on the separator's DSP device (:mod:`uvrsep.bands`), the periodic
kernel's convolution included; libsamplerate runs on the CPU.

tests/test_segments.py holds the end-to-end equality. Streaming needs band layouts whose bands
share one frame grid, whose lower bands are analysed with ``polyphase``, and where no FFT step
lies above a libsamplerate step (it would need the finished lower sum at the file's far end);
:func:`unsupported_reason` says why others are processed whole.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import samplerate
import soundfile as sf
import torch

from . import bands
from .audio import FFMPEG_EXTENSIONS, check_input_file, check_samples, owner_tag, probe, remove_abandoned, run_ffmpeg_decode
from .config import BandLayout
from .dsp.resampling import convolve_valid
from .errors import AudioReadError, EmptyAudioError, UnsupportedFormatError

#: Half-width, in input samples, of the kernel standing in for a whole-file FFT resampling ...
FFT_KERNEL_HALF = 16384
#: ... of which the samples beyond this distance are tapered (raised cosine) to zero.
FFT_KERNEL_FLAT = 8192
#: Input samples of margin around each block when the input's rate is converted block-wise.
SOURCE_MARGIN = 8192
#: Prefix of the temporary folders holding decoded copies of inputs (system temp folder).
TEMP_PREFIX = "uvrsep-decode-"
#: Input samples fed to a libsamplerate step beyond what the wanted outputs need (its filter's
#: look-ahead; sinc_fastest needs 20 at the rates here, others more, fed in further rounds).
SEQUENTIAL_LOOKAHEAD = 64
#: Synthesis resamplers that are FFT resampling over the whole file, and libsamplerate's.
FFT_RESAMPLERS = frozenset({"scipy", "fft"})
SAMPLERATE_RESAMPLERS = frozenset({"sinc_best", "sinc_medium", "sinc_fastest", "linear", "zero_order_hold"})
#: soundfile subtypes whose length and seeking are not sample-exact: decoded once, in order.
LOSSY_SUBTYPES = frozenset({"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"})


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
            return (f"band {i + 1}'s synthesis FFT resampling needs the whole lower sum, which libsamplerate "
                    "makes in order across rates below it")
        elif hi.sample_rate % lo.sample_rate:
            return f"band {i + 1}'s rate does not divide band {i + 2}'s"
    return None


# -- input ------------------------------------------------------------------------------------


class AudioSource:
    """Random access to an audio file as float32 stereo ``[2, T]`` at ``sample_rate``.

    Blocks are read from disk on demand; inputs soundfile cannot seek in (video, m4a, more
    than two channels, a chosen ``stream``) are first decoded by ffmpeg into a temporary
    float WAV file. A rate conversion is done block-wise on blocks aligned to the rates'
    common period with :data:`SOURCE_MARGIN` samples of margin, so each output sample is the
    whole-file resampler's (``res_type`` is the layout's top-band resampler, as for whole files,
    run on ``dsp``: see :func:`bands.resample`).
    Samples before 0 and past the end read as zeros. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, res_type: str, stream: int | None = None,
                 dsp: torch.device | str | None = None):
        self.path = Path(path)
        self.dsp = dsp
        self.sample_rate = sample_rate
        self.res_type = res_type
        self._tmpdir: str | None = None
        self._file = None
        check_input_file(self.path)
        self._file = self._open(stream)
        self.source_rate = self._file.samplerate
        self.source_samples = self._file.frames
        if self.source_samples == 0:
            self.close()
            raise EmptyAudioError(f"{self.path}: holds no audio samples")
        ratio = sample_rate / self.source_rate
        self.n_samples = math.ceil(self.source_samples * ratio) if self.source_rate != sample_rate else self.source_samples
        g = math.gcd(self.source_rate, sample_rate)
        self._period_in, self._period_out = self.source_rate // g, sample_rate // g

    def _open(self, stream: int | None) -> sf.SoundFile:
        if stream is None and self.path.suffix.lower() not in FFMPEG_EXTENSIONS:
            try:
                fh = sf.SoundFile(str(self.path))
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
                fh = None
            if fh is not None and fh.channels <= 2:
                if fh.seekable() and fh.subtype not in LOSSY_SUBTYPES:
                    return fh
                # Compressed: the header's length and seeking are approximate (mp3 encoder
                # delay); decoding it once in order gives exactly the whole-file read's samples.
                with fh:
                    return self._decode_in_order(fh)
            if fh is not None:
                fh.close()
        if not shutil.which("ffmpeg"):
            raise UnsupportedFormatError(f"{self.path}: needs ffmpeg to be decoded in segments (install ffmpeg)")
        _, channels, _ = probe(self.path, stream or 0)
        target = self._temp_file()
        try:
            run_ffmpeg_decode(self.path, stream or 0, min(channels, 2), ["-rf64", "auto", "-f", "wav", str(target)])
        except UnsupportedFormatError:
            self.close()
            raise
        return sf.SoundFile(str(target))

    def _temp_file(self) -> Path:
        """Where a decoded copy goes: a private temporary folder named after this process,
        removed by :meth:`close` (on any exit, Ctrl-C and SIGTERM included); those of killed
        runs are removed here, next time."""
        remove_abandoned(Path(tempfile.gettempdir()), TEMP_PREFIX)
        self._tmpdir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{owner_tag()}-")
        return Path(self._tmpdir) / "decoded.wav"

    def _decode_in_order(self, fh: sf.SoundFile) -> sf.SoundFile:
        target = self._temp_file()
        try:
            with sf.SoundFile(str(target), "w", samplerate=fh.samplerate, channels=fh.channels,
                              subtype="FLOAT", format="RF64") as out:
                while True:  # not fh.blocks(): it pads to the header's (too long) length
                    block = fh.read(1 << 18, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    out.write(block)
        except (sf.LibsndfileError, RuntimeError) as exc:
            self.close()
            raise AudioReadError(f"{self.path}: cannot decode audio ({exc})") from None
        return sf.SoundFile(str(target))

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _read_source(self, start: int, stop: int) -> np.ndarray:
        """Source samples ``start .. stop - 1`` as float32 ``[C, n]`` (zeros outside the file)."""
        out = np.zeros((self._file.channels, stop - start), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.source_samples)
        if lo < hi:
            self._file.seek(lo)
            data = self._file.read(hi - lo, dtype="float32", always_2d=True).T
            if data.shape[1] != hi - lo:
                raise AudioReadError(f"{self.path}: ends early ({lo + data.shape[1]} of {self.source_samples} samples)")
            check_samples(data, self.path)
            out[:, lo - start : hi - start] = data
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop - 1`` at ``sample_rate``: float32 ``[2, stop - start]``."""
        if self.source_rate == self.sample_rate:
            wave = self._read_source(start, stop)
        else:
            pin, pout = self._period_in, self._period_out
            margin = math.ceil(SOURCE_MARGIN / pin)
            q0 = start // pout - margin
            q1 = -(-stop // pout) + margin
            chunk = self._read_source(q0 * pin, q1 * pin)
            converted = bands.resample(chunk, self.source_rate, self.sample_rate, self.res_type, self.dsp)
            wave = converted[:, start - q0 * pout : stop - q0 * pout]
            wave = _zero_outside(wave, start, self.n_samples)
        if wave.shape[0] == 1:
            wave = np.concatenate([wave, wave], axis=0)
        return np.ascontiguousarray(wave, dtype=np.float32)


def _zero_outside(wave, start: int, length: int):
    """``wave`` (global samples ``start ..``; a numpy array or a tensor) with samples outside
    ``0 .. length - 1`` zeroed (a copy when any is)."""
    lo, hi = max(0, -start), min(wave.shape[-1], length - start)
    if lo == 0 and hi >= wave.shape[-1]:
        return wave
    wave = wave.clone() if isinstance(wave, torch.Tensor) else wave.copy()
    wave[..., :lo] = 0
    wave[..., max(hi, 0) :] = 0
    return wave


# -- analysis ---------------------------------------------------------------------------------


def analysis_margin(layout: BandLayout) -> int:
    """Frames of margin that make a range's analysis exact (STFT support plus resampler taps)."""
    return max(math.ceil(b.n_fft / (2 * b.hop_length)) for b in layout.bands) + 2


def analyze_frames(
    read: Callable[[int, int], np.ndarray], layout: BandLayout, n_samples: int, start: int, stop: int,
    dsp: torch.device | str | None = None, *, tensors: bool = False,
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None]:
    """Frames ``start .. stop - 1`` of :func:`bands.analyze` of the whole input, from a reader.

    ``read(a, b)`` gives the input's samples ``a .. b - 1`` at the layout's rate (float32
    ``[2, b - a]``, zeros outside the file); ``n_samples`` is the input's length. Frames past the
    original's count are those ``analyze(..., extra_frames)`` gives. Returns the combined
    spectrogram ``[2, bins + 1, stop - start]`` and the raw high end ``[2, h, stop - start]``
    (numpy; ``tensors``: tensors on the DSP device), computed on ``dsp`` (see :func:`bands.analyze`).
    """
    lengths = bands.band_lengths(n_samples, layout)
    m = analysis_margin(layout)
    g0, g1 = start - m, stop + m
    device, reference = bands.place(dsp)
    wave = bands.tensor(read(g0 * layout.top.hop_length, g1 * layout.top.hop_length), device)

    def fit(i: int, band_wave: torch.Tensor) -> torch.Tensor:
        # The whole-file band waveform ends at its own length: what lies past it is zeros.
        return _zero_outside(band_wave, g0 * layout.bands[i].hop_length, lengths[i])

    specs = bands.band_spectra(wave, layout, reference, fit=fit)
    spec, high = bands.combine(specs, layout, m, m + stop - start)
    if tensors:
        return spec, high
    return bands.array(spec), None if high is None else bands.array(high)


# -- synthesis --------------------------------------------------------------------------------


def periodic_kernel(length: int, ratio: int, phase: int, half: int = FFT_KERNEL_HALF, flat: int = FFT_KERNEL_FLAT) -> np.ndarray:
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
            new = np.stack([conv.process(ch, self.ratio, end_of_input=False) for conv, ch in zip(self._converters, chunk)])
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
    ``a .. b - 1`` (``0 <= a < b <= n_frames``). :meth:`output` gives a range of the whole-file
    synthesis (float64 ``[2, stop - start]``, of ``hop_top·(n_frames − 1)`` samples in all) while
    touching only the frames near it, those near the file's ends (wrap-around of FFT steps), and,
    with libsamplerate steps, the frames just ahead of it (ranges then come in order).
    """

    def __init__(
        self,
        layout: BandLayout,
        n_frames: int,
        frames: Callable[[int, int], tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None]],
        *,
        half: int = FFT_KERNEL_HALF,
        flat: int = FFT_KERNEL_FLAT,
        dsp: torch.device | str | None = None,
    ):
        reason = unsupported_reason(layout)
        if reason is not None:
            raise ValueError(f"band config {layout.name} cannot be synthesised in segments: {reason}")
        self.layout = layout
        self.n_frames = n_frames
        self.frames = frames
        self.dsp = dsp
        self._device, self._reference = bands.place(dsp)
        self.half, self.flat = half, flat
        self.lengths = [b.hop_length * (n_frames - 1) for b in layout.bands]
        for i in range(len(layout.bands) - 1):
            if _step(layout, i) == "fft" and self.lengths[i] <= 2 * half + 1:
                raise ValueError(f"input too short for segments ({n_frames} frames)")
        self._kernels: dict[tuple[int, int, int], torch.Tensor | np.ndarray] = {}
        self._sequential = {
            i: SequentialResampler(
                lambda a, b, i=i: self._level(i, a, b), self.lengths[i],
                layout.bands[i + 1].sample_rate / band.sample_rate, bands.synthesis_resampler(layout, i),
            )
            for i, band in enumerate(layout.bands[:-1]) if _step(layout, i) == "sequential"
        }

    def output(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop - 1`` of the whole-file synthesis (top band's rate). With a
        libsamplerate step in the layout, ranges must come in order (each starting where the
        previous one stopped, or later)."""
        return self._level(len(self.layout.bands) - 1, start, stop)

    def _level(self, i: int, start: int, stop: int) -> np.ndarray:
        """Band ``i``'s partial sum (bands ``0 .. i``), samples ``start .. stop - 1`` within ``0 .. L_i``."""
        band = self.layout.bands[i]
        hop = band.hop_length
        reach = math.ceil(band.n_fft / (2 * hop)) + 1
        f0 = max(0, start // hop - reach)
        f1 = min(self.n_frames, -(-stop // hop) + reach + 1)
        spec, high = self.frames(f0, f1)
        top = i == len(self.layout.bands) - 1
        part = bands.band_part(spec, self.layout, i, high if top else None, self.dsp)
        part = part[:, start - f0 * hop : stop - f0 * hop]
        if i == 0:
            return part
        return np.add(self._upsampled(i - 1, start, stop), part)

    def _fetch(self, i: int, start: int, stop: int) -> np.ndarray:
        """Band ``i``'s partial sum over ``start .. stop - 1`` taken modulo its length (periodic)."""
        length = self.lengths[i]
        pieces, pos = [], start
        while pos < stop:
            lo = pos % length
            hi = min(length, lo + stop - pos)
            pieces.append(self._level(i, lo, hi))
            pos += hi - lo
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def _convolve(self, x: np.ndarray, taps: torch.Tensor | np.ndarray) -> np.ndarray:
        """``fftconvolve(x, taps, mode='valid')`` along time (float64 ``[2, n]``), on the DSP device."""
        if self._reference:
            from .dsp import reference

            return reference.convolve_valid(x, taps)
        return bands.array(convolve_valid(bands.tensor(x, self._device), taps))

    def _upsampled(self, i: int, start: int, stop: int) -> np.ndarray:
        """Band ``i``'s partial sum resampled to band ``i + 1``'s rate, samples ``start .. stop - 1``."""
        lo_band, hi_band = self.layout.bands[i], self.layout.bands[i + 1]
        step = _step(self.layout, i)
        if step is None:
            return self._level(i, start, stop)
        if step == "sequential":
            return self._sequential[i].read(start, stop)
        r = hi_band.sample_rate // lo_band.sample_rate
        length = self.lengths[i]
        m0, m1 = start // r, -(-stop // r)
        x = self._fetch(i, m0 - self.half, m1 + self.half)
        out = np.empty((2, r * (m1 - m0)))
        out[:, 0::r] = x[:, self.half : self.half + m1 - m0]
        for phase in range(1, r):
            key = (length, r, phase)
            if key not in self._kernels:
                taps = periodic_kernel(length, r, phase, self.half, self.flat)
                self._kernels[key] = taps if self._reference else torch.from_numpy(taps).to(self._device)
            out[:, phase::r] = self._convolve(x, self._kernels[key])
        return out[:, start - r * m0 : stop - r * m0]
