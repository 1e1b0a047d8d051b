"""The helper scripts: checkpoint splitting and the reproducible validation set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, SHARED

SHARED_DATA = SHARED / "data"


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, check=True, cwd=REPO)


def test_split_and_join_are_byte_exact(tmp_path):
    data = np.random.default_rng(0).bytes(3 * 2**20 + 123)
    (tmp_path / "ckpt.pth").write_bytes(data)
    run("scripts/split_checkpoint.py", "split", tmp_path / "ckpt.pth", tmp_path / "out" / "last.pth", "--max-mib", "1")
    parts = sorted((tmp_path / "out").glob("last.pth.part*"))
    assert len(parts) == 4 and all(p.stat().st_size <= 2**20 for p in parts)
    run("scripts/split_checkpoint.py", "join", tmp_path / "out" / "last.pth", tmp_path / "back.pth")
    assert (tmp_path / "back.pth").read_bytes() == data
    parts[1].write_bytes(b"corrupt")
    with pytest.raises(subprocess.CalledProcessError):
        run("scripts/split_checkpoint.py", "join", tmp_path / "out" / "last.pth", tmp_path / "again.pth")


@pytest.mark.skipif(not (SHARED_DATA / "manifest.csv").is_file(), reason="the shared data folder ($UVRSEP_SHARED or ../shared)/data is not present")
def test_validation_set_is_reproducible(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(4):
        rng = np.random.default_rng(i)
        sf.write(music / f"t{i}.flac", (0.1 * rng.standard_normal((44100 * 9, 2))).astype(np.float32), 44100)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run("scripts/build_valset.py", out, "--music", music, "--shared-data", SHARED_DATA, "--hold-out", "0.5",
            "--singing-items", "2", "--dialog-items", "1")
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.wav"))
    assert len(files) == 9
    for rel in files:  # compare samples: float WAV headers carry a timestamp (PEAK chunk)
        a, sr_a = sf.read(outs[0] / rel, dtype="float32")
        b, sr_b = sf.read(outs[1] / rel, dtype="float32")
        assert sr_a == sr_b == 44100 and np.array_equal(a, b), rel
