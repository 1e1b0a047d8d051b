"""Imports running at once (several ``uvrsep models import`` processes sharing a cache) never
lose each other's user-registry entries, and never leave a temporary file behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

WRITER = """
import sys, time
from pathlib import Path
from uvrsep.registry import ModelSpec, add_user_model
home, tag, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < start:  # all processes begin together
    time.sleep(0.001)
for k in range(count):
    add_user_model(home, ModelSpec(name=f"{tag}-{k}", file=f"{tag}-{k}.pth", family="aspp", width=16))
"""


@pytest.mark.slow  # four child processes
def test_concurrent_imports_keep_every_entry(tmp_path):
    processes, count = 4, 15
    start = time.time() + 2.0  # after every interpreter has started
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"p{n}", str(count), str(start)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * processes, errors
    entries = json.loads((tmp_path / "user_models.json").read_text(encoding="utf-8"))
    assert sorted(e["name"] for e in entries) == sorted(f"p{n}-{k}" for n in range(processes) for k in range(count))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locks", "user_models.json"]


def test_replacing_an_entry_keeps_the_others(tmp_path):
    from uvrsep.registry import ModelSpec, add_user_model, load_registry

    add_user_model(tmp_path, ModelSpec(name="a", file="a.pth", params="4band_v2"))
    add_user_model(tmp_path, ModelSpec(name="b", file="b.pth"))
    add_user_model(tmp_path, ModelSpec(name="a", file="a.pth", params="4band_v3"))
    users = {m.name: m for m in load_registry(tmp_path).models if m.source == "user"}
    assert set(users) == {"a", "b"} and users["a"].params == "4band_v3"
