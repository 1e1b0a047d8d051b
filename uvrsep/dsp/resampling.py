"""Resampling in torch, sample for sample what ``librosa.resample`` gives with each resampler.

Every resampler the band configs name is a rational-rate FIR filter except the FFT one, so all
of them run on one engine, :class:`PolyphaseFilter`: with ``up/down`` the reduced rate ratio,
output ``q·up + r`` is ``Σ_j taps[r, j] · x[q·down + first[r] + j]`` (``x`` is zero outside the
signal). The taps are computed once per rate pair, filter and dtype (cached), from the
maths of the library each one reproduces:

- ``kaiser_fast`` / ``kaiser_best`` (resampy 0.4.3, as librosa calls it): resampy's packaged
  half-window table (read from its data files), scaled by the ratio when downsampling, linearly
  interpolated at ``frac·num_table + i·⌊scale·num_table⌋``; output length
  ``⌊n·sr_new/sr_orig⌋``, then librosa pads with zeros to ``⌈n·ratio⌉``. resampy computes each
  output's position in float64 (``t · (1/ratio)``); at the few outputs where that rounding puts
  the position on the other side of an integer the tap grid shifts, and those outputs are
  recomputed with resampy's own position (:func:`_resampy_fixups`), so the result is resampy's
  to float rounding, not just close to it.
- ``polyphase`` (``scipy.signal.resample_poly``, default ``('kaiser', 5.0)`` window, zero
  padding): a ``20·max(up, down) + 1``-tap windowed sinc with cutoff ``1/max(up, down)``,
  normalised to unit DC gain, cast to the input's dtype and multiplied by ``up`` (as scipy does,
  so float32 input gets scipy's float32 taps); output ``k`` is centred on input ``k·down/up``.
- ``scipy`` / ``fft`` (``scipy.signal.resample``): :func:`fft_resample`, rfft / irfft in the
  input's precision (float64 / complex128 for the synthesis' float64 partial sums).
- libsamplerate (``sinc_*``, ``linear``, ``zero_order_hold``) and soxr stay on the CPU: the
  tensor goes through :func:`cpu_resample` (librosa's calls of ``samplerate`` / ``soxr``) and
  comes back to its device.

The engine evaluates the filter as a few matrix products over strided views of the zero-padded
input (no im2col copy): ``P`` periods are taken together so each product has at least
:data:`MIN_OUTPUTS` columns, phases whose inputs overlap are grouped, and each group's window is
cut into column blocks of ``P·down`` samples so that every view is a plain BLAS operand (row
stride ``P·down`` ≥ its width), in row blocks (:func:`._blocks.rows_per_block`; one block on a GPU).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._blocks import rows_per_block

#: Resamplers computed in torch (on the tensor's device).
TORCH_RESAMPLERS = ("kaiser_fast", "kaiser_best", "polyphase", "scipy", "fft")
#: libsamplerate's converters (on the CPU, :func:`cpu_resample`).
LIBSAMPLERATE_RESAMPLERS = ("sinc_best", "sinc_medium", "sinc_fastest", "linear", "zero_order_hold")
#: Each matrix product yields at least this many outputs per row (periods are grouped to get there).
MIN_OUTPUTS = 32


# -- the engine --------------------------------------------------------------------------------


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
                _Block(lo + c, min(self.mp, hi - lo - c),
                       torch.as_tensor(dense[c : c + self.mp], dtype=dtype).to(device).contiguous())
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
                    acc = out[b, q0:q1] if single else scratch[: q1 - q0, : group.r1 - group.r0]
                    for k, block in enumerate(group.blocks):
                        view = padded.as_strided((q1 - q0, block.width), (self.mp, 1),
                                                 row_base + q0 * self.mp + block.offset)
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


# -- resampy's kaiser filters ------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def resampy_table(name: str) -> tuple[np.ndarray, int]:
    """resampy's precomputed half window (float64) and its entries per zero crossing.

    Read from the installed resampy's data files (``kaiser_fast.npz`` / ``kaiser_best.npz``)
    without importing resampy (which would load numba).
    """
    spec = importlib.util.find_spec("resampy")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"resampler {name!r} needs the resampy package (its filter tables)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"unknown resampy filter {name!r}")
    with np.load(path) as data:
        return np.asarray(data["half_window"], dtype=np.float64), int(data["precision"])


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


def _recompute(x: torch.Tensor, y: torch.Tensor, outputs: np.ndarray, name: str, orig_sr: int, target_sr: int,
               chunk: int = 1 << 15) -> None:
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
        index = torch.as_tensor(np.clip(index, 0, n - 1), device=x.device)
        taps = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
        y[..., torch.as_tensor(which, device=x.device)] = (x[..., index] * taps).sum(-1)


# -- scipy's resample_poly ---------------------------------------------------------------------


def kaiser_window(length: int, beta: float) -> np.ndarray:
    """Symmetric Kaiser window, float64 ``[length]``: ``I0(β·√(1 − (2k/(N−1) − 1)²)) / I0(β)``."""
    if length == 1:
        return np.ones(1)
    centre = (length - 1) / 2
    k = np.arange(length)
    return np.i0(beta * np.sqrt(1 - ((k - centre) / centre) ** 2)) / np.i0(beta)


def lowpass_design(half_len: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """Windowed-sinc low-pass of ``2·half_len + 1`` taps, ``cutoff`` relative to Nyquist,
    scaled to unit gain at DC (float64)."""
    m = np.arange(-half_len, half_len + 1, dtype=np.float64)
    h = cutoff * np.sinc(cutoff * m) * kaiser_window(2 * half_len + 1, beta)
    return h / h.sum()


@functools.lru_cache(maxsize=64)
def polyphase_filter(up: int, down: int, dtype: torch.dtype) -> PolyphaseFilter:
    """``scipy.signal.resample_poly(x, up, down)``'s filter for input of ``dtype`` (reduced ratio).

    scipy casts the designed taps to the input's dtype, then multiplies by ``up``; output ``k``
    is ``Σ_n x[n] · h[k·down − n·up + half_len]``.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    h = lowpass_design(half_len, 1.0 / max_rate).astype(np_dtype)
    h *= up
    h = h.astype(np.float64)
    # Phase r (output q·up + r) reads inputs q·down + s for s in first[r] .. last[r], the s with
    # 0 <= r·down − s·up + half_len <= 2·half_len.
    first = np.array([-((half_len - r * down) // up) for r in range(up)], dtype=np.int64)
    last = np.array([(r * down + half_len) // up for r in range(up)], dtype=np.int64)
    taps = np.zeros((up, int((last - first).max()) + 1))
    for r in range(up):
        s = np.arange(first[r], last[r] + 1)
        taps[r, : s.size] = h[r * down + half_len - s * up]
    return PolyphaseFilter(up, down, first, taps)


def polyphase_resample(x: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """``librosa.resample(x, res_type='polyphase')``: ``resample_poly`` by the reduced ratio
    (``⌈n·up/down⌉`` outputs), fitted to librosa's ``⌈n·ratio⌉``."""
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    n = x.shape[-1]
    natural = -(-n * up // down)
    n_samples = math.ceil(n * (float(target_sr) / orig_sr))
    y = polyphase_filter(up, down, x.dtype).apply(x, max(natural, n_samples))
    if n_samples > natural:
        y[..., natural:] = 0
    return y[..., :n_samples]


# -- scipy's FFT resampling --------------------------------------------------------------------


def fft_resample(x: torch.Tensor, num: int) -> torch.Tensor:
    """``scipy.signal.resample(x, num, axis=-1)`` for real ``x``: the spectrum cut or zero-padded
    to ``num`` samples (the unpaired Nyquist bin doubled when cutting, halved when padding),
    scaled by ``num / n``; float64 in, float64 out (float32: float32)."""
    n = x.shape[-1]
    spec = torch.fft.rfft(x)
    m = min(num, n)
    spec = spec[..., : m // 2 + 1]
    if m % 2 == 0 and num != n:
        if num < n:
            # irfft reads only the real part of the Nyquist bin; say so, for every FFT library.
            spec[..., m // 2] = spec[..., m // 2].real * 2
        else:
            spec[..., m // 2] *= 0.5
    torch.view_as_real(spec).div_(n / num)
    return torch.fft.irfft(spec, n=num)


# -- convolution for the segmented synthesis ---------------------------------------------------


def convolve_valid(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``scipy.signal.fftconvolve(x, taps, mode='valid')`` along the last axis: ``x`` ``[..., n]``,
    ``taps`` ``[K]`` → ``[..., n − K + 1]`` (one circular FFT convolution of ``n`` points, whose
    first ``K − 1`` outputs, the wrapped ones, are dropped)."""
    n, k = x.shape[-1], taps.shape[-1]
    if k > n:
        raise ValueError(f"kernel of {k} taps is longer than the signal ({n} samples)")
    spec = torch.fft.rfft(x, n=n) * torch.fft.rfft(taps.to(x.dtype), n=n)
    return torch.fft.irfft(spec, n=n)[..., k - 1 :]


# -- librosa's dispatch ------------------------------------------------------------------------


def cpu_resample(x: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """``librosa.resample`` for the resamplers that stay on the CPU: libsamplerate's (``sinc_*``,
    ``linear``, ``zero_order_hold``, through ``samplerate``) and soxr's (``soxr_*``), row by row
    along the last axis, fitted to librosa's ``⌈n·ratio⌉`` samples (cut, or zero-padded at the
    end) and returned in ``x``'s dtype, exactly as librosa 0.11 does (without importing it)."""
    ratio = float(target_sr) / orig_sr
    n_samples = int(np.ceil(x.shape[-1] * ratio))
    rows = x.reshape(-1, x.shape[-1])
    if res_type in LIBSAMPLERATE_RESAMPLERS:
        import samplerate

        outs = [samplerate.resample(row, ratio, converter_type=res_type) for row in rows]
    elif res_type.startswith("soxr"):
        import soxr

        outs = [soxr.resample(row, orig_sr, target_sr, quality=res_type) for row in rows]
    else:
        raise ValueError(f"unknown resampler {res_type!r}")
    out = np.zeros((rows.shape[0], n_samples), dtype=x.dtype)
    for k, y in enumerate(outs):
        m = min(n_samples, y.shape[-1])
        out[k, :m] = y[:m]
    return out.reshape(*x.shape[:-1], n_samples)


def resample(x: torch.Tensor, orig_sr: int, target_sr: int, res_type: str) -> torch.Tensor:
    """``librosa.resample(x, orig_sr=..., target_sr=..., res_type=...)`` along the last axis.

    ``x`` is real ``[..., n]`` on any device; the result has librosa's length ``⌈n·ratio⌉`` and
    ``x``'s dtype. Equal rates and empty input return ``x`` itself (as librosa / uvrsep do).
    libsamplerate and soxr resamplers run on the CPU (:func:`cpu_resample`).
    """
    if orig_sr == target_sr or x.shape[-1] == 0:
        return x
    if res_type in ("kaiser_fast", "kaiser_best"):
        return resampy_resample(x, orig_sr, target_sr, res_type)
    if res_type == "polyphase":
        return polyphase_resample(x, orig_sr, target_sr)
    if res_type in ("scipy", "fft"):
        return fft_resample(x, math.ceil(x.shape[-1] * (float(target_sr) / orig_sr)))
    out = cpu_resample(x.detach().cpu().numpy(), orig_sr, target_sr, res_type)
    return torch.from_numpy(out).to(x.device)
