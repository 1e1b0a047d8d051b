"""Audio in and out: the I/O boundary of uvrsep.

Waveforms inside uvrsep are float arrays shaped ``[channels, samples]``.

- :mod:`.reading`: files (soundfile, ffmpeg, librosa / audioread as the last fallback), audio
  held in memory (bytes, file objects), and the Python API's contract for arrays.
- :mod:`.writing`: formats, bit depths and rates; atomic files written block by block; ffmpeg
  encodes; clipping at full scale counted.
- :mod:`.files`: file-system safety: temporary names that carry their owner, abandoned ones
  removed, atomic renames that never replace another process's file.
"""

from __future__ import annotations

import soundfile as sf  # noqa: F401  (tests patch audio.sf.SoundFile)

from .files import (
    READY_SUFFIX,
    check_output_dir,
    commit_file,
    complete_interrupted,
    is_abandoned,
    owner_tag,
    pid_alive,
    remove_abandoned,
    remove_temporaries,
    temp_stem,
)
from .reading import (
    FFMPEG_EXTENSIONS,
    MAX_CHANNELS,
    MAX_INPUT_RATE,
    MAX_SAMPLE,
    SOUNDFILE_EXTENSIONS,
    as_waveform,
    channels_first,
    check_input_file,
    check_input_rate,
    check_samples,
    duration_seconds,
    probe,
    read_audio,
    read_audio_object,
    read_with_ffmpeg,
    run_ffmpeg_decode,
    to_stereo,
)
from .writing import (
    BIT_DEPTHS,
    CLIP_WARN_FRACTION,
    CLIP_WARN_PEAK,
    FORMAT_RATES,
    LOSSY_SUBTYPES,
    MAX_OUTPUT_RATE,
    MIN_OUTPUT_RATE,
    OUTPUT_FORMATS,
    AudioStreamWriter,
    ClipCount,
    check_output_settings,
    encode_with_ffmpeg,
    output_settings_problem,
    write_audio,
)

__all__ = [
    "BIT_DEPTHS",
    "CLIP_WARN_FRACTION",
    "CLIP_WARN_PEAK",
    "FFMPEG_EXTENSIONS",
    "FORMAT_RATES",
    "LOSSY_SUBTYPES",
    "MAX_CHANNELS",
    "MAX_INPUT_RATE",
    "MAX_OUTPUT_RATE",
    "MAX_SAMPLE",
    "MIN_OUTPUT_RATE",
    "OUTPUT_FORMATS",
    "READY_SUFFIX",
    "SOUNDFILE_EXTENSIONS",
    "AudioStreamWriter",
    "ClipCount",
    "as_waveform",
    "channels_first",
    "check_input_file",
    "check_input_rate",
    "check_output_dir",
    "check_output_settings",
    "check_samples",
    "commit_file",
    "complete_interrupted",
    "duration_seconds",
    "encode_with_ffmpeg",
    "is_abandoned",
    "output_settings_problem",
    "owner_tag",
    "pid_alive",
    "probe",
    "read_audio",
    "read_audio_object",
    "read_with_ffmpeg",
    "remove_abandoned",
    "remove_temporaries",
    "run_ffmpeg_decode",
    "temp_stem",
    "to_stereo",
    "write_audio",
]
