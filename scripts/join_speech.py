#!/usr/bin/env python3
"""Join short speech clips (one line, syllable or letter per file) into ~20 s chunks per voice.

    python scripts/join_speech.py SRC OUT --group COLUMN [--chunk-s 20] [--gap-s 0.3]
                                  [--max-group-s 180] [--top-db 40]

SRC is a folder written by ``../shared/tools/fotaq_speech.py`` (``manifest.csv``, group by
``character``) or ``../shared/tools/debian_speech.sh`` (``manifest.tsv``, group by ``voice``).
Each clip is read, down-mixed to mono, resampled to 44.1 kHz (soxr HQ), trimmed of leading and
trailing silence (``--top-db`` under the clip's peak), and appended to its group's current chunk
after ``--gap-s`` of silence; a chunk is written once it reaches ``--chunk-s``. Clips are taken in
path order, and a group stops after ``--max-group-s`` seconds (gaps included) so that a voice with thousands of
lines does not outweigh the others. The last, shorter chunk of a group is kept if it is at least
a quarter of ``--chunk-s``. A chunk whose peak exceeds 0.99 is scaled down to 0.99; levels are
otherwise as recorded.

Writes ``OUT/<group>/<group>_NNN.flac`` (mono, 44.1 kHz, 24-bit), ``OUT/manifest.csv`` (chunk,
group, duration, the clips it holds, in order) and copies the source's licence files
(``LICENSE/``, ``*/copyright``) to ``OUT/licences/``. No randomness: the same SRC gives the same
chunks. A clip that cannot be read is reported on one line and skipped.

Why: ``uvrsep prepare-data`` packs whole files (at most 20 s each) and training crops are
~6 s; a 0.5-3 s clip padded with silence would make crops that are mostly silence, with the
voice scaled far louder than the vocal-to-music ratio says.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from uvrsep.errors import UvrsepError
from uvrsep.training.data import SAMPLE_RATE, _load

PEAK = 0.99


def read_manifest(src: Path, column: str) -> dict[str, list[Path]]:
    """Clip paths by group, each group's clips in path order."""
    for name, delimiter in (("manifest.csv", ","), ("manifest.tsv", "\t")):
        path = src / name
        if path.is_file():
            break
    else:
        raise SystemExit(f"{src}: no manifest.csv or manifest.tsv")
    groups: dict[str, list[Path]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if column not in (reader.fieldnames or []):
            raise SystemExit(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
        for row in reader:
            groups.setdefault(row[column], []).append(src / row["file"])
    return {g: sorted(files) for g, files in sorted(groups.items())}


def safe_name(group: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", group)


def join_group(files: list[Path], chunk_s: float, gap_s: float, max_group_s: float, top_db: float):
    """Yield (samples float32 [n], clip paths) chunk by chunk."""
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    names: list[Path] = []
    length = total = 0
    for path in files:
        if total >= max_group_s * SAMPLE_RATE:
            break
        try:
            wave = _load(str(path), 1)[0]
        except UvrsepError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        wave, _ = librosa.effects.trim(wave, top_db=top_db, frame_length=1024, hop_length=256)
        if wave.shape[0] < 0.1 * SAMPLE_RATE:
            continue
        if pieces:
            pieces.append(gap)
            length += gap.shape[0]
            total += gap.shape[0]
        pieces.append(wave.astype(np.float32))
        names.append(path)
        length += wave.shape[0]
        total += wave.shape[0]
        if length >= chunk_s * SAMPLE_RATE:
            yield np.concatenate(pieces), names
            pieces, names, length = [], [], 0
    if pieces and length >= chunk_s / 4 * SAMPLE_RATE:
        yield np.concatenate(pieces), names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--group", required=True, help="manifest column that names the voice (character / voice)")
    parser.add_argument("--chunk-s", type=float, default=20.0)
    parser.add_argument("--gap-s", type=float, default=0.3)
    parser.add_argument("--max-group-s", type=float, default=180.0)
    parser.add_argument("--top-db", type=float, default=40.0)
    args = parser.parse_args(argv)

    groups = read_manifest(args.src, args.group)
    rows = []
    for group, files in groups.items():
        name = safe_name(group)
        for i, (wave, clips) in enumerate(join_group(files, args.chunk_s, args.gap_s, args.max_group_s, args.top_db)):
            peak = float(np.max(np.abs(wave)))
            if peak > PEAK:
                wave = wave * (PEAK / peak)
            dest = args.out / name / f"{name}_{i:03d}.flac"
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            sf.write(tmp, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_24")
            tmp.replace(dest)
            rows.append(
                {
                    "file": dest.relative_to(args.out).as_posix(),
                    "group": group,
                    "duration_s": round(wave.shape[0] / SAMPLE_RATE, 3),
                    "clips": " ".join(p.relative_to(args.src).as_posix() for p in clips),
                }
            )
    with open(args.out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "group", "duration_s", "clips"])
        writer.writeheader()
        writer.writerows(rows)
    licences = args.out / "licences"
    for lic in sorted(args.src.glob("LICENSE/*")) + sorted(args.src.glob("*/copyright")):
        dest = licences / lic.relative_to(args.src).as_posix().replace("/", "__")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lic, dest)
    seconds = sum(r["duration_s"] for r in rows)
    print(f"wrote {len(rows)} chunks, {seconds / 60:.1f} min, {len(groups)} groups to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
