"""The lint, format and type checks .ci/run makes, from the test suite where the tools are
installed (``pip install -e ".[dev]"``), and the PEP 561 marker the wheel carries."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_the_package_is_marked_typed():
    assert (REPO / "uvrsep" / "py.typed").is_file()


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(args):
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(sys.prefix) + "/bin")
    if ruff is None:
        pytest.skip("ruff is not installed (the [dev] extra)")
    proc = subprocess.run([ruff, *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


@pytest.mark.slow
def test_mypy_is_clean():
    pytest.importorskip("mypy", reason="mypy is not installed (the [dev] extra)")
    proc = subprocess.run([sys.executable, "-m", "mypy", "uvrsep"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
