"""File-system safety for everything uvrsep writes: temporary names that carry their owner,
who owns a temporary file (a live process of this host, or an abandoned one), atomic renames
into place that never replace what another process made, and one-line reasons for failed
writes ("disk full").

Temporary names: ``.<temp_stem(target name)>.<host>-<pid>-<random>.part`` beside the target
(``.part.<ext>`` for ffmpeg encodes, ``.ready`` once complete). They are valid on NTFS (the
host part keeps letters, digits and ``_``) and within 255 bytes for any legal target name.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import AudioWriteError, ConfigError

# -- temporary files owned by a live process ---------------------------------------------------
#
# Temporary names carry their owner (host and pid): a run removes the leftovers of runs that were
# killed, never the live temporary file of another process writing the same folder.

#: A temporary file of another host is taken as abandoned after this long without a write.
FOREIGN_STALE_SECONDS = 24 * 3600


def owner_tag() -> str:
    """``host-pid`` of this process, as embedded in uvrsep's temporary names."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running. POSIX: signal 0 probes it. Windows:
    ``os.kill`` would terminate it, so the process is opened for a query and its exit code read."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - exercised through _windows_pid_alive's tests
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        return _windows_pid_alive(pid, kernel32, ctypes.get_last_error)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


#: Windows API values used by :func:`_windows_pid_alive`.
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_STILL_ACTIVE = 259
_ERROR_ACCESS_DENIED = 5


def _windows_pid_alive(pid: int, kernel32, last_error) -> bool:
    """:func:`pid_alive` on Windows, through ``kernel32`` (OpenProcess, GetExitCodeProcess,
    CloseHandle) and ``last_error()``: a process that cannot be opened for lack of rights
    exists; one that cannot be opened otherwise does not; an open one is alive while its exit
    code is STILL_ACTIVE."""
    import ctypes

    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return last_error() == _ERROR_ACCESS_DENIED
    try:
        code = ctypes.c_ulong(0)
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # cannot tell: never take a live file for abandoned
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def is_abandoned(tag: str, path: Path) -> bool:
    """Whether a temporary file whose name holds ``tag`` (``host-pid-...``) belongs to no live
    process: its owner on this host is gone, or (another host's) it was not written for a day."""
    parts = tag.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host == owner_tag().rsplit("-", 1)[0]:
        return not pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > FOREIGN_STALE_SECONDS
    except OSError:
        return False


def remove_abandoned(folder: Path, prefix: str, suffix: str = "") -> None:
    """Remove ``folder/prefix<owner tag>...suffix`` entries whose owner is gone (see :func:`is_abandoned`)."""
    for stale in folder.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        tag = stale.name[len(prefix) : len(stale.name) - len(suffix) if suffix else None]
        if is_abandoned(tag, stale):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


#: Longest target name (UTF-8 bytes) kept whole in a temporary name: with the owner tag (up to
#: ~60 bytes) and the suffix the temporary name stays within the usual 255-byte limit.
TEMP_NAME_BYTES = 150


def temp_stem(name: str) -> str:
    """The part of a temporary file's name that stands for the target ``name``: the name itself,
    or for a long one its first bytes and a digest of the whole (so any legal output name has a
    legal temporary name, and each target its own)."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= TEMP_NAME_BYTES:
        return name
    head = raw[:120].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


#: uvrsep's temporary output files: ``.<temp_stem(target name)>.<host>-<pid>-<random>.part``
#: (``.part.<ext>`` for ffmpeg encodes), as :func:`temp_beside` makes them; ``.ready`` once complete.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<tag>\w+-\d+-\w+)\.(?:part|ready)(?:\.[^.]+)?$")
#: The suffix of a temporary file once it is complete (see :meth:`AudioStreamWriter.finish`).
READY_SUFFIX = ".ready"


def remove_temporaries(folder: Path, names: Iterable[str], finished_owners: Iterable[str] = ()) -> int:
    """Remove the temporary files of the outputs ``names`` in ``folder`` that no live process
    will finish: their owner is gone (:func:`is_abandoned`), or is one of ``finished_owners``
    (``host-pid`` tags of processes known to be done, e.g. the workers of a finished Ray run, on
    any host). One listing of the folder, whatever the number of names. Returns how many went."""
    names = {temp_stem(n) for n in names}
    finished = set(finished_owners)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["name"] not in names:
            continue
        tag = match["tag"]
        if tag.rsplit("-", 1)[0] in finished or is_abandoned(tag, Path(entry.path)):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def complete_interrupted(targets: Iterable[Path]) -> bool:
    """Finish a set of outputs that a killed run was renaming into place: when some of
    ``targets`` exist and each missing one has a complete (``.ready``) temporary file whose owner
    is gone, rename those into place and return ``True``; otherwise change nothing."""
    targets = [Path(p) for p in targets]
    missing = [p for p in targets if not p.exists()]
    if not missing or len(missing) == len(targets):
        return False
    ready: dict[Path, Path] = {}
    for path in missing:
        prefix = f".{temp_stem(path.name)}."
        found = [
            c
            for c in path.parent.glob(f"{glob.escape(prefix)}*{READY_SUFFIX}")
            if is_abandoned(c.name[len(prefix) : -len(READY_SUFFIX)], c)
        ]
        if not found:
            return False
        ready[path] = max(found, key=lambda c: c.stat().st_mtime_ns)
    for path, tmp in ready.items():
        commit_file(str(tmp), path, overwrite=False)
    return True


def write_error(path: Path, exc: BaseException) -> AudioWriteError:
    """An :class:`AudioWriteError` for a failed write, saying "disk full" when it was."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "System error" in text and _disk_full(path):
        return AudioWriteError(f"{path}: cannot write: disk full (no space left in {path.parent})")
    reason = getattr(exc, "strerror", None) or text or type(exc).__name__
    return AudioWriteError(f"{path}: cannot write ({reason})")


def _disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        return False


def temp_beside(path: Path, suffix: str = ".part") -> str:
    """A new temporary file ``.<name>.<host>-<pid>-<random><suffix>`` next to ``path`` (abandoned
    ones of killed runs removed first; live ones of other processes left alone)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioWriteError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    stem = temp_stem(path.name)
    remove_abandoned(path.parent, f".{stem}.", suffix)
    remove_abandoned(path.parent, f".{stem}.", READY_SUFFIX)  # a killed run's, now superseded
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.{owner_tag()}-", suffix=suffix, dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise write_error(path, exc) from None
        raise AudioWriteError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    # mkstemp makes the file private (0600); outputs get the permissions a plain open() gives.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp_name, 0o666 & ~mask)
    return tmp_name


def commit_file(tmp_name: str, path: Path, overwrite: bool) -> bool:
    """Rename a finished temporary file into place. Without ``overwrite`` an existing target is
    never replaced, even one another process made meanwhile: the temporary file is dropped and
    ``False`` returned (the target is then that process's). ``True``: the target is ours."""
    if overwrite:
        os.replace(tmp_name, path)
        return True
    try:
        os.link(tmp_name, path)  # atomic, and fails if the target exists
    except FileExistsError:
        Path(tmp_name).unlink(missing_ok=True)
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP):
            raise
        if path.exists():  # no hard links on this file system: check, then rename
            Path(tmp_name).unlink(missing_ok=True)
            return False
        os.replace(tmp_name, path)
        return True
    Path(tmp_name).unlink(missing_ok=True)
    return True


def check_output_dir(path: Path, what: str | None = None) -> None:
    """A :class:`ConfigError` unless ``path`` is (or can be made as) a writable folder; nothing
    is created here. ``what`` names it in the message (default: the output folder)."""
    what = what or f"output folder {path}"
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(
            f"{what} is not a folder" if probe == path else f"{what} cannot be made: {probe} is a file, not a folder"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} is not writable" + ("" if probe == path else f" ({probe} is read-only for you)"))
