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


def silence_ops(
    means: np.ndarray,
    thres: float = 0.2,
    min_range: int = 64,
    fade_size: int = 32,
) -> list[tuple[int, int, np.ndarray | None]]:
    """The additions RVC's ``mask_silence`` makes, from the residual's per-frame means alone.

    ``means`` is ``ref.mean(axis=(0, 1))`` over all ``T`` frames. Returns ``(start, stop, weights)``
    in the original's order: frames ``start .. stop - 1`` get ``weights · ref`` added (``weights``
    ``None``: weight 1). :func:`apply_silence_ops` applies them to any range of frames, so a long
    input processed in segments gets exactly what the whole-file call gives.
    """
    if min_range < fade_size * 2:
        raise ValueError("min_range must be >= fade_size * 2")
    n = means.shape[0]
    idx = np.where(means < thres)[0]
    if idx.size == 0:
        return []
    breaks = np.where(np.diff(idx) != 1)[0]
    starts = np.insert(idx[breaks + 1], 0, idx[0])
    ends = np.append(idx[breaks], idx[-1])
    long_runs = np.where(ends - starts > min_range)[0]
    ops: list[tuple[int, int, np.ndarray | None]] = []
    old_e = None
    for s, e in zip(starts[long_runs], ends[long_runs]):
        s, e = int(s), int(e)
        if old_e is not None and s - old_e < fade_size:
            s = old_e - fade_size * 2
        if s != 0:
            ops.append((s, s + fade_size, np.linspace(0, 1, fade_size)))
        else:
            s -= fade_size
        if e != n:
            ops.append((e - fade_size, e, np.linspace(1, 0, fade_size)))
        else:
            e += fade_size
        ops.append((s + fade_size, e - fade_size, None))
        old_e = e
    return ops


def apply_silence_ops(
    mag: np.ndarray, ref: np.ndarray, ops: list[tuple[int, int, np.ndarray | None]], offset: int = 0
) -> None:
    """In place: apply :func:`silence_ops` to frames ``offset .. offset + T - 1`` held in ``mag`` /
    ``ref`` ``[C, F, T]`` (``offset``: their first frame's index in the whole input)."""
    t = mag.shape[2]
    for start, stop, weights in ops:
        lo, hi = max(start, offset), min(stop, offset + t)
        if lo >= hi:
            continue
        piece = ref[:, :, lo - offset : hi - offset]
        if weights is not None:
            piece = weights[lo - start : hi - start] * piece
        mag[:, :, lo - offset : hi - offset] += piece


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
    mag = mag.copy()
    apply_silence_ops(mag, ref, silence_ops(ref.mean(axis=(0, 1)), thres, min_range, fade_size))
    return mag
