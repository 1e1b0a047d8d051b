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

    def starts(self) -> list[int]:
        """First padded frame of each window."""
        return [i * self.hop for i in range(self.n_windows)]

    def pad(self, mag: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[C, F, n_frames]`` along time to ``[C, F, pad_left + n_frames + pad_right]``
        (``mag`` itself when there is nothing to pad)."""
        if self.pad_left == self.pad_right == 0:
            return mag
        return torch.nn.functional.pad(mag, (self.pad_left, self.pad_right))

    def trim(self, stitched: torch.Tensor) -> torch.Tensor:
        """Cut the stitched outputs ``[C, F, n_windows * hop]`` back to ``[C, F, n_frames]``."""
        return stitched[:, :, self.shift : self.shift + self.n_frames]


def run_windows(
    mag: torch.Tensor,
    plan: WindowPlan,
    predict: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    on_window: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Run ``predict`` over every window of ``mag`` and stitch the outputs.

    Args:
        mag: float32 ``[C, F, n_frames]``, on any device (the DSP's).
        predict: maps a batch ``[B, C, F, window]`` on ``device`` (the network's) to
            ``[B, C, F, hop]`` (context removed).
        batch_size: windows per ``predict`` call; results do not depend on it.
        on_window: called with the number of windows just finished (progress).

    Returns:
        float32 ``[C, F, n_frames]`` on ``mag``'s device.
    """
    return run_windows_many([(mag, plan)], predict, batch_size=batch_size, device=device, on_window=on_window)[0]


def run_windows_many(
    items: list[tuple[torch.Tensor, WindowPlan]],
    predict: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    on_window: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """:func:`run_windows` for several spectrograms at once: windows of different items share
    network calls (each item keeps its own values), which keeps batches full for short clips.
    The windows are cut, and the outputs stitched, on the items' device."""
    padded = [plan.pad(mag) for mag, plan in items]
    outs = [mag.new_empty((mag.shape[0], mag.shape[1], plan.n_windows * plan.hop)) for mag, plan in items]
    jobs = [(k, i) for k, (_, plan) in enumerate(items) for i in range(plan.n_windows)]
    step = max(1, batch_size)
    for first in range(0, len(jobs), step):
        chunk = jobs[first : first + step]
        windows = [padded[k][:, :, i * items[k][1].hop : i * items[k][1].hop + items[k][1].window] for k, i in chunk]
        batch = torch.stack(windows).to(device)
        result = predict(batch).detach().to(outs[0].device, torch.float32)
        for j, (k, i) in enumerate(chunk):
            hop = items[k][1].hop
            outs[k][:, :, i * hop : (i + 1) * hop] = result[j]
        if on_window is not None:
            on_window(len(chunk))
    return [plan.trim(out) for out, (_, plan) in zip(outs, items)]
