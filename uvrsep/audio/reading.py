"""Reading audio: files (soundfile, else ffmpeg, else librosa / audioread), audio held in
memory (bytes, file objects) and in-memory arrays (the Python API's contract,
:func:`as_waveform`). Waveforms are float32 ``[channels, samples]``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import (
    AudioReadError,
    ConfigError,
    EmptyAudioError,
    UnsupportedFormatError,
)

log = logging.getLogger(__name__)

#: Extensions read with soundfile (libsndfile); anything else goes through ffmpeg.
SOUNDFILE_EXTENSIONS = frozenset(
    [
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
    ]
)
#: Extensions (audio and video containers) decoded with ffmpeg.
FFMPEG_EXTENSIONS = frozenset(
    [
        ".m4a",
        ".aac",
        ".alac",
        ".wma",
        ".ac3",
        ".eac3",
        ".dts",
        ".amr",
        ".mka",
        ".mp4",
        ".m4v",
        ".mkv",
        ".webm",
        ".mov",
        ".avi",
        ".flv",
        ".ts",
        ".3gp",
        ".wmv",
        ".mpg",
        ".mpeg",
    ]
)


#: Largest sample magnitude uvrsep analyses: the float32 STFTs sum up to 2048 windowed samples,
#: so far larger values overflow (a float WAV may hold up to 3.4e38). Larger inputs are refused.
MAX_SAMPLE = 1e30


def check_samples(wave: np.ndarray, path: object) -> None:
    """Refuse audio holding NaN / infinite samples, or samples too large to analyse
    (:data:`MAX_SAMPLE`), with an :class:`AudioReadError` naming ``path``."""
    if wave.size == 0:
        return
    peak = float(np.max(np.abs(wave)))
    if not np.isfinite(peak):
        raise AudioReadError(f"{path}: holds NaN or infinite samples")
    if peak > MAX_SAMPLE:
        raise AudioReadError(
            f"{path}: samples reach {peak:.3g}, too large to analyse (at most {MAX_SAMPLE:.0e}); scale it down"
        )


def check_input_file(path: Path) -> None:
    """Refuse what cannot be an audio input before decoding it: a missing path, a folder,
    something that is not a regular file (a FIFO, a device), an empty file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioReadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioReadError(f"{path}: is a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise AudioReadError(f"{path}: is {kind}; give a regular audio file")
    if st.st_size == 0:
        raise EmptyAudioError(f"{path}: is an empty (0-byte) file")
    if not os.access(path, os.R_OK):
        raise AudioReadError(f"{path}: cannot be read (permission denied)")


def read_audio(path: str | os.PathLike, stream: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 ``[channels, samples]`` plus its sample rate.

    soundfile reads what libsndfile can; video containers, m4a/aac and anything soundfile
    refuses go through ffmpeg (first audio stream, or ``stream``), which also down-mixes inputs
    with more than two channels to stereo with its standard matrix. Raises
    :class:`AudioReadError` naming the file when it is missing, unreadable, empty or holds
    non-finite samples.
    """
    path = Path(path)
    check_input_file(path)
    wav = None
    if stream is None and path.suffix.lower() not in FFMPEG_EXTENSIONS:
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
            wav = data.T
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            first_error = exc
    else:
        first_error = None
    if wav is None or wav.shape[0] > 2:
        if shutil.which("ffmpeg"):
            wav, sr = read_with_ffmpeg(path, stream or 0)
        elif wav is None:
            wav, sr = _read_with_librosa(path, first_error or AudioReadError("soundfile cannot read it"))
        else:
            log.warning("%s: %d channels and no ffmpeg to down-mix them: keeping the first two", path, wav.shape[0])
    if wav.shape[-1] == 0:
        raise EmptyAudioError(f"{path}: holds no audio samples")
    check_samples(wav, path)
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def read_audio_object(source: object, name: str = "file object", stream: int | None = None) -> tuple[np.ndarray, int]:
    """Read encoded audio held in memory (``bytes``, ``bytearray``, ``memoryview``) or behind a
    binary file object (``.read()``) as :func:`read_audio` reads a file: float32 ``[channels,
    samples]`` and its sample rate. Errors are :class:`AudioReadError` s naming ``name``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        read = getattr(source, "read", None)
        if not callable(read):
            raise ConfigError(f"{name}: not audio bytes nor a binary file object (no .read())")
        try:
            data = read()
        except (OSError, ValueError) as exc:
            raise AudioReadError(f"{name}: cannot be read ({exc})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise ConfigError(f"{name}: a text file object; open the audio file in binary mode ('rb')")
    if not data:
        raise EmptyAudioError(f"{name}: holds no data")
    if stream is None:
        try:
            wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            pass
        else:
            wave = np.ascontiguousarray(wave.T)
            if wave.shape[0] <= 2:
                if wave.shape[1] == 0:
                    raise EmptyAudioError(f"{name}: holds no audio samples")
                check_samples(wave, name)
                return wave, int(sr)
    # Anything else (video containers, m4a, more than two channels): through a file, as a path.
    fd, tmp = tempfile.mkstemp(prefix="uvrsep-object-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return read_audio(tmp, stream)
        except AudioReadError as exc:
            text = str(exc).removeprefix(tmp)
            raise type(exc)(name + text.replace(f"{tmp}: ", "").replace(tmp, name)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_with_librosa(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    """Fallback decoder (audioread) for machines without ffmpeg."""
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception as exc:  # audioread raises many unrelated types
        raise UnsupportedFormatError(
            f"{path}: cannot decode audio ({first_error}; fallback decoder: {exc or type(exc).__name__})"
        ) from None
    return np.atleast_2d(wav), int(sr)


def probe(path: Path, stream: int) -> tuple[int, int, float | None]:
    """(sample rate, channels, duration in s or None) of an audio stream, from ffprobe."""
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        f"a:{stream}",
        "-show_entries",
        "stream=sample_rate,channels,duration:format=duration",
        "-of",
        "json",
        str(path),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
        info = json.loads(out)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        reason = detail.decode(errors="replace").strip().splitlines()[-1:] or [type(exc).__name__]
        raise UnsupportedFormatError(f"{path}: cannot decode audio ({reason[0]})") from None
    streams = info.get("streams") or []
    if not streams:
        which = "audio stream" if stream == 0 else f"audio stream {stream} (streams count from 0)"
        raise UnsupportedFormatError(f"{path}: has no {which}")
    st = streams[0]
    duration = st.get("duration") or info.get("format", {}).get("duration")
    return int(st["sample_rate"]), int(st["channels"]), float(duration) if duration else None


def run_ffmpeg_decode(path: Path, stream: int, channels: int, output: list[str]) -> subprocess.CompletedProcess:
    """Decode audio stream ``stream`` of ``path`` to float32 PCM with ``channels`` channels
    (ffmpeg's down-mix), written as ``output`` says; no shell. Raises
    :class:`UnsupportedFormatError` with ffmpeg's last line when it fails."""
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        f"0:a:{stream}",
        "-vn",
        "-ac",
        str(channels),
        "-acodec",
        "pcm_f32le",
        *output,
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)  # its return code is read below
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["ffmpeg failed"]
        raise UnsupportedFormatError(f"{path}: cannot decode audio ({reason[0]})")
    return proc


def read_with_ffmpeg(path: Path, stream: int = 0) -> tuple[np.ndarray, int]:
    """Decode one audio stream with ffmpeg (no shell) to float32 ``[C, T]``, C ≤ 2."""
    sr, channels, _ = probe(path, stream)
    channels = min(channels, 2)
    proc = run_ffmpeg_decode(path, stream, channels, ["-f", "f32le", "-"])
    data = np.frombuffer(proc.stdout, dtype="<f4")
    data = data[: len(data) // channels * channels]
    return data.reshape(-1, channels).T.copy(), sr


def duration_seconds(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds (header only; no decoding where avoidable)."""
    path = Path(path)
    check_input_file(path)
    if path.suffix.lower() not in FFMPEG_EXTENSIONS:
        try:
            return sf.info(str(path)).duration
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            pass
    if shutil.which("ffprobe"):
        duration = probe(path, 0)[2]
        if duration is not None:
            return duration
    wav, sr = read_audio(path)
    return wav.shape[-1] / sr


#: Highest sample rate an in-memory input may declare (Hz), as for written stems.
MAX_INPUT_RATE = 384000


def check_input_rate(sample_rate: object, name: str = "array") -> int:
    """``sample_rate`` of an in-memory input as an ``int``; a :class:`ConfigError` unless it is
    a whole number of Hz from 1 to :data:`MAX_INPUT_RATE` (a huge rate would make resampling
    allocate gigabytes)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ConfigError(f"{name}: sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if not 1 <= sample_rate <= MAX_INPUT_RATE:
        raise ConfigError(f"{name}: sample_rate {sample_rate} is outside 1–{MAX_INPUT_RATE} Hz")
    return int(sample_rate)


#: A 2-D array axis with at most this many entries (and the other axis longer) holds channels.
MAX_CHANNELS = 8


def channels_first(wave: np.ndarray, name: str = "array") -> np.ndarray:
    """An in-memory waveform as ``[channels, samples]``.

    Accepted: ``[samples]`` (mono); ``[channels, samples]`` (uvrsep's, torchaudio's layout);
    ``[samples, channels]`` (what ``soundfile.read`` returns). A 2-D array is read with its
    small axis as channels when one axis has at most :data:`MAX_CHANNELS` entries and the other
    is longer; any other shape is refused with a :class:`ConfigError` naming it.
    """
    wave = np.asarray(wave)
    if wave.ndim == 1:
        return wave[None, :]
    if wave.ndim == 2:
        rows, cols = wave.shape
        if rows <= MAX_CHANNELS and cols > rows:
            return wave
        if cols <= MAX_CHANNELS and rows > cols:
            return wave.T
    raise ConfigError(
        f"{name}: cannot tell channels from samples in an array of shape {tuple(wave.shape)}; give "
        f"[channels, samples] or [samples, channels] with at most {MAX_CHANNELS} channels (or [samples] for mono)"
    )


def as_waveform(wave: object, name: str = "array") -> np.ndarray:
    """An in-memory input as float32 ``[channels, samples]``: the Python API's contract.

    - Layouts: as :func:`channels_first` (``[samples]``, ``[channels, samples]``,
      ``[samples, channels]``); other shapes (0-D, 3-D, ...) are refused.
    - Float arrays (float16/32/64) are taken as they are: full scale is ±1.0.
    - Signed integer arrays are scaled as soundfile scales integer PCM: int16 by 1/32768, int32
      by 1/2³¹ (int8 by 1/128, int64 by 1/2⁶³), so full scale becomes ±1.0. ``scipy.io.wavfile``
      and ``soundfile.read(dtype="int16")`` give such arrays.
    - Refused with a one-line :class:`ConfigError`: unsigned integers (their zero is not
      silence: convert 8-bit PCM yourself), booleans, complex numbers, text or objects; an empty
      array is an :class:`EmptyAudioError`.
    - torch tensors (any device; float dtypes numpy lacks, such as bfloat16, are widened to
      float32 exactly) and nested lists are read as arrays.
    """
    if hasattr(wave, "detach") and hasattr(wave, "cpu"):  # a torch tensor
        wave = _tensor_array(wave, name)
    try:
        arr = np.asarray(wave)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}: not an array of samples ({exc})") from None
    kind = arr.dtype.kind
    if kind == "u":
        raise ConfigError(
            f"{name}: unsigned integer samples ({arr.dtype}) are refused: their zero is not silence; "
            "give float samples in -1..1, or signed integers"
        )
    if kind not in "fi":
        what = {"b": "booleans", "c": "complex numbers"}.get(kind, f"{arr.dtype} values")
        raise ConfigError(f"{name}: holds {what}, not audio samples; give float (-1..1) or signed integer samples")
    if arr.ndim not in (1, 2):
        raise ConfigError(
            f"{name}: a {arr.ndim}-D array of shape {tuple(arr.shape)}; give [samples], "
            "[channels, samples] or [samples, channels]"
        )
    if arr.size == 0:
        raise EmptyAudioError(f"{name}: holds no audio samples (shape {tuple(arr.shape)})")
    arr = channels_first(arr, name)
    if kind == "i":
        return (arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))).astype(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _tensor_array(tensor, name: str) -> np.ndarray:
    """A torch tensor's values as a numpy array (on the CPU): float dtypes numpy has no type for
    (bfloat16, float8) widened to float32 (exact), complex ones with their conjugation applied;
    one numpy cannot hold (sparse, quantized) is a :class:`ConfigError`."""
    try:
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and tensor.element_size() <= 2 and str(tensor.dtype) != "torch.float16":
            tensor = tensor.float()
        return tensor.resolve_conj().numpy()
    except (TypeError, RuntimeError, ValueError) as exc:
        first = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise ConfigError(
            f"{name}: a torch tensor ({tensor.dtype}, {tensor.layout}) that is not an array of samples "
            f"({first}); give a dense float or signed integer tensor"
        ) from None


def to_stereo(wav: np.ndarray) -> np.ndarray:
    """Return ``[2, T]``: mono is duplicated; for more channels the first two (front L/R) are kept."""
    if wav.shape[0] == 1:
        return np.concatenate([wav, wav], axis=0)
    return wav[:2]
