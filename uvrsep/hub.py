"""The weight cache and safe downloads.

Cache folder: ``$UVRSEP_HOME`` if set, else ``$XDG_CACHE_HOME/uvrsep`` (default
``~/.cache/uvrsep``); weight files live in its ``models/`` folder under their registry file
names. Downloads go to ``<file>.part`` (resumed with an HTTP Range request after an interrupted
transfer), are retried with exponential backoff on server errors and dropped connections, are
checked against the registry's sha256 (or the one recorded on the first download) and only then
renamed into place. A lock file makes concurrent downloads of the same model wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from .errors import UvrsepError
from .registry import ModelSpec

log = logging.getLogger(__name__)
CHUNK = 1 << 20
USER_AGENT = "uvrsep (model download)"


class DownloadError(UvrsepError, OSError):
    """A model could not be downloaded (every URL failed, or downloads are off)."""


class ChecksumMismatchError(UvrsepError, ValueError):
    """A file's sha256 differs from the expected one."""


def default_model_name() -> str:
    """The registry's default model (what ``uvrsep separate FILE`` uses without ``--model``)."""
    from .registry import load_registry

    return load_registry().default


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
    return models_dir(home) / spec.file


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_path(home: Path | None) -> Path:
    return models_dir(home) / "recorded_sha256.json"


def recorded_hashes(home: Path | None = None) -> dict[str, str]:
    """sha256 values recorded on first download for entries whose hash the registry lacks."""
    path = _recorded_path(home)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def record_hash(file_name: str, sha256: str, home: Path | None = None) -> None:
    path = _recorded_path(home)
    hashes = recorded_hashes(home)
    hashes[file_name] = sha256
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(hashes, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def expected_hash(spec: ModelSpec, home: Path | None = None) -> tuple[str | None, str]:
    """(sha256, where it comes from: "registry", "recorded on first download" or "unknown")."""
    if spec.sha256:
        return spec.sha256, "registry"
    recorded = recorded_hashes(home).get(spec.file)
    return (recorded, "recorded on first download") if recorded else (None, "unknown")


def verify(spec: ModelSpec, home: Path | None = None) -> tuple[bool | None, str]:
    """Re-hash a cached file: (True/False, or None when no hash is known or the file is absent; detail)."""
    path = cached_path(spec, home)
    if not path.is_file():
        return None, "not downloaded"
    expected, source = expected_hash(spec, home)
    actual = sha256_file(path)
    if expected is None:
        return None, f"sha256 {actual} (no reference hash)"
    if actual == expected:
        return True, f"sha256 matches ({source})"
    return False, f"sha256 {actual} differs from {expected} ({source})"


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Retryable(Exception):
    pass


def _fetch(url: str, part: Path, timeout: float, progress: bool, label: str) -> None:
    """Append ``url``'s remaining bytes to ``part``; raise :class:`_Retryable` on transient failures."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: .part is already complete
            return
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code}") from None
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        raise _Retryable(str(getattr(exc, "reason", exc))) from None
    with response:
        if start and response.status != 206:  # server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = int(length) + start if length is not None else None
        mode = "ab" if start else "wb"
        with open(part, mode) as out, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, desc=label, disable=None if progress else True, leave=False
        ) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, socket.timeout, ConnectionError) as exc:
                raise _Retryable(f"transfer interrupted ({type(exc).__name__})") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retryable(f"transfer ended at {size} of {total} bytes")


def download(
    spec: ModelSpec,
    home: Path | None = None,
    *,
    progress: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    offline: bool = False,
) -> Path:
    """Return the cached file of ``spec``, downloading it first if needed (see module doc)."""
    target = cached_path(spec, home)
    by_hand = f"download it by hand and put it at {target} (or run `uvrsep models import FILE --name {spec.name}`)"
    if target.is_file():
        return target
    if offline:
        raise DownloadError(f"model {spec.name} is not in the cache and downloads are off (--offline): {by_hand}")
    if not spec.urls:
        raise DownloadError(f"model {spec.name} has no download URL: {by_hand}")
    with _locked(target):
        if target.is_file():  # another process finished it while we waited for the lock
            return target
        part = target.with_name(target.name + ".part")
        errors: list[str] = []
        done = False
        for url in spec.urls:
            for attempt in range(retries + 1):
                try:
                    _fetch(url, part, timeout, progress, spec.file)
                    done = True
                    break
                except _Retryable as exc:
                    errors.append(f"{url}: {exc}")
                    if attempt < retries:
                        delay = backoff * 2**attempt
                        log.info("download of %s failed (%s); retrying in %.1f s", spec.name, exc, delay)
                        time.sleep(delay)
                except DownloadError as exc:
                    errors.append(f"{url}: {exc}")
                    break
            if done:
                break
        if not done:
            # A partial .part file stays: the next attempt resumes it.
            raise DownloadError(f"could not download model {spec.name} ({'; '.join(errors[-3:])}); {by_hand}")
        size = part.stat().st_size
        actual = sha256_file(part)
        expected, source = expected_hash(spec, home)
        if spec.size is not None and size != spec.size:
            part.unlink()
            raise ChecksumMismatchError(f"{spec.name}: downloaded {size} bytes, expected {spec.size}; it was discarded")
        if expected is not None and actual != expected:
            part.unlink()
            raise ChecksumMismatchError(
                f"{spec.name}: downloaded file has sha256 {actual}, expected {expected} ({source}); it was discarded"
            )
        os.replace(part, target)
        if expected is None:
            record_hash(spec.file, actual, home)
            log.info("recorded sha256 %s for %s (first download)", actual, spec.name)
    return target


def import_file(source: Path, spec: ModelSpec, home: Path | None = None, *, overwrite: bool = False) -> Path:
    """Copy a user's weight file into the cache under ``spec.file`` (atomically)."""
    target = cached_path(spec, home)
    if target.exists() and not overwrite:
        raise UvrsepError(f"{target}: already in the cache (pass --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    shutil.copyfile(source, part)
    os.replace(part, target)
    return target


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
    model: str | os.PathLike | None, *, offline: bool = False, progress: bool = True, home: Path | None = None
) -> ResolvedModel:
    """A path (used as is) or a registry name (downloaded into the cache unless ``offline``);
    ``None``: the registry's default model."""
    from .registry import load_registry

    home = home or home_dir()
    registry = load_registry(home)
    if model is None:
        model = registry.default
    path = Path(model)
    if path.is_file():
        spec = registry.find(path.name)
    elif path.suffix == ".pth" or os.sep in str(model):
        raise UvrsepError(f"{path}: weight file not found")
    else:
        spec = registry.get(str(model))
        path = download(spec, home, progress=progress, offline=offline)
    # UVR's table: for files the registry does not know, or whose band config it leaves open.
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    return ResolvedModel(path, spec, entry)
