#!/usr/bin/env python3
"""Carry the validation set to the GPU machine in ~5 MB instead of ~150 MB.

    python scripts/compact_valset.py pack VALSET CARRY      (here: VALSET from scripts/build_valset.py)
    python scripts/compact_valset.py unpack CARRY VALSET2   (there: before training)

The float WAV items (mixture, vocals, accompaniment: 18 x 3 x 2.8 MB) do not fit in what a device
call carries (64 MiB, with the ~48 MiB training pack). ``pack`` stores each item's vocals and
accompaniment as Ogg Opus (stereo, 48 kHz) plus the item lengths; ``unpack`` decodes them back to
44.1 kHz float WAV at the original length and writes ``mixture = vocals + accompaniment`` (the
exact sum, so the references describe the mixture exactly). The unpacked set is a slightly
different validation set (the stems went through a lossy codec): scores on it are comparable
with each other, and its mixture / oracle baselines are in docs/training.md beside those of the
float set. Decoding is deterministic: the same CARRY gives the same items.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100
OPUS_RATE = 48000
STEMS = ("vocals", "accompaniment")


def pack(valset: Path, carry: Path) -> int:
    meta = json.loads((valset / "valset.json").read_text(encoding="utf-8"))
    lengths = {}
    for item in sorted(p for p in valset.iterdir() if p.is_dir()):
        for stem in STEMS:
            wave, sr = sf.read(str(item / f"{stem}.wav"), dtype="float32", always_2d=True)
            if sr != SAMPLE_RATE:
                raise SystemExit(f"{item / stem}.wav: {sr} Hz, expected {SAMPLE_RATE}")
            lengths[item.name] = wave.shape[0]
            at48 = librosa.resample(wave.T, orig_sr=SAMPLE_RATE, target_sr=OPUS_RATE, res_type="soxr_hq")
            (carry / item.name).mkdir(parents=True, exist_ok=True)
            sf.write(carry / item.name / f"{stem}.opus", at48.T, OPUS_RATE, format="OGG", subtype="OPUS")
    meta["compact"] = {"codec": "opus", "sample_rate": SAMPLE_RATE, "samples": lengths}
    (carry / "valset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return len(lengths)


def unpack(carry: Path, valset: Path) -> int:
    meta = json.loads((carry / "valset.json").read_text(encoding="utf-8"))
    lengths = meta["compact"]["samples"]
    for name, n in sorted(lengths.items()):
        stems = {}
        for stem in STEMS:
            data, sr = sf.read(str(carry / name / f"{stem}.opus"), dtype="float32", always_2d=True)
            wave = librosa.resample(data.T, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
            stems[stem] = librosa.util.fix_length(wave, size=int(n), axis=-1).astype(np.float32)
        stems["mixture"] = stems["vocals"] + stems["accompaniment"]
        (valset / name).mkdir(parents=True, exist_ok=True)
        for stem, wave in stems.items():
            sf.write(valset / name / f"{stem}.wav", wave.T, SAMPLE_RATE, subtype="FLOAT")
    (valset / "valset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return len(lengths)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    count = (pack if args.action == "pack" else unpack)(args.src, args.dest)
    print(f"{args.action}ed {count} items into {args.dest}")


if __name__ == "__main__":
    main(sys.argv[1:])
