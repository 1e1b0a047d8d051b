#!/usr/bin/env python3
"""Peak memory against input length: one fresh process per length, a table at the end.

    python scripts/bench_memory.py [--minutes 1 10 60] [--model PATH] [--width 16] [--segment-threshold S]
                                   [--ensemble N] [--ensemble-algorithm NAME]

Each length gets a deterministic stereo test signal (tones, chords, noise) at 44.1 kHz written
to a temporary WAV, separated by `uvrsep separate` in a child process (CPU), whose peak RSS
(the child's ru_maxrss, from wait4) and wall time are reported. Inputs too long for the CPU's
memory budget (or longer than ``--segment-threshold``) are streamed in segments;
`--segment-threshold inf` shows whole-file processing. Without --model a random net of the HP
family (cascaded ASPP, --width 16 by default: ~4x cheaper than the 32-wide HP net, same code
path) is used, since the HP network runs at about real time on 2 cores. ``--ensemble N`` separates
with an ensemble of N such random nets (seeds 0 .. N-1; ``-m`` repeated, docs/ensembles.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def make_signal(path: Path, minutes: float, sr: int = 44100) -> None:
    """Write a deterministic test signal block by block (constant memory)."""
    rng = np.random.default_rng(0)
    block = sr * 10
    total = int(minutes * 60 * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=2, subtype="PCM_16") as fh:
        for start in range(0, total, block):
            t = (np.arange(start, min(total, start + block)) / sr)[:, None]
            x = 0.25 * np.sin(2 * np.pi * (220 + 110 * np.sin(2 * np.pi * 0.1 * t)) * t)
            x = x + 0.1 * np.sin(2 * np.pi * 130.8 * t) + 0.02 * rng.standard_normal((len(t), 2))
            fh.write(x.astype(np.float32))


def random_weights(folder: Path, width: int, seed: int = 0) -> Path:
    """A random HP-family (cascaded ASPP, 4band_v2) weight file of ``width`` in ``folder``: time and
    memory do not depend on the values, so the benchmarks need nothing downloaded."""
    from uvrsep.network import Architecture

    torch.manual_seed(seed)
    path = folder / f"random_aspp{width}_{seed}.pth"
    torch.save(Architecture("aspp", width).build(672).state_dict(), path)
    return path


def run_measured(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd``; (its own peak RSS in MiB, wall seconds, status). The child's rusage comes from
    wait4, so each run is measured alone (RUSAGE_CHILDREN would give the maximum of all runs)."""
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        _, code, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(code)
    wall = time.perf_counter() - t0
    lines = log.read_text(errors="replace").strip().splitlines()
    status = "ok" if proc.returncode == 0 else f"failed: {lines[-1:]}"
    return usage.ru_maxrss / 1024, wall, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument(
        "--segment-threshold",
        type=float,
        default=None,
        help="passed to uvrsep separate (default: none, the memory decides; 'inf': whole-file processing)",
    )
    parser.add_argument(
        "--ensemble", type=int, default=1, help="an ensemble of this many random nets (needs no --model)"
    )
    parser.add_argument("--ensemble-algorithm", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = (
            [args.model] if args.model else [random_weights(tmp, args.width, seed) for seed in range(args.ensemble)]
        )
        for minutes in args.minutes:
            wav = tmp / f"input_{minutes:g}min.wav"
            make_signal(wav, minutes)
            cmd = [
                sys.executable,
                "-m",
                "uvrsep",
                "separate",
                str(wav),
                *(a for m in models for a in ("-m", str(m))),
                "-o",
                str(tmp / "out"),
                "--device",
                "cpu",
                "--overwrite",
                "--params",
                "4band_v2",
            ]
            if args.ensemble_algorithm is not None:
                cmd += ["--ensemble-algorithm", args.ensemble_algorithm]
            if args.segment_threshold is not None:
                cmd += ["--segment-threshold", str(args.segment_threshold)]
            rss, wall, status = run_measured(cmd, tmp / "log.txt")
            rows.append((minutes, rss, wall, status))
            wav.unlink()
    what = args.model or f"random cascaded ASPP, width {args.width}" + (
        f", an ensemble of {args.ensemble}" if args.ensemble > 1 else ""
    )
    print(
        f"model: {what} ({args.ensemble_algorithm or 'avg_wave'}); machine: {os.cpu_count()} cores; "
        f"load average after: {os.getloadavg()[0]:.2f}"
    )
    print(f"{'minutes':>8} | {'peak RSS MiB':>12} | {'wall s':>8} | status")
    for minutes, rss, wall, status in rows:
        print(f"{minutes:8g} | {rss:12.0f} | {wall:8.1f} | {status}")


if __name__ == "__main__":
    main()
