"""Where an input's samples come from: a file read block by block, or an array in memory.

Both give float32 stereo ``[2, b - a]`` at the model's rate for any range ``a .. b`` (zeros
outside the input) through ``read(a, b)``, and their length ``n_samples``; a separation job
(:mod:`uvrsep.job`) reads what its segments need. Decoding and rate conversion run on the CPU,
on the thread that reads (the batch reads ahead on a thread of its own, which never touches a
GPU).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch

from . import bands
from .audio import (
    FFMPEG_EXTENSIONS,
    check_input_file,
    check_samples,
    owner_tag,
    probe,
    remove_abandoned,
    run_ffmpeg_decode,
)
from .errors import AudioReadError, EmptyAudioError, UnsupportedFormatError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

#: Input samples of margin around each block when the input's rate is converted block-wise.
SOURCE_MARGIN = 8192
#: Prefix of the temporary folders holding decoded copies of inputs (system temp folder).
TEMP_PREFIX = "uvrsep-decode-"
#: soundfile subtypes whose length and seeking are not sample-exact: decoded once, in order.
LOSSY_SUBTYPES = frozenset({"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"})


def resample(wave: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """:func:`uvrsep.bands.resample` of a float32 ``[C, T]`` array, on the CPU."""
    if wave.shape[-1] == 0 or orig_sr == target_sr:
        return wave
    wave = np.ascontiguousarray(wave)
    return bands.resample(torch.from_numpy(wave), orig_sr, target_sr, res_type).numpy()


class ArraySource:
    """An input already in memory: float32 stereo ``[2, T]`` at the model's rate."""

    def __init__(self, wave: np.ndarray):
        self.wave: np.ndarray | None = wave
        self.n_samples = wave.shape[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop - 1``: float32 ``[2, stop - start]`` (zeros outside; the array
        itself when the range is all of it)."""
        wave = self.wave
        if wave is None:
            raise ValueError("the source is closed")
        if start == 0 and stop == self.n_samples:
            return wave
        out = np.zeros((2, stop - start), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.n_samples)
        if lo < hi:
            out[:, lo - start : hi - start] = wave[:, lo:hi]
        return out

    def close(self) -> None:
        self.wave = None


class AudioSource:
    """Random access to an audio file as float32 stereo ``[2, T]`` at ``sample_rate``.

    Blocks are read from disk on demand; inputs soundfile cannot seek in (video, m4a, more
    than two channels, a chosen ``stream``) are first decoded by ffmpeg into a temporary
    float WAV file. A rate conversion is done block-wise on blocks aligned to the rates'
    common period with :data:`SOURCE_MARGIN` samples of margin, so each output sample is the
    whole-file resampler's (``res_type`` is the layout's top-band resampler, as for whole files;
    on the CPU, see :func:`resample`). Samples before 0 and past the end read as zeros. Use as a
    context manager.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, res_type: str, stream: int | None = None):
        self.path = Path(path)
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
        self.n_samples = (
            math.ceil(self.source_samples * ratio) if self.source_rate != sample_rate else self.source_samples
        )
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
            with sf.SoundFile(
                str(target), "w", samplerate=fh.samplerate, channels=fh.channels, subtype="FLOAT", format="RF64"
            ) as out:
                while True:  # not fh.blocks(): it pads to the header's (too long) length
                    block = fh.read(1 << 18, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    out.write(block)
        except (sf.LibsndfileError, RuntimeError) as exc:
            self.close()
            raise AudioReadError(f"{self.path}: cannot decode audio ({exc})") from None
        return sf.SoundFile(str(target))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
            self._file = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _read_source(self, start: int, stop: int) -> np.ndarray:
        """Source samples ``start .. stop - 1`` as float32 ``[C, n]`` (zeros outside the file)."""
        file = self._file
        if file is None:
            raise ValueError(f"{self.path}: the source is closed")
        out = np.zeros((file.channels, stop - start), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.source_samples)
        if lo < hi:
            file.seek(lo)
            data = file.read(hi - lo, dtype="float32", always_2d=True).T
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
            converted = resample(chunk, self.source_rate, self.sample_rate, self.res_type)
            wave = converted[:, start - q0 * pout : stop - q0 * pout]
            wave = zero_outside(wave, start, self.n_samples)
        if wave.shape[0] == 1:
            wave = np.concatenate([wave, wave], axis=0)
        return np.ascontiguousarray(wave, dtype=np.float32)


def zero_outside(wave, start: int, length: int):
    """``wave`` (global samples ``start ..``; a numpy array or a tensor) with samples outside
    ``0 .. length - 1`` zeroed (a copy when any is)."""
    lo, hi = max(0, -start), min(wave.shape[-1], length - start)
    if lo == 0 and hi >= wave.shape[-1]:
        return wave
    wave = wave.clone() if isinstance(wave, torch.Tensor) else wave.copy()
    wave[..., :lo] = 0
    wave[..., max(hi, 0) :] = 0
    return wave


class MeteredSource:
    """A source (``read``, ``n_samples``, ``close``) whose samples are measured as they are first
    read, in order (:class:`uvrsep.report.measures.SignalMeter`): the input's part of the clip's
    measures, taken from the reads the separation makes anyway. Samples read again are not
    measured again; a range skipped over is read for the meter alone (:meth:`complete` reads
    whatever is left)."""

    #: Samples per read when the meter reads for itself.
    BLOCK = 1 << 18

    def __init__(self, source, meter):
        self.source, self.meter = source, meter
        self.n_samples = source.n_samples

    def _measure(self, wave: np.ndarray, start: int) -> None:
        lo, hi = max(self.meter.samples, start), min(start + wave.shape[1], self.n_samples)
        if lo < hi:
            self.meter.add(wave[:, lo - start : hi - start])

    def complete(self, upto: int | None = None) -> None:
        """Measure every sample before ``upto`` (default: all) not measured yet."""
        upto = self.n_samples if upto is None else min(upto, self.n_samples)
        while self.meter.samples < upto:
            start = self.meter.samples
            self._measure(self.source.read(start, min(upto, start + self.BLOCK)), start)

    def read(self, start: int, stop: int) -> np.ndarray:
        """The source's samples ``start .. stop - 1``; those not seen before go to the meter."""
        self.complete(start)
        wave = self.source.read(start, stop)
        self._measure(wave, start)
        return wave

    def close(self) -> None:
        self.source.close()
