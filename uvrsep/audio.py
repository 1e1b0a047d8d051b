"""Audio in and out: the I/O boundary of uvrsep.

Waveforms inside uvrsep are float arrays shaped ``[channels, samples]``. Reading goes through
soundfile (librosa / audioread as a fallback for formats libsndfile cannot decode); writing is
atomic: a temporary file in the target folder, renamed when complete.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioReadError, AudioWriteError

#: ``--bit-depth`` choices and the soundfile subtype each maps to.
BIT_DEPTHS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
OUTPUT_FORMATS = ("wav", "flac")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 ``[channels, samples]`` plus its sample rate.

    Raises :class:`AudioReadError` naming the file when it is missing, unreadable, empty or
    holds non-finite samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioReadError(f"{path}: no such file")
    if path.is_dir():
        raise AudioReadError(f"{path}: is a folder, not an audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wav = data.T
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_exc:
        wav, sr = _read_with_librosa(path, sf_exc)
    if wav.shape[-1] == 0:
        raise AudioReadError(f"{path}: holds no audio samples")
    if not np.isfinite(wav).all():
        raise AudioReadError(f"{path}: holds NaN or infinite samples")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def _read_with_librosa(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception as exc:  # audioread raises many unrelated types
        raise AudioReadError(
            f"{path}: cannot decode audio ({first_error}; fallback decoder: {exc or type(exc).__name__})"
        ) from None
    return np.atleast_2d(wav), int(sr)


def to_stereo(wav: np.ndarray) -> np.ndarray:
    """Return ``[2, T]``: mono is duplicated; for more channels the first two (front L/R) are kept."""
    if wav.shape[0] == 1:
        return np.concatenate([wav, wav], axis=0)
    return wav[:2]


def write_audio(
    path: str | os.PathLike,
    wav: np.ndarray,
    sample_rate: int,
    *,
    bit_depth: str = "16",
    overwrite: bool = False,
) -> Path:
    """Write ``wav`` (``[channels, samples]``) atomically; integer formats clip, never wrap.

    The format follows the file extension (``.wav`` or ``.flac``). An existing file is only
    replaced with ``overwrite=True``.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise AudioWriteError(f"{path}: unsupported output format {fmt!r} (use {', '.join(OUTPUT_FORMATS)})")
    if bit_depth not in BIT_DEPTHS:
        raise AudioWriteError(f"unsupported bit depth {bit_depth!r} (use {', '.join(BIT_DEPTHS)})")
    subtype = BIT_DEPTHS[bit_depth]
    if not sf.check_format(fmt.upper(), subtype):
        raise AudioWriteError(f"{path}: {fmt} cannot store bit depth {bit_depth}")
    if path.exists() and not overwrite:
        raise AudioWriteError(f"{path}: already exists (pass overwrite to replace it)")
    data = np.asarray(wav, dtype=np.float32).T
    if subtype != "FLOAT":
        # Clip to the int range: the original's (x * 32768).astype(int16) wraps 1.0 to -32768.
        data = np.clip(data, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp_name, data, sample_rate, subtype=subtype, format=fmt.upper())
        os.replace(tmp_name, path)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, (OSError, sf.LibsndfileError, RuntimeError)):
            raise AudioWriteError(f"{path}: cannot write ({exc})") from None
        raise
    return path
