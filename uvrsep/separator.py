""":class:`Separator`, the public face: a model loaded once, separating any number of inputs.

The work is done by the modules whose names say their job: :mod:`uvrsep.device` (where and in
what arithmetic), :mod:`uvrsep.model` (the weights and their facts), :mod:`uvrsep.job` (one input,
segment by segment: analysis, network, semantics, synthesis), :mod:`uvrsep.inference` (the
network stage) and :mod:`uvrsep.clips` (batches of files, clips sharing network calls). The
numbers reproduce RVC's ``AudioPre`` (see README, "Faithfulness").
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import clips, segments
from .audio import as_waveform, check_input_rate, check_samples, read_audio, read_audio_object, to_stereo
from .config import BandLayout
from .device import (
    LOW_PRECISION,
    PhaseClock,
    dsp_device,
    effective_precision,
    memory_budget,
    resolve_device,
    uses_channels_last,
)
from .ensemble.members import EnsembleMixin
from .errors import ConfigError, EmptyAudioError, option
from .inference import NetworkStage
from .job import Job, SegmentPlan, segment_plan
from .model import load_model, model_stems
from .registry import STEM_LABELS
from .report.measures import SignalMeter
from .semantics import SEMANTICS, Semantics, Settings
from .sources import ArraySource, AudioSource, MeteredSource, resample
from .stems import Stems, StreamedStems


@dataclass
class PhaseTimes:
    """Seconds spent per phase of the last separation call (on CUDA, including the device's
    queued work: :class:`uvrsep.device.PhaseClock`)."""

    read: float = 0.0
    analysis: float = 0.0
    network: float = 0.0
    synthesis: float = 0.0


class Separator:
    """Separate two stems with an official VR weight file (HP family or VR 5.1).

    Args:
        model: a ``.pth`` weight file or a registry name (HP2_all_vocals, 2_HP-UVR, ...);
            ``None``: the default model; a list of them: an :class:`Ensemble` (docs/ensembles.md).
        settings: a :class:`~uvrsep.semantics.Settings` (semantics ``rvc`` or ``uvr``,
            aggressiveness, TTA, post-processing and its threshold, window size, high end,
            primary stem). Its fields may also be given as keywords, alone
            (``Separator(m, aggressiveness=5, tta=True)``) or replacing those of ``settings``.
            The settings in use, defaults filled in, are :attr:`settings`.
        params: band config name or JSON path; default ``4band_v2`` (with a notice).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a :class:`torch.device`.
        batch_size: windows per network call (results do not depend on it).
        progress: show tqdm bars (windows, downloads).
        offline: never download; a registry name must already be in the cache.
        stream: audio stream of video / multi-stream files to decode (default: the first).
        segment_threshold: inputs longer than this (seconds) are separated in segments, shorter
            ones whole; ``inf`` never segments. ``None`` (default): decided by the memory of the
            device holding the spectrograms (:func:`uvrsep.device.memory_budget`): an input whose
            arrays fit is separated whole. The result does not depend on it (≥ 90 dB).
        segment_windows: network windows per segment (memory per segment grows with it);
            ``None`` (default): as many as half the memory budget holds.
        on_notice: gets one-line notices of a download (started, retried, discarded); without
            it they go to the ``uvrsep.hub`` logger.
        precision: the network's arithmetic (everything around it stays float32/float64):
            ``fp32`` (default): strict IEEE float32, TF32 off, the parity reference;
            ``tf32``: float32 with TensorFloat-32 convolutions and matmuls on CUDA (Ampere and
            later; on other devices it is ``fp32``, with a note);
            ``fp16``: weights and windows in half precision, on CUDA and MPS only (on the CPU
            it runs in fp32, with a note: few CPUs have fast fp16 kernels);
            ``bf16``: weights and windows in bfloat16, on every device (on the CPU fast only
            with AVX512-BF16 or AMX). README (`--precision`) gives the measured parity.
        ensemble_algorithm, ensemble_weights: for a list of models only (:class:`Ensemble`).

    ``model`` is a path to a ``.pth`` file or a registry name (``uvrsep models list``); ``None``
    is the registry's default model (``HP2_all_vocals``). A name not yet cached is downloaded
    (unless ``offline``: then the error says which file to put where). The band config and stem
    names come from ``params``, else the registry entry, else UVR's hash table, else the
    original's default for the family (:mod:`uvrsep.model`).
    """

    def __new__(cls, model: str | Path | list | tuple | None = None, *args, **kwargs):
        return super().__new__(Ensemble if cls is Separator and isinstance(model, (list, tuple)) else cls)

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        settings: Settings | None = None,
        params: str | Path | None = None,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        progress: bool = False,
        offline: bool = False,
        stream: int | None = None,
        segment_threshold: float | None = None,
        segment_windows: int | None = None,
        on_notice: Callable[[str], None] | None = None,
        precision: str = "fp32",
        ensemble_algorithm: str | None = None,
        ensemble_weights: Iterable[float] | None = None,
        **setting_fields,
    ):
        if ensemble_algorithm is not None or ensemble_weights is not None:
            raise ConfigError(
                f"{option('ensemble_algorithm')} and {option('ensemble_weights')} are for an ensemble: "
                "give a list of models"
            )
        settings = Settings.from_options(settings, setting_fields, where="Separator()", others=_ARGUMENTS)
        settings.resolve()  # bad values fail before the model is loaded
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"{option('batch_size')} must be at least 1, got {batch_size}")
        if segment_windows is not None and segment_windows < 1:
            raise ConfigError(f"{option('segment_windows')} must be at least 1, got {segment_windows}")
        if segment_threshold is not None and not segment_threshold >= 0:
            raise ConfigError(
                f"{option('segment_threshold')} must be a number of seconds >= 0, got {segment_threshold}"
            )
        self.device: torch.device = resolve_device(device)
        self.precision: str = effective_precision(precision, self.device)
        #: Where the DSP runs (:func:`uvrsep.device.dsp_device`: the network's CUDA device, else the CPU).
        self.dsp: torch.device = dsp_device(self.device)
        self.model = load_model(
            model, params=params, device=self.device, offline=offline, progress=progress, on_notice=on_notice
        )
        self.notes: list[str] = list(self.model.notes)
        self.model_path, self.spec, self.architecture = self.model.path, self.model.spec, self.model.architecture
        self.weights, self.net = self.model.weights, self.model.net
        if precision != self.precision:
            self.notes.append(f"{precision} is not used on {self.device.type}: the network runs in fp32 there")
        if self.precision in LOW_PRECISION:
            self.net.to(LOW_PRECISION[self.precision])
        self.channels_last = uses_channels_last(self.device, self.precision)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes it; the stubs omit it
        self.configure(settings)
        self.batch_size: int = batch_size or (4 if self.device.type == "cuda" else 1)
        self.progress: bool = progress
        self.stream: int | None = stream
        self.segment_threshold: float | None = segment_threshold
        self.segment_windows: int | None = segment_windows
        self.memory_share = 1.0  # of the device's memory budget (an ensemble's members split it)
        self.times: PhaseTimes = PhaseTimes()
        self.clock = PhaseClock(self.dsp)

    def configure(self, settings: Settings | None = None, **setting_fields) -> None:
        """Use other :class:`Settings` from now on, without loading the model again (fields given
        as keywords replace those of ``settings``, default: the settings given so far, so a
        default not given follows the semantics). Sets :attr:`settings` (defaults filled in),
        :attr:`layout` (the band config as the semantics carries it out), :attr:`primary` /
        :attr:`secondary` and :attr:`semantics`. A bad value, or a window the net cannot take,
        is a :class:`ConfigError` and changes nothing."""
        given = Settings.from_options(
            settings or getattr(self, "_given_settings", None), setting_fields, where="configure()"
        )
        settings = given.resolve()
        window, context, label = settings.window_size, self.net.context, self.architecture.label
        if window <= 2 * context:
            raise ConfigError(
                f"window size {window} is too small for this {label}: it keeps window − 2·{context} "
                f"frames of each window, so the window must be larger than {2 * context}"
            )
        multiple = self.net.frame_multiple
        if window % multiple:
            raise ConfigError(
                f"window size {window} does not fit this {label}: its layers halve the frames "
                f"{multiple.bit_length() - 1} times, so the window must be a multiple of {multiple} (e.g. 320, 512, 1024)"
            )
        primary = settings.primary_stem or self.model.primary
        if settings.primary_stem is None and self.model.primary_is_default:
            note = (
                f"no primary stem known for {self.model_path.name}: the mask keeps {STEM_LABELS[primary][0]} "
                f"(the original's default for a {label}; {option('primary_stem')} sets it)"
            )
            if note not in self.notes:
                self.notes.append(note)
        kind = SEMANTICS[settings.semantics]
        self._given_settings = given
        self.settings: Settings = settings
        self.layout: BandLayout = kind.adapt_layout(self.model.layout, self.architecture.family)
        self.primary: str = STEM_LABELS[primary][0]
        self.secondary: str = STEM_LABELS[primary][1]
        self.semantics: Semantics = kind(
            settings,
            self.layout,
            family=self.architecture.family,
            primary=primary,
            uses_aggressiveness=self.net.uses_aggressiveness,
        )

    @property
    def labels(self) -> tuple[str, str]:
        """The stems this separator writes: (masked, residual)."""
        return (self.primary, self.secondary)

    def stage(self) -> NetworkStage:
        """The network stage with the settings in use (:mod:`uvrsep.inference`)."""
        return NetworkStage(
            self.net,
            self.device,
            self.precision,
            self.channels_last,
            self.semantics,
            self.settings.window_size,
            self.settings.tta,
            self.batch_size,
        )

    def n_windows(self, n_frames: int) -> int:
        """Network windows needed for ``n_frames`` frames (both passes with TTA)."""
        return self.stage().n_windows(n_frames)

    def _frames_for(self, seconds: float) -> int:
        return int(seconds * self.layout.sample_rate) // self.layout.top.hop_length + 1

    def segment_plan(self, n_samples: int) -> SegmentPlan:
        """How an input of ``n_samples`` (at the model's rate) is processed: whole, or in segments
        of how many frames (see ``segment_threshold`` and ``segment_windows``)."""
        return segment_plan(
            n_samples,
            self.layout,
            self.stage().hop,
            int(memory_budget(self.dsp) * self.memory_share),
            threshold=self.segment_threshold,
            windows=self.segment_windows,
        )

    def streams(self, seconds: float) -> bool:
        """Whether an input of ``seconds`` is separated in segments (then :meth:`separate_batch`
        yields it as :class:`StreamedStems`)."""
        return self.segment_plan(round(seconds * self.layout.sample_rate)).frames is not None

    # -- inputs ---------------------------------------------------------------------------------
    def load(self, path: str | Path) -> np.ndarray:
        """Read a file as float32 stereo ``[2, T]`` at the model's rate (on the CPU)."""
        wave, sr = read_audio(path, self.stream)
        return self._conform(wave, sr, str(path))

    def prepare(self, wave: object, sample_rate: int, name: str = "array") -> np.ndarray:
        """Bring an in-memory waveform to float32 stereo ``[2, T]`` at the model's rate.

        The contract (:func:`uvrsep.audio.as_waveform`): ``[channels, samples]``, ``[samples,
        channels]`` or ``[samples]``; float samples as they are (full scale ±1.0), signed
        integers scaled as soundfile scales PCM (int16 / 32768, int32 / 2³¹); unsigned, complex,
        boolean, empty and 3-D arrays refused. ``sample_rate``: a whole number of Hz, 1 to
        384 kHz.
        """
        return self._conform(as_waveform(wave, name), check_input_rate(sample_rate, name), name)

    def _conform(self, wave: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
        """``[C, T]`` audio → float32 stereo ``[2, T']`` at the model's rate (top band's
        resampler, on the CPU); more than two channels keep the first two. Empty, non-finite or
        too loud audio is refused naming ``name``."""
        if wave.shape[1] == 0:
            raise EmptyAudioError(f"{name}: holds no audio samples")
        wave = np.asarray(wave, dtype=np.float32)
        check_samples(wave, name)
        if wave.shape[0] > 2:
            wave = wave[:2]
        if sample_rate != self.layout.sample_rate:
            wave = resample(wave, sample_rate, self.layout.sample_rate, self.layout.top.resample_type)
        return to_stereo(wave)

    # -- in memory ------------------------------------------------------------------------------
    def separate(self, audio: object, sample_rate: int | None = None) -> Stems:
        """Separate a file path, encoded audio (``bytes``, a binary file object), or an array
        ``[C, T]`` / ``[T, C]`` / ``[T]`` (numpy, a torch tensor) given with its ``sample_rate``.

        Returns :class:`Stems` at the model's rate, each ``[2, T]`` where ``T`` is the input's
        duration at that rate. The input and the stems are held in memory; the processing goes
        in segments where the device's memory asks for it (see ``segment_threshold``);
        :meth:`separate_streamed` also gives the stems segment by segment. A file or encoded
        audio carries its own rate: ``sample_rate`` is for arrays only. Every refusal is a
        one-line :class:`~uvrsep.errors.UvrsepError` (the contract: docs/python-api.md).
        """
        if isinstance(audio, (str, os.PathLike)) or _encoded(audio):
            if sample_rate is not None:
                raise ConfigError("sample_rate is for arrays: a file or encoded audio carries its own rate")
            if isinstance(audio, (str, os.PathLike)):
                return self.separate_many([Path(audio)])[0]
            wave, rate = read_audio_object(audio, stream=self.stream)
            return self.separate_many([(wave, rate)])[0]
        return self.separate_array(audio, sample_rate)

    def separate_array(self, wave: object, sample_rate: int | None) -> Stems:
        """Separate an in-memory waveform at ``sample_rate`` (the contract: :meth:`prepare`).

        A 2-D array is read with its small axis as channels when one axis has at most 8 entries
        and the other is longer; any other shape is refused with a :class:`ConfigError` that
        names the shape. Stems are ``[2, T]`` either way.
        """
        if sample_rate is None:
            raise ConfigError("separate(array) needs its sample_rate (Hz)")
        return self.separate_many([(wave, sample_rate)])[0]

    def separate_many(
        self,
        inputs: list[str | Path | tuple[object, int]],
        on_window: Callable[[int], None] | None = None,
    ) -> list[Stems]:
        """Separate several inputs (paths or ``(wave, sample_rate)`` pairs) with shared network
        calls: windows of different clips are batched together, each clip keeps its own
        normalisation, and each result equals separating that input alone.
        """
        t0 = time.perf_counter()
        waves = [self.load(x) if isinstance(x, (str, Path)) else self.prepare(*x) for x in inputs]
        return self._separate_waves(waves, time.perf_counter() - t0, on_window)

    def _separate_waves(
        self, waves: list[np.ndarray], read_seconds: float = 0.0, on_window: Callable[[int], None] | None = None
    ) -> list[Stems]:
        """:meth:`separate_many` of waveforms already read (float32 ``[2, T]`` at the model's rate):
        those separated whole share network calls; those in segments go one by one."""
        self.times = PhaseTimes(read=read_seconds)
        held: list[np.ndarray | None] = list(waves)
        del waves
        results: dict[int, Stems] = {}
        group: list[tuple[int, Job]] = []
        meters = [SignalMeter(self.layout.sample_rate) for _ in held]  # the inputs' measures
        for k in range(len(held)):  # release each waveform as soon as it is analysed
            wave, held[k] = held[k], None
            assert wave is not None
            meters[k].add(wave)
            plan = self.segment_plan(wave.shape[1])
            job = Job(self, ArraySource(wave), plan, on_window if plan.frames is not None else None)
            del wave
            if plan.frames is None:
                group.append((k, job))
            else:
                results[k] = StreamedStems(
                    self.labels, self.layout.sample_rate, self.primary, job.n_samples, job.run(), list(self.notes)
                ).collect()
        for (k, _), stems in zip(group, clips.run_whole(self, [job for _, job in group], on_window)):
            results[k] = stems
        for k, stems in results.items():
            stems.input_meter = meters[k]
        return [results[k] for k in range(len(held))]

    # -- files ----------------------------------------------------------------------------------
    def separate_batch(
        self,
        paths: Iterable[str | Path],
        *,
        group_windows: int = 8,
        durations: Mapping[Path, float] | None = None,
    ) -> Generator[tuple[Path, Stems | StreamedStems | Exception], None, None]:
        """Separate many files, yielding ``(path, stems)`` or ``(path, error)`` per input, in order.

        Consecutive inputs are grouped until a group needs about ``group_windows`` network
        windows, so short clips share network calls. Inputs separated in segments (see
        ``segment_threshold``) come as :class:`StreamedStems` (see :meth:`separate_streamed`):
        consume each before asking for the next item. A group that fails is redone one input at
        a time so that each error lands on the input that caused it; any exception fails only
        its input (only :class:`KeyboardInterrupt` stops the batch). ``durations`` (seconds per
        path, e.g. from a listing made beforehand) saves reading each file's header again. Each
        in-memory :class:`Stems` carries ``seconds``: its share of the group's processing time,
        in proportion to its network windows. Each group is read (decoded and resampled, on the
        CPU) by a background thread while the group before it is separated and its results
        consumed.
        """
        return clips.separate_batch(self, paths, group_windows=group_windows, durations=durations)

    def separate_streamed(self, path: str | Path, on_window: Callable[[int], None] | None = None) -> StreamedStems:
        """Separate a file of any length; iterate the result for its audio, block by block.

        A file processed in segments (see ``segment_threshold``) is read, analysed, run through
        the network and synthesised segment by segment; memory does not grow with the length.
        The stems equal :meth:`separate`'s whole-file ones (the network windows, normalisation,
        post-processing and tail handling are the whole file's; only the synthesis' whole-file
        FFT resampling is reproduced within ±16384 samples, > 100 dB SDR, see
        :mod:`uvrsep.segments`). A file separated whole — short enough, or a band config that
        cannot be segmented (``2band_*``, ``3band_*``, ...) — comes as one block.

        A first pass over the file (here, before returning) analyses it for the global maximum
        the normalisation needs and rejects unreadable or non-finite audio. Iterating the
        returned :class:`StreamedStems` yields ``{stem: float32 [2, t]}`` blocks in order.
        """
        self.times = PhaseTimes()
        t0 = time.perf_counter()
        if segments.unsupported_reason(self.layout) is not None:
            return self.separate_many([path], on_window=on_window)[0].as_stream()
        source = AudioSource(path, self.layout.sample_rate, self.layout.top.resample_type, self.stream)
        try:
            plan = self.segment_plan(source.n_samples)
            if plan.frames is None:
                source.close()
                return self.separate_many([path], on_window=on_window)[0].as_stream()
            self.times.read = time.perf_counter() - t0
            metered = MeteredSource(source, SignalMeter(self.layout.sample_rate))
            job = Job(self, metered, plan, on_window)
            metered.complete()  # the first pass read it all: nothing left, normally
        except BaseException:
            source.close()
            raise
        return StreamedStems(
            names=self.labels,
            sample_rate=self.layout.sample_rate,
            primary=self.primary,
            n_samples=source.n_samples,
            chunks=job.run(),
            notes=list(self.notes),
            input_meter=metered.meter,
        )


class Ensemble(EnsembleMixin, Separator):
    __doc__ = EnsembleMixin.__doc__
    member_class = Separator


__all__ = ["Ensemble", "PhaseTimes", "Separator", "model_stems", "resolve_device"]

#: The keyword arguments of :class:`Separator` besides the :class:`Settings` fields (for the
#: suggestion when a keyword is unknown).
_ARGUMENTS = tuple(
    name
    for name, p in inspect.signature(Separator.__init__).parameters.items()
    if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
)


def _encoded(audio: object) -> bool:
    """Whether ``audio`` is encoded audio (the bytes of a file, or a binary file object)."""
    return isinstance(audio, (bytes, bytearray, memoryview)) or (hasattr(audio, "read") and not hasattr(audio, "shape"))
