"""The weight cache: where files live, which digest each one must have, and which file a name means.

Cache folder: ``$UVRSEP_HOME`` if set, else ``$XDG_CACHE_HOME/uvrsep`` (default
``~/.cache/uvrsep``); weight files live in its ``models/`` folder under their registry file
names. Downloading into it is :mod:`uvrsep.downloads`.

Digests. A file's sha256 is *pinned* when the registry publishes it (``sha256`` in
``configs/models.toml``) or when the user imported the file (``uvrsep models import``: the user
vouches for it). A file downloaded from an entry without a pinned digest has its sha256 recorded
so that a later change is noticed, but it is shown as "unverified (no published checksum)"
(:data:`UNVERIFIED`), never as verified.

- ``models/recorded_sha256.json``: the recorded digests, ``{file: {"sha256", "source"}}`` with
  source ``"import"`` (pinned) or ``"download"`` (unverified). An older file's plain
  ``{file: sha256}`` values count as imported for entries without URLs, else as downloaded.
- ``models/hashed_files.json``: the sha256 of cached files as last computed, keyed by size and
  mtime (ns), so checking a file each time it is used costs one ``stat``.

Both are changed under one cross-process lock (``locks/.records.lock``; :func:`locked`, by
``filelock``: it works on Windows, where ``fcntl`` does not exist) and replaced atomically (a
temporary file, then ``os.replace``), so concurrent runs keep every record. Readers take no lock.

A cached file used by name (:func:`resolve_model` for a registry name or the default model) is
checked against its pinned digest when first used, and again whenever its size or mtime changes:
a wrong file (files may be placed by hand) is one line naming it and ``uvrsep models verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from .errors import UvrsepError
from .registry import REPLACE_TRIES, ModelSpec, check_file_name, load_registry, write_text_atomic  # noqa: F401

log = logging.getLogger(__name__)
CHUNK = 1 << 20
#: How a digest that nobody published is shown (``models verify``, ``models info``).
UNVERIFIED = "unverified (no published checksum)"
RECORDS_FILE = "recorded_sha256.json"
HASHES_FILE = "hashed_files.json"
#: One line of text for the user (a download starting, a retry, a discarded file).
Notice = Callable[[str], None]


class DownloadError(UvrsepError, OSError):
    """A model could not be downloaded (every URL failed, or downloads are off)."""


def default_model_name() -> str:
    """The registry's default model (what ``uvrsep separate FILE`` uses without ``--model``)."""
    return load_registry(home_dir()).default_spec().name


def home_dir() -> Path:
    """uvrsep's cache folder (``UVRSEP_HOME`` > ``XDG_CACHE_HOME/uvrsep`` > ``~/.cache/uvrsep``)."""
    if os.environ.get("UVRSEP_HOME"):
        return Path(os.environ["UVRSEP_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uvrsep"


def models_dir(home: Path | None = None) -> Path:
    return (home or home_dir()) / "models"


def cached_path(spec: ModelSpec, home: Path | None = None) -> Path:
    """Where ``spec``'s file lives in the cache (whether or not it is there)."""
    return models_dir(home) / check_file_name(spec.file, f"model {spec.name}: file")


def human_size(n: int) -> str:
    """``63454827`` → ``"63.5 MB"``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError  # pragma: no cover


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(name: str, home: Path | None = None) -> Iterator[None]:
    """Hold the cache's cross-process lock ``locks/<name>.lock`` (a model's file name for its
    download; ``.records`` for the record files). Lock files stay: removing one would let a
    waiter and the next holder run at once; the OS releases the lock of a holder that dies."""
    folder = (home or home_dir()) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / f"{name}.lock"):
        yield


# -- the record files -------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    """A record file's object ({} when absent or unreadable: it is rebuilt as files are used)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); starting it again", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict) -> None:
    """Replace a record file by ``data`` atomically (:func:`uvrsep.registry.write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


@contextlib.contextmanager
def _updating(file_name: str, home: Path | None) -> Iterator[dict]:
    """Read-modify-write of a record file under the records lock; written when the block ends."""
    path = models_dir(home) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(".records", home):
        data = _read_json(path)
        yield data
        _write_json(path, data)


@dataclass(frozen=True)
class Digest:
    """A file's reference sha256 and where it comes from: ``"registry"``, ``"import"`` (both
    pinned) or ``"download"`` (recorded from a download without a pinned digest: unverified)."""

    sha256: str
    source: str

    @property
    def pinned(self) -> bool:
        return self.source in ("registry", "import")

    def describe(self) -> str:
        """``"registry"``, ``"recorded on import"`` or ``"recorded on download: unverified (...)"``."""
        return {"registry": "registry", "import": "recorded on import"}.get(
            self.source, f"recorded on download: {UNVERIFIED}"
        )


def recorded_hashes(home: Path | None = None) -> dict[str, Digest]:
    """The recorded digests by file name (source ``""``: an older record that does not say)."""
    records: dict[str, Digest] = {}
    for file_name, value in _read_json(models_dir(home) / RECORDS_FILE).items():
        if isinstance(value, str):
            records[file_name] = Digest(value, "")
        elif (
            isinstance(value, dict)
            and isinstance(value.get("sha256"), str)
            and value.get("source") in ("import", "download")
        ):
            records[file_name] = Digest(value["sha256"], value["source"])
    return records


def record_hash(file_name: str, sha256: str, home: Path | None = None, *, source: str = "download") -> None:
    """Record ``file_name``'s sha256: ``source`` ``"download"`` (unverified) or ``"import"`` (pinned)."""
    if source not in ("import", "download"):
        raise ValueError(f"record source {source!r}: must be 'import' or 'download'")
    with _updating(RECORDS_FILE, home) as records:
        records[file_name] = {"sha256": sha256, "source": source}


def reference_digest(spec: ModelSpec, home: Path | None = None) -> Digest | None:
    """The digest ``spec``'s file must have: the registry's, else the recorded one, else None."""
    if spec.sha256:
        return Digest(spec.sha256, "registry")
    digest = recorded_hashes(home).get(spec.file)
    if digest is not None and not digest.source:
        digest = Digest(digest.sha256, "download" if spec.urls else "import")
    return digest


def file_sha256(path: Path, home: Path | None = None, *, fresh: bool = False) -> str:
    """sha256 of the cached file ``path``, hashed again only when its size or mtime changed since
    the last time (or when ``fresh``). A cache folder that cannot be written is only not updated."""
    stat = path.stat()
    if not fresh:
        seen = _read_json(models_dir(home) / HASHES_FILE).get(path.name)
        if (
            isinstance(seen, dict)
            and seen.get("size") == stat.st_size
            and seen.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(seen.get("sha256"), str)
        ):
            return seen["sha256"]
    actual = sha256_file(path)
    try:
        with _updating(HASHES_FILE, home) as hashes:
            hashes[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": actual}
    except OSError as exc:
        log.debug("%s: not updated (%s)", models_dir(home) / HASHES_FILE, exc)
    return actual


# -- checking cached files ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found. ``status``: ``"ok"`` (the pinned digest matches),
    ``"mismatch"`` (it does not), ``"changed"`` (an unverified file no longer has the digest
    recorded when it was downloaded), ``"unverified"`` (no pinned digest; unchanged or nothing
    recorded) or ``"absent"``; ``detail``: one line."""

    status: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "changed")


def verify(spec: ModelSpec, home: Path | None = None) -> Verdict:
    """Hash ``spec``'s cached file again and compare it with its reference digest."""
    path = cached_path(spec, home)
    if not path.is_file():
        return Verdict("absent", "not downloaded")
    actual = file_sha256(path, home, fresh=True)
    digest = reference_digest(spec, home)
    if digest is None:
        return Verdict("unverified", f"{UNVERIFIED}: sha256 {actual}, nothing recorded to compare with")
    if digest.pinned:
        if actual == digest.sha256:
            return Verdict("ok", f"sha256 matches ({digest.describe()})")
        return Verdict("mismatch", f"sha256 {actual} differs from {digest.sha256} ({digest.describe()})")
    if actual == digest.sha256:
        return Verdict("unverified", f"{UNVERIFIED}: unchanged since the download (sha256 {actual})")
    return Verdict("changed", f"sha256 {actual}, recorded {digest.sha256}; {UNVERIFIED}")


def check_cached(spec: ModelSpec, home: Path | None = None) -> None:
    """Refuse ``spec``'s cached file when it lacks its pinned digest (one line). The hash is
    remembered by size and mtime, so only a first use (or a changed file) reads the file.
    Files without a pinned digest pass: they are unverified, not wrong."""
    digest = reference_digest(spec, home)
    if digest is None or not digest.pinned:
        return
    path = cached_path(spec, home)
    actual = file_sha256(path, home)
    if actual != digest.sha256:
        fix = (
            "delete it to download it again"
            if spec.urls
            else f"import the right file again (uvrsep models import FILE --name {spec.name} --overwrite)"
        )
        raise UvrsepError(
            f"{path}: not the file of model {spec.name} (sha256 {actual[:16]}..., pinned "
            f"{'in the registry' if digest.source == 'registry' else 'on import'}: {digest.sha256[:16]}...); "
            f"run `uvrsep models verify` to check the cache, and {fix}"
        )


def import_file(source: Path, spec: ModelSpec, home: Path | None = None, *, overwrite: bool = False) -> Path:
    """Copy a user's weight file into the cache under ``spec.file`` (atomically) and pin its
    sha256 (the user vouches for the file)."""
    target = cached_path(spec, home)
    if target.exists() and not overwrite:
        raise UvrsepError(f"{target}: already in the cache (pass --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    shutil.copyfile(source, part)
    os.replace(part, target)
    record_hash(spec.file, file_sha256(target, home, fresh=True), home, source="import")
    return target
