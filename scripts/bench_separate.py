#!/usr/bin/env python3
"""Time uvrsep's phases and print a table: on one file, or as a suite per device and precision.

    python scripts/bench_separate.py FILE --model PATH [--repeat 3] [--device cpu] [--batch-size N]
                                     [--segment-threshold S] [--segment-windows N] [--compare-segments]
    python scripts/bench_separate.py --suite OUT [--devices cpu cuda] [--song-seconds 180] [--clips N] [--model PATH]

One file: each run separates FILE and writes both stems to a temporary folder. Printed: seconds
per phase (read, analysis, network, synthesis, write) for every run and their median, the
real-time factor (audio seconds per wall second) and the process's peak RSS.
``--segment-threshold`` and ``--segment-windows`` are the separator's (default: decided by the
device's memory).
``--compare-segments`` separates FILE whole (``segment_threshold=inf``) and as the separator
decides with ``--segment-threshold`` / ``--segment-windows`` (default: by the device's memory; a
long enough FILE goes in segments) alternately in each run, prints both medians and their ratio,
and the SDR between the two results (the lowest stem and channel). The line above the table
says how each path cut the file.

``--suite OUT``: makes its inputs deterministically (one stereo song of --song-seconds, 180 by
default, and --clips 3 s clips: 1,000 by default with CUDA, 20 without), then for each device
(cpu, and cuda where there is one) and each precision that device runs (cpu: fp32, bf16; cuda:
fp32, tf32, fp16, bf16) runs a fresh process that separates the song (the median of --repeat
runs; whole where the device's memory allows, as the separator decides) and the clips (in
groups of 16, as the batch does) and writes their stems. Per row: the phases' seconds, the real-time factor, clips per second, the process's peak RSS, on CUDA the
peak device memory and the network's achieved TFLOP/s (FLOPs of one window, counted by
torch.utils.flop_counter, times the windows run, over the network phase, which includes the
transfers), and the song's SDR against the same device's fp32 stems (the lowest stem and
channel). The table is printed and written to OUT/bench_separate.md (and .json). Without --model a
random 32-wide HP net (the HP/HP2/HP5 family: the speed does not depend on the values) is used,
so nothing needs to be downloaded; needs only uvrsep's own dependencies, Python 3.10+ and torch 2.4+.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's uvrsep, installed or not
from bench_memory import make_signal, random_weights

from uvrsep import Separator
from uvrsep.evaluation import sdr

PHASES = ("read", "analysis", "network", "synthesis", "write")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
CLIP_SECONDS = 3.0
CLIP_GROUP = 16


def make_inputs(work: Path, song_seconds: float, clips: int) -> tuple[Path, list[Path]]:
    """The suite's deterministic inputs: a stereo song and 3 s clips (44.1 kHz, 16-bit)."""
    song = work / "song.wav"
    make_signal(song, song_seconds / 60)
    rng = np.random.default_rng(1)
    folder = work / "clips"
    folder.mkdir()
    t = np.arange(int(CLIP_SECONDS * 44100))[:, None] / 44100
    paths = []
    for k in range(clips):
        f0 = rng.uniform(110, 440)
        x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)) * t) + 0.03 * rng.standard_normal(
            (len(t), 2)
        )
        paths.append(folder / f"clip{k:04d}.wav")
        sf.write(str(paths[-1]), x.astype(np.float32), 44100, subtype="PCM_16")
    return song, paths


def network_flops(sep: Separator) -> float:
    """FLOPs of one network window at the separator's precision (counted, not estimated)."""
    from torch.utils.flop_counter import FlopCounterMode

    layout = sep.layout
    window = sep.settings.window_size + 2 * sep.net.context
    x = torch.zeros(1, 2, layout.bins + 1, window, device=sep.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        sep.stage().predict(x)
    return float(counter.get_total_flops())


def run_case(args: argparse.Namespace) -> None:
    """One (device, precision) row of the suite, in this process; its JSON goes to --result."""
    device, precision = args.case
    work = args.work
    sep = Separator(args.model, params="4band_v2", device=device, precision=precision)
    windows = [0]
    sep.net.register_forward_pre_hook(lambda _m, inputs: windows.__setitem__(0, windows[0] + inputs[0].shape[0]))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    song = work / "song.wav"
    row = {"device": device, "precision": sep.precision, "song_seconds": sf.info(str(song)).duration}
    runs = []
    with tempfile.TemporaryDirectory(dir=work) as out:
        for _ in range(args.repeat):
            windows[0] = 0
            start = time.perf_counter()
            stems = sep.separate(song)
            t = time.perf_counter()
            stems.write(out, "song", overwrite=True)
            runs.append(
                dict(
                    vars(sep.times),
                    write=time.perf_counter() - t,
                    total=time.perf_counter() - start,
                    windows=windows[0],
                )
            )
        np.save(work / f"song_{device}_{precision}.npy", np.stack([stems.waves[k] for k in sorted(stems.waves)]))
        row["song"] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        clips = sorted((work / "clips").glob("*.wav"))
        totals = dict.fromkeys((*PHASES, "total", "windows"), 0.0)
        windows[0] = 0
        start = time.perf_counter()
        for first in range(0, len(clips), CLIP_GROUP):
            group = clips[first : first + CLIP_GROUP]
            results = sep.separate_many(group)
            t = time.perf_counter()
            for path, stems in zip(group, results):
                stems.write(out, path.stem, overwrite=True)
            totals["write"] += time.perf_counter() - t
            for phase in PHASES[:-1]:
                totals[phase] += getattr(sep.times, phase)
        totals["total"] = time.perf_counter() - start
        totals["windows"] = windows[0]
        row["clips"] = dict(totals, count=len(clips))
    row["peak_rss_mb"] = peak_rss_mb()  # before the FLOP count, which is not part of a run
    row["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    row["flops_per_window"] = network_flops(sep)
    args.result.write_text(json.dumps(row))


def lowest_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """:func:`uvrsep.evaluation.sdr` of each stem and channel (``[stem, ch, t]``), the lowest; a
    channel equal to its reference counts as ``inf`` (a silent channel, say, left silent), a
    silent reference channel with anything else in it as ``-inf``."""
    return float(
        min(
            sdr(r, e) if np.any(r) or np.array_equal(r, e) else -np.inf
            for rs, es in zip(ref, est)
            for r, e in zip(rs, es)
        )
    )


def suite(args: argparse.Namespace) -> None:
    """Every (device, precision) in a fresh process; one table, printed and written to args.suite."""
    from bench_memory import run_measured

    out = args.suite
    out.mkdir(parents=True, exist_ok=True)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    clips = args.clips if args.clips is not None else (1000 if "cuda" in devices else 20)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or random_weights(work, 32)
        make_inputs(work, args.song_seconds, clips)
        for device in devices:
            for precision in PRECISIONS[device]:
                result = work / "row.json"
                result.unlink(missing_ok=True)
                cmd = [
                    sys.executable,
                    __file__,
                    "--case",
                    device,
                    precision,
                    "--work",
                    str(work),
                    "--result",
                    str(result),
                    "--model",
                    str(model),
                    "--repeat",
                    str(args.repeat),
                ]
                _, _, status = run_measured(cmd, out / f"log_{device}_{precision}.txt")
                if status != "ok" or not result.is_file():
                    rows.append({"device": device, "precision": precision, "status": status})
                    continue
                row = json.loads(result.read_text())
                fp32 = work / f"song_{device}_fp32.npy"
                mine = work / f"song_{device}_{precision}.npy"
                row["sdr_vs_fp32"] = (
                    None if precision == "fp32" or not fp32.is_file() else lowest_sdr(np.load(fp32), np.load(mine))
                )
                row["status"] = status
                rows.append(row)
    text = table(rows, args)
    print(text)
    (out / "bench_separate.md").write_text(text + "\n")
    (out / "bench_separate.json").write_text(json.dumps(rows, indent=1) + "\n")


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """The suite's markdown table: one line per (device, precision, input)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        (
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, GPU: {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}; load average after: {load[0]:.2f}"
        ),
        f"model: {args.model or 'random 32-wide HP net'}; song: median of {args.repeat} run(s)",
        "",
        (
            "| device | precision | input | read s | analysis s | network s | synthesis s | write s | total s "
            "| x real time | clips/s | peak RSS MiB | peak GPU MiB | TFLOP/s | SDR vs fp32 dB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"| {row['device']} | {row['precision']} | {row['status']} |" + " |" * 12)
            continue
        for name in ("song", "clips"):
            r = row[name]
            seconds = row["song_seconds"] if name == "song" else r["count"] * CLIP_SECONDS
            label = f"song {row['song_seconds']:.0f} s" if name == "song" else f"{r['count']} clips of 3 s"
            tflops = row["flops_per_window"] * r["windows"] / r["network"] / 1e12 if r["network"] else 0.0
            cells = [
                row["device"],
                row["precision"],
                label,
                *(f"{r[p]:.2f}" for p in (*PHASES, "total")),
                f"{seconds / r['total']:.1f}",
                f"{r['count'] / r['total']:.1f}" if name == "clips" else "",
                f"{row['peak_rss_mb']:.0f}",
                f"{row['peak_device_mb']:.0f}" if row["peak_device_mb"] else "",
                f"{tflops:.2f}" if row["device"] == "cuda" else "",
                f"{row['sdr_vs_fp32']:.1f}" if row.get("sdr_vs_fp32") is not None and name == "song" else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def single(args: argparse.Namespace) -> None:
    """The one-file table (see the module docstring)."""
    if args.file is None or args.model is None:
        sys.exit("bench_separate.py: give FILE and --model, or --suite OUT")
    t0 = time.perf_counter()
    sep = Separator(
        args.model,
        params=args.params,
        device=args.device,
        batch_size=args.batch_size,
        tta=args.tta,
        segment_threshold=args.segment_threshold,
        segment_windows=args.segment_windows,
    )
    load_s = time.perf_counter() - t0
    duration = sf.info(str(args.file)).duration
    thresholds = {"default": args.segment_threshold}
    if args.compare_segments:
        thresholds = {"whole": float("inf"), "segments": args.segment_threshold}
    rows: dict[str, list[dict]] = {name: [] for name in thresholds}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for name, threshold in thresholds.items():  # alternating, so a change of load hits both
                sep.segment_threshold = threshold
                start, cpu = time.perf_counter(), time.process_time()
                stems = sep.separate(args.file)
                t = time.perf_counter()
                stems.write(tmp, args.file.stem, overwrite=True)
                write_s = time.perf_counter() - t
                total = time.perf_counter() - start
                rows[name].append(dict(vars(sep.times), write=write_s, total=total, cpu=time.process_time() - cpu))
                results[name] = np.stack([stems.waves[k] for k in sorted(stems.waves)])

    plans = []
    for name, threshold in thresholds.items():
        sep.segment_threshold = threshold
        frames = sep.segment_plan(round(duration * sep.layout.sample_rate)).frames
        plans.append(f"{name}: {f'segments of {frames} frames' if frames else 'whole'}")
    print(
        f"file: {args.file} ({duration:.1f} s)  model: {args.model.name}  device: {args.device}  "
        f"batch: {sep.batch_size}  tta: {args.tta}  {'; '.join(plans)}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}; model load {load_s:.2f} s; load average after: {os.getloadavg()[0]:.2f}"
    )
    header = ["path", "run", *PHASES, "total", "CPU s", "RTF"]
    columns = (*PHASES, "total", "cpu")
    print(" | ".join(f"{h:>9}" for h in header))
    medians = {}
    for name in thresholds:
        for i, row in enumerate(rows[name], 1):
            print(
                " | ".join(
                    [f"{name:>9}", f"{i:>9}"]
                    + [f"{row[k]:9.2f}" for k in columns]
                    + [f"{duration / row['total']:9.2f}"]
                )
            )
        med = medians[name] = {k: statistics.median(r[k] for r in rows[name]) for k in columns}
        print(
            " | ".join(
                [f"{name:>9}", "   median"] + [f"{med[k]:9.2f}" for k in columns] + [f"{duration / med['total']:9.2f}"]
            )
        )
    if args.compare_segments:
        seg, whole = medians["segments"], medians["whole"]
        dsp = {k: medians[k]["analysis"] + medians[k]["synthesis"] for k in medians}
        print(
            f"segments / whole: total {seg['total'] / whole['total']:.3f}, CPU {seg['cpu'] / whole['cpu']:.3f}, "
            f"analysis + synthesis {dsp['segments']:.2f} s / {dsp['whole']:.2f} s; "
            f"SDR between them {lowest_sdr(results['whole'], results['segments']):.1f} dB"
        )
    print(f"peak RSS: {peak_rss_mb():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, nargs="?")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--params", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (3 for FILE, 1 in the suite)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument(
        "--segment-threshold",
        type=float,
        default=None,
        help="FILE: the separator's segment_threshold (default: by the device's memory)",
    )
    parser.add_argument(
        "--segment-windows",
        type=int,
        default=None,
        help="FILE: network windows per segment (default: by the device's memory)",
    )
    parser.add_argument(
        "--compare-segments",
        action="store_true",
        help="FILE: alternate whole-file and segmented processing in each run",
    )
    parser.add_argument("--suite", type=Path, metavar="OUT", help="run the suite; write its table to this folder")
    parser.add_argument("--devices", nargs="+", choices=sorted(PRECISIONS))
    parser.add_argument("--song-seconds", type=float, default=180.0)
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--case", nargs=2, metavar=("DEVICE", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat is None:
        args.repeat = 1 if (args.suite or args.case) else 3
    if args.case:
        run_case(args)
    elif args.suite:
        suite(args)
    else:
        single(args)


if __name__ == "__main__":
    main()
