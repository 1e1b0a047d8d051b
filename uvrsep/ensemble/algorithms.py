"""The ensemble algorithms' names, the checks of a name and of the weights, and the combination
of the members' aligned blocks (wave algorithms) or STFT frames (spectral algorithms).

Formulas: the package's docstring (:mod:`uvrsep.ensemble`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch

from ..errors import ConfigError, option

ALGORITHMS = (
    "avg_wave",
    "median_wave",
    "min_wave",
    "max_wave",
    "avg_fft",
    "median_fft",
    "min_fft",
    "max_fft",
    "uvr_max_spec",
    "uvr_min_spec",
    "ensemble_wav",
)
DEFAULT_ALGORITHM = "avg_wave"
#: The algorithms that use the weights; the others ignore them.
WEIGHTED = ("avg_wave", "avg_fft")
#: Sample by sample.
WAVE_ALGORITHMS = ("avg_wave", "median_wave", "min_wave", "max_wave")
#: Bin by bin of an STFT.
SPECTRAL_ALGORITHMS = ("avg_fft", "median_fft", "min_fft", "max_fft", "uvr_max_spec", "uvr_min_spec")


def check_algorithm(name: object) -> str:
    """The algorithm's name (one of :data:`ALGORITHMS`; case and surrounding blanks ignored), or
    a one-line :class:`ConfigError` naming the valid ones."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in ALGORITHMS:
        raise ConfigError(
            f"{option('ensemble_algorithm')}: unknown algorithm {name!r}; use one of {', '.join(ALGORITHMS)}"
        )
    return key


def check_weights(weights: Iterable[float] | None, n_members: int) -> tuple[float, ...]:
    """The weights as floats, one per member (``None``: all 1.0), or a one-line
    :class:`ConfigError`: not numbers, a count other than ``n_members``, a NaN or infinite
    value, a negative value, or all 0."""
    name = option("ensemble_weights")
    if weights is None:
        return (1.0,) * n_members
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
        raise ConfigError(f"{name}: expected numbers, one per model, got {weights!r}")
    values = list(weights)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ConfigError(f"{name}: {v!r} is not a number")
    if len(values) != n_members:
        raise ConfigError(
            f"{name}: {len(values)} weight{'s' * (len(values) != 1)} for {n_members} "
            f"model{'s' * (n_members != 1)}; give one weight per model, in the models' order"
        )
    out = tuple(float(v) for v in values)
    for v in out:
        if not math.isfinite(v):
            raise ConfigError(f"{name}: {v} is not a finite number")
        if v < 0:
            raise ConfigError(f"{name}: {v:g} is negative; a weight is a model's share, 0 or more")
    if not any(out):
        raise ConfigError(f"{name}: all weights are 0; at least one must be above 0")
    return out


def weights_note(algorithm: str, weights: Sequence[float] | None) -> str | None:
    """A one-line note when unequal ``weights`` are given to an algorithm that ignores them."""
    if weights is None or algorithm in WEIGHTED or len(set(weights)) <= 1:
        return None
    return (
        f"{algorithm} ignores {option('ensemble_weights')} (only {' and '.join(WEIGHTED)} weigh the models); "
        "all models count the same"
    )


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
