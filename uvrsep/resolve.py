"""Names to files: a path used as is, a registry name fetched into the cache, or the default.

Composes the cache and its records (:mod:`uvrsep.hub`) with the transfer
(:mod:`uvrsep.downloads`); both stay free of each other's callers.
"""

from __future__ import annotations

import os
from pathlib import Path

from .downloads import download
from .errors import UvrsepError
from .hub import Notice, check_cached, home_dir
from .registry import ModelSpec, load_registry


class ResolvedModel:
    """A weight file on disk and what is known about it.

    ``spec`` is the registry entry (matched by name, alias or file name); ``uvr_entry`` is UVR's
    hash-table entry when no registry entry matched.
    """

    def __init__(self, path: Path, spec: ModelSpec | None = None, uvr_entry: dict | None = None):
        self.path = path
        self.spec = spec
        self.uvr_entry = uvr_entry


def resolve_model(
    model: str | os.PathLike | None,
    *,
    offline: bool = False,
    progress: bool = True,
    home: Path | None = None,
    on_notice: Notice | None = None,
) -> ResolvedModel:
    """A path (used as is), a registry name (downloaded into the cache unless ``offline``) or
    None: the registry's default model, downloaded on first use with a one-line notice (through
    ``on_notice``) of what and where. A cached file used by name must have its pinned sha256
    (:func:`check_cached`). Failures are one-line :class:`UvrsepError` s; for the default they
    say which file to get, from where, and where to put it."""
    home = home or home_dir()
    registry = load_registry(home)
    path = Path(model) if model is not None else None
    spec: ModelSpec | None
    if path is None:
        spec = registry.default_spec()
        path = download(
            spec, home, progress=progress, offline=offline, on_notice=on_notice, what=f"the default model {spec.name}"
        )
        check_cached(spec, home)
    elif path.is_file():
        spec = registry.find(path.name)
    elif path.suffix == ".pth" or os.sep in str(model):
        raise UvrsepError(f"{path}: weight file not found")
    else:
        spec = registry.get(str(model))
        path = download(spec, home, progress=progress, offline=offline, on_notice=on_notice)
        check_cached(spec, home)
    # UVR's table: for files the registry does not know, or whose band config it leaves open.
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    return ResolvedModel(path, spec, entry)
