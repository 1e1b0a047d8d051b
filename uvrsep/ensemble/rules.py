"""The ensemble's rules that need no audio (and no torch: the CLI checks them before anything
heavy is imported): the algorithms' names, the weights, and the members' stems matched by label.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

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


def parse_weights(texts: Iterable[str]) -> list[float]:
    """Weights as typed: each text one number or several separated by commas (``"2,1"``,
    ``"0.5"``), in order; a one-line :class:`ConfigError` for what is not a number."""
    values = []
    for text in texts:
        for part in str(text).split(","):
            try:
                values.append(float(part.strip()))
            except ValueError:
                raise ConfigError(
                    f"{option('ensemble_weights')} {text!r}: {part.strip()!r} is not a number "
                    "(give numbers separated by commas, e.g. 2,1)"
                ) from None
    return values


def weights_note(algorithm: str, weights: Sequence[float] | None) -> str | None:
    """A one-line note when unequal ``weights`` are given to an algorithm that ignores them."""
    if weights is None or algorithm in WEIGHTED or len(set(weights)) <= 1:
        return None
    return (
        f"{algorithm} ignores {option('ensemble_weights')} (only {' and '.join(WEIGHTED)} weigh the models); "
        "all models count the same"
    )


def check_ensemble(
    n_members: int, algorithm: object, weights: Iterable[float] | None, primary_stem: object = None
) -> tuple[str, tuple[float, ...]]:
    """The settings of an ensemble of ``n_members`` models, checked: ``(algorithm, weights)``
    (``algorithm`` ``None``: :data:`DEFAULT_ALGORITHM`). A :class:`ConfigError` for no model, a
    bad algorithm or weights, or a primary stem (the members' stems are matched by label: each
    member keeps its own)."""
    if n_members < 1:
        raise ConfigError("an ensemble needs at least one model")
    if primary_stem is not None:
        raise ConfigError(
            f"{option('primary_stem')} cannot be used with an ensemble: its models' stems are matched "
            "by label, each model keeping its own primary stem (`uvrsep models import FILE --primary "
            "STEM` records one for a file)"
        )
    return check_algorithm(DEFAULT_ALGORITHM if algorithm is None else algorithm), check_weights(weights, n_members)


def ensemble_labels(stems: Sequence[tuple[str, str]], names: Sequence[str]) -> tuple[str, str]:
    """The stems an ensemble writes, from its members' ``(masked, residual)`` labels (``names``:
    the members', for the message): the first member's pair, in its order. A one-line
    :class:`ConfigError` naming every member and its stems when their labels differ (stems are
    combined label by label: ``vocals``/``instrumental`` cannot meet ``no_echo``/``echo``)."""
    first = tuple(stems[0])
    if any(set(pair) != set(first) for pair in stems[1:]):
        listing = "; ".join(f"{name}: {'/'.join(pair)}" for name, pair in zip(names, stems, strict=True))
        raise ConfigError(
            f"the models of an ensemble must write the same stems (they are combined label by label); "
            f"these write {listing}"
        )
    return first  # type: ignore[return-value]
