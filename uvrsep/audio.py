"""Audio in and out: the I/O boundary of uvrsep.

Waveforms inside uvrsep are float arrays shaped ``[channels, samples]``. Reading goes through
soundfile (librosa / audioread as a fallback for formats libsndfile cannot decode); writing is
atomic: a temporary file in the target folder, renamed when complete.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import (
    AudioReadError,
    AudioWriteError,
    ConfigError,
    EmptyAudioError,
    OutputExistsError,
    UnsupportedFormatError,
    option,
)

log = logging.getLogger(__name__)

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
#: Extensions read with soundfile (libsndfile); anything else goes through ffmpeg.
SOUNDFILE_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64".split()
)
#: Extensions (audio and video containers) decoded with ffmpeg.
FFMPEG_EXTENSIONS = frozenset(
    ".m4a .aac .alac .wma .ac3 .eac3 .dts .amr .mka .mp4 .m4v .mkv .webm .mov .avi .flv .ts .3gp .wmv .mpg .mpeg".split()
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
        try:
            data = source.read()
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
    cmd = ["ffprobe", "-v", "error", "-select_streams", f"a:{stream}",
           "-show_entries", "stream=sample_rate,channels,duration:format=duration", "-of", "json", str(path)]
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
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:a:{stream}", "-vn",
           "-ac", str(channels), "-acodec", "pcm_f32le", *output]
    proc = subprocess.run(cmd, capture_output=True)
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
    - torch tensors (any device) and nested lists are read as arrays.
    """
    if hasattr(wave, "detach") and hasattr(wave, "cpu"):  # a torch tensor
        wave = wave.detach().cpu().numpy()
    try:
        arr = np.asarray(wave)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}: not an array of samples ({exc})") from None
    kind = arr.dtype.kind
    if kind == "u":
        raise ConfigError(f"{name}: unsigned integer samples ({arr.dtype}) are refused: their zero is not silence; "
                          "give float samples in -1..1, or signed integers")
    if kind not in "fi":
        what = {"b": "booleans", "c": "complex numbers"}.get(kind, f"{arr.dtype} values")
        raise ConfigError(f"{name}: holds {what}, not audio samples; give float (-1..1) or signed integer samples")
    if arr.ndim not in (1, 2):
        raise ConfigError(f"{name}: a {arr.ndim}-D array of shape {tuple(arr.shape)}; give [samples], "
                          "[channels, samples] or [samples, channels]")
    if arr.size == 0:
        raise EmptyAudioError(f"{name}: holds no audio samples (shape {tuple(arr.shape)})")
    arr = channels_first(arr, name)
    if kind == "i":
        return (arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))).astype(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_stereo(wav: np.ndarray) -> np.ndarray:
    """Return ``[2, T]``: mono is duplicated; for more channels the first two (front L/R) are kept."""
    if wav.shape[0] == 1:
        return np.concatenate([wav, wav], axis=0)
    return wav[:2]


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
            allowed = ", ".join(map(str, sorted(rates))) if isinstance(rates, frozenset) else f"{rates.start}–{rates.stop - 1}"
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


# -- temporary files owned by a live process ---------------------------------------------------
#
# Temporary names carry their owner (host and pid): a run removes the leftovers of runs that were
# killed, never the live temporary file of another process writing the same folder.

#: A temporary file of another host is taken as abandoned after this long without a write.
FOREIGN_STALE_SECONDS = 24 * 3600


def owner_tag() -> str:
    """``host-pid`` of this process, as embedded in uvrsep's temporary names."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running. POSIX: signal 0 probes it. Windows:
    ``os.kill`` would terminate it, so the process is opened for a query and its exit code read."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - exercised through _windows_pid_alive's tests
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        return _windows_pid_alive(pid, kernel32, ctypes.get_last_error)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


#: Windows API values used by :func:`_windows_pid_alive`.
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_STILL_ACTIVE = 259
_ERROR_ACCESS_DENIED = 5


def _windows_pid_alive(pid: int, kernel32, last_error) -> bool:
    """:func:`pid_alive` on Windows, through ``kernel32`` (OpenProcess, GetExitCodeProcess,
    CloseHandle) and ``last_error()``: a process that cannot be opened for lack of rights
    exists; one that cannot be opened otherwise does not; an open one is alive while its exit
    code is STILL_ACTIVE."""
    import ctypes

    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return last_error() == _ERROR_ACCESS_DENIED
    try:
        code = ctypes.c_ulong(0)
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # cannot tell: never take a live file for abandoned
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def is_abandoned(tag: str, path: Path) -> bool:
    """Whether a temporary file whose name holds ``tag`` (``host-pid-...``) belongs to no live
    process: its owner on this host is gone, or (another host's) it was not written for a day."""
    parts = tag.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host == owner_tag().rsplit("-", 1)[0]:
        return not pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > FOREIGN_STALE_SECONDS
    except OSError:
        return False


def remove_abandoned(folder: Path, prefix: str, suffix: str = "") -> None:
    """Remove ``folder/prefix<owner tag>...suffix`` entries whose owner is gone (see :func:`is_abandoned`)."""
    for stale in folder.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        tag = stale.name[len(prefix) : len(stale.name) - len(suffix) if suffix else None]
        if is_abandoned(tag, stale):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


#: Longest target name (UTF-8 bytes) kept whole in a temporary name: with the owner tag (up to
#: ~60 bytes) and the suffix the temporary name stays within the usual 255-byte limit.
TEMP_NAME_BYTES = 150


def temp_stem(name: str) -> str:
    """The part of a temporary file's name that stands for the target ``name``: the name itself,
    or for a long one its first bytes and a digest of the whole (so any legal output name has a
    legal temporary name, and each target its own)."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= TEMP_NAME_BYTES:
        return name
    head = raw[:120].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


#: uvrsep's temporary output files: ``.<temp_stem(target name)>.<host>-<pid>-<random>.part``
#: (``.part.<ext>`` for ffmpeg encodes), as :func:`_temp_beside` makes them; ``.ready`` once complete.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<tag>\w+-\d+-\w+)\.(?:part|ready)(?:\.[^.]+)?$")
#: The suffix of a temporary file once it is complete (see :meth:`AudioStreamWriter.finish`).
READY_SUFFIX = ".ready"


def remove_temporaries(folder: Path, names: Iterable[str], finished_owners: Iterable[str] = ()) -> int:
    """Remove the temporary files of the outputs ``names`` in ``folder`` that no live process
    will finish: their owner is gone (:func:`is_abandoned`), or is one of ``finished_owners``
    (``host-pid`` tags of processes known to be done, e.g. the workers of a finished Ray run, on
    any host). One listing of the folder, whatever the number of names. Returns how many went."""
    names = {temp_stem(n) for n in names}
    finished = set(finished_owners)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["name"] not in names:
            continue
        tag = match["tag"]
        if tag.rsplit("-", 1)[0] in finished or is_abandoned(tag, Path(entry.path)):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def complete_interrupted(targets: Iterable[Path]) -> bool:
    """Finish a set of outputs that a killed run was renaming into place: when some of
    ``targets`` exist and each missing one has a complete (``.ready``) temporary file whose owner
    is gone, rename those into place and return ``True``; otherwise change nothing."""
    targets = [Path(p) for p in targets]
    missing = [p for p in targets if not p.exists()]
    if not missing or len(missing) == len(targets):
        return False
    ready: dict[Path, Path] = {}
    for path in missing:
        prefix = f".{temp_stem(path.name)}."
        found = [c for c in path.parent.glob(f"{glob.escape(prefix)}*{READY_SUFFIX}")
                 if is_abandoned(c.name[len(prefix) : -len(READY_SUFFIX)], c)]
        if not found:
            return False
        ready[path] = max(found, key=lambda c: c.stat().st_mtime_ns)
    for path, tmp in ready.items():
        commit_file(str(tmp), path, overwrite=False)
    return True


def _write_error(path: Path, exc: BaseException) -> AudioWriteError:
    """An :class:`AudioWriteError` for a failed write, saying "disk full" when it was."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "System error" in text and _disk_full(path):
        return AudioWriteError(f"{path}: cannot write: disk full (no space left in {path.parent})")
    reason = getattr(exc, "strerror", None) or text or type(exc).__name__
    return AudioWriteError(f"{path}: cannot write ({reason})")


def _disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        return False


def _temp_beside(path: Path, suffix: str = ".part") -> str:
    """A new temporary file ``.<name>.<host>-<pid>-<random><suffix>`` next to ``path`` (abandoned
    ones of killed runs removed first; live ones of other processes left alone)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioWriteError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    stem = temp_stem(path.name)
    remove_abandoned(path.parent, f".{stem}.", suffix)
    remove_abandoned(path.parent, f".{stem}.", READY_SUFFIX)  # a killed run's, now superseded
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.{owner_tag()}-", suffix=suffix, dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _write_error(path, exc) from None
        raise AudioWriteError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    # mkstemp makes the file private (0600); outputs get the permissions a plain open() gives.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp_name, 0o666 & ~mask)
    return tmp_name


def commit_file(tmp_name: str, path: Path, overwrite: bool) -> bool:
    """Rename a finished temporary file into place. Without ``overwrite`` an existing target is
    never replaced, even one another process made meanwhile: the temporary file is dropped and
    ``False`` returned (the target is then that process's). ``True``: the target is ours."""
    if overwrite:
        os.replace(tmp_name, path)
        return True
    try:
        os.link(tmp_name, path)  # atomic, and fails if the target exists
    except FileExistsError:
        Path(tmp_name).unlink(missing_ok=True)
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP):
            raise
        if path.exists():  # no hard links on this file system: check, then rename
            Path(tmp_name).unlink(missing_ok=True)
            return False
        os.replace(tmp_name, path)
        return True
    Path(tmp_name).unlink(missing_ok=True)
    return True


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
        raise AudioWriteError(f"{target}: writing {target.suffix} needs ffmpeg, which is not installed (or use wav/flac)")
    if target.exists() and not overwrite:
        raise AudioWriteError(f"{target}: already exists (pass overwrite to replace it)")
    # Keep the extension last: ffmpeg picks the container by it.
    tmp_name = _temp_beside(target, suffix=f".part{target.suffix}")
    # Absolute paths: a relative name starting with "-" or holding "name:" is not read as an option or protocol.
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", os.path.abspath(source), "-vn", os.path.abspath(tmp_name)]
    try:
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise AudioWriteError(f"{target}: ffmpeg cannot encode it ({reason[0]})")
        ours = commit_file(tmp_name, target, overwrite)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, AudioWriteError):
            raise _write_error(target, exc) from None
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

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, *, bit_depth: str | None = None,
                 overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        container, self.subtype = _output_format(self.path, bit_depth, overwrite, sample_rate)
        #: What clipping at full scale cost this file (integer and lossy formats).
        self.clips = ClipCount()
        self._tmp = _temp_beside(self.path)
        try:
            self._fh = sf.SoundFile(self._tmp, "w", samplerate=sample_rate, channels=channels,
                                    subtype=self.subtype, format=container)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            Path(self._tmp).unlink(missing_ok=True)
            raise _write_error(self.path, exc) from None

    def write(self, wav: np.ndarray) -> None:
        """Append ``[channels, samples]``."""
        try:
            self._fh.write(_frames_for_file(wav, self.subtype, self.clips))
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self.abort()
            raise _write_error(self.path, exc) from None

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
            raise _write_error(self.path, exc) from None
        self._tmp = ready

    def commit(self) -> Path:
        try:
            self._fh.close()
            ours = commit_file(self._tmp, self.path, self.overwrite)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self.abort()
            raise _write_error(self.path, exc) from None
        if not ours:
            raise OutputExistsError(f"{self.path}: was written by another process meanwhile; kept as it is")
        return self.path

    def abort(self) -> None:
        try:
            self._fh.close()
        except Exception:  # already closed or broken: the file goes anyway
            pass
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> AudioStreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
