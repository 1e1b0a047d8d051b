"""Safe model downloads into the cache (:mod:`uvrsep.hub`).

Policy (:func:`download`):

- URLs: with ``UVRSEP_MIRROR`` set (a base URL), ``{mirror}/{file}`` is tried first, then the
  registry URLs' paths on the mirror (``https://huggingface.co/<path>`` becomes
  ``{mirror}/<path>``: hf-mirror.com works this way), then the registry URLs themselves.
- Transfers go to ``<file>.part``, with a tqdm bar showing the size when ``progress`` is on.
  Beside it, ``<file>.part.json`` keeps the URL and the validator the server gave (a strong
  ``ETag``, else ``Last-Modified``).
- Resuming: a ``.part`` (cut by a retried transfer, or left by a process that was killed or
  interrupted) is continued with ``Range`` only when the server can prove it is the same file
  (``If-Range`` with the validator it gave for that URL: an answer of 200 instead of 206 means the
  file changed, and the transfer starts again from byte 0) or when the model has a pinned sha256
  that the result must match. Otherwise the ``.part`` is deleted and the transfer starts from 0,
  without ``Range``. A resumed file that fails the checks below is fetched once more from 0.
- Size ceiling: the registry's size when known, else :data:`~uvrsep.fetch.MAX_DOWNLOAD_BYTES` (2 GB). A
  ``Content-Length`` / ``Content-Range`` above it is refused before any byte is read; a server
  that sends more than it is stopped.
- A name that does not resolve, a refused connection, an unreachable network, a certificate
  error, an HTTP 4xx answer, a redirect loop or a web page instead of the file fail that URL at
  once. Server errors (5xx, 429), timeouts and dropped or short transfers are retried at most
  ``retries`` times (default 3), each retry announced on one line through ``on_notice``.
- One deadline bounds everything done for one file (all URLs and retries; default 1800 s, or
  ``UVRSEP_DOWNLOAD_DEADLINE``), so a server sending a byte a second cannot hang a batch.
- A finished transfer is accepted only if it has the registry's size (where known), the pinned
  sha256 (the registry's; see :mod:`uvrsep.hub`) and is a loadable VR weight file of the family
  and width the registry names. Otherwise it is discarded with a one-line reason and nothing is
  recorded; the next URL is tried. A file accepted without a pinned digest has its sha256
  recorded as "unverified (no published checksum)".
- Clean failures: when a URL fails (ceiling, bad file, retries spent), when everything fails,
  when the deadline passes and on any error (a full disk included) the ``.part`` and its
  ``.part.json`` are deleted, so the next download starts clean. Only Ctrl-C / SIGTERM / a kill
  leave them, to be resumed under the rule above.
- A failure ends in one :class:`~uvrsep.hub.DownloadError` line: what failed, the URL to fetch
  by hand and where to put the file.
- A lock (:func:`uvrsep.hub.locked`) makes concurrent downloads of the same model wait for each
  other; the waiters then use the file the first one stored.

Notices (a download starting, a retry, a discarded file) go to the ``on_notice`` callable given
to :func:`download` / :func:`~uvrsep.resolve.resolve_model`, one line each; without one they are
logged as warnings on ``uvrsep.downloads`` (which Python prints on stderr when logging is not
configured).
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import IncompatibleCheckpointError, UvrsepError, in_cli, option
from .fetch import Failed, OutOfTime, Retryable, discard, fetch, sidecar
from .hub import (
    Digest,
    DownloadError,
    Notice,
    cached_path,
    human_size,
    locked,
    record_hash,
    recorded_hashes,
    reference_digest,
    sha256_file,
)
from .registry import ModelSpec

log = logging.getLogger(__name__)
MIRROR_ENV = "UVRSEP_MIRROR"
DEADLINE_ENV = "UVRSEP_DOWNLOAD_DEADLINE"
DEFAULT_DEADLINE = 1800.0
RETRIES = 3


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


def _check_download(part: Path, spec: ModelSpec, pinned: Digest | None) -> tuple[str | None, str]:
    """(why a finished download is not ``spec``'s file, or None when it is; its sha256)."""
    size = part.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"{size} bytes, expected {spec.size}", ""
    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body", b"<!--")):
        return "it is a web page, not a weight file", ""
    actual = sha256_file(part)
    if pinned is not None and actual != pinned.sha256:
        return f"sha256 {actual} differs from {pinned.sha256} ({pinned.describe()})", actual
    from .network.checkpoint import check_weight_file

    try:
        check_weight_file(part, spec.family, spec.width)
    except IncompatibleCheckpointError as exc:
        return str(exc).removeprefix(f"{part}: "), actual
    return None, actual


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _notify(on_notice: Notice | None, message: str) -> None:
    if on_notice is not None:
        on_notice(message)
    else:
        log.warning("%s", message)


def _by_hand(spec: ModelSpec, target: Path, given_as: str = "model") -> str:
    """What to do by hand: fetch the file, or give one with the setting ``given_as``
    (``--model PATH``, ``--then PATH`` on the command line; ``model=PATH`` in Python)."""
    where = f"get {spec.urls[0]} and put it at {target}" if spec.urls else f"put the weight file at {target}"
    return f"{where}, or give a weight file you have ({option(given_as) + ' PATH' if in_cli() else given_as + '=PATH'})"


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
    given_as: str = "model",
) -> Path:
    """Return the cached file of ``spec``, downloading it first if needed (policy: module doc).

    ``retries``: further attempts per URL after a transient failure (waiting ``backoff``,
    then twice as long each time); ``timeout``: seconds one connect or read may wait;
    ``deadline``: seconds for the whole file (default :func:`download_deadline`);
    ``on_notice``: receives one-line notices; ``what``: how notices and errors name the
    model (default ``"model NAME"``); ``given_as``: the setting that named it (what the advice
    to give a file by hand names). Raises :class:`~uvrsep.hub.DownloadError` (one line).
    """
    target = cached_path(spec, home)
    if target.is_file():
        return target
    what = what or f"model {spec.name}"
    if offline:
        raise DownloadError(
            f"{what} is not in the cache and downloads are off ({option('offline', value=True)}): {_by_hand(spec, target, given_as)}"
        )
    urls = mirror_urls(spec)
    if not urls:
        raise DownloadError(f"{what} has no download URL: {_by_hand(spec, target, given_as)}")
    limit = download_deadline() if deadline is None else deadline
    try:
        return _download_locked(
            spec,
            home,
            target,
            urls,
            limit,
            what=what,
            progress=progress,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            on_notice=on_notice,
            given_as=given_as,
        )
    except UvrsepError:
        raise
    except OSError as exc:  # the cache folder: not writable, disk full, ...
        raise DownloadError(
            f"could not download {what}: cannot write in {target.parent} ({exc.strerror or exc}); "
            f"set UVRSEP_HOME to another folder, or {_by_hand(spec, target, given_as)}"
        ) from None


def _download_locked(
    spec: ModelSpec,
    home: Path | None,
    target: Path,
    urls: list[str],
    limit: float,
    *,
    what: str,
    progress: bool,
    retries: int,
    backoff: float,
    timeout: float,
    on_notice: Notice | None,
    given_as: str = "model",
) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.name, home):
        if target.is_file():  # another process finished it while we waited for the lock
            return target
        size = f" ({human_size(spec.size)})" if spec.size else ""
        _notify(on_notice, f"downloading {what}{size} to {target}")
        part = target.with_name(target.name + ".part")
        digest = reference_digest(spec, home)
        pinned = digest if digest is not None and digest.pinned else None
        stop_at = time.monotonic() + limit
        failures: list[str] = []
        try:
            for url in urls:
                try:
                    problem, actual = _download_from(
                        url,
                        part,
                        spec,
                        pinned,
                        stop_at=stop_at,
                        retries=retries,
                        backoff=backoff,
                        timeout=timeout,
                        progress=progress,
                        on_notice=on_notice,
                        what=what,
                    )
                except OutOfTime:
                    failures.append(f"{_host(url)}: not complete within the {limit:g} s deadline")
                    break
                if problem is None:
                    os.replace(part, target)
                    sidecar(part).unlink(missing_ok=True)
                    if pinned is None:
                        _record_unverified(spec, actual, home, on_notice, what)
                    return target
                failures.append(f"{_host(url)}: {problem}")
            raise DownloadError(
                f"could not download {what} ({'; '.join(failures)}); {_by_hand(spec, target, given_as)}"
            )
        except Exception:  # Ctrl-C, SIGTERM and kills leave the .part to be resumed where proven
            discard(part)
            raise


def _record_unverified(spec: ModelSpec, actual: str, home: Path | None, on_notice: Notice | None, what: str) -> None:
    """Record the sha256 of a download that no pinned digest vouches for, saying so when it
    differs from the copy downloaded before."""
    before = recorded_hashes(home).get(spec.file)
    if before is not None and before.sha256 != actual:
        _notify(
            on_notice,
            f"{what} differs from the copy downloaded before (sha256 {before.sha256[:16]}... then, "
            f"{actual[:16]}... now): unverified (no published checksum)",
        )
    record_hash(spec.file, actual, home, source="download")


def _download_from(
    url: str,
    part: Path,
    spec: ModelSpec,
    pinned: Digest | None,
    *,
    stop_at: float,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
    on_notice: Notice | None,
    what: str,
) -> tuple[str | None, str]:
    """Fetch ``url`` into ``part`` and check it: (None, sha256) when ``part`` is ``spec``'s
    file, else (why not, ...) with ``part`` deleted. Raises :class:`OutOfTime`."""
    attempt, started_over = 0, False
    while True:
        try:
            kept = fetch(
                url,
                part,
                pinned=pinned is not None,
                expected_size=spec.size,
                timeout=timeout,
                stop_at=stop_at,
                progress=progress,
                label=spec.file,
            )
        except Failed as exc:
            discard(part)
            return str(exc), ""
        except Retryable as exc:
            if attempt == retries:
                discard(part)
                return f"{exc} ({retries + 1} attempts)", ""
            delay = backoff * 2**attempt
            if time.monotonic() + delay >= stop_at:
                raise OutOfTime() from None
            attempt += 1
            _notify(
                on_notice,
                f"download of {what} from {_host(url)} failed ({exc}); retry {attempt} of {retries} in {delay:.0f} s",
            )
            time.sleep(delay)
            continue
        problem, actual = _check_download(part, spec, pinned)
        if problem is None:
            return None, actual
        discard(part)
        if kept and not started_over:  # the bytes kept from before may be what is wrong
            started_over = True
            _notify(
                on_notice,
                f"the resumed download of {what} from {_host(url)} is not the file ({problem}); "
                f"downloading it again from the start",
            )
            continue
        _notify(on_notice, f"discarded the download of {what} from {_host(url)}: {problem}")
        return problem, actual
