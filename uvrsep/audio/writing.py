"""Writing audio: formats, bit depths and rates that can be written, atomic files written block
by block (:class:`AudioStreamWriter`), ffmpeg encodes, and what clipping at full scale cost.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from ..errors import AudioWriteError, ConfigError, OutputExistsError, option
from .files import READY_SUFFIX, commit_file, temp_beside, write_error

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

#: ``--bit-depth`` choices and the soundfile subtype each maps to (lossless formats).
BIT_DEPTHS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
#: Output formats and their soundfile (libsndfile) container; mp3 and ogg are lossy.
OUTPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "OGG"}
LOSSY_SUBTYPES = {"mp3": "MPEG_LAYER_III", "ogg": "VORBIS"}
#: Sample rates a written file may have (``--sample-rate``): 8 kHz to 384 kHz, and per format
#: what its encoder takes (MPEG audio's nine rates; libvorbis crashes above 200 kHz).
MIN_OUTPUT_RATE, MAX_OUTPUT_RATE = 8000, 384000
FORMAT_RATES = {
    "mp3": frozenset((8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "ogg": range(MIN_OUTPUT_RATE, 192000 + 1),
}


def output_settings_problem(fmt: str, bit_depth: str | None, sample_rate: int | None) -> str | None:
    """Why files of format ``fmt`` cannot be written with ``bit_depth`` (``None``: the format's
    default) at ``sample_rate`` (``None``: not known yet); ``None`` when they can."""
    if fmt not in OUTPUT_FORMATS:
        return f"unsupported output format {fmt!r} (use {', '.join(OUTPUT_FORMATS)})"
    if bit_depth is not None:
        if bit_depth not in BIT_DEPTHS:
            return f"unsupported bit depth {bit_depth!r} (use {', '.join(BIT_DEPTHS)})"
        if fmt in LOSSY_SUBTYPES:
            return f"{option('bit_depth')} does not apply to {fmt} (a lossy format has no bit depth); leave it out"
        if not sf.check_format(OUTPUT_FORMATS[fmt], BIT_DEPTHS[bit_depth]):
            return f"{fmt} cannot store bit depth {bit_depth} (use {', '.join(b for b, t in BIT_DEPTHS.items() if sf.check_format(OUTPUT_FORMATS[fmt], t))})"
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
            return f"sample rate must be a whole number of Hz, got {sample_rate!r}"
        if not MIN_OUTPUT_RATE <= sample_rate <= MAX_OUTPUT_RATE:
            return f"sample rate {sample_rate} Hz is outside {MIN_OUTPUT_RATE}–{MAX_OUTPUT_RATE} Hz"
        rates = FORMAT_RATES.get(fmt)
        if rates is not None and sample_rate not in rates:
            allowed = (
                f"{rates.start}–{rates.stop - 1}" if isinstance(rates, range) else ", ".join(map(str, sorted(rates)))
            )
            return f"{fmt} cannot be written at {sample_rate} Hz (its rates: {allowed} Hz)"
    return None


def check_output_settings(fmt: str, bit_depth: str | None, sample_rate: int | None) -> None:
    """A one-line :class:`ConfigError` when stems cannot be written as asked (see
    :func:`output_settings_problem`): checked before any model is loaded."""
    problem = output_settings_problem(fmt, bit_depth, sample_rate)
    if problem is not None:
        raise ConfigError(problem)


def _output_format(path: Path, bit_depth: str | None, overwrite: bool, sample_rate: int) -> tuple[str, str]:
    """(soundfile format, subtype) for an output path; refuses what cannot or must not be written."""
    fmt = path.suffix.lower().lstrip(".")
    problem = output_settings_problem(fmt, bit_depth, sample_rate)
    if problem is not None:
        raise AudioWriteError(f"{path}: {problem}")
    subtype = LOSSY_SUBTYPES.get(fmt, BIT_DEPTHS[bit_depth or "16"])
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass overwrite to replace it)")
    if path.exists() and not path.is_file():
        raise AudioWriteError(f"{path}: is a folder or special file, not an audio file; it is never replaced")
    return OUTPUT_FORMATS[fmt], subtype


#: A written stem is reported as clipped (one warning) when its peak passes full scale by more
#: than 1 dB or more than 0.1 % of its samples are clipped; smaller overs are inaudible.
CLIP_WARN_PEAK = 10 ** (1 / 20)
CLIP_WARN_FRACTION = 1e-3


@dataclass
class ClipCount:
    """Samples of one written file that integer PCM (or a lossy encoder) clipped at full scale."""

    clipped: int = 0
    samples: int = 0
    peak: float = 0.0

    def add(self, data: np.ndarray) -> None:
        magnitude = np.abs(data)
        self.clipped += int(np.count_nonzero(magnitude > 1.0))
        self.samples += data.size
        if data.size:
            self.peak = max(self.peak, float(magnitude.max()))

    @property
    def noticeable(self) -> bool:
        return self.clipped > 0 and (self.peak > CLIP_WARN_PEAK or self.clipped > CLIP_WARN_FRACTION * self.samples)

    def describe(self) -> str:
        """``peak +90.3 dBFS, 99.97 % of samples``."""
        db = 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")
        return f"peak {db:+.1f} dBFS, {100 * self.clipped / max(self.samples, 1):.2f} % of samples"


def _frames_for_file(wav: np.ndarray, subtype: str, clips: ClipCount | None = None) -> np.ndarray:
    """``[channels, samples]`` → soundfile's ``[samples, channels]`` float32, clipped for integer
    and lossy formats (counted in ``clips``)."""
    data = np.asarray(wav, dtype=np.float32).T
    if subtype != "FLOAT":
        if clips is not None:
            clips.add(data)
        # Clip to the int range: the original's (x * 32768).astype(int16) wraps 1.0 to -32768.
        data = np.clip(data, -1.0, 1.0)
    return data


def write_audio(
    path: str | os.PathLike,
    wav: np.ndarray,
    sample_rate: int,
    *,
    bit_depth: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``wav`` (``[channels, samples]``) atomically; integer formats clip, never wrap.

    The format follows the file extension (``.wav``, ``.flac``, ``.mp3``, ``.ogg``; the bit depth
    applies to the lossless ones). An existing file is only replaced with ``overwrite=True``.
    """
    wav = np.atleast_2d(wav)
    with AudioStreamWriter(path, sample_rate, wav.shape[0], bit_depth=bit_depth, overwrite=overwrite) as writer:
        writer.write(wav)
        return writer.commit()


def encode_with_ffmpeg(source: str | os.PathLike, target: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Encode the audio file ``source`` into ``target``, in the format its extension names
    (``.mp3``, ``.m4a``, ``.ogg``, ...), with ffmpeg's default encoder settings for it.

    ffmpeg runs with an argument list (no shell: any file name works) and writes a temporary file
    beside ``target``, renamed when complete. Raises :class:`AudioWriteError` naming ``target``
    (with ffmpeg's last line) when ffmpeg is missing or fails; nothing is left at ``target`` then.
    """
    target = Path(target)
    if not target.suffix:
        raise AudioWriteError(f"{target}: has no extension to choose the output format by")
    if shutil.which("ffmpeg") is None:
        raise AudioWriteError(
            f"{target}: writing {target.suffix} needs ffmpeg, which is not installed (or use wav/flac)"
        )
    if target.exists() and not overwrite:
        raise AudioWriteError(f"{target}: already exists (pass overwrite to replace it)")
    # Keep the extension last: ffmpeg picks the container by it.
    tmp_name = temp_beside(target, suffix=f".part{target.suffix}")
    # Absolute paths: a relative name starting with "-" or holding "name:" is not read as an option or protocol.
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", os.path.abspath(source), "-vn", os.path.abspath(tmp_name)]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)  # its return code is read below
        if proc.returncode != 0:
            reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [
                f"exit status {proc.returncode}"
            ]
            raise AudioWriteError(f"{target}: ffmpeg cannot encode it ({reason[0]})")
        ours = commit_file(tmp_name, target, overwrite)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, AudioWriteError):
            raise write_error(target, exc) from None
        raise
    if not ours:
        raise OutputExistsError(f"{target}: was written by another process meanwhile; kept as it is")
    return target


class AudioStreamWriter:
    """Write an audio file block by block, atomically: blocks go to a temporary file beside
    ``path``, :meth:`commit` renames it into place, :meth:`abort` (or leaving a ``with`` block by
    an exception) removes it. Same formats and rules as :func:`write_audio`; without
    ``overwrite`` a target that appeared meanwhile (another process's) is kept and
    :meth:`commit` raises :class:`OutputExistsError`."""

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        channels: int,
        *,
        bit_depth: str | None = None,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.overwrite = overwrite
        container, self.subtype = _output_format(self.path, bit_depth, overwrite, sample_rate)
        #: What clipping at full scale cost this file (integer and lossy formats).
        self.clips = ClipCount()
        self._tmp = temp_beside(self.path)
        try:
            self._fh = sf.SoundFile(
                self._tmp, "w", samplerate=sample_rate, channels=channels, subtype=self.subtype, format=container
            )
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            Path(self._tmp).unlink(missing_ok=True)
            raise write_error(self.path, exc) from None

    def write(self, wav: np.ndarray) -> None:
        """Append ``[channels, samples]``."""
        try:
            self._fh.write(_frames_for_file(wav, self.subtype, self.clips))
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self.abort()
            raise write_error(self.path, exc) from None

    def finish(self) -> None:
        """Close the file and mark it complete (``.ready``). A run killed between renaming one
        finished file of a set into place and the next leaves the others ready:
        :func:`complete_interrupted` renames them into place on the next run."""
        try:
            self._fh.close()
            ready = self._tmp[: -len(".part")] + READY_SUFFIX
            os.replace(self._tmp, ready)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self.abort()
            raise write_error(self.path, exc) from None
        self._tmp = ready

    def commit(self) -> Path:
        try:
            self._fh.close()
            ours = commit_file(self._tmp, self.path, self.overwrite)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self.abort()
            raise write_error(self.path, exc) from None
        if not ours:
            raise OutputExistsError(f"{self.path}: was written by another process meanwhile; kept as it is")
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # already closed or broken: the file goes anyway
            self._fh.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
