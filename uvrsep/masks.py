"""Mask adjustments: RVC's aggressiveness and ``mask_silence``; UVR's aggression and ``merge_artifacts``.

RVC (``AudioPre``) applies its aggressiveness to each network window and post-processes the
predicted magnitudes. UVR5 / audio-separator apply their aggression once to the whole (TTA-
averaged) mask and post-process the mask itself. Each step is a small function here;
:mod:`uvrsep.semantics` says which steps a semantics uses.

The steps on masks and magnitudes take torch tensors and run on their device (CPU or CUDA);
the run planning (:func:`silence_ops`, :func:`merge_weights`) works on small per-frame numpy
vectors on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from . import transfer


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
    mag: torch.Tensor, ref: torch.Tensor, ops: list[tuple[int, int, np.ndarray | None]], offset: int = 0
) -> None:
    """In place: apply :func:`silence_ops` to frames ``offset .. offset + T - 1`` held in ``mag`` /
    ``ref``, float32 tensors ``[C, F, T]`` on one device (``offset``: their first frame's index in
    the whole input). A faded range adds ``w · ref`` computed in float64 (``w`` is float64), then
    rounded into ``mag``, as the numpy original does."""
    t = mag.shape[2]
    for start, stop, weights in ops:
        lo, hi = max(start, offset), min(stop, offset + t)
        if lo >= hi:
            continue
        target, piece = mag[:, :, lo - offset : hi - offset], ref[:, :, lo - offset : hi - offset]
        if weights is None:
            target += piece
        else:
            w = transfer.to_device(np.ascontiguousarray(weights[lo - start : hi - start]), mag.device)
            target.copy_(target.double() + w * piece.double())


def mask_silence(
    mag: torch.Tensor,
    ref: torch.Tensor,
    thres: float = 0.2,
    min_range: int = 64,
    fade_size: int = 32,
) -> torch.Tensor:
    """RVC's ``mask_silence``: where the residual ``ref`` is quiet for a long run, give it back.

    Frames whose mean ``ref`` (over channels and bins) is below ``thres`` form runs; each run longer
    than ``min_range`` frames has ``ref`` added into ``mag`` with ``fade_size``-frame linear fades.
    Float32 tensors ``[C, F, T]`` on one device; returns a new tensor there (the runs are planned
    on the CPU from the ``[T]`` means). Unlike the original, a signal with no quiet frame is
    returned unchanged instead of raising ``IndexError``.
    """
    mag = mag.clone()
    means = transfer.to_host(ref.mean(dim=(0, 1)))
    apply_silence_ops(mag, ref, silence_ops(means, thres, min_range, fade_size))
    return mag


#: UVR's primary stems whose aggression is inverted (``a → 1 − a``): its "non-accompaniment" stems.
UVR_INVERTED_STEMS = frozenset(
    {
        "Vocals",
        "Other",
        "Bass",
        "Drums",
        "Guitar",
        "Piano",
        "Synthesizer",
        "Strings",
        "Woodwinds",
        "Brass",
        "Wind Inst",
    }
)


def uvr_exponents(aggression: float, inverted: bool) -> tuple[float, float]:
    """UVR's mask exponents (below, from the split bin) for an aggression of -100..100.

    ``a = 2·aggression/100``; for the stems of :data:`UVR_INVERTED_STEMS` a non-zero ``a``
    becomes ``1 − a``; the exponents are ``1 + a/3`` and ``1 + a``. Aggression 0 gives (1, 1).
    """
    a = aggression / 100 * 2
    if a != 0 and inverted:
        a = 1 - a
    return 1 + a / 3, 1 + a


def apply_uvr_aggression(mask: torch.Tensor, aggression: float, split_bin: int, inverted: bool) -> torch.Tensor:
    """UVR's ``adjust_aggr``, in place on a float32 mask tensor ``[C, F, T]``; returns it.

    Rows below ``split_bin`` are raised to the first of :func:`uvr_exponents`, the others to
    the second, in float32 (exponents rounded to float32) as UVR computes them.
    """
    low, high = uvr_exponents(aggression, inverted)
    if (low, high) != (1, 1):
        mask[:, :split_bin].pow_(float(np.float32(low)))
        mask[:, split_bin:].pow_(float(np.float32(high)))
    return mask


def merge_weights(frame_min: np.ndarray, thres: float = 0.2, min_range: int = 64, fade_size: int = 32) -> np.ndarray:
    """The per-frame weights of UVR's ``merge_artifacts``, from each frame's mask minimum.

    ``frame_min`` is the mask's minimum over channels and bins, float ``[T]``. Frames above
    ``thres`` form runs; each run ``first .. last`` with ``last − first > min_range`` gets weight
    1 with ``fade_size``-frame linear fades: in at ``first`` (none when ``first`` is 0, where the
    run counts as starting ``fade_size`` frames earlier), out over the ``fade_size`` frames before
    ``last`` (always: UVR's end-of-signal test never holds), ``last`` itself 0. A run starting
    less than ``fade_size`` frames after the previous run's ``last`` starts at that ``last − 2 ·
    fade_size``. Later writes win, in UVR's order. Returns float32 ``[T]`` (zeros when no run
    qualifies: the mask is left unchanged, not an error).
    """
    if min_range < fade_size * 2:
        raise ValueError("min_range must be >= fade_size * 2")
    n = frame_min.shape[0]
    weight = np.zeros(n, dtype=np.float32)
    idx = np.where(frame_min > thres)[0]
    if idx.size == 0:
        return weight
    breaks = np.where(np.diff(idx) != 1)[0]
    starts = np.insert(idx[breaks + 1], 0, idx[0])
    ends = np.append(idx[breaks], idx[-1])
    kept = np.where(ends - starts > min_range)[0]
    old_e = None
    for s, e in zip(starts[kept].tolist(), ends[kept].tolist()):
        if old_e is not None and s - old_e < fade_size:
            s = old_e - fade_size * 2
        if s != 0:
            weight[s : s + fade_size] = np.linspace(0, 1, fade_size)
        else:
            s -= fade_size
        if e != n:
            weight[e - fade_size : e] = np.linspace(1, 0, fade_size)
        else:
            e += fade_size
        weight[max(s + fade_size, 0) : e - fade_size] = 1
        old_e = e
    return weight


def apply_merge_weights(mask: torch.Tensor, weights: np.ndarray | torch.Tensor) -> torch.Tensor:
    """In place: ``mask += w · (1 − mask)`` per frame, in float32 (``mask`` float32 ``[C, F, T]``,
    ``w`` ``[T]``, numpy or a tensor on any device); returns ``mask``."""
    w = transfer.to_device(weights, mask.device).to(torch.float32)
    mask += w * (1 - mask)
    return mask
