"""The one writer of uvrsep's outputs: stems (in memory or streamed) to files, converted to the
rate and channels asked for, every file atomic and a set of files complete before the first is
renamed into place. Used by the batch (the CLI), :meth:`uvrsep.stems.Stems.write`, chains, Ray
workers and the RVC drop-in alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from .audio import AudioStreamWriter
from .errors import AudioWriteError, OutputExistsError
from .report.measures import ClipMeter


def write_stems(
    stems,
    targets: dict[str, Path],
    *,
    sample_rate: int | None = None,
    mono: bool = False,
    bit_depth: str | None = None,
    overwrite: bool = False,
    on_block: Callable[[float], None] | None = None,
    before_commit: Callable[[], None] | None = None,
    on_clipped: Callable[[str], None] | None = None,
    on_measures: Callable[[dict | None], None] | None = None,
) -> dict[str, Path]:
    """Write stems to ``{stem: path}``, converted as asked; atomic per file. The one writer of
    uvrsep's outputs.

    ``stems`` is :class:`~uvrsep.stems.Stems` (in memory) or :class:`~uvrsep.stems.StreamedStems`
    (written block by block as the separation goes; no file appears unless all complete).
    ``sample_rate`` resamples with soxr_hq (as a stream: librosa's one-call samples and length),
    ``mono`` averages the channels. ``on_block`` gets the seconds of audio each block covered.
    A target another process wrote meanwhile is kept (:class:`OutputExistsError` once all are done).
    ``before_commit`` is called once every file is complete, before the first is renamed into place.
    ``on_clipped`` gets one line when integer PCM or a lossy format clipped a stem noticeably
    (:data:`uvrsep.audio.CLIP_WARN_PEAK`, :data:`uvrsep.audio.CLIP_WARN_FRACTION`):
    ``"vocals (peak +90.3 dBFS, 99.97 % of samples)"``.
    ``on_measures`` gets the clip's measures (:mod:`uvrsep.report.measures`: every stem, written
    or not, as separated, before any conversion, against the input the stems carry the meter
    of; ``None`` for stems without one) once every file is complete, before ``before_commit``.
    They are computed on the blocks as they pass, and only when asked for.
    """
    if hasattr(stems, "as_stream"):
        stems = stems.as_stream()  # in memory: one block, so the same writer serves both
    sr = stems.sample_rate
    out_sr = sample_rate or sr
    channels = 1 if mono else 2
    writers: dict[str, AudioStreamWriter] = {}
    converters = (
        {name: soxr.ResampleStream(sr, out_sr, channels, dtype="float32", quality="soxr_hq") for name in targets}
        if out_sr != sr
        else {}
    )
    # librosa's length rule for a resampled signal (its fix_length pads or trims to it).
    length = int(np.ceil(stems.n_samples * (float(out_sr) / sr))) if converters else stems.n_samples
    written = dict.fromkeys(targets, 0)
    meter = None
    if on_measures is not None and stems.input_meter is not None:
        meter = ClipMeter(sr, stems.names, stems.voice, stems.input_meter)

    def convert(wave: np.ndarray, converter, last: bool) -> np.ndarray:
        if mono and wave.shape[0] > 1:
            wave = wave.mean(axis=0, keepdims=True)
        if converter is None:
            return wave
        return converter.resample_chunk(np.ascontiguousarray(wave.T), last=last).T

    def put(name: str, wave: np.ndarray) -> None:
        wave = wave[:, : length - written[name]]
        writers[name].write(wave)
        written[name] += wave.shape[1]

    kept: list[str] = []
    try:
        for name, path in targets.items():
            writers[name] = AudioStreamWriter(path, out_sr, channels, bit_depth=bit_depth, overwrite=overwrite)
        for chunk in stems:
            if meter is not None and chunk:
                meter.add_stems(chunk)
            for name in writers:
                put(name, convert(chunk[name], converters.get(name), last=False))
            if on_block is not None and chunk:
                on_block(next(iter(chunk.values())).shape[1] / sr)
        for name in writers:
            if name in converters:
                put(name, convert(np.zeros((channels, 0), np.float32), converters[name], last=True))
            put(name, np.zeros((channels, length - written[name]), np.float32))
        for writer in writers.values():  # all complete before the first is renamed into place
            writer.finish()
        for path in targets.values():  # a folder that appeared meanwhile: no half set of stems
            if (path.exists() or path.is_symlink()) and not (path.is_file() or path.is_symlink()):
                raise AudioWriteError(f"{path}: is a folder or special file, not an audio file; it is never replaced")
        clipped = [f"{name} ({w.clips.describe()})" for name, w in writers.items() if w.clips.noticeable]
        if clipped and on_clipped is not None:
            on_clipped(", ".join(clipped))
        if on_measures is not None:
            on_measures(meter.result() if meter is not None else None)
        if before_commit is not None:
            before_commit()
        for name, writer in writers.items():
            try:
                writer.commit()
            except OutputExistsError:
                kept.append(str(targets[name]))
    except BaseException:
        for writer in writers.values():
            writer.abort()
        stems.close()
        raise
    if kept and len(kept) == len(targets):
        raise OutputExistsError(f"{', '.join(kept)}: written by another run meanwhile; kept as they are")
    return targets
