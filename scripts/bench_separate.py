#!/usr/bin/env python3
"""Time uvrsep's phases on one file and print a table.

    python scripts/bench_separate.py FILE --model PATH [--repeat 3] [--device cpu] [--batch-size N]

Each run separates FILE and writes both stems to a temporary folder. Printed: seconds per phase
(read, analysis, network, synthesis, write) for every run and their median, the real-time
factor (audio seconds per wall second) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from uvrsep import Separator

PHASES = ("read", "analysis", "network", "synthesis", "write")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--params", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    sep = Separator(args.model, params=args.params, device=args.device, batch_size=args.batch_size, tta=args.tta)
    load_s = time.perf_counter() - t0
    duration = sf.info(str(args.file)).duration
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            start = time.perf_counter()
            stems = sep.separate(args.file)
            t = time.perf_counter()
            stems.write(tmp, args.file.stem, overwrite=True)
            write_s = time.perf_counter() - t
            total = time.perf_counter() - start
            times = sep.times
            rows.append(dict(read=times.read, analysis=times.analysis, network=times.network,
                             synthesis=times.synthesis, write=write_s, total=total))

    print(f"file: {args.file} ({duration:.1f} s)  model: {args.model.name}  device: {args.device}  "
          f"batch: {sep.batch_size}  tta: {args.tta}")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}; model load {load_s:.2f} s")
    header = ["run", *PHASES, "total", "RTF"]
    print(" | ".join(f"{h:>9}" for h in header))
    for i, row in enumerate(rows, 1):
        print(" | ".join([f"{i:>9}"] + [f"{row[k]:9.2f}" for k in (*PHASES, "total")] + [f"{duration / row['total']:9.2f}"]))
    med = {k: statistics.median(r[k] for r in rows) for k in (*PHASES, "total")}
    print(" | ".join(["   median"] + [f"{med[k]:9.2f}" for k in (*PHASES, "total")] + [f"{duration / med['total']:9.2f}"]))
    print(f"peak RSS: {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
