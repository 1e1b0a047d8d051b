"""STFT and inverse STFT in torch, as librosa 0.11 computes them with uvrsep's settings.

:func:`stft` is ``librosa.stft(y, n_fft=n, hop_length=h)``: periodic Hann window of ``n_fft``,
centred frames (``n_fft // 2`` zeros each side, ``pad_mode='constant'``), ``1 + T // hop``
frames, complex64 for float32 input. :func:`istft` is ``librosa.istft(S, hop_length=h)``:
windowed overlap-add divided by the summed squared window where that sum exceeds the dtype's
``tiny``, ``n_fft // 2`` samples trimmed at each end, so ``hop·(frames − 1)`` samples; float64
for complex128 input.

:func:`istft` works in blocks of frames (:func:`._blocks.rows_per_block`), so its working
memory need not grow with the input beyond the output itself. The overlap-add cuts each
windowed frame into ``⌈n_fft / hop⌉`` hop-long pieces and adds piece ``j`` of every frame of the
block into output hop ``t + j`` with one strided addition per piece.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ._blocks import rows_per_block


@functools.lru_cache(maxsize=32)
def hann_window(n_fft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Periodic Hann window ``0.5 − 0.5·cos(2πk/n_fft)`` (scipy's ``get_window('hann', n,
    fftbins=True)``), computed in float64 and cast to ``dtype``."""
    k = torch.arange(n_fft, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * torch.pi * k / n_fft)).to(dtype=dtype, device=device)


def stft(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Centred STFT of real ``wave`` ``[..., T]`` → complex ``[..., n_fft/2 + 1, 1 + T // hop]``."""
    if n_fft % 2:
        raise ValueError(f"n_fft must be even, got {n_fft}")
    lead, length = wave.shape[:-1], wave.shape[-1]
    flat = wave.reshape(-1, length)
    window = hann_window(n_fft, wave.dtype, wave.device)
    spec = torch.stft(flat, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def _overlap_add(frames: torch.Tensor, n_fft: int, hop: int, out: torch.Tensor, first: int = 0) -> None:
    """Add windowed ``frames`` ``[B, F, n_fft]`` into ``out`` ``[B, blocks, hop]`` (the untrimmed
    signal in hops): frame ``f`` starts at hop ``first + f``."""
    count = frames.shape[1]
    for j in range(-(-n_fft // hop)):
        width = min(hop, n_fft - j * hop)
        out[:, first + j : first + j + count, :width] += frames[:, :, j * hop : j * hop + width]


def _window_sums(
    n_fft: int, hop: int, count: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """librosa's ``window_sumsquare`` of ``count`` frames in hops, as ``(head, full, tail)``:
    the first ``k − 1`` hops ``[k − 1, hop]``, the one sum ``[hop]`` of all ``k = ⌈n_fft/hop⌉``
    pieces that every hop in between has, and the last ``k − 1`` hops. With fewer than ``k``
    frames, ``head`` is all ``count + k − 1`` hops and the others are ``None``."""
    pieces = -(-n_fft // hop)
    frames = min(count, pieces)
    sums = torch.zeros(1, frames + pieces - 1, hop, dtype=dtype, device=device)
    _overlap_add(hann_window(n_fft, dtype, device).square().expand(1, frames, n_fft), n_fft, hop, sums)
    sums = sums[0]
    if count < pieces:
        return sums, None, None
    return sums[: pieces - 1], sums[pieces - 1], sums[pieces:]


def istft_from_blocks(
    block_of: Callable[[int, int], torch.Tensor],
    batch: int,
    count: int,
    n_fft: int,
    hop: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The iSTFT of ``count`` frames produced block by block: ``block_of(f0, f1)`` gives frames ``f0 .. f1 - 1`` as complex
    ``[batch, f1 - f0, n_fft/2 + 1]``; returns real ``dtype`` ``[batch, hop·(count − 1)]``."""
    window = hann_window(n_fft, dtype, device)
    pieces = -(-n_fft // hop)
    out = torch.zeros(batch, count + pieces - 1, hop, dtype=dtype, device=device)
    # Frames and their spectra: a few MB per block with one thread (measured best), more with more.
    block = rows_per_block(device, 2 * batch * n_fft * out.element_size(), count, serial_bytes=8 << 20)
    for f0 in range(0, count, block):
        f1 = min(count, f0 + block)
        frames = torch.fft.irfft(block_of(f0, f1), n=n_fft)
        frames *= window
        _overlap_add(frames, n_fft, hop, out, f0)
    # librosa divides by the window sum where it exceeds tiny and leaves the rest: divide those by one.
    tiny = torch.finfo(dtype).tiny
    one = torch.ones((), dtype=dtype, device=device)
    head, full, tail = _window_sums(n_fft, hop, count, dtype, device)
    out[:, : head.shape[0]] /= torch.where(head > tiny, head, one)
    if full is not None and tail is not None:
        out[:, pieces - 1 : count] /= torch.where(full > tiny, full, one)
        out[:, count:] /= torch.where(tail > tiny, tail, one)
    return out.view(batch, -1)[:, n_fft // 2 : n_fft // 2 + hop * (count - 1)]


def istft(spec: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Inverse of :func:`stft`: complex ``[..., n_fft/2 + 1, frames]`` → real ``[..., hop·(frames − 1)]``.

    Fastest when ``spec`` is stored frame by frame (a transposed view of ``[..., frames,
    n_fft/2 + 1]``, as :func:`stft` returns it).
    """
    if spec.shape[-2] != n_fft // 2 + 1 or n_fft % 2:
        raise ValueError(f"a spectrogram of {spec.shape[-2]} rows does not come from an even n_fft={n_fft}")
    lead, count = spec.shape[:-2], spec.shape[-1]
    by_frame = spec.reshape(-1, spec.shape[-2], count).transpose(1, 2)
    y = istft_from_blocks(
        lambda f0, f1: by_frame[:, f0:f1], by_frame.shape[0], count, n_fft, hop, by_frame.real.dtype, spec.device
    )
    return y.reshape(*lead, y.shape[-1])
