"""The weight cache and safe downloads.

Cache folder: ``$UVRSEP_HOME`` if set, else ``$XDG_CACHE_HOME/uvrsep`` (default
``~/.cache/uvrsep``); weight files live in its ``models/`` folder under their registry file
names.

Download policy (:func:`download`):

- URLs: with ``UVRSEP_MIRROR`` set (a base URL), ``{mirror}/{file}`` is tried first, then the
  registry URLs' paths on the mirror (``https://huggingface.co/<path>`` becomes
  ``{mirror}/<path>``: hf-mirror.com works this way), then the registry URLs themselves.
- Transfers go to ``<file>.part``, resumed with an HTTP Range request after an interruption
  (also in a later run), with a tqdm bar showing the size when ``progress`` is on.
- A name that does not resolve, a refused connection, an unreachable network, a certificate
  error, an HTTP 4xx answer, a redirect loop or a web page instead of the file fail that URL at
  once. Server errors (5xx, 429), timeouts and dropped or short transfers are retried at most
  ``retries`` times (default 3), each retry announced on one line through ``on_notice``.
- One deadline bounds everything done for one file (all URLs and retries; default 1800 s, or
  ``UVRSEP_DOWNLOAD_DEADLINE``), so a server sending a byte a second cannot hang a batch.
- A finished transfer is accepted only if it has the registry's size (where known), the
  expected sha256 (the registry's, or the one recorded on the first download) and is a loadable
  VR weight file of the family and width the registry names. Otherwise it is discarded with a
  one-line reason and nothing is recorded; the next URL is tried.
- A failure ends in one :class:`DownloadError` line: what failed, the URL to fetch by hand and
  where to put the file.
- A lock file makes concurrent downloads of the same model wait for each other; it is removed
  when the download ends.

Notices (a download starting, a retry, a discarded file) go to the ``on_notice`` callable given
to :func:`download` / :func:`resolve_model`, one line each; without one they are logged as
warnings on ``uvrsep.hub`` (which Python prints on stderr when logging is not configured).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from .errors import IncompatibleCheckpointError, UvrsepError
from .registry import ModelSpec, check_file_name

log = logging.getLogger(__name__)
CHUNK = 1 << 20
USER_AGENT = "uvrsep (model download)"
MIRROR_ENV = "UVRSEP_MIRROR"
DEADLINE_ENV = "UVRSEP_DOWNLOAD_DEADLINE"
DEFAULT_DEADLINE = 1800.0
RETRIES = 3
#: One line of text for the user (a download starting, a retry, a discarded file).
Notice = Callable[[str], None]


class DownloadError(UvrsepError, OSError):
    """A model could not be downloaded (every URL failed, or downloads are off)."""


def default_model_name() -> str:
    """The registry's default model (what ``uvrsep separate FILE`` uses without ``--model``)."""
    from .registry import load_registry

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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_path(home: Path | None) -> Path:
    return models_dir(home) / "recorded_sha256.json"


def recorded_hashes(home: Path | None = None) -> dict[str, str]:
    """sha256 values recorded on first download (or on import) for entries whose hash the registry lacks."""
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
    """(sha256, where it comes from: "registry", "recorded on first download", "recorded on
    import" (an entry without URLs can only have been imported) or "unknown")."""
    if spec.sha256:
        return spec.sha256, "registry"
    recorded = recorded_hashes(home).get(spec.file)
    if not recorded:
        return None, "unknown"
    return recorded, "recorded on first download" if spec.urls else "recorded on import"


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


def human_size(n: int) -> str:
    """``63454827`` → ``"63.5 MB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def mirror_urls(spec: ModelSpec, mirror: str | None = None) -> list[str]:
    """The URLs tried for ``spec``, in order: on the mirror (``UVRSEP_MIRROR`` unless given)
    ``{mirror}/{file}`` and each registry URL's path, then the registry URLs."""
    mirror = (os.environ.get(MIRROR_ENV, "") if mirror is None else mirror).strip().rstrip("/")
    urls: list[str] = []
    if mirror:
        urls.append(f"{mirror}/{urllib.parse.quote(spec.file)}")
        urls += [f"{mirror}{urllib.parse.urlsplit(u).path}" for u in spec.urls]
    urls += list(spec.urls)
    return list(dict.fromkeys(urls))


def download_deadline() -> float:
    """Seconds allowed for one file's download: ``UVRSEP_DOWNLOAD_DEADLINE`` or 1800."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UvrsepError(f"{DEADLINE_ENV}={raw!r}: must be a number of seconds above 0")
    return value


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold ``<target>.lock`` exclusively; the holder removes it when done. A waiter that gets
    the lock of a file already removed (its path gone or now another file) takes the new one,
    so removing the file never lets two downloads of the same model run at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    while True:
        handle = open(lock_path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(lock_path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(handle.fileno())
            if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                break
        except BaseException:
            handle.close()
            raise
        handle.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # while still holding it: waiters see the path changed
        handle.close()


class _Retryable(Exception):
    """A transient failure: worth another attempt at the same URL."""


class _Failed(Exception):
    """This URL will not work now: go to the next one."""


class _OutOfTime(Exception):
    """The file's deadline passed: stop trying."""


def _network_reason(exc: BaseException) -> tuple[str, bool]:
    """(one-line reason, retry?) for an error raised while connecting."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "the host name does not resolve (offline, or DNS blocked?)", False
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", False
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({reason.verify_message or reason})", False
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "no answer (timed out)", True
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable", False
    text = str(getattr(reason, "strerror", None) or reason).strip().splitlines()
    return (text[0] if text else type(reason).__name__), True


def _content_total(response: http.client.HTTPResponse, start: int) -> int | None:
    """Total size of the file from a response's headers (Content-Range of a 206, else
    Content-Length plus what we already have), or None when the server does not say."""
    rng = response.headers.get("Content-Range", "")
    if response.status == 206 and "/" in rng and rng.rsplit("/", 1)[1].strip().isdigit():
        return int(rng.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    if length is not None and length.strip().isdigit():
        return int(length) + start
    return None


def _fetch(url: str, part: Path, *, timeout: float, stop_at: float, expected_size: int | None,
           progress: bool, label: str) -> None:
    """Append ``url``'s remaining bytes to ``part``. Raises :class:`_Retryable`,
    :class:`_Failed` or :class:`_OutOfTime`."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    wait = max(0.05, min(timeout, stop_at - time.monotonic()))
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=wait)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and start:  # nothing left to fetch: .part is already complete
            return
        if 300 <= exc.code < 400:
            raise _Failed(f"redirect loop (HTTP {exc.code}, too many redirects)") from None
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Retryable(f"HTTP {exc.code}") from None
        raise _Failed(f"HTTP {exc.code} {str(exc.reason).splitlines()[0] if exc.reason else ''}".strip()) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason, retry = _network_reason(exc)
        raise (_Retryable if retry else _Failed)(reason) from None
    with response:
        if start and response.status != 206:  # server ignored the range: start over
            start = 0
        if response.headers.get_content_type() == "text/html":
            raise _Failed("the server sent a web page (text/html), not the weight file")
        total = _content_total(response, start)
        if expected_size is not None and total is not None and total != expected_size:
            if start:  # what we have belongs to another file
                part.unlink(missing_ok=True)
            raise _Failed(f"the server offers {total} bytes; the file has {expected_size}")
        total = total if total is not None else expected_size
        received = start
        with open(part, "ab" if start else "wb") as out, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, desc=label,
            disable=None if progress else True, leave=False,
        ) as bar:
            while True:
                if time.monotonic() >= stop_at:
                    raise _OutOfTime()
                try:
                    block = response.read1(CHUNK)  # returns what has arrived: the deadline holds
                except (http.client.HTTPException, OSError) as exc:
                    raise _Retryable(f"transfer interrupted ({type(exc).__name__})") from None
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
                if expected_size is not None and received > expected_size:
                    raise _Failed(f"the server sent more than the file's {expected_size} bytes")
    if total is not None and received < total:
        raise _Retryable(f"transfer ended at {received} of {total} bytes")


def _check_download(part: Path, spec: ModelSpec, home: Path | None) -> str | None:
    """Why a finished download is not ``spec``'s file, or None when it is."""
    size = part.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"{size} bytes, expected {spec.size}"
    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body", b"<!--")):
        return "it is a web page, not a weight file"
    expected, source = expected_hash(spec, home)
    if expected is not None:
        actual = sha256_file(part)
        if actual != expected:
            return f"sha256 {actual} differs from {expected} ({source})"
    from .network.checkpoint import check_weight_file

    try:
        check_weight_file(part, spec.family, spec.width)
    except IncompatibleCheckpointError as exc:
        return str(exc).removeprefix(f"{part}: ")
    return None


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _notify(on_notice: Notice | None, message: str) -> None:
    if on_notice is not None:
        on_notice(message)
    else:
        log.warning("%s", message)


def _by_hand(spec: ModelSpec, target: Path) -> str:
    where = f"get {spec.urls[0]} and put it at {target}" if spec.urls else f"put the weight file at {target}"
    return f"{where}, or use --model PATH"


def download(
    spec: ModelSpec,
    home: Path | None = None,
    *,
    progress: bool = True,
    retries: int = RETRIES,
    backoff: float = 1.0,
    timeout: float = 30.0,
    deadline: float | None = None,
    offline: bool = False,
    on_notice: Notice | None = None,
    what: str | None = None,
) -> Path:
    """Return the cached file of ``spec``, downloading it first if needed (policy: module doc).

    ``retries``: further attempts per URL after a transient failure (waiting ``backoff``,
    then twice as long each time); ``timeout``: seconds one connect or read may wait;
    ``deadline``: seconds for the whole file (default :func:`download_deadline`);
    ``on_notice``: receives one-line notices; ``what``: how notices and errors name the
    model (default ``"model NAME"``). Raises :class:`DownloadError` (one line).
    """
    target = cached_path(spec, home)
    if target.is_file():
        return target
    what = what or f"model {spec.name}"
    if offline:
        raise DownloadError(f"{what} is not in the cache and downloads are off (--offline): {_by_hand(spec, target)}")
    urls = mirror_urls(spec)
    if not urls:
        raise DownloadError(f"{what} has no download URL: {_by_hand(spec, target)}")
    limit = download_deadline() if deadline is None else deadline
    try:
        return _download_locked(spec, home, target, urls, limit, what=what, progress=progress, retries=retries,
                                backoff=backoff, timeout=timeout, on_notice=on_notice)
    except UvrsepError:
        raise
    except OSError as exc:  # the cache folder: not writable, disk full, ...
        raise DownloadError(
            f"could not download {what}: cannot write in {target.parent} ({exc.strerror or exc}); "
            f"set UVRSEP_HOME to another folder, or {_by_hand(spec, target)}"
        ) from None


def _download_locked(spec: ModelSpec, home: Path | None, target: Path, urls: list[str], limit: float, *, what: str,
                     progress: bool, retries: int, backoff: float, timeout: float, on_notice: Notice | None) -> Path:
    with _locked(target):
        if target.is_file():  # another process finished it while we waited for the lock
            return target
        size = f" ({human_size(spec.size)})" if spec.size else ""
        _notify(on_notice, f"downloading {what}{size} to {target}")
        part = target.with_name(target.name + ".part")
        stop_at = time.monotonic() + limit
        failures: list[str] = []
        for url in urls:
            try:
                problem = _download_from(url, part, spec, home, stop_at=stop_at, retries=retries, backoff=backoff,
                                         timeout=timeout, progress=progress, on_notice=on_notice, what=what)
            except _OutOfTime:
                failures.append(f"{_host(url)}: not complete within the {limit:g} s deadline")
                break
            if problem is None:
                os.replace(part, target)
                if expected_hash(spec, home)[0] is None:
                    record_hash(spec.file, sha256_file(target), home)
                return target
            failures.append(f"{_host(url)}: {problem}")
        # A partial .part file stays (a discarded one is gone): the next attempt resumes it.
        raise DownloadError(f"could not download {what} ({'; '.join(failures)}); {_by_hand(spec, target)}")


def _download_from(url: str, part: Path, spec: ModelSpec, home: Path | None, *, stop_at: float, retries: int,
                   backoff: float, timeout: float, progress: bool, on_notice: Notice | None, what: str) -> str | None:
    """Fetch ``url`` into ``part`` and check it: None when ``part`` is ``spec``'s file, else why
    not (a failed download of this URL). Raises :class:`_OutOfTime`."""
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout=timeout, stop_at=stop_at, expected_size=spec.size, progress=progress,
                   label=spec.file)
        except _Failed as exc:
            return str(exc)
        except _Retryable as exc:
            if attempt == retries:
                return f"{exc} ({retries + 1} attempts)"
            delay = backoff * 2**attempt
            if time.monotonic() + delay >= stop_at:
                raise _OutOfTime() from None
            _notify(on_notice, f"download of {what} from {_host(url)} failed ({exc}); "
                               f"retry {attempt + 1} of {retries} in {delay:.0f} s")
            time.sleep(delay)
            continue
        problem = _check_download(part, spec, home)
        if problem is not None:
            part.unlink(missing_ok=True)
            _notify(on_notice, f"discarded the download of {what} from {_host(url)}: {problem}")
        return problem
    raise AssertionError("unreachable")  # pragma: no cover


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
    model: str | os.PathLike | None,
    *,
    offline: bool = False,
    progress: bool = True,
    home: Path | None = None,
    on_notice: Notice | None = None,
) -> ResolvedModel:
    """A path (used as is), a registry name (downloaded into the cache unless ``offline``) or
    None: the registry's default model, downloaded on first use with a one-line notice (through
    ``on_notice``) of what and where. Failures are one-line :class:`UvrsepError` s; for the
    default they say which file to get, from where, and where to put it."""
    from .registry import load_registry

    home = home or home_dir()
    registry = load_registry(home)
    path = Path(model) if model is not None else None
    if path is None:
        spec = registry.default_spec()
        path = download(spec, home, progress=progress, offline=offline, on_notice=on_notice,
                        what=f"the default model {spec.name}")
    elif path.is_file():
        spec = registry.find(path.name)
    elif path.suffix == ".pth" or os.sep in str(model):
        raise UvrsepError(f"{path}: weight file not found")
    else:
        spec = registry.get(str(model))
        path = download(spec, home, progress=progress, offline=offline, on_notice=on_notice)
    # UVR's table: for files the registry does not know, or whose band config it leaves open.
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    return ResolvedModel(path, spec, entry)
