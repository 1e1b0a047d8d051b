"""Locate the data files that ship with uvrsep (band configurations, later the default model).

In a wheel, the top-level ``configs/`` and ``models/`` folders are installed as
``uvrsep/configs`` and ``uvrsep/models`` (see ``pyproject.toml``). In a source checkout or an
editable install they are found beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the folder ``name`` ("configs" or "models") shipped with uvrsep."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"uvrsep data folder {name!r} is missing from this installation")
