"""The engine of uvrsep's resamplers: a rational-rate FIR filter evaluated as matrix products.

With ``up/down`` the reduced rate ratio, output ``q·up + r`` is ``Σ_j taps[r, j] · x[q·down +
first[r] + j]`` (``x`` is zero outside the signal). :class:`PolyphaseFilter` holds the taps
(computed once per rate pair by :mod:`.resampling` and :mod:`.resampy_filters`); its plan
evaluates them as a few matrix products over strided views of the zero-padded input (no im2col
copy): ``P`` periods are taken together so each product has at least :data:`MIN_OUTPUTS`
columns, phases whose inputs overlap are grouped, and each group's window is cut into column
blocks of ``P·down`` samples so that every view is a plain BLAS operand (row stride ``P·down`` ≥
its width), in row blocks (:func:`._blocks.rows_per_block`; one block on a GPU).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ._blocks import rows_per_block

#: Each matrix product yields at least this many outputs per row (periods are grouped to get there).
MIN_OUTPUTS = 32


@dataclass(frozen=True, eq=False)
class PolyphaseFilter:
    """A rational-rate FIR resampler: ``y[q·up + r] = Σ_j taps[r, j] · x[q·down + first[r] + j]``.

    ``taps`` is float64 ``[up, K]`` (rows zero-padded to the longest phase), ``first`` int64
    ``[up]``. The values are those of the reference (for scipy's float32 path, float32 values
    held in float64); :meth:`apply` evaluates them in the input's dtype.
    """

    up: int
    down: int
    first: np.ndarray
    taps: np.ndarray

    def apply(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        """The first ``n_out`` outputs for ``x`` ``[..., n]`` (real float): ``[..., n_out]``."""
        plan = _plan(self, x.dtype, x.device)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        return plan.run(x2, n_out).reshape(*lead, n_out)


@dataclass(frozen=True)
class _Block:
    """One matrix product of a group: input columns ``offset .. offset + width - 1`` of each row."""

    offset: int
    width: int
    matrix: torch.Tensor  # [width, phases of the group]


@dataclass(frozen=True)
class _Group:
    """Consecutive output phases ``r0 .. r1 - 1`` of a superperiod, computed together."""

    r0: int
    r1: int
    blocks: tuple[_Block, ...]


class _Plan:
    """:class:`PolyphaseFilter` laid out as matrix products for one dtype and device."""

    def __init__(self, filt: PolyphaseFilter, dtype: torch.dtype, device: torch.device):
        up, down = filt.up, filt.down
        self.periods = max(1, -(-MIN_OUTPUTS // up))
        self.lp, self.mp = self.periods * up, self.periods * down
        self.device = device
        # Superperiod phases: the inputs each one reads (its live taps, zeros at the ends trimmed).
        phases = []
        for p in range(self.periods):
            for r in range(up):
                nz = np.flatnonzero(filt.taps[r])
                lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
                start = p * down + int(filt.first[r]) + lo
                phases.append((start, start + hi - lo, filt.taps[r][lo:hi]))
        longest = max(1, max(stop - start for start, stop, _ in phases))
        # Phases are grouped while their common input window stays short: at most one
        # superperiod (bounded by four filter lengths) more than the longest phase.
        limit = longest + min(self.mp, 4 * longest)
        groups, r0 = [], 0
        while r0 < self.lp:
            lo, hi, r1 = phases[r0][0], phases[r0][1], r0 + 1
            while r1 < self.lp and max(hi, phases[r1][1]) - min(lo, phases[r1][0]) <= limit:
                lo, hi, r1 = min(lo, phases[r1][0]), max(hi, phases[r1][1]), r1 + 1
            hi = max(hi, lo + 1)
            dense = np.zeros((hi - lo, r1 - r0))
            for k in range(r0, r1):
                start, stop, values = phases[k]
                dense[start - lo : stop - lo, k - r0] = values
            blocks = tuple(
                _Block(
                    lo + c,
                    min(self.mp, hi - lo - c),
                    torch.as_tensor(dense[c : c + self.mp], dtype=dtype).to(device).contiguous(),
                )
                for c in range(0, hi - lo, self.mp)
            )
            groups.append(_Group(r0, r1, blocks))
            r0 = r1
        self.groups = tuple(groups)
        self.min_offset = min(b.offset for g in self.groups for b in g.blocks)
        self.max_reach = max(b.offset + b.width for g in self.groups for b in g.blocks)

    def run(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        """``x`` ``[B, n]`` → ``[B, n_out]``."""
        batch, n = x.shape
        rows = max(1, -(-n_out // self.lp))
        left = max(0, -self.min_offset)
        length = max(left + n, left + (rows - 1) * self.mp + self.max_reach)
        padded = x.new_empty(batch, length)
        padded[:, :left] = 0
        padded[:, left : left + n] = x
        padded[:, left + n :] = 0
        out = x.new_empty(batch, rows, self.lp)
        chunk = rows_per_block(self.device, padded.element_size() * (self.mp + self.lp), rows)
        single = len(self.groups) == 1
        scratch = None if single else x.new_empty(min(chunk, rows), max(g.r1 - g.r0 for g in self.groups))
        for b in range(batch):
            row_base = padded.storage_offset() + b * padded.stride(0) + left
            for q0 in range(0, rows, chunk):
                q1 = min(rows, q0 + chunk)
                for group in self.groups:
                    acc = out[b, q0:q1] if scratch is None else scratch[: q1 - q0, : group.r1 - group.r0]
                    for k, block in enumerate(group.blocks):
                        view = padded.as_strided(
                            (q1 - q0, block.width), (self.mp, 1), row_base + q0 * self.mp + block.offset
                        )
                        if k == 0:
                            torch.mm(view, block.matrix, out=acc)
                        else:
                            acc.addmm_(view, block.matrix)
                    if not single:
                        out[b, q0:q1, group.r0 : group.r1] = acc
        return out.view(batch, rows * self.lp)[:, :n_out]


@functools.lru_cache(maxsize=64)
def _plan(filt: PolyphaseFilter, dtype: torch.dtype, device: torch.device) -> _Plan:
    return _Plan(filt, dtype, device)


def kaiser_window(length: int, beta: float) -> np.ndarray:
    """Symmetric Kaiser window, float64 ``[length]``: ``I0(β·√(1 − (2k/(N−1) − 1)²)) / I0(β)``."""
    if length == 1:
        return np.ones(1)
    centre = (length - 1) / 2
    k = np.arange(length)
    return np.i0(beta * np.sqrt(1 - ((k - centre) / centre) ** 2)) / np.i0(beta)
