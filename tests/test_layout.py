"""The package's shape: no import circles, the tests' oracle outside it, modules of one job."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "uvrsep"
#: The pipeline's modules, kept under ~450 lines each and their functions under ~70.
PIPELINE = [
    "separator.py",
    "device.py",
    "transfer.py",
    "model.py",
    "inference.py",
    "job.py",
    "clips.py",
    "sources.py",
    "segments.py",
    "bands.py",
    "windows.py",
    "masks.py",
    "semantics.py",
    "stems.py",
    "dsp",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The uvrsep modules ``path`` imports, at module level or inside functions (``from pkg import
    name`` counts ``pkg``, and ``pkg.name`` where that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as the modules along it), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def test_no_import_circle_in_the_package():
    """Module-level and function-level imports alike (a function-level circle is the same knot)."""
    assert find_cycle(package_graph()) is None, " -> ".join(find_cycle(package_graph()))


def test_the_cycle_finder_finds_circles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_holds_no_oracle():
    """The librosa / scipy / resampy steps are the tests' (tests/oracle.py): the runtime imports
    neither them nor resampy, and scipy only for the training data's filters."""
    graph = package_graph()
    assert not any(name.startswith("tests") for deps in graph.values() for name in deps)
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        names |= {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        assert "resampy" not in names, path
        assert "scipy" not in names or path.parent.name == "training", path
    assert not (PACKAGE / "dsp" / "reference.py").exists()


@pytest.mark.slow  # a fresh interpreter that imports torch and separates
def test_separating_needs_neither_resampy_nor_scipy(tmp_path, tiny_weights):
    """resampy's filters are computed, not read from its files: a separation with a 48 kHz input
    (resampy's kaiser_fast to 44.1 kHz) runs where resampy, scipy and librosa cannot be imported."""
    script = (
        "import sys\n"
        "for name in ('resampy', 'scipy', 'librosa', 'numba'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np\n"
        "from uvrsep import Separator\n"
        "wave = np.random.default_rng(0).standard_normal((2, 24000)).astype(np.float32) * 0.1\n"
        f"stems = Separator({str(tiny_weights)!r}, device='cpu').separate(wave, 48000)\n"
        "print(stems['vocals'].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, 22050)"


@pytest.mark.parametrize("name", PIPELINE)
def test_pipeline_modules_do_one_job_each(name):
    paths = sorted((PACKAGE / name).rglob("*.py")) if (PACKAGE / name).is_dir() else [PACKAGE / name]
    for path in paths:
        lines = path.read_text().splitlines()
        assert len(lines) <= 450, f"{path.name}: {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 70, f"{path.name}: {node.name} has {length} lines"
