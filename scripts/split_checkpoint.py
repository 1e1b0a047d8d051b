#!/usr/bin/env python3
"""Split a file into parts of at most N MiB, or join the parts back (byte-exact).

    python scripts/split_checkpoint.py split run/last.pth OUT/last.pth [--max-mib 15]
        -> OUT/last.pth.part000, OUT/last.pth.part001, ... and OUT/last.pth.sha256
    python scripts/split_checkpoint.py join OUT/last.pth run/last.pth
        (reads OUT/last.pth.part*, checks the sha256, writes run/last.pth)

The device machine returns files of at most 16 MiB; training checkpoints travel this way.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def split(src: Path, dest: Path, max_mib: float) -> list[Path]:
    size = int(max_mib * 2**20)
    data = src.read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, max(len(data), 1), size):
        part = dest.with_name(f"{dest.name}.part{i // size:03d}")
        part.write_bytes(data[i : i + size])
        parts.append(part)
    dest.with_name(dest.name + ".sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    return parts


def join(prefix: Path, dest: Path) -> Path:
    parts = sorted(prefix.parent.glob(prefix.name + ".part[0-9][0-9][0-9]"))
    if not parts:
        raise SystemExit(f"no parts {prefix}.partNNN")
    data = b"".join(p.read_bytes() for p in parts)
    expected = prefix.with_name(prefix.name + ".sha256")
    if expected.is_file() and hashlib.sha256(data).hexdigest() != expected.read_text().strip():
        raise SystemExit(f"{prefix}: the parts do not match their sha256")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("split", "join"))
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--max-mib", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.action == "split":
        for part in split(args.src, args.dest, args.max_mib):
            print(part)
    else:
        print(join(args.src, args.dest))


if __name__ == "__main__":
    main(sys.argv[1:])
