"""The combination of the members' aligned blocks (wave algorithms) or STFT frames (spectral
algorithms). The algorithms' names and the checks of a name and of the weights are in
:mod:`.rules` (no torch there).

Formulas: the package's docstring (:mod:`uvrsep.ensemble`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def combine_waves(algorithm: str, xs: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """A wave algorithm on the members' aligned blocks ``xs`` (float32 ``[C, t]`` each, one
    device), with one weight per member: float32 ``[C, t]``."""
    if algorithm == "avg_wave":
        return _weighted_mean(xs, weights)
    if algorithm == "median_wave":
        return _median(torch.stack(list(xs)))
    if algorithm in ("min_wave", "max_wave"):
        return _select(xs, torch.lt if algorithm == "min_wave" else torch.gt)
    raise ValueError(f"{algorithm!r} is not a wave algorithm")


def combine_spectra(algorithm: str, specs: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """A spectral algorithm on the members' frames (complex64 ``[C, bins, n]`` each): the
    combined frames, complex64 ``[C, bins, n]``."""
    if algorithm == "avg_fft":
        return _weighted_mean(specs, weights)
    if algorithm == "median_fft":
        stack = torch.stack(list(specs))
        return torch.complex(_median(stack.real), _median(stack.imag))
    better = {"min_fft": torch.lt, "max_fft": torch.gt, "uvr_min_spec": torch.le, "uvr_max_spec": torch.ge}
    if algorithm not in better:
        raise ValueError(f"{algorithm!r} is not a spectral algorithm")
    return _select(specs, better[algorithm])


def _weighted_mean(xs: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``Σ w_i·x_i / Σ w_i`` (a new tensor)."""
    acc = xs[0] * weights[0]
    for x, w in zip(xs[1:], weights[1:], strict=True):
        acc += x * w
    return acc / sum(weights)


def _median(stack: torch.Tensor) -> torch.Tensor:
    """numpy's median over dim 0 of a real ``[N, ...]``: the middle value, or the mean of the two
    middle values for an even N (``torch.median`` would give the lower one)."""
    n = stack.shape[0]
    s = stack.sort(dim=0).values
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _select(xs: Sequence[torch.Tensor], better) -> torch.Tensor:
    """Folds the members in order: each element becomes member i's where ``better(|x_i|,
    |so far|)``. ``lt``/``gt`` keep the first of equal magnitudes (numpy's argmin/argmax),
    ``le``/``ge`` the last (UVR's fold)."""
    acc = xs[0]
    for x in xs[1:]:
        acc = torch.where(better(x.abs(), acc.abs()), x, acc)
    return acc
