"""Spectrogram pictures for the report, as small PNG files; no plotting library.

A picture is ``WIDTH × HEIGHT`` pixels. Column ``j`` is the magnitude spectrum of one Hann-windowed
frame of :data:`FFT_SIZE` samples (the channels averaged) centred at ``(j + 0.5) · N / WIDTH``:
a clip of any length costs ``WIDTH`` FFTs. Row ``i`` (bottom to top) is the mean power of the FFT
bins between two neighbouring edges of ``HEIGHT + 1`` edges spaced evenly on the mel scale from
0 Hz to ``sr / 2`` (at least one bin per row), so speech's low frequencies get most of the
height. Power is shown in dB, from the picture's loudest value down :data:`RANGE_DB` dB, through
a dark-to-bright colour map (:data:`PALETTE`: black, purple, red, orange, pale yellow). The file
is an 8-bit palette PNG, written with :mod:`zlib` and :mod:`struct`.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

WIDTH = 320
HEIGHT = 96
FFT_SIZE = 2048
RANGE_DB = 80.0

#: Colour map anchors, dark to bright (0-255 RGB); 256 colours are interpolated between them.
_ANCHORS = np.array(
    [
        (0, 0, 4),
        (28, 16, 68),
        (79, 18, 123),
        (129, 37, 129),
        (181, 54, 122),
        (229, 80, 100),
        (251, 135, 97),
        (254, 194, 135),
        (252, 253, 191),
    ],
    dtype=np.float64,
)
PALETTE = (
    np.stack(
        [np.interp(np.linspace(0, len(_ANCHORS) - 1, 256), np.arange(len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)],
        axis=1,
    )
    .round()
    .astype(np.uint8)
)  # [256, 3]


def png_bytes(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """An 8-bit palette PNG of ``indices`` (uint8 ``[height, width]``, top row first) with
    ``palette`` (uint8 ``[colours ≤ 256, 3]``)."""
    indices = np.ascontiguousarray(indices, dtype=np.uint8)
    height, width = indices.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8 bits, palette, no interlace
    rows = np.concatenate([np.zeros((height, 1), np.uint8), indices], axis=1)  # filter type 0 per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def _mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _row_edges(sample_rate: int, bins: int) -> np.ndarray:
    """int ``[HEIGHT + 1]``: FFT bin edges of the rows, mel-spaced, each row at least one bin."""
    mels = np.linspace(0.0, _mel(np.array(sample_rate / 2.0)), HEIGHT + 1)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    edges = np.round(hz / (sample_rate / 2.0) * (bins - 1)).astype(np.int64)
    edges[-1] = bins
    for i in range(1, HEIGHT + 1):  # at least one bin per row (FFT_SIZE / 2 + 1 bins ≫ HEIGHT rows)
        edges[i] = max(edges[i], edges[i - 1] + 1)
    return edges


def spectrogram_indices(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """uint8 ``[HEIGHT, WIDTH]`` colour indices (top row: highest frequencies) of ``wave``,
    float32 ``[channels, samples]``."""
    mono = np.asarray(wave, np.float32).mean(axis=0)
    n = mono.size
    padded = np.pad(mono, (FFT_SIZE // 2, FFT_SIZE // 2))
    starts = ((np.arange(WIDTH) + 0.5) * n / WIDTH).astype(np.int64)  # centres in ``mono``
    frames = padded[starts[:, None] + np.arange(FFT_SIZE)[None, :]]  # [WIDTH, FFT_SIZE]
    power = np.abs(np.fft.rfft(frames * np.hanning(FFT_SIZE), axis=1)) ** 2  # [WIDTH, bins]
    bins = power.shape[1]
    edges = _row_edges(sample_rate, bins)
    cumulative = np.concatenate([np.zeros((WIDTH, 1)), np.cumsum(power, axis=1)], axis=1)
    lo, hi = edges[:-1], edges[1:]
    rows = (cumulative[:, hi] - cumulative[:, lo]) / (hi - lo)  # [WIDTH, HEIGHT] mean power
    db = 10 * np.log10(np.maximum(rows, 1e-20))
    top = max(float(db.max()), -200.0 + RANGE_DB)  # silence stays dark
    level = np.clip((db - (top - RANGE_DB)) / RANGE_DB, 0.0, 1.0)
    return np.round(level * 255).astype(np.uint8).T[::-1]  # [HEIGHT, WIDTH], low frequencies at the bottom


def spectrogram_png(wave: np.ndarray, sample_rate: int) -> bytes:
    """The spectrogram picture of ``wave`` (float32 ``[channels, samples]``) as PNG bytes."""
    return png_bytes(spectrogram_indices(wave, sample_rate), PALETTE)
