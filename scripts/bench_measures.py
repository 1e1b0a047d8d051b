#!/usr/bin/env python3
"""What the per-clip measures cost next to the separation: a table of separation time with and
without measuring.

    python scripts/bench_measures.py [FILE] [--model PATH] [--repeat 5] [--device cpu]

FILE: default the project's 24 s fixture (../shared/fixtures/parity/fixture24.wav), else a
generated 30 s stereo signal. --model: default the fixture's realistic random HP net
(random_hp_fp16.pth, the 123812KB size of HP2/HP5), else a random 32-wide HP net.

Each run separates FILE (as a batch does: read, separate, the input measured while it is held)
and writes both stems to a temporary folder twice through the one writer: without the measures,
then with them (``on_measures``); the order alternates between runs. Printed per run and as the
median: the separation (s), the two writes (s), and the measuring itself timed alone on the same
data (the input's meter, the stems' meter and the result, ms). The last line gives the measuring
as a share of the separation (the bound of issue 28: at most 2 %).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's uvrsep, installed or not
from bench_memory import make_signal, random_weights

from uvrsep import Separator
from uvrsep.report.measures import ClipMeter, SignalMeter
from uvrsep.writer import write_stems

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "parity"


def measuring_ms(wave, stems) -> tuple[float, float]:
    """(ms to measure the input, ms to measure the stems and give the result), timed alone."""
    t0 = time.perf_counter()
    meter = SignalMeter(stems.sample_rate)
    meter.add(wave)
    t1 = time.perf_counter()
    clip = ClipMeter(stems.sample_rate, stems.names, stems.voice, meter)
    clip.add_stems(stems.waves)
    clip.result()
    return 1000 * (t1 - t0), 1000 * (time.perf_counter() - t1)


def load() -> str:
    """The 1, 5 and 15 minute load averages (POSIX), or why not."""
    if not hasattr(os, "getloadavg"):
        return "unknown on this system"
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-measures-"))
    path = args.file or (FIXTURES / "fixture24.wav" if (FIXTURES / "fixture24.wav").is_file() else None)
    if path is None:
        path = tmp / "signal30.wav"
        make_signal(path, 0.5)
    model = args.model or (
        FIXTURES / "random_hp_fp16.pth" if (FIXTURES / "random_hp_fp16.pth").is_file() else random_weights(tmp, 32)
    )
    sep = Separator(model, device=args.device, progress=False)
    sep.separate_many([path])  # warm-up
    rows = []
    for run in range(args.repeat):
        t0 = time.perf_counter()
        wave = sep.load(path)
        stems = sep._separate_waves([wave.copy()])[0]  # as the batch: the input measured while held
        separate_s = time.perf_counter() - t0
        writes = {}
        for measured in (False, True) if run % 2 == 0 else (True, False):
            targets = {name: tmp / f"{run}_{measured}_{name}.wav" for name in stems.names}
            t1 = time.perf_counter()
            write_stems(stems, targets, on_measures=(lambda m: None) if measured else None)
            writes[measured] = time.perf_counter() - t1
            for target in targets.values():
                target.unlink()
        input_ms, stems_ms = measuring_ms(wave, stems)
        rows.append((separate_s, writes[False], writes[True], input_ms, stems_ms))
        print(
            f"run {run + 1}: separate {separate_s:.3f} s, write {writes[False]:.3f} s, write+measure "
            f"{writes[True]:.3f} s, measure input {input_ms:.2f} ms + stems {stems_ms:.2f} ms",
            flush=True,
        )
    med = [statistics.median(col) for col in zip(*rows)]
    seconds = stems.duration
    print(
        f"\n{path.name}: {seconds:.1f} s stereo at {stems.sample_rate} Hz; model {model.name}; device {args.device}; "
        f"{args.repeat} runs, medians; load {load()}"
    )
    print(
        "| separate (s) | write (s) | write + measures (s) | measure input (ms) | measure stems (ms) | measures / separate |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    share = (med[3] + med[4]) / 1000 / med[0]
    print(f"| {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {med[3]:.2f} | {med[4]:.2f} | {100 * share:.3f} % |")
    print(f"measuring costs {100 * share:.3f} % of separating ({'within' if share <= 0.02 else 'OVER'} the 2 % bound)")


if __name__ == "__main__":
    main()
