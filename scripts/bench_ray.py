#!/usr/bin/env python3
"""The local batch against ``--ray`` with 1 and 2 workers on the same folder, as a table.

    python scripts/bench_ray.py [--clips 24] [--long 1] [--workers 1 2] [--model PATH] [--width 16]

Makes a folder of deterministic clips (``--clips`` short ones of 0.5–3 s at 44.1 / 48 / 22.05
kHz, ``--long`` of 25 s, separated in segments with ``--segment-threshold 20``) and runs
``uvrsep separate`` on it in a fresh process per row (CPU, 16-bit WAV out): the local batch, then
``--ray --ray-workers N`` (a Ray instance on this machine, started and stopped by the command).
Wall time is the whole command, start to exit: imports, model loading, for Ray starting the
instance and its workers. clips/s = inputs / wall; real-time factor = wall / seconds of audio
(below 1: faster than real time). The machine's load average is printed before and after, since
on a shared machine it moves the numbers. Without --model a random net of the HP family
(cascaded ASPP, width 16) is used.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import random_weights


def make_folder(folder: Path, clips: int, long: int) -> tuple[int, float]:
    """Write the inputs; returns (count, seconds of audio)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rates = (44100, 48000, 22050)
    total = 0.0
    specs = [(f"clip{k:03d}.wav", float(rng.uniform(0.5, 3.0)), rates[k % 3]) for k in range(clips)]
    specs += [(f"long{k}.wav", 25.0, 44100) for k in range(long)]
    for name, seconds, sr in specs:
        t = np.arange(int(seconds * sr)) / sr
        f0 = float(rng.uniform(180, 400))
        x = 0.25 * np.sin(2 * np.pi * (f0 * t + 2 * np.sin(2 * np.pi * 5 * t)))
        x = x + 0.1 * np.sin(2 * np.pi * 130.8 * t)
        wave = np.stack([x + 0.02 * rng.standard_normal(t.size) for _ in range(2)], axis=1)
        sf.write(folder / name, wave.astype(np.float32), sr, subtype="PCM_16")
        total += seconds
    return len(specs), total


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--long", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()
    rows = []
    before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or random_weights(tmp, args.width)
        count, audio = make_folder(tmp / "in", args.clips, args.long)
        runs = [("local batch", None)] + [("--ray", n) for n in args.workers]
        for k, (mode, workers) in enumerate(runs):
            out = tmp / f"out{k}"
            cmd = [
                sys.executable,
                "-m",
                "uvrsep",
                "separate",
                str(tmp / "in"),
                "-m",
                str(model),
                "-o",
                str(out),
                "--device",
                "cpu",
                "--params",
                "4band_v2",
                "--segment-threshold",
                "20",
            ]
            if workers is not None:
                cmd += ["--ray-workers", str(workers), "--ray", "local"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            wall = time.perf_counter() - t0
            summary = re.search(r"done: (\d+) processed, (\d+) skipped, (\d+) failed", done.stderr)
            if done.returncode != 0 or summary is None or int(summary[1]) != count:
                sys.exit(f"{mode} failed ({done.returncode}):\n{done.stderr[-2000:]}")
            rows.append((mode, "-" if workers is None else str(workers), wall))
    after = load_average()
    print(
        f"{count} inputs, {audio:.0f} s of audio ({args.clips} clips of 0.5-3 s, {args.long} of 25 s in segments); "
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) {before} before, {after} after"
    )
    print()
    print("| run | workers | wall (s) | clips/s | real-time factor |")
    print("| --- | --- | --- | --- | --- |")
    for mode, workers, wall in rows:
        print(f"| {mode} | {workers} | {wall:.0f} | {count / wall:.2f} | {wall / audio:.2f} |")


if __name__ == "__main__":
    main()
