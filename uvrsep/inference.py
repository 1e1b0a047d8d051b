"""The network stage: mix magnitudes → normalised windows → the network → the semantics' estimate.

A block of an input (:class:`BlockInput`: the magnitudes of the frames its windows read, and the
input's normalisation) is cut into the whole input's windows (:class:`uvrsep.windows.WindowPlan`;
a second, shifted pass with TTA), the windows of every block given are run through the network
in batches (:func:`uvrsep.windows.run_windows_many`) under the device's precision policy
(:func:`uvrsep.device.network_scope`), stitched back, and turned into the semantics' estimate
(RVC: masked magnitudes; UVR: the mask after aggression). Several blocks (short clips of a batch)
share network calls; each keeps its own normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .device import LOW_PRECISION, network_scope
from .errors import OutOfMemoryError, option
from .semantics import Semantics
from .windows import WindowPlan, run_windows_many

if TYPE_CHECKING:
    from .network import VRNet

_TORCH_OOM = getattr(torch, "OutOfMemoryError", getattr(torch.cuda, "OutOfMemoryError", MemoryError))

#: Per pass (one, or two with TTA): ``(plan, first, last)``, the plan of the whole input and the
#: windows ``first .. last − 1`` a block needs.
Windows = list[tuple[WindowPlan, int, int]]


@dataclass
class BlockInput:
    """What the network stage needs for frames ``lo .. hi − 1`` of an ``n``-frame input.

    Attributes:
        mag: the mix magnitudes of frames ``a0 .. a0 + width − 1``, float32 ``[2, F, width]``
            on the DSP device: at least the frames the block's windows read within the input.
        a0, lo, hi, n: frame indices (see above).
        coef: the input's normalisation, its magnitudes' maximum over frames ``0 .. n − 1``.
        windows: :meth:`NetworkStage.windows` of ``lo .. hi − 1``.
    """

    mag: torch.Tensor
    a0: int
    lo: int
    hi: int
    n: int
    coef: float
    windows: Windows

    def block_mag(self) -> torch.Tensor:
        """The magnitudes of frames ``lo .. hi − 1``, ``[2, F, hi − lo]`` (a view)."""
        return self.mag[:, :, self.lo - self.a0 : self.hi - self.a0]


@dataclass(frozen=True)
class NetworkStage:
    """A separator's network with its settings for the windows: device, precision, window size,
    TTA, the semantics' per-window step and estimate, and windows per call."""

    net: VRNet
    device: torch.device
    precision: str
    channels_last: bool
    semantics: Semantics
    window: int
    tta: bool
    batch_size: int

    @property
    def hop(self) -> int:
        """Frames each window contributes (``window − 2·context``)."""
        return self.window - 2 * self.net.context

    def windows(self, lo: int, hi: int, n: int) -> Windows:
        """Per pass, the windows of an ``n``-frame input whose outputs fall in frames ``lo .. hi − 1``."""
        plans = [
            WindowPlan.for_frames(n, self.window, self.net.context, shifted=shifted)
            for shifted in ([False, True] if self.tta else [False])
        ]
        return [(plan, *plan.covering(lo, hi)) for plan in plans]

    def n_windows(self, n: int) -> int:
        """Network windows needed for ``n`` frames (both passes with TTA)."""
        return sum(last - first for _, first, last in self.windows(0, n, n))

    def reads(self, lo: int, hi: int, n: int) -> tuple[int, int]:
        """The frames ``a0 .. a1 − 1`` (within ``0 .. n``) that the windows of ``lo .. hi − 1`` read,
        together with ``lo .. hi − 1`` itself."""
        spans = [plan.reads(first, last) for plan, first, last in self.windows(lo, hi, n)]
        return max(0, min([lo] + [e0 for e0, _ in spans])), max([hi] + [e1 for _, e1 in spans])

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 2, F, W]`` normalised magnitudes on the network's device → masks
        ``[B, 2, F, W − 2·context]`` (after the semantics' per-window step: RVC's aggressiveness)."""
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.precision in LOW_PRECISION:
            mask = self.net(batch.to(LOW_PRECISION[self.precision])).float()
        else:
            mask = self.net(batch)
        mask = self.semantics.window_mask(mask)
        c = self.net.context
        return mask[:, :, :, c:-c]

    def run(
        self, items: list[tuple[torch.Tensor, WindowPlan]], on_window: Callable[[int], None] | None
    ) -> list[torch.Tensor]:
        """:func:`run_windows_many` with this stage's network, in one :func:`network_scope`;
        running out of memory is an :class:`OutOfMemoryError` that says what to change."""
        try:
            with torch.inference_mode(), network_scope(self.device, self.precision):
                return run_windows_many(
                    items, self.predict, batch_size=self.batch_size, device=self.device, on_window=on_window
                )
        except (MemoryError, _TORCH_OOM) as exc:
            raise OutOfMemoryError(
                f"the network ran out of memory on {self.device} with {self.batch_size} window(s) per call"
                f"{'; try ' + option('batch_size', value=1) if self.batch_size > 1 else ''} ({type(exc).__name__})"
            ) from None

    def estimate(self, blocks: list[BlockInput], on_window: Callable[[int], None] | None) -> list[torch.Tensor]:
        """The semantics' estimate for frames ``lo .. hi − 1`` of each block (float32
        ``[2, F, hi − lo]``, on the blocks' device), with one run of the network over all their
        windows. Digital silence (``coef`` 0) gives zeros (the original divides by zero there);
        frames past ``n`` reuse the mask of the last frame."""
        items: list[tuple[torch.Tensor, WindowPlan]] = []
        norms: list[torch.Tensor | None] = []
        for b in blocks:
            norm = b.mag / b.coef if b.coef > 0 else None
            norms.append(norm)
            if norm is not None:
                items += [
                    (self._window_input(b, norm, plan, first, last), plan.consecutive(last - first))
                    for plan, first, last in b.windows
                ]
        outs = iter(self.run(items, on_window) if items else [])
        del items
        ests = []
        for b, norm in zip(blocks, norms):
            if norm is None:
                ests.append(b.mag.new_zeros((2, b.mag.shape[1], b.hi - b.lo)))
                continue
            masks = []
            for plan, first, _ in b.windows:
                m0 = plan.output_frame(first)
                mask = next(outs)[:, :, b.lo - m0 : min(b.hi, b.n) - m0]
                if b.hi > b.n:  # frames past the end reuse the last frame's mask
                    mask = torch.cat([mask, mask[:, :, -1:].expand(-1, -1, b.hi - b.n)], dim=2)
                masks.append(mask)
            ests.append(self.semantics.estimate(masks, norm[:, :, b.lo - b.a0 : b.hi - b.a0], b.coef))
        return ests

    @staticmethod
    def _window_input(b: BlockInput, norm: torch.Tensor, plan: WindowPlan, first: int, last: int) -> torch.Tensor:
        """The normalised frames windows ``first .. last − 1`` of ``plan`` read, ``[2, F, e1 − e0]``
        (zeros outside ``0 .. n − 1``, as the whole input's padding has them)."""
        e0, e1 = plan.reads(first, last)
        inp = norm.new_zeros((2, norm.shape[1], e1 - e0))
        c0, c1 = max(e0, b.a0, 0), min(e1, b.a0 + norm.shape[2], b.n)
        inp[:, :, c0 - e0 : c1 - e0] = norm[:, :, c0 - b.a0 : c1 - b.a0]
        return inp
