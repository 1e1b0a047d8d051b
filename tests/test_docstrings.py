"""Docstrings state rules; measured figures and the dates of measurements live in
docs/performance.md, where they are rerun and dated, so no docstring goes stale."""

from __future__ import annotations

import ast
import io
import re
import tokenize

from tests.conftest import REPO

#: A measured quantity: a number beside "measured", a speed-up or saving in percent, a duration
#: something took ("2 ms for a clip", "in 0.3 s").
FIGURE = re.compile(
    r"measured[^.;]*\d|\d[^.;]*\bmeasured|\d[\d.,]*\s?%\s(?:faster|slower|less|more)"
    r"|\d[\d.,–-]*\s?(?:ms|s)\s(?:for|per)\s|\bin\s\d[\d.,]*\s?(?:ms|s)\b"
)
#: A date of a measurement (the years this project has been measured in).
YEAR = re.compile(r"\b202[4-9]\b")


def texts(source: str):
    """(line, text) of every docstring and every documentation comment (``#:``) of a module."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield node.body[0].lineno, " ".join(doc.split())
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            yield tok.start[0], tok.string


def stale_figures(source: str) -> list[str]:
    return [
        f"{line}: {m.group(0)}" for line, text in texts(source) for m in (*FIGURE.finditer(text), *YEAR.finditer(text))
    ]


def test_the_checker_sees_figures():
    assert stale_figures('"""Fast: 1-2 ms for a clip."""')
    assert stale_figures('def f():\n    """About 20% faster."""')
    assert stale_figures("#: Peak RSS, measured 809 MiB.\nX = 1")
    assert stale_figures('"""Timed on 2026-12-01."""')
    assert not stale_figures('"""The last 10,000 KiB; 0.1 % of its samples; 50 ms apart; 46.4 ms at any rate."""')
    assert not stale_figures("x = 1  # 20% of the time, an ordinary comment")


def test_no_measured_figures_in_docstrings():
    found = {
        str(path.relative_to(REPO)): stale
        for path in sorted((REPO / "uvrsep").rglob("*.py"))
        if (stale := stale_figures(path.read_text(encoding="utf-8")))
    }
    assert found == {}
    assert (REPO / "docs" / "performance.md").is_file()
