#!/usr/bin/env python3
"""Compare training candidates by size and speed, and print a table (no training, no quality).

    python scripts/bench_candidates.py --data PACKED [--candidate aspp:16:4band_v2 ...]
        [--device cuda] [--batch-size 8] [--crop-frames 256] [--workers 12] [--repeat 5]

A candidate is FAMILY:WIDTH:PARAMS (as `uvrsep train --family --width --params`). For each:
parameters; the shipped fp16 file; the resume state in the transport form gpu_train.sh returns
(fp32 weights + bf16 optimizer moments) and the full checkpoint, in MiB; the median seconds of a
training step on random input (forward, backward, AdamW; autocast fp16 on CUDA as in training)
and of making a batch from PACKED with WORKERS threads (what `uvrsep train` does per step); and
the steps per second those allow (the loop makes a batch, then steps: the two add up). The device
machine returns at most 64 MiB per call, so a candidate whose transport state exceeds ~60 MiB
cannot bring its resumable state back.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from uvrsep.config import load_band_layout
from uvrsep.training import PackedSet, TrainConfig
from uvrsep.training.loop import make_batch, train_step

MIB = 2**20


def median_seconds(fn, repeat: int, sync) -> float:
    fn()  # warm-up (allocations, autotuning)
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--candidate", action="append", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-frames", type=int, default=256)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    candidates = args.candidate or [
        "aspp:16:4band_v2",
        "aspp:16:3band_44100_msb2",
        "aspp:16:4band_44100",
        "aspp:24:4band_v2",
        "vr51:32:4band_v2",
    ]
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    data = PackedSet(args.data)
    pool = ThreadPoolExecutor(args.workers) if args.workers > 0 else None
    print(
        f"device {device}, batch {args.batch_size} x {args.crop_frames} frames, {args.workers} data threads, "
        f"median of {args.repeat}"
    )
    print(
        f"{'candidate':26} {'params':>7} {'fp16 MiB':>8} {'state MiB':>9} {'full MiB':>8} "
        f"{'step s':>7} {'data s':>7} {'steps/s':>7}"
    )
    for spec in candidates:
        family, width, params = spec.split(":")
        cfg = TrainConfig(
            data=str(args.data),
            out="",
            family=family,
            width=int(width),
            params=params,
            batch_size=args.batch_size,
            crop_frames=args.crop_frames,
            device=args.device,
        )
        layout = load_band_layout(params)
        net = cfg.architecture(layout.bins).build(layout.bins).to(device)
        n = sum(p.numel() for p in net.parameters())
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        use_amp = device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        x = torch.rand(args.batch_size, 2, layout.bins + 1, args.crop_frames, device=device)
        y = 0.5 * x

        step_s = median_seconds(lambda: train_step(net, opt, scaler, x, y, use_amp), args.repeat, sync)  # noqa: B023  (called at once)
        counter = iter(range(10**9))
        data_s = median_seconds(lambda: make_batch(cfg, data, layout, next(counter), pool), args.repeat, lambda: None)  # noqa: B023
        print(
            f"{spec:26} {n / 1e6:6.1f}M {n * 2 / MIB:8.1f} {n * 8 / MIB:9.1f} {n * 12 / MIB:8.1f} "
            f"{step_s:7.3f} {data_s:7.3f} {1 / (step_s + data_s):7.2f}",
            flush=True,
        )
        net = opt = None  # freed before the next candidate is built
    if pool is not None:
        pool.shutdown()


if __name__ == "__main__":
    main()
