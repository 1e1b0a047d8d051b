#!/usr/bin/env python3
"""Build uvrsep's fixed validation set: singing items and dialog-over-BGM items.

    python scripts/build_valset.py OUT --music DIR [--music DIR ...] [--shared-data ../shared/data]

Vocals come from the `valid` split of the shared data (never trained on); music from the files
that `uvrsep prepare-data` holds out of each music folder (same seed and fraction), so no item
uses training audio. Each item folder holds mixture.wav, vocals.wav and accompaniment.wav
(float, stereo, 44.1 kHz, 8 s). Singing items mix at a vocal-to-music ratio drawn from
[-5, +5] dB; dialog items put the BGM 8-20 dB under the speech, as in anime dialog. Everything
is drawn from a seeded generator: the same inputs give the same set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from uvrsep.training.data import SAMPLE_RATE, _load, sources_from_manifest, split_music

SECONDS = 8.0


def crop(wave: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if wave.shape[1] <= n:
        return np.pad(wave, ((0, 0), (0, n - wave.shape[1])))
    start = int(rng.integers(0, wave.shape[1] - n))
    return wave[:, start : start + n]


def active_crop(wave: np.ndarray, n: int, rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """A crop with some signal in it (music files can open with silence)."""
    best = crop(wave, n, rng)
    for _ in range(tries):
        if np.sqrt(np.mean(best**2)) > 0.01:
            break
        best = crop(wave, n, rng)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--music", type=Path, action="append", required=True)
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--hold-out", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--singing-items", type=int, default=10)
    parser.add_argument("--dialog-items", type=int, default=8)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed + 1000)
    n = int(SECONDS * SAMPLE_RATE)
    music_files = [f for folder in args.music for f in split_music(folder, args.hold_out, args.seed)[1]]
    if not music_files:
        raise SystemExit("no held-out music files: give more music or a larger --hold-out")
    sources = sources_from_manifest(args.shared_data, "valid")
    singing = [f for s in sources if s.name.startswith("singing") for f in s.files]
    speech = [f for s in sources if s.name.startswith("speech") for f in s.files]
    music = [_load(f, 2) for f in music_files]
    records = []

    def make(kind: str, index: int, vocal_file: str, ratio_db: float) -> None:
        voc = _load(vocal_file, 1)
        voc = active_crop(voc, n, rng)
        pan = rng.uniform(0.3, 0.7)
        voc = np.concatenate([voc * np.sqrt(1 - pan), voc * np.sqrt(pan)])
        acc = active_crop(music[int(rng.integers(len(music)))], n, rng)
        v_rms, a_rms = np.sqrt(np.mean(voc**2)) + 1e-9, np.sqrt(np.mean(acc**2)) + 1e-9
        voc = voc * (a_rms * 10 ** (ratio_db / 20) / v_rms)
        mix = voc + acc
        gain = 0.8 / max(float(np.max(np.abs(mix))), 1e-9)
        folder = args.out / f"{kind}_{index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, wave in (("mixture", mix), ("vocals", voc), ("accompaniment", acc)):
            sf.write(folder / f"{name}.wav", (wave * gain).T.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        records.append({"item": folder.name, "vocal_file": vocal_file, "ratio_db": round(float(ratio_db), 2)})

    for i in range(args.singing_items):
        make("singing", i, singing[int(rng.integers(len(singing)))], rng.uniform(-5, 5))
    for i in range(args.dialog_items):
        make("dialog", i, speech[int(rng.integers(len(speech)))], rng.uniform(8, 20))
    (args.out / "valset.json").write_text(
        json.dumps({"seed": args.seed, "music_files": music_files, "items": records}, indent=1), encoding="utf-8"
    )
    print(f"wrote {len(records)} items to {args.out}")


if __name__ == "__main__":
    main()
