"""The orchestrator: audio → bands → windows → network → masks → stems.

:class:`Separator` loads a weight file once and separates any number of inputs with it,
reproducing RVC's ``AudioPre`` numbers (see README, "Faithfulness").
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import bands, segments
from .audio import channels_first, check_input_rate, check_samples, duration_seconds, read_audio, to_stereo
from .config import BandLayout, list_band_layouts, load_band_layout
from .errors import ITEM_ERRORS as _ITEM_ERRORS
from .errors import ConfigError, EmptyAudioError, IncompatibleCheckpointError, OutOfMemoryError, UvrsepError
from .hub import resolve_model
from .network import Architecture, detect_architecture, load_network
from .network.checkpoint import read_checkpoint
from .network.fusion import fuse_for_inference, use_channels_last
from .registry import STEM_LABELS
from .segments import AudioSource, SegmentedSynthesis, analyze_frames
from .semantics import SEMANTICS, Semantics, Settings
from .stems import Stems, StreamedStems, mirror_high_end
from .windows import WindowPlan, run_windows_many

_TORCH_OOM = getattr(torch, "OutOfMemoryError", getattr(torch.cuda, "OutOfMemoryError", MemoryError))
#: Frames re-synthesised to give back the input's last partial hop ...
TAIL_FRAMES = 128
#: ... and frames analysed past the end for it (the last partial hop lies in the first).
TAIL_EXTRA_FRAMES = 4
#: Inputs longer than this (seconds) are separated in segments, in bounded memory.
SEGMENT_THRESHOLD = 60.0
#: Network windows per segment of a long input (4 × 256 frames ≈ 11 s with 4band_v2).
SEGMENT_WINDOWS = 4


#: The network's arithmetic (``Separator(precision=...)``, ``--precision``).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
_LOW_PRECISION = {"fp16": torch.float16, "bf16": torch.bfloat16}


def effective_precision(precision: str, device: torch.device) -> str:
    """What ``precision`` becomes on ``device``: TF32 exists on CUDA only, fp16 runs on CUDA and
    MPS only (on the CPU few machines have fast fp16 kernels); elsewhere ``fp32``."""
    if precision == "tf32" and device.type != "cuda":
        return "fp32"
    if precision == "fp16" and device.type not in ("cuda", "mps"):
        return "fp32"
    return precision


@contextmanager
def _tf32(allowed: bool) -> Iterator[None]:
    """TF32 for CUDA convolutions and matmuls on or off for the duration (restored after, so
    separators of different precisions share a process)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; others (a name such as ``cuda:1`` or a
    :class:`torch.device`) are checked for availability."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r} (use auto, cpu, cuda or mps)")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but no CUDA GPU is available")
        # Strict fp32: PyTorch's TF32 default for convolutions alone costs ~10 dB of parity.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device mps was asked for, but MPS is not available")
    return torch.device(device)


def default_primary(arch: Architecture, model_path: Path) -> str:
    """The primary stem (UVR's name) of weights nothing else describes, following RVC's rules.

    HP-family (ASPP) weights mask the instrumental, except RVC's HP3 (vocal-primary, by file
    name). VR 5.1 weights mask the dry signal: "No Echo", or "No Reverb" when the file name
    contains "DeReverb".
    """
    name = model_path.name
    if arch.family == "vr51":
        return "No Reverb" if "DeReverb" in name else "No Echo"
    return "Vocals" if "HP3" in name else "Instrumental"


def known_facts(meta: dict, spec, uvr_entry: dict | None) -> tuple[str | None, str | None, str | None]:
    """(band config, primary stem, where they come from) that a weight file's own metadata (a
    uvrsep checkpoint), its registry entry or UVR's hash table state; ``None`` where none does."""
    if meta.get("params") or meta.get("primary"):
        return meta.get("params"), meta.get("primary"), None
    params = spec.params if spec is not None else None
    primary = spec.primary if spec is not None else None
    note = None
    if uvr_entry is not None:
        params = params or uvr_entry["params"]
        primary = primary or uvr_entry["primary"]
        note = f"UVR's model hash: {params}, primary stem {primary}"
    return params, primary, note


def model_stems(model: str | Path | None = None, *, offline: bool = False, primary_stem: str | None = None) -> tuple[str, str]:
    """The (masked, residual) stem labels ``model`` will write, worked out without downloading
    or building it (a path is read; a registry name that is not cached yet answers from its
    entry). ``None`` is the registry's default model; ``primary_stem`` (any spelling) is the
    setting of that name, which decides. Lets a caller check its whole job (names, existing
    outputs, ``--stems``) before it loads a model."""
    from .hub import cached_path, default_model_name, home_dir
    from .registry import load_registry, parse_stem_label

    if primary_stem is not None:
        return STEM_LABELS[parse_stem_label(primary_stem)]
    registry = load_registry(home_dir())
    path = Path(model) if model is not None else None
    if path is not None and not path.is_file() and (path.suffix == ".pth" or os.sep in str(model)):
        raise UvrsepError(f"{path}: weight file not found")
    if path is None or not path.is_file():
        spec = registry.get(str(model) if model is not None else default_model_name())
        if not cached_path(spec).is_file():
            return STEM_LABELS[spec.primary]
        path = cached_path(spec)
    else:
        spec = registry.find(path.name)
    state, meta = read_checkpoint(path)
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    _, primary, _ = known_facts(meta, spec, entry)
    if primary is not None:
        return STEM_LABELS[primary]
    return STEM_LABELS[default_primary(detect_architecture(state, path), path)]


def default_params(arch: Architecture) -> str:
    """The original's band config for weights that do not say: 4band_v2 for ASPP nets (RVC's
    AudioPre), 4band_v3 for VR 5.1 nets with 672 bins (RVC's AudioPreDeEcho)."""
    if arch.family == "aspp":
        return "4band_v2"
    if arch.bins == 672:
        return "4band_v3"
    plausible = [name for name in list_band_layouts() if load_band_layout(name).bins == arch.bins]
    raise ConfigError(
        f"this {arch.label} does not say which band config it needs; pass --params "
        f"({', '.join(plausible) or 'no shipped config has ' + str(arch.bins) + ' bins'})"
    )


@dataclass
class PhaseTimes:
    """Seconds spent per phase of the last :meth:`Separator.separate` call."""

    read: float = 0.0
    analysis: float = 0.0
    network: float = 0.0
    synthesis: float = 0.0


class Separator:
    """Separate two stems with an official VR weight file (HP family or VR 5.1).

    Args:
        model: a ``.pth`` weight file or a registry name (HP2_all_vocals, 2_HP-UVR, ...);
            ``None``: the default model.
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
        segment_threshold: files longer than this (seconds) are separated in segments by
            :meth:`separate_batch` (see :meth:`separate_streamed`); ``inf`` never.
        segment_windows: network windows per segment (memory per segment grows with it).
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

    ``model`` is a path to a ``.pth`` file or a registry name (``uvrsep models list``); ``None``
    is the registry's default model (``HP2_all_vocals``). A name not yet cached is downloaded
    (unless ``offline``: then the error says which file to put where). The band config and stem names come from ``params``, else the
    registry entry, else UVR's hash table, else the original's default for the family.
    """

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
        segment_threshold: float = SEGMENT_THRESHOLD,
        segment_windows: int = SEGMENT_WINDOWS,
        on_notice: Callable[[str], None] | None = None,
        precision: str = "fp32",
        **setting_fields,
    ):
        self.notes: list[str] = []
        settings = Settings.from_options(settings, setting_fields)
        settings.resolve()  # bad values fail before the model is loaded
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
        self.device = resolve_device(device)
        #: Where the DSP runs (:func:`bands.dsp_device`: the network's CUDA device, else the CPU);
        #: ``bands.REFERENCE`` selects the previous librosa / scipy steps (tests, benchmarks).
        self.dsp: torch.device | str = bands.dsp_device(self.device)
        resolved = resolve_model(model, offline=offline, progress=progress, on_notice=on_notice)
        self.model_path = resolved.path
        self.spec = resolved.spec
        state, meta = read_checkpoint(self.model_path)
        self.architecture = detect_architecture(state, self.model_path)
        self._check_registry_architecture()
        known_params, known_primary, source = known_facts(meta, self.spec, resolved.uvr_entry)
        if source is not None:
            self.notes.append(f"identified {self.model_path.name} by {source}")
        if params is None:
            params = known_params
        if params is None:
            params = default_params(self.architecture)
            self.notes.append(f"no band config given: using {params} (the original's default for a {self.architecture.label})")
        self._file_layout = load_band_layout(params)
        self._known_primary = known_primary
        self.weights = load_network(self.model_path, self._file_layout.bins, self.device, state=state)
        del state
        self.net = fuse_for_inference(self.weights.net)
        self.channels_last = use_channels_last(self.net, self.device)
        self.precision = effective_precision(precision, self.device)
        if precision != self.precision:
            self.notes.append(f"{precision} is not used on {self.device.type}: the network runs in fp32 there")
        if self.precision in _LOW_PRECISION:
            self.net.to(_LOW_PRECISION[self.precision])
        self.configure(settings)
        self.batch_size = batch_size or (4 if self.device.type == "cuda" else 1)
        self.progress = progress
        self.stream = stream
        if segment_windows < 1:
            raise ConfigError(f"segment_windows must be at least 1, got {segment_windows}")
        self.segment_threshold = segment_threshold
        self.segment_windows = segment_windows
        self.times = PhaseTimes()

    def configure(self, settings: Settings | None = None, **setting_fields) -> None:
        """Use other :class:`Settings` from now on, without loading the model again (fields given
        as keywords replace those of ``settings``, default: the settings given so far, so a
        default not given follows the semantics). Sets :attr:`settings` (defaults filled in),
        :attr:`layout` (the band config as the semantics carries it out), :attr:`primary` /
        :attr:`secondary` and :attr:`semantics`. A bad value, or a window the net cannot take,
        is a :class:`ConfigError` and changes nothing."""
        given = Settings.from_options(settings or getattr(self, "_given_settings", None), setting_fields)
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
        primary = settings.primary_stem or self._known_primary
        if primary is None:
            primary = default_primary(self.architecture, self.model_path)
            note = (f"no primary stem known for {self.model_path.name}: the mask keeps {STEM_LABELS[primary][0]} "
                    f"(the original's default for a {label}; --primary-stem sets it)")
            if note not in self.notes:
                self.notes.append(note)
        kind = SEMANTICS[settings.semantics]
        self._given_settings = given
        self.settings: Settings = settings
        self.layout: BandLayout = kind.adapt_layout(self._file_layout, self.architecture.family)
        self.primary, self.secondary = STEM_LABELS[primary]
        self.semantics: Semantics = kind(
            settings, self.layout, family=self.architecture.family, primary=primary,
            uses_aggressiveness=self.net.uses_aggressiveness,
        )

    @property
    def labels(self) -> tuple[str, str]:
        """The stems this separator writes: (masked, residual)."""
        return (self.primary, self.secondary)

    def _check_registry_architecture(self) -> None:
        spec, arch = self.spec, self.architecture
        if spec is None:
            return
        if (spec.family and spec.family != arch.family) or (spec.width and spec.width != arch.width):
            raise IncompatibleCheckpointError(
                f"{self.model_path}: registry entry {spec.name} is {spec.family} family, width {spec.width}, "
                f"but the file holds a {arch.label}"
            )

    # -- network stage -------------------------------------------------------------------
    def _predict_windows(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 2, F, W]`` normalised magnitudes → masks ``[B, 2, F, W - 2·context]`` (after the
        semantics' per-window step: RVC's aggressiveness)."""
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.precision in _LOW_PRECISION:
            mask = self.net(batch.to(_LOW_PRECISION[self.precision])).float()
        elif self.device.type == "cuda":
            with _tf32(self.precision == "tf32"):
                mask = self.net(batch)
        else:
            mask = self.net(batch)
        mask = self.semantics.window_mask(mask)
        c = self.net.context
        return mask[:, :, :, c:-c]

    def _run_windows(
        self, items: list[tuple[torch.Tensor, WindowPlan]], on_window: Callable[[int], None] | None
    ) -> list[torch.Tensor]:
        """:func:`run_windows_many` with this separator's network; running out of memory is an
        :class:`OutOfMemoryError` that says what to change."""
        try:
            with torch.inference_mode():
                return run_windows_many(items, self._predict_windows, batch_size=self.batch_size,
                                        device=self.device, on_window=on_window)
        except (MemoryError, _TORCH_OOM) as exc:
            raise OutOfMemoryError(
                f"the network ran out of memory on {self.device} with {self.batch_size} window(s) per call"
                f"{'; try --batch-size 1' if self.batch_size > 1 else ''} ({type(exc).__name__})"
            ) from None

    def predict_magnitudes(
        self, mag: np.ndarray, n_frames: int | None = None, on_window: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """The masked stem's magnitudes for the mix magnitudes ``mag`` (float32 ``[2, F, N]``),
        before post-processing (see :meth:`estimate_many`)."""
        n_frames = mag.shape[2] if n_frames is None else n_frames
        mag_t = bands.tensor(np.asarray(mag, dtype=np.float32), bands.place(self.dsp)[0])
        est = self._estimate_blocks([self._whole_block(mag_t, n_frames)], on_window)[0]
        return bands.array(self.semantics.magnitudes(est, mag_t))

    def estimate_many(
        self, items: list[tuple[np.ndarray, int]], on_window: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """The semantics' estimate (RVC: masked magnitudes; UVR: the mask after aggression) for
        each ``(mag, n_frames)``: mix magnitudes float32 ``[2, F, N]`` of which the first
        ``n_frames`` are normalised (by their global maximum) and run through the network,
        window by window, plus the TTA pass; frames past ``n_frames`` reuse the mask of the last
        one. Clips share network calls; each keeps its own normalisation, so each result equals
        processing it alone. Digital silence gives zeros (the original divides by zero there).
        Numpy in and out; the work runs on the DSP device.
        """
        device = bands.place(self.dsp)[0]
        blocks = [self._whole_block(bands.tensor(np.asarray(mag, dtype=np.float32), device), n) for mag, n in items]
        return [bands.array(est) for est in self._estimate_blocks(blocks, on_window)]

    def _whole_block(self, mag: torch.Tensor, n: int) -> _BlockInput:
        """All frames of magnitudes ``[2, F, N]`` whose first ``n`` are the input's, as one block."""
        return _BlockInput(mag, 0, 0, mag.shape[2], n, float(mag[:, :, :n].max()), self._windows(0, mag.shape[2], n))

    def _windows(self, lo: int, hi: int, n: int) -> list[tuple[WindowPlan, int, int]]:
        """Per pass (one, or two with TTA): ``(plan, first, last + 1)``, the windows of an
        ``n``-frame input whose outputs fall in frames ``lo .. hi − 1``."""
        window, context = self.settings.window_size, self.net.context
        roi = window - 2 * context
        plans = [WindowPlan.for_frames(n, window, context, shifted=shifted)
                 for shifted in ([False, True] if self.settings.tta else [False])]
        return [(plan, (lo + plan.shift) // roi, min(plan.n_windows, -(-(min(hi, n) + plan.shift) // roi)))
                for plan in plans]

    def _estimate_blocks(self, blocks: list[_BlockInput], on_window: Callable[[int], None] | None) -> list[torch.Tensor]:
        """The semantics' estimate for frames ``lo .. hi − 1`` of each block (float32
        ``[2, F, hi − lo]``, on the blocks' device), with one run of the network over all their
        windows."""
        roi = self.settings.window_size - 2 * self.net.context
        items: list[tuple[torch.Tensor, WindowPlan]] = []
        norms: list[torch.Tensor | None] = []
        for b in blocks:
            if b.coef == 0:  # digital silence: zeros (the original divides by zero)
                norms.append(None)
                continue
            norm = b.mag / b.coef
            a1 = b.a0 + b.mag.shape[2]
            for plan, first, last in b.windows:
                e0 = first * roi - plan.pad_left  # the frames these windows read: e0 .. e1 − 1
                e1 = (last - 1) * roi - plan.pad_left + plan.window
                inp = b.mag.new_zeros((2, b.mag.shape[1], e1 - e0))  # zeros outside 0 .. n − 1
                c0, c1 = max(e0, b.a0, 0), min(e1, a1, b.n)
                inp[:, :, c0 - e0 : c1 - e0] = norm[:, :, c0 - b.a0 : c1 - b.a0]
                count = last - first
                items.append((inp, WindowPlan(count * roi, plan.window, plan.context, 0, 0, count)))
            norms.append(norm)
        outs = iter(self._run_windows(items, on_window) if items else [])
        del items
        ests = []
        for b, norm in zip(blocks, norms):
            if norm is None:
                ests.append(b.mag.new_zeros((2, b.mag.shape[1], b.hi - b.lo)))
                continue
            masks = []
            for plan, first, _ in b.windows:
                out = next(outs)
                m0 = first * roi - plan.shift  # frame of this output's first column
                mask = out[:, :, b.lo - m0 : min(b.hi, b.n) - m0]
                if b.hi > b.n:  # frames past the end reuse the last frame's mask
                    mask = torch.cat([mask, mask[:, :, -1:].expand(-1, -1, b.hi - b.n)], dim=2)
                masks.append(mask)
            ests.append(self.semantics.estimate(masks, norm[:, :, b.lo - b.a0 : b.hi - b.a0], b.coef))
        return ests

    def n_windows(self, n_frames: int) -> int:
        """Network windows needed for ``n_frames`` frames (both passes with TTA)."""
        return sum(last - first for _, first, last in self._windows(0, n_frames, n_frames))

    # -- whole pipeline ------------------------------------------------------------------
    def load(self, path: str | Path) -> np.ndarray:
        """Read a file as float32 stereo ``[2, T]`` at the model's sample rate."""
        wave, sr = read_audio(path, self.stream)
        return self._conform(wave, sr, str(path))

    def separate_batch(
        self,
        paths: Iterable[str | Path],
        *,
        group_windows: int = 8,
        durations: Mapping[Path, float] | None = None,
    ) -> Iterator[tuple[Path, Stems | StreamedStems | Exception]]:
        """Separate many files, yielding ``(path, stems)`` or ``(path, error)`` per input, in order.

        Consecutive inputs are grouped until a group needs about ``group_windows`` network
        windows, so short clips share network calls. Inputs longer than ``segment_threshold``
        come as :class:`StreamedStems` (see :meth:`separate_streamed`): consume each before
        asking for the next item. A group that fails is redone one input at a time so that each
        error lands on the input that caused it; any exception fails only its input (only
        :class:`KeyboardInterrupt` stops the batch). ``durations`` (seconds per path, e.g. from
        a listing made beforehand) saves reading each file's header again. Each in-memory
        :class:`Stems` carries ``seconds``: its share of the group's processing time, in
        proportion to its network windows. Each group is read (decoded and resampled) by a
        background thread while the group before it is separated and its results consumed.
        """
        # The next group is read (decoded, resampled) by a background thread while the current
        # one is separated and its results are consumed.
        reader = ThreadPoolExecutor(1, thread_name_prefix="uvrsep-read")
        pending: list[tuple[list[Path], Future]] = []

        def submit(group: list[Path]) -> Iterator[tuple[Path, Stems | Exception]]:
            if group:
                pending.append((group, reader.submit(self._read_group, group)))
            while len(pending) > (1 if group else 0):
                done, future = pending.pop(0)
                yield from self._run_group(done, future.result())

        group: list[Path] = []
        windows = 0
        try:
            for path in map(Path, paths):
                try:
                    seconds = durations[path] if durations is not None and path in durations else duration_seconds(path)
                except _ITEM_ERRORS as exc:
                    yield from submit(group)
                    yield from submit([])
                    group, windows = [], 0
                    yield path, exc
                    continue
                if self.streams(seconds):
                    yield from submit(group)
                    yield from submit([])
                    group, windows = [], 0
                    try:
                        result = self.separate_streamed(path)
                    except _ITEM_ERRORS as exc:
                        result = exc
                    yield path, result
                    continue
                group.append(path)
                windows += self.n_windows(self._frames_for(seconds))
                if windows >= group_windows:
                    yield from submit(group)
                    group, windows = [], 0
            yield from submit(group)
            yield from submit([])
        finally:
            reader.shutdown(wait=True, cancel_futures=True)

    def _frames_for(self, seconds: float) -> int:
        return int(seconds * self.layout.sample_rate) // self.layout.top.hop_length + 1

    def _read_group(self, group: list[Path]) -> list[tuple[np.ndarray | Exception, float]]:
        """Each input of a group read as :meth:`load` reads it (or the error), with the seconds it took."""
        loaded = []
        for path in group:
            t0 = time.perf_counter()
            try:
                wave: np.ndarray | Exception = self.load(path)
            except _ITEM_ERRORS as exc:
                wave = exc
            loaded.append((wave, time.perf_counter() - t0))
        return loaded

    def _run_group(
        self, group: list[Path], loaded: list[tuple[np.ndarray | Exception, float]]
    ) -> Iterator[tuple[Path, Stems | Exception]]:
        """Separate a group read by :meth:`_read_group`, in order; an input that could not be
        read fails alone. When the shared run fails, each input is redone alone so that each
        error lands on the input that caused it."""
        ready = [k for k, (wave, _) in enumerate(loaded) if not isinstance(wave, Exception)]
        results: dict[int, Stems | Exception] = {k: wave for k, (wave, _) in enumerate(loaded) if isinstance(wave, Exception)}
        if len(ready) > 1:
            t0 = time.perf_counter()
            try:
                shared = self._separate_waves([loaded[k][0] for k in ready], sum(loaded[k][1] for k in ready))
            except _ITEM_ERRORS:
                shared = None
            if shared is not None:
                _share_time(shared, time.perf_counter() - t0, [self.n_windows(self._frames_for(r.duration)) for r in shared])
                results.update(zip(ready, shared))
                ready = []
        for k in ready:
            t0 = time.perf_counter()
            try:
                result = self._separate_waves([loaded[k][0]], loaded[k][1])[0]
                result.seconds = time.perf_counter() - t0
            except _ITEM_ERRORS as exc:
                result = exc
            results[k] = result
        for k, path in enumerate(group):
            yield path, results.pop(k)

    def prepare(self, wave: np.ndarray, sample_rate: int, name: str = "array") -> np.ndarray:
        """Bring an in-memory waveform to float32 stereo ``[2, T]`` at the model's rate.

        ``wave`` is ``[channels, samples]``, ``[samples, channels]`` or ``[samples]``
        (:func:`uvrsep.audio.channels_first` says which shapes are accepted).
        """
        return self._conform(channels_first(wave, name), check_input_rate(sample_rate, name), name)

    def _conform(self, wave: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
        """``[C, T]`` audio → float32 stereo ``[2, T']`` at the model's rate (top band's
        resampler); more than two channels keep the first two. Empty, non-finite or too loud
        audio is refused naming ``name``."""
        if wave.shape[1] == 0:
            raise EmptyAudioError(f"{name}: holds no audio samples")
        wave = np.asarray(wave, dtype=np.float32)
        check_samples(wave, name)
        if wave.shape[0] > 2:
            wave = wave[:2]
        if sample_rate != self.layout.sample_rate:
            wave = bands.resample(wave, sample_rate, self.layout.sample_rate, self.layout.top.resample_type, self.dsp)
        return to_stereo(wave)

    def separate(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> Stems:
        """Separate a file path, or an array ``[C, T]`` / ``[T]`` given with its ``sample_rate``.

        Returns :class:`Stems` at the model's rate, each ``[2, T]`` where ``T`` is the input's
        duration at that rate. Everything is held in memory (about 1 GB per minute of audio at
        the peak); :meth:`separate_streamed` separates files of any length in bounded memory.
        """
        if isinstance(audio, (str, Path)):
            return self.separate_many([audio])[0]
        return self.separate_array(audio, sample_rate)

    def separate_array(self, wave: np.ndarray, sample_rate: int | None) -> Stems:
        """Separate an in-memory waveform at ``sample_rate``.

        ``wave``: ``[channels, samples]``, ``[samples, channels]`` (as ``soundfile.read`` gives
        it) or ``[samples]``. A 2-D array is read with its small axis as channels when one axis
        has at most 8 entries and the other is longer; any other shape is refused with a
        :class:`ConfigError` that names the shape. Stems are ``[2, T]`` either way.
        """
        if sample_rate is None:
            raise ConfigError("separate(array) needs its sample_rate (Hz)")
        return self.separate_many([(wave, sample_rate)])[0]

    def separate_many(
        self,
        inputs: list[str | Path | tuple[np.ndarray, int]],
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
        """:meth:`separate_many` of waveforms already read (float32 ``[2, T]`` at the model's rate)."""
        self.times = PhaseTimes(read=read_seconds)
        waves = list(waves)
        jobs: list[_Job | None] = []
        while waves:  # release each waveform as soon as it is analysed
            jobs.append(_Job(self, wave=waves.pop(0)))
        requests = [job.request(0) for job in jobs]
        t0 = time.perf_counter()
        total = sum(last - first for block, _ in requests if block.coef > 0 for _, first, last in block.windows)
        with tqdm(total=total, unit="win", disable=None if self.progress else True, leave=False) as bar:
            ests = self._estimate_blocks([block for block, _ in requests], on_window or bar.update)
        self.times.network += time.perf_counter() - t0
        for job, request, est in zip(jobs, requests, ests):
            job.keep(0, request, est)
        del requests, ests

        results = []
        for k, job in enumerate(jobs):  # release each clip's arrays as soon as its stems exist
            waves_k = next(job.run())
            jobs[k] = None
            results.append(Stems(waves=waves_k, sample_rate=self.layout.sample_rate, primary=self.primary,
                                 notes=list(self.notes)))
        return results

    def _high_end(self, stem: torch.Tensor, mix_high_end: torch.Tensor | None) -> torch.Tensor | None:
        """The top band's high end for a stem spectrogram (``None``: the stem's own rows)."""
        if self.settings.high_end == "none" or mix_high_end is None:
            return None
        return mirror_high_end(stem, mix_high_end, self.layout, self.settings.high_end)

    # -- long inputs, in segments --------------------------------------------------------
    def streams(self, seconds: float) -> bool:
        """Whether :meth:`separate_batch` separates an input of ``seconds`` in segments."""
        frames = seconds * self.layout.sample_rate / self.layout.top.hop_length
        return (seconds > self.segment_threshold and frames > segments.min_frames(self.layout)
                and segments.unsupported_reason(self.layout) is None)

    def separate_streamed(self, path: str | Path, on_window: Callable[[int], None] | None = None) -> StreamedStems:
        """Separate a file of any length; iterate the result for its audio, block by block.

        A long file is read, analysed, run through the network and synthesised segment by
        segment (``segment_windows`` network windows each); memory does not grow with the
        length. The stems equal :meth:`separate`'s (the network windows, normalisation,
        post-processing and tail handling are the whole-file ones; only the synthesis' whole-file
        FFT resampling is reproduced within ±16384 samples, > 100 dB SDR, see
        :mod:`uvrsep.segments`). A file too short to be cut into segments, or a band config that
        cannot be segmented (``2band_*``, ``3band_*``, ...), is separated whole and comes as one block.

        A first pass over the file (here, before returning) finds the global maximum the
        normalisation needs and rejects unreadable or non-finite audio. Iterating the returned
        :class:`StreamedStems` yields ``{stem: float32 [2, t]}`` blocks in order. With
        ``postprocess`` the network runs twice (the silence detection needs every frame's
        residual first).
        """
        self.times = PhaseTimes()
        t0 = time.perf_counter()
        whole = segments.unsupported_reason(self.layout) is not None
        source = None
        if not whole:
            source = AudioSource(path, self.layout.sample_rate, self.layout.top.resample_type, self.stream, self.dsp)
            whole = bands.frame_count(source.n_samples, self.layout) < segments.min_frames(self.layout)
        if whole:
            if source is not None:
                source.close()
            return self.separate_many([path], on_window=on_window)[0].as_stream()
        self.times.read = time.perf_counter() - t0
        try:
            job = _Job(self, source=source, on_window=on_window)
        except BaseException:
            source.close()
            raise
        return StreamedStems(
            names=(self.primary, self.secondary), sample_rate=self.layout.sample_rate, primary=self.primary,
            n_samples=source.n_samples, chunks=job.run(), notes=list(self.notes),
        )


@dataclass
class _BlockInput:
    """What the network stage needs for frames ``lo .. hi − 1`` of an ``n``-frame input."""

    mag: torch.Tensor  #: the mix magnitudes of frames ``a0 .. a0 + width − 1``, float32 ``[2, F, width]``
    a0: int
    lo: int
    hi: int
    n: int
    coef: float  #: the input's normalisation: its magnitudes' maximum over frames ``0 .. n − 1``
    windows: list[tuple[WindowPlan, int, int]]  #: :meth:`Separator._windows` of ``lo .. hi − 1``


class _Job:
    """One input through the pipeline, block by block of frames: analysis, the network's
    windows, the semantics' estimate, post-processing, the two stems' spectrograms, high end
    and synthesis.

    ``wave`` (float32 ``[2, T]`` in memory): one block, analysed and synthesised as a whole
    file (:meth:`Separator.separate_many`). ``source`` (an :class:`AudioSource`): blocks of
    ``segment_windows`` network windows, analysed frame range by frame range and synthesised
    segment by segment (:meth:`Separator.separate_streamed`). Everything between the analysis
    and the synthesis is the same code for both, so a segmented file gets the whole-file
    windows, normalisation and post-processing. From the analysis to the synthesis every array
    is a tensor on the separator's DSP device. :meth:`run` yields the stems' audio,
    ``{stem: float32 [2, t]}``: one block for a whole file, several in order for a source.
    """

    def __init__(self, sep: Separator, *, wave: np.ndarray | None = None, source: AudioSource | None = None,
                 on_window: Callable[[int], None] | None = None):
        self.sep, self.source, self.on_window = sep, source, on_window
        self.whole = source is None
        self.post_plan = None
        self._kept: tuple[int, tuple] | None = None
        t0 = time.perf_counter()
        if self.whole:
            analysis = bands.analyze(wave, sep.layout, extra_frames=TAIL_EXTRA_FRAMES, dsp=sep.dsp, tensors=True)
            self.n_samples, self.n = analysis.n_samples, analysis.n_frames
            self.total = analysis.spec.shape[2]
            mag = analysis.spec.abs()
            self._whole: tuple | None = (analysis.spec, analysis.high_end, mag)
            self.coef = float(mag[:, :, : self.n].max())
            self.block = self.total
        else:
            self._whole = None
            self.n_samples = source.n_samples
            self.n = bands.frame_count(self.n_samples, sep.layout)
            self.total = self.n + TAIL_EXTRA_FRAMES
            self.block = (sep.settings.window_size - 2 * sep.net.context) * sep.segment_windows
            self.coef = 0.0
            for lo in range(0, self.n, self.block):  # the normalisation needs the whole file's maximum
                _, _, mag = self._analyze(lo, min(lo + self.block, self.n))
                self.coef = max(self.coef, float(mag.max()))
        # Blocks partition the frames; the last one also holds the extra frames past the end.
        self.starts = list(range(0, self.n, self.block))
        sep.times.analysis += time.perf_counter() - t0
        self._cache: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor | None]]] = {}
        self._head = segments.synthesis_reach(sep.layout)
        self._head_frames: dict[str, tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def _bounds(self, k: int) -> tuple[int, int]:
        lo = self.starts[k]
        return lo, (self.total if k == len(self.starts) - 1 else lo + self.block)

    def _analyze(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Frames ``lo .. hi − 1``: (spectrogram, raw high end, magnitudes), tensors on the DSP
        device. A whole file's analysis is handed out once (its one block) and released with it."""
        if self.whole:
            spec, high, mag = self._whole
            self._whole = None
            return spec[:, :, lo:hi], _cut(high, lo, hi), mag[:, :, lo:hi]
        spec, high = analyze_frames(self.source.read, self.sep.layout, self.n_samples, lo, hi, self.sep.dsp, tensors=True)
        return spec, high, spec.abs()

    def request(self, k: int) -> tuple[_BlockInput, tuple[torch.Tensor, torch.Tensor | None]]:
        """Block ``k``'s network input, and its spectrogram and high end."""
        sep, roi = self.sep, self.sep.settings.window_size - 2 * self.sep.net.context
        lo, hi = self._bounds(k)
        windows = sep._windows(lo, hi, self.n)
        a0 = max(0, min([lo] + [i * roi - plan.pad_left for plan, i, _ in windows]))
        a1 = min(self.total, max([hi] + [(j - 1) * roi - plan.pad_left + plan.window for plan, _, j in windows]))
        t0 = time.perf_counter()
        spec, high, mag = self._analyze(a0, a1)
        sep.times.analysis += time.perf_counter() - t0
        return _BlockInput(mag, a0, lo, hi, self.n, self.coef, windows), (spec[:, :, lo - a0 : hi - a0], _cut(high, lo - a0, hi - a0))

    def keep(self, k: int, request: tuple[_BlockInput, tuple], est: torch.Tensor) -> None:
        """Hold block ``k``'s prediction (from a network run shared with other inputs) for :meth:`run`."""
        self._kept = (k, _prediction(request, est))

    def _predict(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Block ``k``: (spec, high end, mix magnitudes, the semantics' estimate), on the DSP device."""
        if self._kept is not None and self._kept[0] == k:
            kept, self._kept = self._kept[1], None
            return kept
        request = self.request(k)
        t0 = time.perf_counter()
        est = self.sep._estimate_blocks([request[0]], self.on_window)[0]
        self.sep.times.network += time.perf_counter() - t0
        return _prediction(request, est)

    def _post_plan(self):
        """Post-processing looks at runs of frames: every frame's statistic first (a network
        pass over the whole input), then the whole input's plan, applied block by block. A
        one-block input keeps its prediction for the stems instead of running the network again."""
        stats = np.zeros(self.total, dtype=np.float32)
        for k in range(len(self.starts)):
            lo, hi = self._bounds(k)
            predicted = self._predict(k)
            stats[lo:hi] = self.sep.semantics.frame_stats(predicted[3], predicted[2])
            if len(self.starts) == 1:
                self._kept = (k, predicted)
        return self.sep.semantics.post_plan(stats, self.n)

    def _stem_specs(self, k: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None]]:
        """Block ``k``'s stems: ``(name, spectrogram, high end)``, the masked stem first. The
        second reuses the first's buffer: take what is needed of the first before asking."""
        sep, sem = self.sep, self.sep.semantics
        spec, high, mag, est = self._predict(k)
        if sep.settings.postprocess:
            sem.apply_post(est, mag, self.post_plan, self._bounds(k)[0], self.n)
        stem = sem.primary_spec(spec, mag, est)
        yield sep.primary, stem, sep._high_end(stem, high)
        stem = sem.secondary_spec(spec, mag, est, stem)
        del spec, mag, est
        yield sep.secondary, stem, sep._high_end(stem, high)

    def run(self) -> Iterator[dict[str, np.ndarray]]:
        sep = self.sep
        bar = None
        if self.on_window is None and sep.progress and not self.whole:
            windows = sum(last - first for k in range(len(self.starts)) for _, first, last in sep._windows(*self._bounds(k), self.n))
            windows *= 2 if sep.settings.postprocess else 1
            bar = tqdm(total=windows, unit="win", leave=False)
            self.on_window = bar.update
        try:
            if sep.settings.postprocess:
                self.post_plan = self._post_plan()
            if self.whole:
                yield self._whole_stems()
            else:
                yield from self._segments()
        finally:
            if bar is not None:
                bar.close()
            self._cache.clear()
            self._head_frames = None
            self._kept = self._whole = None
            if self.source is not None:
                self.source.close()

    def _whole_stems(self) -> dict[str, np.ndarray]:
        """A one-block input: each stem synthesised as a whole file, one after the other."""
        waves = {}
        for name, spec, high in self._stem_specs(0):
            t0 = time.perf_counter()
            waves[name] = self._synthesize(lambda a, b: (spec[:, :, a:b], _cut(high, a, b)))
            self.sep.times.synthesis += time.perf_counter() - t0
        return waves

    def _synthesize(self, frames: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]]) -> np.ndarray:
        """A stem (``frames(a, b)``: its spectrogram and high end over frames ``a .. b − 1``) →
        float32 ``[2, n_samples]``, through the whole-file synthesis."""
        spec, high = frames(0, self.n)
        wave = bands.synthesize(spec, self.sep.layout, high, self.sep.dsp)
        return np.ascontiguousarray(self._with_tail(wave, frames), dtype=np.float32)

    def _with_tail(self, wave: np.ndarray, frames: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]]) -> np.ndarray:
        """``wave``, the synthesis up to the original's last frame, completed to ``n_samples``.

        The original drops the input's last partial hop; those samples come from a second
        synthesis of the last frames plus the extra frames past the end (analysed from the
        zero-padded mix, masked with the last frame's mask), so the end of the file is kept.
        """
        hop = self.sep.layout.top.hop_length
        length = hop * (self.n - 1)
        missing = self.n_samples - length
        if missing > 0:
            first = max(0, self.n - TAIL_FRAMES)
            spec, high = frames(first, self.total)
            seg = bands.synthesize(spec, self.sep.layout, high, self.sep.dsp)
            start = (self.n - 1 - first) * hop  # seg starts at frame `first`'s centre
            wave = np.concatenate([wave, seg[:, start : start + missing]], axis=1)
        return wave[:, : self.n_samples]

    # -- a long input, segment by segment -------------------------------------------------
    def _block(self, k: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        if k not in self._cache:
            t0 = time.perf_counter()
            self._cache[k] = {name: (spec.clone() if name == self.sep.primary else spec, high)
                              for name, spec, high in self._stem_specs(k)}
            self.sep.times.synthesis += time.perf_counter() - t0
            if k == 0:  # the last segment's wrap-around reads the first frames again: keep a copy
                cut = min(self._head, self._bounds(0)[1])
                self._head_frames = {name: (spec[:, :, :cut].clone(), None if high is None else high[:, :, :cut].clone())
                                     for name, (spec, high) in self._cache[0].items()}
        return self._cache[k]

    def _frames(self, name: str, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stem ``name``'s spectrogram and high end over frames ``a .. b - 1``, from the blocks."""
        if self._head_frames is not None and 0 not in self._cache and b <= self._head_frames[name][0].shape[2]:
            spec, high = self._head_frames[name]
            return spec[:, :, a:b], None if high is None else high[:, :, a:b]
        specs, highs = [], []
        k = min(a // self.block, len(self.starts) - 1)
        while a < b:
            lo, hi = self._bounds(k)
            spec, high = self._block(k)[name]
            stop = min(b, hi)
            specs.append(spec[:, :, a - lo : stop - lo])
            highs.append(None if high is None else high[:, :, a - lo : stop - lo])
            a, k = stop, k + 1
        high = None if highs[0] is None else (highs[0] if len(highs) == 1 else torch.cat(highs, dim=2))
        return (specs[0] if len(specs) == 1 else torch.cat(specs, dim=2)), high

    def _segments(self) -> Iterator[dict[str, np.ndarray]]:
        sep, layout = self.sep, self.sep.layout
        hop = layout.top.hop_length
        names = (sep.primary, sep.secondary)
        synths = {name: SegmentedSynthesis(layout, self.n, lambda a, b, name=name: self._frames(name, a, b), dsp=sep.dsp)
                  for name in names}
        reach = segments.synthesis_reach(layout)
        tail = {k for k in range(len(self.starts)) if self._bounds(k)[1] > self.n - max(reach, TAIL_FRAMES)}
        length = hop * (self.n - 1)
        for k in range(len(self.starts)):
            lo, hi = self._bounds(k)
            start, stop = lo * hop, min(hi * hop, length)
            t0 = time.perf_counter()
            chunk = {name: synths[name].output(start, stop) for name in names} if stop > start else {}
            if k == len(self.starts) - 1:
                chunk = {name: self._with_tail(chunk.get(name, np.zeros((2, 0))), lambda a, b, name=name: self._frames(name, a, b))
                         for name in names}
            sep.times.synthesis += time.perf_counter() - t0
            # Keep the blocks later segments (and the wrap-around at the ends) still need.
            for j in [j for j in self._cache if j not in tail and self._bounds(j)[1] + reach <= hi]:
                del self._cache[j]
            yield {name: np.ascontiguousarray(wave, dtype=np.float32) for name, wave in chunk.items()}


def _prediction(request: tuple[_BlockInput, tuple], est: torch.Tensor) -> tuple:
    """A block's (spec, high end, mix magnitudes, estimate) from its request and estimate."""
    block, (spec, high) = request
    return spec, high, block.mag[:, :, block.lo - block.a0 : block.hi - block.a0], est


def _share_time(results: list[Stems], seconds: float, weights: list[int]) -> None:
    """Give each result of a shared run its share of the run's time, by its network windows."""
    total = sum(weights)
    for result, weight in zip(results, weights):
        result.seconds = seconds * weight / total


def _cut(high: torch.Tensor | None, a: int, b: int) -> torch.Tensor | None:
    return None if high is None else high[:, :, a:b]
