"""Mask adjustments: RVC's aggressiveness and its ``mask_silence`` post-processing."""

from __future__ import annotations

import numpy as np
import torch


def apply_aggressiveness(mask: torch.Tensor, value: float, split_bin: int) -> torch.Tensor:
    """RVC's aggressiveness, in place on a mask ``[B, C, F, T]``; returns it.

    ``value`` is the CLI's aggressiveness / 100 (RVC's default 10 → 0.10). Rows below
    ``split_bin`` (band 1's crop stop) get ``mask ** (1 + value / 3)``, the rest
    ``mask ** (1 + value)``. Larger values push more energy out of the masked stem.
    """
    if value:
        mask[:, :, :split_bin] = torch.pow(mask[:, :, :split_bin], 1 + value / 3)
        mask[:, :, split_bin:] = torch.pow(mask[:, :, split_bin:], 1 + value)
    return mask


def mask_silence(
    mag: np.ndarray,
    ref: np.ndarray,
    thres: float = 0.2,
    min_range: int = 64,
    fade_size: int = 32,
) -> np.ndarray:
    """RVC's ``mask_silence``: where the residual ``ref`` is quiet for a long run, give it back.

    Frames whose mean ``ref`` (over channels and bins) is below ``thres`` form runs; each run longer
    than ``min_range`` frames has ``ref`` added into ``mag`` with ``fade_size``-frame linear fades.
    Shapes ``[C, F, T]``; returns a new array. Unlike the original, a signal with no quiet frame
    is returned unchanged instead of raising ``IndexError``.
    """
    if min_range < fade_size * 2:
        raise ValueError("min_range must be >= fade_size * 2")
    mag = mag.copy()
    idx = np.where(ref.mean(axis=(0, 1)) < thres)[0]
    if idx.size == 0:
        return mag
    breaks = np.where(np.diff(idx) != 1)[0]
    starts = np.insert(idx[breaks + 1], 0, idx[0])
    ends = np.append(idx[breaks], idx[-1])
    long_runs = np.where(ends - starts > min_range)[0]
    old_e = None
    for s, e in zip(starts[long_runs], ends[long_runs]):
        if old_e is not None and s - old_e < fade_size:
            s = old_e - fade_size * 2
        if s != 0:
            weight = np.linspace(0, 1, fade_size)
            mag[:, :, s : s + fade_size] += weight * ref[:, :, s : s + fade_size]
        else:
            s -= fade_size
        if e != mag.shape[2]:
            weight = np.linspace(1, 0, fade_size)
            mag[:, :, e - fade_size : e] += weight * ref[:, :, e - fade_size : e]
        else:
            e += fade_size
        mag[:, :, s + fade_size : e - fade_size] += ref[:, :, s + fade_size : e - fade_size]
        old_e = e
    return mag
