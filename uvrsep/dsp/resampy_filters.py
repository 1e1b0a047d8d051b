"""resampy's ``kaiser_fast`` / ``kaiser_best`` resampling (resampy 0.4.3, as librosa calls it), in torch.

resampy ships its two filters as precomputed tables of a Kaiser-windowed sinc's right half
(``resampy.filters.sinc_window``); here the tables are computed from their parameters
(:data:`RESAMPY_FILTERS`), so nothing is read from resampy's files and resampy need not be
installed. The tests check the computed tables and the resampled signals against resampy's
(``tests/test_dsp.py``).

For a rate pair the table is scaled by the ratio when downsampling and linearly interpolated
at ``frac·num_table + i·⌊scale·num_table⌋``, giving one :class:`.polyphase.PolyphaseFilter`;
output length ``⌊n·sr_new/sr_orig⌋``, then librosa pads with zeros to ``⌈n·ratio⌉``. resampy
computes each output's position in float64 (``t · (1/ratio)``); at the few outputs where that
rounding puts the position on the other side of an integer the tap grid shifts, and those
outputs are recomputed with resampy's own position (:func:`_resampy_fixups`), so the result is
resampy's to float rounding, not just close to it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .polyphase import PolyphaseFilter, kaiser_window

#: resampy's two filters: (zero crossings, log2 of the table entries per crossing, Kaiser β,
#: roll-off as a fraction of Nyquist). resampy's documentation prints them rounded to six
#: digits (β 9.90322 / 12.9846, roll-off 0.868212 / 0.917347), which reproduces its tables to
#: 139 / 117 dB only; these are the double-precision values that reproduce them to 2e-15.
RESAMPY_FILTERS = {
    "kaiser_fast": (24, 9, 9.90322441645528, 0.8682120388377784),
    "kaiser_best": (50, 13, 12.984585247040018, 0.9173473712608761),
}


@functools.cache
def resampy_table(name: str) -> tuple[np.ndarray, int]:
    """resampy's half window for filter ``name`` (float64 ``[zeros·2^precision + 1]``) and its
    entries per zero crossing, as ``resampy.filters.sinc_window`` builds it: the sinc
    ``roll-off · sinc(roll-off · t)`` at ``t = 0 .. zeros`` times the right half of a symmetric
    Kaiser window of ``2·zeros·2^precision + 1`` points."""
    if name not in RESAMPY_FILTERS:
        raise ValueError(f"unknown resampy filter {name!r}")
    zeros, precision, beta, rolloff = RESAMPY_FILTERS[name]
    per_zero = 2**precision
    n = per_zero * zeros
    sinc = rolloff * np.sinc(rolloff * np.linspace(0, zeros, num=n + 1, endpoint=True))
    return kaiser_window(2 * n + 1, beta)[n:] * sinc, per_zero


@dataclass(frozen=True)
class _ResampyTerms:
    """What resampy derives from the table for one rate pair."""

    win: np.ndarray
    delta: np.ndarray
    num_table: int
    scale: float
    step: int
    time_increment: float


@functools.lru_cache(maxsize=64)
def _resampy_terms(name: str, orig_sr: int, target_sr: int) -> _ResampyTerms:
    win, num_table = resampy_table(name)
    ratio = float(target_sr) / orig_sr
    if ratio < 1:
        win = ratio * win
    delta = np.diff(win, append=win[-1])
    scale = min(1.0, ratio)
    return _ResampyTerms(win, delta, num_table, scale, int(scale * num_table), 1.0 / ratio)


def _resampy_weights(terms: _ResampyTerms, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights resampy gives the inputs around outputs at fractional positions ``frac`` (already
    times ``scale``): ``left [P, I]`` for ``x[n], x[n-1], ...`` and ``right [P, K]`` for
    ``x[n+1], x[n+2], ...`` (zeros past each output's tap count)."""
    nwin = terms.win.shape[0]

    def wing(f: np.ndarray) -> np.ndarray:
        index = f * terms.num_table
        offset = index.astype(np.int64)
        eta = index - offset
        count = (nwin - offset) // terms.step
        taps = np.arange(max(int(count.max()), 0))
        at = offset[:, None] + terms.step * taps[None, :]
        live = taps[None, :] < count[:, None]
        at = np.where(live, at, 0)
        return np.where(live, terms.win[at] + eta[:, None] * terms.delta[at], 0.0)

    return wing(frac), wing(terms.scale - frac)


def _kernel_from_wings(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, int]:
    """``[P, I + K]`` taps over inputs ``n - I + 1 .. n + K`` and that first offset (``1 - I``)."""
    return np.concatenate([left[:, ::-1], right], axis=1), 1 - left.shape[1]


@functools.lru_cache(maxsize=64)
def resampy_filter(name: str, orig_sr: int, target_sr: int) -> PolyphaseFilter:
    """resampy's ``name`` filter for ``orig_sr → target_sr`` as a :class:`PolyphaseFilter`.

    Phase ``r``'s taps are resampy's for output ``r`` (position ``r · (1/ratio)`` in float64).
    """
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    terms = _resampy_terms(name, orig_sr, target_sr)
    pos = np.arange(up) * terms.time_increment
    n = pos.astype(np.int64)
    kernel, lead = _kernel_from_wings(*_resampy_weights(terms, terms.scale * (pos - n)))
    return PolyphaseFilter(up, down, n + lead, kernel)


def _resampy_fixups(name: str, orig_sr: int, target_sr: int, n_out: int) -> np.ndarray:
    """Outputs (below ``n_out``) whose float64 position resampy floors to another input than
    the exact ``⌊t·down/up⌋``, where that changes the result.

    Only outputs whose exact position lies within the rounding error of an integer can be
    floored differently (for the usual rates, phase 0 alone). Where ``scale·num_table`` is an
    integer (upsampling, halving) both readings give the same taps and weights, so none need it.
    """
    terms = _resampy_terms(name, orig_sr, target_sr)
    if terms.scale * terms.num_table == terms.step:
        return np.zeros(0, dtype=np.int64)
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    ti = terms.time_increment
    tolerance = 4 * n_out * ti * 2.0**-52
    residue = (np.arange(up) * down) % up / up
    bad = [np.zeros(0, dtype=np.int64)]
    for r in np.flatnonzero(np.minimum(residue, 1 - residue) <= tolerance):
        t = np.arange(r, n_out, up, dtype=np.int64)
        floored = (t.astype(np.float64) * ti).astype(np.int64)
        bad.append(t[floored != (t * down) // up])
    return np.sort(np.concatenate(bad))


def resampy_resample(x: torch.Tensor, orig_sr: int, target_sr: int, name: str) -> torch.Tensor:
    """``librosa.resample(x, res_type=name)`` for ``kaiser_fast`` / ``kaiser_best``: resampy's
    ``⌊n·sr_new/sr_orig⌋`` outputs, zero-padded to librosa's ``⌈n·ratio⌉``; the input's dtype."""
    n = x.shape[-1]
    natural = int(n * float(target_sr) / float(orig_sr))
    if natural < 1:
        raise ValueError(f"input of {n} samples is too short to resample from {orig_sr} to {target_sr} Hz")
    n_samples = math.ceil(n * (float(target_sr) / orig_sr))
    y = resampy_filter(name, orig_sr, target_sr).apply(x, max(natural, n_samples))
    bad = _resampy_fixups(name, orig_sr, target_sr, natural)
    if bad.size:
        _recompute(x, y, bad, name, orig_sr, target_sr)
    if n_samples > natural:
        y[..., natural:] = 0
    return y[..., :n_samples]


def _recompute(
    x: torch.Tensor, y: torch.Tensor, outputs: np.ndarray, name: str, orig_sr: int, target_sr: int, chunk: int = 1 << 15
) -> None:
    """In place: outputs ``outputs`` of ``y`` computed at resampy's own float64 positions."""
    terms = _resampy_terms(name, orig_sr, target_sr)
    n = x.shape[-1]
    for c in range(0, outputs.size, chunk):
        which = outputs[c : c + chunk]
        pos = which.astype(np.float64) * terms.time_increment
        base = pos.astype(np.int64)
        kernel, lead = _kernel_from_wings(*_resampy_weights(terms, terms.scale * (pos - base)))
        index = base[:, None] + lead + np.arange(kernel.shape[1])[None, :]
        kernel = np.where((index >= 0) & (index < n), kernel, 0.0)
        rows = torch.as_tensor(np.clip(index, 0, n - 1), device=x.device)
        taps = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
        y[..., torch.as_tensor(which, device=x.device)] = (x[..., rows] * taps).sum(-1)
