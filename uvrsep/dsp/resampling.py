"""Resampling in torch, sample for sample what ``librosa.resample`` gives with each resampler.

Every resampler the band configs name is a rational-rate FIR filter except the FFT one, so all
of them run on one engine (:class:`.polyphase.PolyphaseFilter`), with taps computed once per
rate pair, filter and dtype (cached) from the maths of the library each one reproduces:

- ``kaiser_fast`` / ``kaiser_best`` (resampy): :mod:`.resampy_filters`.
- ``polyphase`` (``scipy.signal.resample_poly``, default ``('kaiser', 5.0)`` window, zero
  padding): a ``20·max(up, down) + 1``-tap windowed sinc with cutoff ``1/max(up, down)``,
  normalised to unit DC gain, cast to the input's dtype and multiplied by ``up`` (as scipy does,
  so float32 input gets scipy's float32 taps); output ``k`` is centred on input ``k·down/up``.
- ``scipy`` / ``fft`` (``scipy.signal.resample``): :func:`fft_resample`, rfft / irfft in the
  input's precision (float64 / complex128 for the synthesis' float64 partial sums).
- libsamplerate (``sinc_*``, ``linear``, ``zero_order_hold``) and soxr stay on the CPU: the
  tensor goes through :func:`cpu_resample` (librosa's calls of ``samplerate`` / ``soxr``) and
  comes back to its device.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .. import transfer
from .polyphase import PolyphaseFilter, kaiser_window
from .resampy_filters import resampy_resample

#: Resamplers computed in torch (on the tensor's device).
TORCH_RESAMPLERS = ("kaiser_fast", "kaiser_best", "polyphase", "scipy", "fft")
#: libsamplerate's converters (on the CPU, :func:`cpu_resample`).
LIBSAMPLERATE_RESAMPLERS = ("sinc_best", "sinc_medium", "sinc_fastest", "linear", "zero_order_hold")


# -- scipy's resample_poly ---------------------------------------------------------------------


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
    """``scipy.signal.fftconvolve(x, taps, mode='valid')`` along the last axis: ``x`` ``[..., n]``
    with ``taps`` ``[K]`` → ``[..., n − K + 1]``, or with several kernels ``[P, K]`` →
    ``[..., P, n − K + 1]`` (``x``'s spectrum computed once). One circular FFT convolution of ``n``
    points, whose first ``K − 1`` outputs, the wrapped ones, are dropped."""
    n, k = x.shape[-1], taps.shape[-1]
    if k > n:
        raise ValueError(f"kernel of {k} taps is longer than the signal ({n} samples)")
    spec = torch.fft.rfft(x, n=n)
    kernels = torch.fft.rfft(taps.to(x.dtype), n=n)
    if taps.dim() > 1:
        spec = spec.unsqueeze(-2)
    return torch.fft.irfft(spec * kernels, n=n)[..., k - 1 :]


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
    out = cpu_resample(transfer.to_host(x), orig_sr, target_sr, res_type)
    return transfer.to_device(out, x.device)
