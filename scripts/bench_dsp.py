#!/usr/bin/env python3
"""CPU cost of the torch DSP steps (uvrsep.dsp, as uvrsep.bands runs them) against the original's
librosa / scipy / resampy steps (the tests' oracle, ``tests/oracle.py``).

    python scripts/bench_dsp.py [--layout 4band_v2] [--seconds 180] [--repeats 5] [--threads N]
                                [--input-rate 48000] [--only analysis,synthesis,...]

A deterministic stereo test signal (tones, a chord, noise) of ``--seconds`` at the layout's
rate is analysed and one stem spectrogram synthesised, as a separation of a song does. Every
primitive at its realistic size (each band's resampling, STFT and iSTFT, the FFT resampling
between bands, the input conversion from ``--input-rate``) and the two DSP phases as a whole
(``bands.analyze`` / ``bands.synthesize``, the calls a separation makes) are
timed with the two implementations alternating, ``--repeats`` times each; the table shows the
median wall and CPU (process) seconds of each and the torch/reference ratio of the medians.
Before timing, each pair of outputs is compared (SDR, dB) so a fast wrong answer shows.

The machine's load average (``/proc/loadavg``) before and after is printed with the table:
on a shared machine the wall times move with it; the CPU seconds move less.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import oracle
from uvrsep import bands
from uvrsep.config import load_band_layout
from uvrsep.dsp.resampling import TORCH_RESAMPLERS
from uvrsep.evaluation import sdr


def make_signal(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """float32 ``[2, T]``: a vibrato tone, a chord and noise (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    voice = 0.3 * np.sin(2 * np.pi * (440 * t + 3 * np.sin(2 * np.pi * 5 * t)))
    chord = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (130.8, 164.8, 196.0))
    x = np.stack([voice + chord + 0.05 * rng.standard_normal(t.size) for _ in range(2)])
    x[1] *= 0.8
    return x.astype(np.float32)


def to_numpy(value):
    value = value.spec if isinstance(value, (bands.Analysis, oracle.Analysis)) else value
    return value.numpy() if isinstance(value, torch.Tensor) else value


def measure(ref, new, repeats: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]], float]:
    """Alternate ``ref()`` and ``new()``; (ref times, new times, SDR of new against ref)."""
    a, b = to_numpy(ref()), to_numpy(new())  # warm-up (caches, JIT), and the check
    quality = sdr(a, b) if np.shape(a) == np.shape(b) else float("nan")
    del a, b
    times: tuple[list, list] = ([], [])
    for _ in range(repeats):
        for k, fn in enumerate((ref, new)):
            c0, w0 = time.process_time(), time.perf_counter()
            out = fn()
            times[k].append((time.perf_counter() - w0, time.process_time() - c0))
            del out
    return times[0], times[1], quality


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cases(layout, x: np.ndarray, input_rate: int):
    """(group, name, size, oracle thunk, torch thunk) for every primitive and both phases: the
    original's steps (numpy) against :mod:`uvrsep.bands` as the pipeline calls it (tensors on the CPU)."""
    chain = layout.bands
    t = torch.from_numpy
    out = []
    if input_rate != layout.sample_rate and layout.top.resample_type in TORCH_RESAMPLERS:
        n_in = int(x.shape[1] * input_rate / layout.sample_rate)
        src = make_signal(n_in / input_rate, input_rate, seed=1)
        rt = layout.top.resample_type
        out.append(
            (
                "analysis",
                f"input {input_rate}->{layout.sample_rate} {rt}",
                f"2x{src.shape[1]}",
                lambda: oracle.resample(src, input_rate, layout.sample_rate, rt),
                lambda: bands.resample(t(src), input_rate, layout.sample_rate, rt),
            )
        )
    # The analysis band chain, on the real intermediate signals.
    waves = [None] * len(chain)
    waves[-1] = x
    for i in range(len(chain) - 2, -1, -1):
        waves[i] = oracle.resample(waves[i + 1], chain[i + 1].sample_rate, chain[i].sample_rate, chain[i].resample_type)
    for i in range(len(chain) - 2, -1, -1):
        hi, lo = chain[i + 1], chain[i]
        if hi.sample_rate == lo.sample_rate:
            continue
        src = waves[i + 1]
        rt = lo.resample_type
        out.append(
            (
                "analysis",
                f"resample {hi.sample_rate}->{lo.sample_rate} {rt}",
                f"2x{src.shape[1]}",
                lambda src=src, hi=hi, lo=lo, rt=rt: oracle.resample(src, hi.sample_rate, lo.sample_rate, rt),
                lambda src=src, hi=hi, lo=lo, rt=rt: bands.resample(t(src), hi.sample_rate, lo.sample_rate, rt),
            )
        )
    for i, band in enumerate(chain):
        w, mode = waves[i], layout.channel_modes[i]
        out.append(
            (
                "analysis",
                f"stft {band.sample_rate} n{band.n_fft}/h{band.hop_length}",
                f"2x{w.shape[1]}",
                lambda w=w, band=band, mode=mode: oracle.stft(w, band, mode),
                lambda w=w, band=band, mode=mode: bands.stft(t(w), band, mode),
            )
        )
    out.append(
        (
            "phase",
            "analysis (bands.analyze)",
            f"2x{x.shape[1]}",
            lambda: oracle.analyze(x, layout, extra_frames=4),
            lambda: bands.analyze(t(x), layout, extra_frames=4),
        )
    )
    analysis = oracle.analyze(x, layout, extra_frames=4)
    n = analysis.n_frames
    stem = (analysis.spec * np.exp(0.3j).astype(np.complex64))[:, :, :n]
    high = analysis.high_end[:, :, :n] if analysis.high_end is not None else None
    stem_t, high_t = t(np.ascontiguousarray(stem)), None if high is None else t(np.ascontiguousarray(high))
    for i, band in enumerate(chain):
        out.append(
            (
                "synthesis",
                f"band part + istft {band.sample_rate} n{band.n_fft}/h{band.hop_length}",
                f"2x{band.n_rows}x{n}",
                lambda i=i: oracle.band_part(stem, layout, i),
                lambda i=i: bands.band_part(stem_t, layout, i),
            )
        )
    for i in range(len(chain) - 1):
        lo, hi = chain[i], chain[i + 1]
        rt = bands.synthesis_resampler(layout, i)
        if lo.sample_rate == hi.sample_rate or rt not in TORCH_RESAMPLERS:
            continue
        part = oracle.band_part(stem, layout, i)
        out.append(
            (
                "synthesis",
                f"resample {lo.sample_rate}->{hi.sample_rate} {rt} (float64)",
                f"2x{part.shape[1]}",
                lambda part=part, lo=lo, hi=hi, rt=rt: oracle.resample(part, lo.sample_rate, hi.sample_rate, rt),
                lambda part=part, lo=lo, hi=hi, rt=rt: bands.resample(t(part), lo.sample_rate, hi.sample_rate, rt),
            )
        )
    out.append(
        (
            "phase",
            "synthesis, one stem (bands.synthesize)",
            f"2x{layout.bins + 1}x{n}",
            lambda: oracle.synthesize(stem, layout, high),
            lambda: bands.synthesize(stem_t, layout, high_t),
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", default="4band_v2")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--input-rate", type=int, default=48000, help="source rate of the input conversion row")
    parser.add_argument("--only", default="", help="comma-separated groups: analysis, synthesis, phase")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layout = load_band_layout(args.layout)
    x = make_signal(args.seconds, layout.sample_rate)
    groups = {g for g in args.only.split(",") if g}
    print(f"# bench_dsp: {args.layout}, {args.seconds:g} s stereo, median of {args.repeats} alternating runs")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"with {torch.get_num_threads()} thread(s); load average before: {loadavg()}"
    )
    rows = []
    with torch.inference_mode():
        for group, name, size, ref, new in cases(layout, x, args.input_rate):
            if groups and group not in groups:
                continue
            rt, nt, quality = measure(ref, new, args.repeats)
            rw, rc = statistics.median(t[0] for t in rt), statistics.median(t[1] for t in rt)
            nw, nc = statistics.median(t[0] for t in nt), statistics.median(t[1] for t in nt)
            rows.append((group, name, size, rw, nw, rc, nc, quality))
            print(f"  .. {name}: {rw:.3f} s / {nw:.3f} s", file=sys.stderr, flush=True)
    print(f"# load average after: {loadavg()}")
    head = f"| {'step':52s} | {'size':>14s} | ref wall | torch wall | ratio | ref CPU | torch CPU | ratio | SDR dB |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for group, name, size, rw, nw, rc, nc, quality in rows:
        print(
            f"| {name:52s} | {size:>14s} | {rw:8.3f} | {nw:10.3f} | {nw / rw:5.2f} | {rc:7.3f} | {nc:9.3f} | "
            f"{nc / rc:5.2f} | {quality:6.1f} |"
        )


if __name__ == "__main__":
    main()
