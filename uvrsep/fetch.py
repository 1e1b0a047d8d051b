"""One URL into a ``<file>.part``: the HTTP transfer of :func:`uvrsep.downloads.download`.

The rules (module doc of :mod:`uvrsep.downloads`): a ``.part`` is continued with ``Range`` only
when the server proves it is the same file (``If-Range`` with the validator kept in
``<file>.part.json``) or a pinned sha256 will check the result; the size ceiling is enforced on
what is announced and on what arrives; each failure is classified as worth a retry
(:class:`Retryable`), fatal for this URL (:class:`Failed`) or past the file's deadline
(:class:`OutOfTime`).
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .hub import CHUNK, human_size

USER_AGENT = "uvrsep (model download)"
#: The ceiling for a model whose size the registry does not give.
MAX_DOWNLOAD_BYTES = 2_000_000_000


class Retryable(Exception):
    """A transient failure: worth another attempt at the same URL."""


class Failed(Exception):
    """This URL will not work now: go to the next one."""


class OutOfTime(Exception):
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


# -- the .part file and what proves it can be continued -------------------------------------------


def sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def discard(part: Path) -> None:
    """Delete a partial download and its validator, so the next transfer starts clean."""
    part.unlink(missing_ok=True)
    sidecar(part).unlink(missing_ok=True)


def _validator(headers) -> str | None:
    """What the server offers to prove a later range comes from the same file: a strong ETag
    (a weak one may not be used in If-Range), else Last-Modified."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return (headers.get("Last-Modified") or "").strip() or None


def _saved_validator(part: Path, url: str) -> str | None:
    """The validator saved beside ``part`` when it came from ``url`` (else None)."""
    try:
        saved = json.loads(sidecar(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("url") != url or not isinstance(saved.get("validator"), str):
        return None
    return saved["validator"]


def _resume_point(part: Path, url: str, pinned: bool) -> tuple[int, dict[str, str]]:
    """(bytes of ``part`` to keep, the Range / If-Range headers asking for the rest). A part
    is kept only when the server can prove the rest belongs to it (a validator it gave for
    ``url``) or when the result will be checked against a pinned sha256; else it is deleted."""
    size = part.stat().st_size if part.is_file() else 0
    validator = _saved_validator(part, url) if size else None
    if size == 0 or (validator is None and not pinned):
        discard(part)
        return 0, {}
    headers = {"Range": f"bytes={size}-"}
    if validator is not None:
        headers["If-Range"] = validator
    return size, headers


def _range_of(content_range: str) -> tuple[int | None, int | None]:
    """(first byte, total) of ``bytes A-B/TOTAL`` or ``bytes */TOTAL``; None where absent."""
    unit, _, spec = content_range.strip().partition(" ")
    if unit.lower() != "bytes" or "/" not in spec:
        return None, None
    span, _, total = spec.partition("/")
    first = span.split("-", 1)[0].strip()
    return (int(first) if first.isdigit() else None), (int(total) if total.strip().isdigit() else None)


# -- one transfer ---------------------------------------------------------------------------------


def _open(url: str, headers: dict[str, str], *, timeout: float, stop_at: float, part: Path, start: int):
    """The server's response, or None when a resumed ``part`` is already the whole file (416 with
    a matching validator). Raises :class:`Retryable` or :class:`Failed`."""
    wait = max(0.05, min(timeout, stop_at - time.monotonic()))
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=wait)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and start:  # the range starts at the end: nothing left to fetch
            total = _range_of(exc.headers.get("Content-Range", ""))[1]
            if total is None or total == start:
                return None
            discard(part)
            raise Retryable(f"the server has {total} bytes, fewer than the {start} already fetched") from None
        if 300 <= exc.code < 400:
            raise Failed(f"redirect loop (HTTP {exc.code}, too many redirects)") from None
        if exc.code >= 500 or exc.code in (408, 429):
            raise Retryable(f"HTTP {exc.code}") from None
        raise Failed(f"HTTP {exc.code} {str(exc.reason).splitlines()[0] if exc.reason else ''}".strip()) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason, retry = _network_reason(exc)
        raise (Retryable if retry else Failed)(reason) from None


def _begin(
    response, part: Path, url: str, start: int, *, expected_size: int | None, ceiling: int
) -> tuple[int, int | None]:
    """Check a response's headers before reading its body: (byte of ``part`` it continues from,
    the file's total size or None). A 200 starts over from 0 (the file changed, or the server
    ignores ranges) and saves its validator beside ``part``. Raises :class:`Failed` or
    :class:`Retryable` without reading the body."""
    if response.headers.get_content_type() == "text/html":
        raise Failed("the server sent a web page (text/html), not the weight file")
    first, total = _range_of(response.headers.get("Content-Range", "")) if response.status == 206 else (None, None)
    if response.status == 206 and first != start:
        discard(part)
        raise Retryable(f"the server answered a range from byte {first}, not {start}")
    if response.status != 206:
        start, total = 0, None
    if total is None:
        length = (response.headers.get("Content-Length") or "").strip()
        total = int(length) + start if length.isdigit() else None
    if total is not None and expected_size is not None and total != expected_size:
        raise Failed(f"the server offers {total} bytes; the file has {expected_size}")
    if total is not None and total > ceiling:
        raise Failed(f"the server offers {total} bytes, more than the {human_size(ceiling)} a model may have")
    if start == 0:
        part.write_bytes(b"")  # first empty the file, then save what proves its bytes' origin
        validator = _validator(response.headers)
        if validator is None:
            sidecar(part).unlink(missing_ok=True)
        else:
            sidecar(part).write_text(json.dumps({"url": url, "validator": validator}), encoding="utf-8")
    return start, total


def fetch(
    url: str,
    part: Path,
    *,
    pinned: bool,
    expected_size: int | None,
    timeout: float,
    stop_at: float,
    progress: bool,
    label: str,
) -> bool:
    """Bring ``part`` up to ``url``'s whole file, continuing it where proven (policy: module
    doc). Returns whether bytes fetched before were kept. Raises :class:`Retryable`,
    :class:`Failed` or :class:`OutOfTime`; a full disk raises its OSError."""
    start, headers = _resume_point(part, url, pinned)
    response = _open(
        url, {"User-Agent": USER_AGENT, **headers}, timeout=timeout, stop_at=stop_at, part=part, start=start
    )
    if response is None:
        return True
    ceiling = expected_size if expected_size is not None else MAX_DOWNLOAD_BYTES
    with response:
        start, total = _begin(response, part, url, start, expected_size=expected_size, ceiling=ceiling)
        received = start
        with (
            open(part, "ab") as out,
            tqdm(
                total=total if total is not None else expected_size,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=label,
                disable=None if progress else True,
                leave=False,
            ) as bar,
        ):
            while True:
                if time.monotonic() >= stop_at:
                    raise OutOfTime()
                try:
                    block = response.read1(CHUNK)  # returns what has arrived: the deadline holds
                except (http.client.HTTPException, OSError) as exc:
                    raise Retryable(f"transfer interrupted ({type(exc).__name__})") from None
                if not block:
                    break
                if received + len(block) > ceiling:
                    raise Failed(
                        f"the server sent more than the {human_size(ceiling)} a model may have"
                        if expected_size is None
                        else f"the server sent more than the file's {expected_size} bytes"
                    )
                out.write(block)
                received += len(block)
                bar.update(len(block))
    total = total if total is not None else expected_size
    if total is not None and received < total:
        raise Retryable(f"transfer ended at {received} of {total} bytes")
    return start > 0
