"""One input through the pipeline, segment by segment: analysis, network, semantics, synthesis.

A :class:`Job` takes an input from a source (:mod:`uvrsep.sources`) and a :class:`SegmentPlan`.
The plan comes from the memory of the device that holds the spectrograms
(:func:`segment_plan`): an input whose arrays fit is one segment — analysed, run and
synthesised as a whole file, exactly the original's computation — and a longer one is cut into
segments of whole windows, analysed frame range by frame range, run through the whole file's
windows with the whole file's normalisation, and synthesised segment by segment
(:mod:`uvrsep.segments`), which gives the whole-file result (≥ 90 dB, tests/test_segments.py)
in memory that does not grow with the length.

The normalisation needs the input's maximum before the network's first window, so a segmented
input's blocks are all analysed first. The analysed blocks are kept for the segments (the
analysis then runs once) as far as the plan's ``held`` bytes allow; beyond that — long inputs
on the CPU, whose spectrograms alone grow with the length — keeping them would make memory grow
with the length, so those blocks are analysed a second time when their segment comes. With
post-processing, every frame's statistic is needed before any stem (runs of frames): the
network's estimates are kept within the same bytes, and the blocks beyond them run through the
network a second time.

From the analysis to the synthesis every array is a tensor on the DSP device; each stem's audio
crosses to the host once per segment (:mod:`uvrsep.transfer`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from . import bands, segments, transfer
from .config import BandLayout
from .inference import BlockInput
from .stems import mirror_high_end

#: Frames re-synthesised to give back the input's last partial hop ...
TAIL_FRAMES = 128
#: ... and frames analysed past the end for it (the last partial hop lies in the first).
TAIL_EXTRA_FRAMES = 4
#: Bytes of the DSP device's memory per spectrogram frame that processing an input holds at its
#: peak (the analysis, magnitudes, window inputs, masks, the estimate, the two stems and their
#: synthesis), per ``bins + 1 = 673`` rows: the growth of the peak RSS of whole-file
#: separations on the CPU with the input's length (docs/performance.md), rounded up for TTA's
#: second pass and post-processing. Scaled by the layout's rows.
BYTES_PER_FRAME_673 = 128 << 10
#: Analysis blocks re-analysed in the second pass that are kept for the next segments' margins.
RECENT_BLOCKS = 4


@dataclass(frozen=True)
class SegmentPlan:
    """How an input is processed: ``frames`` per segment (``None``: the whole input as one
    segment), and ``held`` bytes of analysed blocks and estimates that may be kept between passes."""

    frames: int | None
    held: int = 0


def bytes_per_frame(layout: BandLayout) -> int:
    """:data:`BYTES_PER_FRAME_673` for ``layout``'s rows."""
    return BYTES_PER_FRAME_673 * (layout.bins + 1) // 673


def segment_plan(
    n_samples: int,
    layout: BandLayout,
    hop: int,
    budget: int,
    *,
    threshold: float | None = None,
    windows: int | None = None,
) -> SegmentPlan:
    """The plan for an input of ``n_samples`` at ``layout``'s rate, with ``hop`` frames per network
    window and ``budget`` bytes on the DSP device (:func:`uvrsep.device.memory_budget`).

    Whole when the layout cannot be segmented or the input is too short for it, when the input
    is no longer than ``threshold`` seconds (given), or (``threshold`` ``None``) when its arrays
    fit the budget. Otherwise segments of ``windows`` network windows (given), else of as many as
    half the budget holds and (``threshold`` given) no longer than ``threshold`` seconds, at
    least one window; the rest of the budget is for what is kept between passes.
    """
    n = bands.frame_count(n_samples, layout)
    if segments.unsupported_reason(layout) is not None or n < segments.min_frames(layout):
        return SegmentPlan(None)
    per_frame = bytes_per_frame(layout)
    if threshold is not None:
        if n_samples <= threshold * layout.sample_rate:
            return SegmentPlan(None)
    elif (n + TAIL_EXTRA_FRAMES) * per_frame <= budget:
        return SegmentPlan(None)
    count = windows
    if count is None:
        count = budget // 2 // per_frame // hop
        if threshold is not None:
            count = min(count, int(threshold * layout.sample_rate / layout.top.hop_length) // hop)
    frames = max(1, count) * hop
    if frames >= n:
        return SegmentPlan(None)
    return SegmentPlan(frames, max(0, budget - frames * per_frame))


class Job:
    """One input (``source``: ``read(a, b)``, ``n_samples``, ``close()``) separated by ``sep`` (a
    :class:`uvrsep.Separator`) as ``plan`` says. :meth:`run` yields the stems' audio,
    ``{stem: float32 [2, t]}``: one block for a whole input, several in order for segments.
    A whole input's single block can also be requested by the caller, so that the windows of
    several clips share network calls (:meth:`request`, :meth:`keep`)."""

    def __init__(self, sep, source, plan: SegmentPlan, on_window: Callable[[int], None] | None = None):
        self.sep, self.source, self.on_window = sep, source, on_window
        self.stage = sep.stage()
        self.layout: BandLayout = sep.layout
        self.n_samples = source.n_samples
        self.n = bands.frame_count(self.n_samples, self.layout)
        self.total = self.n + TAIL_EXTRA_FRAMES
        self.block = self.total if plan.frames is None else plan.frames
        self.starts = list(range(0, self.n, self.block)) or [0]
        self.whole = len(self.starts) == 1
        self.held = plan.held
        self.post_plan = None
        self._analysed: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._recent: OrderedDict[int, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()
        self._kept: dict[int, tuple] = {}
        self._cache: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor | None]]] = {}
        self._head = segments.synthesis_reach(self.layout)
        self._head_frames: dict[str, tuple[torch.Tensor, torch.Tensor | None]] | None = None
        t0 = sep.clock()
        self.coef = self._first_pass()
        sep.times.analysis += sep.clock() - t0
        # How many requests to come read each analysed block (twice each with post-processing,
        # less what predictions kept spare): a block is dropped once none does.
        self._reads = [self._blocks_read(k) for k in range(len(self.starts))]
        self._needs = dict.fromkeys(range(len(self.starts)), 0)
        for blocks in self._reads:
            for j in blocks:
                self._needs[j] += 2 if sep.settings.postprocess else 1

    # -- analysis -------------------------------------------------------------------------------
    def _bounds(self, k: int) -> tuple[int, int]:
        lo = self.starts[k]
        return lo, (self.total if k == len(self.starts) - 1 else lo + self.block)

    def _analyze(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block ``k``'s spectrogram and high end (``[2, F, hi − lo]``, on the DSP device). A whole
        input is analysed as a whole file; a segment, as that range of the whole file."""
        dsp = self.sep.dsp
        if self.whole:
            wave = transfer.to_device(self.source.read(0, self.n_samples), dsp)
            analysis = bands.analyze(wave, self.layout, extra_frames=TAIL_EXTRA_FRAMES)
            return analysis.spec, analysis.high_end
        return segments.analyze_frames(self.source.read, self.layout, self.n_samples, *self._bounds(k), dsp)

    def _first_pass(self) -> float:
        """Analyse every block for the normalisation (the maximum over frames ``0 .. n − 1``),
        keeping as many as the held bytes allow."""
        coef, room = torch.zeros((), device=self.sep.dsp), self.held
        for k in range(len(self.starts)):
            spec, high = self._analyze(k)
            lo = self._bounds(k)[0]
            coef = torch.maximum(coef, spec[:, :, : self.n - lo].abs().max())
            size = _nbytes(spec, high)
            if self.whole or size <= room:
                self._analysed[k] = (spec, high)
                room -= 0 if self.whole else size
        self.held = room
        if self.whole:  # never read again: release the input (an array in memory) now
            self.source.close()
        return float(coef)

    def _blocks_read(self, k: int) -> range:
        """The blocks whose frames block ``k``'s request reads."""
        a0, a1 = self.stage.reads(*self._bounds(k), self.n)
        last = len(self.starts) - 1
        return range(min(a0 // self.block, last), min((min(a1, self.total) - 1) // self.block, last) + 1)

    def _unneed(self, k: int) -> None:
        """Block ``k``'s request will come once fewer; drop the analysis no request needs."""
        for j in self._reads[k]:
            self._needs[j] -= 1
            if self._needs[j] <= 0:
                self._analysed.pop(j, None)
                self._recent.pop(j, None)

    def _block_analysis(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if k in self._analysed:
            return self._analysed[k]
        if k not in self._recent:
            self._recent[k] = self._analyze(k)
            while len(self._recent) > RECENT_BLOCKS:
                self._recent.popitem(last=False)
        return self._recent[k]

    def _frames_of_analysis(self, a0: int, a1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mix's spectrogram and high end over frames ``a0 .. a1 − 1``, from the blocks."""
        specs, highs = [], []
        k = min(a0 // self.block, len(self.starts) - 1)
        while a0 < a1:
            lo, hi = self._bounds(k)
            spec, high = self._block_analysis(k)
            stop = min(a1, hi)
            specs.append(spec[:, :, a0 - lo : stop - lo])
            highs.append(_cut(high, a0 - lo, stop - lo))
            a0, k = stop, k + 1
        return _cat(specs), _cat_high(highs)

    def request(self, k: int) -> tuple[BlockInput, tuple[torch.Tensor, torch.Tensor | None]]:
        """Block ``k``'s network input, and its spectrogram and high end."""
        lo, hi = self._bounds(k)
        a0, a1 = self.stage.reads(lo, hi, self.n)
        t0 = self.sep.clock()
        spec, high = self._frames_of_analysis(a0, min(a1, self.total))
        mag = spec.abs()
        self._unneed(k)  # the block's arrays live on in the request alone once none needs them
        self.sep.times.analysis += self.sep.clock() - t0
        block = BlockInput(mag, a0, lo, hi, self.n, self.coef, self.stage.windows(lo, hi, self.n))
        return block, (spec[:, :, lo - a0 : hi - a0], _cut(high, lo - a0, hi - a0))

    # -- network and semantics ------------------------------------------------------------------
    def keep(self, k: int, request: tuple[BlockInput, tuple], est: torch.Tensor) -> None:
        """Hold block ``k``'s prediction (from a network run shared with other inputs) for :meth:`run`."""
        self._kept[k] = _prediction(request, est)

    def _predict(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Block ``k``: (spec, high end, mix magnitudes, the semantics' estimate), on the DSP device."""
        if k in self._kept:
            return self._kept.pop(k)
        request = self.request(k)
        t0 = self.sep.clock()
        est = self.stage.estimate([request[0]], self.on_window)[0]
        self.sep.times.network += self.sep.clock() - t0
        return _prediction(request, est)

    def _post_plan(self):
        """Post-processing looks at runs of frames: every frame's statistic first (a network
        pass over the whole input), then the whole input's plan, applied block by block.
        Predictions are kept for the stems while the held bytes allow (a one-block input always
        keeps its own) instead of running the network again."""
        stats = []
        for k in range(len(self.starts)):
            predicted = self._predict(k)
            stats.append(self.sep.semantics.frame_stats(predicted[3], predicted[2]))
            size = _nbytes(*predicted)
            if self.whole or size <= self.held:
                self._kept[k] = predicted
                self.held -= 0 if self.whole else size
                self._unneed(k)
        return self.sep.semantics.post_plan(transfer.to_host(torch.cat(stats)), self.n)

    def _stem_specs(self, k: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None]]:
        """Block ``k``'s stems: ``(name, spectrogram, high end)``, the masked stem first. The
        second reuses the first's buffer: take what is needed of the first before asking."""
        sep, sem = self.sep, self.sep.semantics
        spec, high, mag, est = self._predict(k)
        if sep.settings.postprocess:
            sem.apply_post(est, mag, self.post_plan, self._bounds(k)[0], self.n)
        stem = sem.primary_spec(spec, mag, est)
        yield sep.primary, stem, self._high_end(stem, high)
        stem = sem.secondary_spec(spec, mag, est, stem)
        del spec, mag, est
        yield sep.secondary, stem, self._high_end(stem, high)

    def _high_end(self, stem: torch.Tensor, mix_high_end: torch.Tensor | None) -> torch.Tensor | None:
        """The top band's high end for a stem spectrogram (``None``: the stem's own rows)."""
        mode = self.sep.settings.high_end
        if mode == "none" or mix_high_end is None:
            return None
        return mirror_high_end(stem, mix_high_end, self.layout, mode)

    # -- synthesis ------------------------------------------------------------------------------
    def run(self) -> Iterator[dict[str, np.ndarray]]:
        """The stems' audio, segment by segment (see the class)."""
        bar = None
        if self.on_window is None and self.sep.progress and not self.whole:
            bar = tqdm(
                total=self.stage.n_windows(self.n) * (2 if self.sep.settings.postprocess else 1),
                unit="win",
                leave=False,
            )
            self.on_window = bar.update
        try:
            if self.sep.settings.postprocess:
                self.post_plan = self._post_plan()
                if bar is not None:  # the blocks whose estimates were kept do not run again
                    bar.total = bar.n + sum(self._windows(k) for k in range(len(self.starts)) if k not in self._kept)
                    bar.refresh()
            yield from (self._whole_stems() if self.whole else self._segments())
        finally:
            if bar is not None:
                bar.close()
            self._cache.clear()
            self._analysed.clear()
            self._recent.clear()
            self._kept.clear()
            self._head_frames = None
            self.source.close()

    def _windows(self, k: int) -> int:
        """Network windows of block ``k`` (both passes with TTA)."""
        return sum(last - first for _, first, last in self.stage.windows(*self._bounds(k), self.n))

    def _whole_stems(self) -> Iterator[dict[str, np.ndarray]]:
        """A one-block input: each stem synthesised as a whole file, one after the other."""
        waves = {}
        for name, spec, high in self._stem_specs(0):
            t0 = self.sep.clock()
            waves[name] = _host(
                self._with_tail(
                    bands.synthesize(spec[:, :, : self.n], self.layout, _cut(high, 0, self.n)),
                    functools.partial(_slice, spec, high),
                )
            )
            self.sep.times.synthesis += self.sep.clock() - t0
        yield waves

    def _with_tail(
        self, wave: torch.Tensor, frames: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """``wave``, the synthesis up to the original's last frame, completed to ``n_samples``.

        The original drops the input's last partial hop; those samples come from a second
        synthesis of the last frames plus the extra frames past the end (analysed from the
        zero-padded mix, masked with the last frame's mask), so the end of the file is kept.
        """
        hop = self.layout.top.hop_length
        missing = self.n_samples - hop * (self.n - 1)
        if missing > 0:
            first = max(0, self.n - TAIL_FRAMES)
            spec, high = frames(first, self.total)
            seg = bands.synthesize(spec, self.layout, high)
            start = (self.n - 1 - first) * hop  # seg starts at frame `first`'s centre
            wave = torch.cat([wave, seg[:, start : start + missing]], dim=1)
        return wave[:, : self.n_samples]

    def _block(self, k: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        if k not in self._cache:
            self._cache[k] = {
                name: (spec.clone() if name == self.sep.primary else spec, high)
                for name, spec, high in self._stem_specs(k)
            }
            lo, hi = self._bounds(k)
            if self._head_frames is None and lo < self._head <= hi:
                # The last segment's wrap-around reads the first frames again: keep a copy of them
                # (their blocks are all cached now: the first segment needed them).
                head = min(self._head, self.total)
                self._head_frames = {name: _cloned(*self._frames(name, 0, head)) for name in self._cache[k]}
        return self._cache[k]

    def _frames(self, name: str, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stem ``name``'s spectrogram and high end over frames ``a .. b - 1``, from the blocks."""
        if self._head_frames is not None and b <= self._head_frames[name][0].shape[2]:
            spec, high = self._head_frames[name]
            return spec[:, :, a:b], _cut(high, a, b)
        specs, highs = [], []
        k = min(a // self.block, len(self.starts) - 1)
        while a < b:
            lo, hi = self._bounds(k)
            spec, high = self._block(k)[name]
            stop = min(b, hi)
            specs.append(spec[:, :, a - lo : stop - lo])
            highs.append(_cut(high, a - lo, stop - lo))
            a, k = stop, k + 1
        return _cat(specs), _cat_high(highs)

    def _segments(self) -> Iterator[dict[str, np.ndarray]]:
        sep, layout = self.sep, self.layout
        hop = layout.top.hop_length
        names = (sep.primary, sep.secondary)
        synths = {
            name: segments.SegmentedSynthesis(layout, self.n, functools.partial(self._frames, name), device=sep.dsp)
            for name in names
        }
        reach = segments.synthesis_reach(layout)
        tail = {k for k in range(len(self.starts)) if self._bounds(k)[1] > self.n - max(reach, TAIL_FRAMES)}
        length = hop * (self.n - 1)
        for k in range(len(self.starts)):
            lo, hi = self._bounds(k)
            start, stop = lo * hop, min(hi * hop, length)
            t0, nested = sep.clock(), sep.times.analysis + sep.times.network
            chunk = {name: synths[name].output(start, stop) for name in names} if stop > start else {}
            if k == len(self.starts) - 1:
                empty = torch.zeros((2, 0), dtype=torch.float64, device=sep.dsp)
                chunk = {
                    name: self._with_tail(chunk.get(name, empty), functools.partial(self._frames, name))
                    for name in names
                }
            waves = {name: _host(wave) for name, wave in chunk.items()}
            # The blocks' analysis and network ran inside (when the synthesis asked for their frames).
            sep.times.synthesis += sep.clock() - t0 - (sep.times.analysis + sep.times.network - nested)
            # Keep the blocks later segments (and the wrap-around at the ends) still need.
            for j in [j for j in self._cache if j not in tail and self._bounds(j)[1] + reach <= hi]:
                del self._cache[j]
            yield waves


def _prediction(request: tuple[BlockInput, tuple], est: torch.Tensor) -> tuple:
    """A block's (spec, high end, mix magnitudes, estimate) from its request and estimate."""
    block, (spec, high) = request
    return spec, high, block.block_mag(), est


def _host(wave: torch.Tensor) -> np.ndarray:
    """A stem's audio for the caller: float32 ``[2, t]`` in host memory (one copy)."""
    return np.ascontiguousarray(transfer.to_host(wave.to(torch.float32)))


def _nbytes(*tensors: torch.Tensor | None) -> int:
    """Bytes the tensors keep alive (their storages: a view keeps all of its base)."""
    return sum(t.untyped_storage().nbytes() for t in tensors if t is not None)


def _cut(high: torch.Tensor | None, a: int, b: int) -> torch.Tensor | None:
    return None if high is None else high[:, :, a:b]


def _cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)


def _cat_high(pieces: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The high-end pieces joined (all present, or all ``None``: the layout has one or not)."""
    present = [p for p in pieces if p is not None]
    return _cat(present) if present else None


def _slice(spec: torch.Tensor, high: torch.Tensor | None, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frames ``a .. b - 1`` of a spectrogram and its high end."""
    return spec[:, :, a:b], _cut(high, a, b)


def _cloned(spec: torch.Tensor, high: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    return spec.clone(), None if high is None else high.clone()
