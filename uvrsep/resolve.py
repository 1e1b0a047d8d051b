"""Names to files: a path used as is, a registry name fetched into the cache, or the default.

Composes the cache and its records (:mod:`uvrsep.hub`) with the transfer
(:mod:`uvrsep.downloads`); both stay free of each other's callers.

Messages name the setting that gave the model (``given_as``, a Python argument name such as
``model``; on the command line its flag: ``--model``, ``--then``; see :func:`uvrsep.errors.option`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .downloads import download
from .errors import UvrsepError, option
from .hub import Notice, cached_path, check_cached, home_dir
from .registry import ModelSpec, Registry, load_registry


class ResolvedModel:
    """A weight file on disk and what is known about it.

    ``spec`` is the registry entry (matched by name, alias or file name); ``uvr_entry`` is UVR's
    hash-table entry when no registry entry matched.
    """

    def __init__(self, path: Path, spec: ModelSpec | None = None, uvr_entry: dict | None = None):
        self.path = path
        self.spec = spec
        self.uvr_entry = uvr_entry


def given(model: object, given_as: str | None) -> str:
    """How a message names the model the user gave: ``--then X.pth`` on the command line,
    ``model='X.pth'`` in Python, the bare name when ``given_as`` is None (a positional argument)."""
    return str(model) if given_as is None else option(given_as, value=str(model))


def _path_like(text: str) -> bool:
    """Whether a model given as ``text`` can only be a file (``.pth``, or a folder in it)."""
    return text.endswith(".pth") or os.sep in text or bool(os.altsep and os.altsep in text)


def weight_file(model: str | os.PathLike, given_as: str | None = "model") -> Path | None:
    """The weight file ``model`` names, or None when it names no file and may be a registry name.

    Something that can only be a file (a ``.pth`` name, or a path with a folder) and is not a
    readable regular file is a one-line :class:`UvrsepError` naming ``given_as`` (a name the file
    system refuses, such as one longer than it allows, included)."""
    path = Path(model)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if not _path_like(str(model)):
            return None
        why = (
            "weight file not found" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror or exc})"
        )
        raise UvrsepError(f"{given(model, given_as)}: {why}") from None
    if stat.S_ISREG(mode):
        return path
    if _path_like(str(model)):
        raise UvrsepError(
            f"{given(model, given_as)}: is {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}, "
            "not a weight file"
        )
    return None


def named_model(
    name: str | os.PathLike | None,
    registry: Registry,
    *,
    home: Path | None = None,
    given_as: str | None = "model",
) -> tuple[ModelSpec, Path | None]:
    """The registry entry ``name`` (a name or alias; ``None``: the default model) and its cached
    file, ``None`` when it is not in the cache yet (nothing is downloaded). A cached file must
    have its pinned sha256 (:func:`~uvrsep.hub.check_cached`: one line naming it and ``uvrsep
    models verify``); an unknown name is a :class:`~uvrsep.errors.ConfigError` naming
    ``given_as``."""
    home = home or home_dir()
    if name is None:
        spec = registry.default_spec()
    else:
        spec = registry.get(str(name), label=given(name, given_as) if given_as else None)
    cached = cached_path(spec, home)
    if not cached.is_file():
        return spec, None
    check_cached(spec, home)
    return spec, cached


def resolve_model(
    model: str | os.PathLike | None,
    *,
    offline: bool = False,
    progress: bool = True,
    home: Path | None = None,
    on_notice: Notice | None = None,
    given_as: str | None = "model",
) -> ResolvedModel:
    """A path (used as is), a registry name (downloaded into the cache unless ``offline``) or
    None: the registry's default model, downloaded on first use with a one-line notice (through
    ``on_notice``) of what and where. A cached file used by name must have its pinned sha256
    (:func:`check_cached`). Failures are one-line :class:`UvrsepError` s naming the setting
    ``given_as``; for the default they say which file to get, from where, and where to put it."""
    home = home or home_dir()
    registry = load_registry(home)
    path = weight_file(model, given_as) if model is not None else None
    spec: ModelSpec | None
    if path is not None:
        spec = registry.find(path.name)
    else:
        spec, path = named_model(model, registry, home=home, given_as=given_as)
        if path is None:
            what = f"the default model {spec.name}" if model is None else None
            path = download(
                spec,
                home,
                progress=progress,
                offline=offline,
                on_notice=on_notice,
                what=what,
                given_as=given_as or "model",
            )
            check_cached(spec, home)
    # UVR's table: for files the registry does not know, or whose band config it leaves open.
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    return ResolvedModel(path, spec, entry)
