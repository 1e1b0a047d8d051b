"""Cutting a long spectrogram into the fixed-size windows the network sees, and stitching back.

A window is ``window`` frames wide; the network's output loses ``context`` frames on each side,
so consecutive windows advance by ``hop = window - 2 * context`` frames (UVR's ``roi_size``).
The padding follows UVR's ``make_padding`` exactly; the TTA plan shifts everything by half a hop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import transfer
from .errors import ConfigError


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of an ``n_frames``-long spectrogram start, and how it is padded."""

    n_frames: int
    window: int
    context: int
    pad_left: int
    pad_right: int
    n_windows: int
    shift: int = 0

    @property
    def hop(self) -> int:
        """Frames each window contributes (``window - 2 * context``)."""
        return self.window - 2 * self.context

    @classmethod
    def for_frames(cls, n_frames: int, window: int, context: int, *, shifted: bool = False) -> WindowPlan:
        """Plan for ``n_frames`` frames; ``shifted=True`` gives the TTA pass (half a hop later)."""
        if window <= 2 * context:
            raise ConfigError(f"window of {window} frames must be larger than twice the context ({context})")
        if n_frames < 1:
            raise ConfigError("cannot plan windows for an empty spectrogram")
        hop = window - 2 * context
        pad_left = context
        pad_right = hop - n_frames % hop + context
        n_windows = math.ceil(n_frames / hop)
        shift = 0
        if shifted:
            shift = hop // 2
            pad_left += shift
            pad_right += shift
            n_windows += 1
        return cls(n_frames, window, context, pad_left, pad_right, n_windows, shift)

    def covering(self, lo: int, hi: int) -> tuple[int, int]:
        """The windows ``first .. last − 1`` whose outputs hold frames ``lo .. hi − 1`` (frames past
        ``n_frames`` have no window of their own)."""
        first = (lo + self.shift) // self.hop
        return first, min(self.n_windows, -(-(min(hi, self.n_frames) + self.shift) // self.hop))

    def reads(self, first: int, last: int) -> tuple[int, int]:
        """The input frames ``e0 .. e1 − 1`` that windows ``first .. last − 1`` read (outside
        ``0 .. n_frames − 1`` they read the padding's zeros)."""
        return first * self.hop - self.pad_left, (last - 1) * self.hop - self.pad_left + self.window

    def output_frame(self, first: int) -> int:
        """The input frame that window ``first``'s first output column stands for."""
        return first * self.hop - self.shift

    def consecutive(self, count: int) -> WindowPlan:
        """The plan of ``count`` consecutive windows over an input already cut to what they read
        (:meth:`reads`): no padding, no shift."""
        return WindowPlan(count * self.hop, self.window, self.context, 0, 0, count)

    def pad(self, mag: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[C, F, n_frames]`` along time to ``[C, F, pad_left + n_frames + pad_right]``
        (``mag`` itself when there is nothing to pad)."""
        if self.pad_left == self.pad_right == 0:
            return mag
        return torch.nn.functional.pad(mag, (self.pad_left, self.pad_right))

    def trim(self, stitched: torch.Tensor) -> torch.Tensor:
        """Cut the stitched outputs ``[C, F, n_windows * hop]`` back to ``[C, F, n_frames]``."""
        return stitched[:, :, self.shift : self.shift + self.n_frames]


def run_windows_many(
    items: list[tuple[torch.Tensor, WindowPlan]],
    predict: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    on_window: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Run ``predict`` over every window of each item and stitch each item's outputs.

    Args:
        items: ``(mag, plan)`` pairs: float32 ``[C, F, n_frames]`` on the DSP device and its
            :class:`WindowPlan`. Windows of different items share ``predict`` calls (each item
            keeps its own values), which keeps batches full for short clips.
        predict: maps a batch ``[B, C, F, window]`` on ``device`` (the network's) to
            ``[B, C, F, hop]`` (context removed).
        batch_size: windows per ``predict`` call; results do not depend on it.
        on_window: called with the number of windows just finished (progress).

    Returns:
        float32 ``[C, F, n_frames]`` per item, on its device. The windows are cut and the
        outputs stitched there; a batch crosses to ``device`` only where that is another device
        (MPS), and nothing waits for the device per window.
    """
    padded = [plan.pad(mag) for mag, plan in items]
    outs = [mag.new_empty((mag.shape[0], mag.shape[1], plan.n_windows * plan.hop)) for mag, plan in items]
    jobs = [(k, i) for k, (_, plan) in enumerate(items) for i in range(plan.n_windows)]
    step = max(1, batch_size)
    home = outs[0].device if outs else torch.device(device)
    for first in range(0, len(jobs), step):
        chunk = jobs[first : first + step]
        windows = [padded[k][:, :, i * items[k][1].hop : i * items[k][1].hop + items[k][1].window] for k, i in chunk]
        batch = torch.stack(windows)
        if batch.device != torch.device(device):
            batch = transfer.to_device(batch, device)
        result = predict(batch).detach()
        if result.device != home:
            result = transfer.to_device(result, home)
        result = result.float()
        for j, (k, i) in enumerate(chunk):
            hop = items[k][1].hop
            outs[k][:, :, i * hop : (i + 1) * hop] = result[j]
        if on_window is not None:
            on_window(len(chunk))
    return [plan.trim(out) for out, (_, plan) in zip(outs, items)]
