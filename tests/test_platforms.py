"""What a Linux CI can prove of Windows and macOS: the Windows branches of the process and path
helpers, run against stand-ins for the Windows API (docs: platform notes)."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest

from uvrsep import audio
from uvrsep.audio import files as audio_files


class FakeKernel32:
    """OpenProcess / GetExitCodeProcess / CloseHandle of a machine whose processes are
    ``running`` (exit code STILL_ACTIVE), ``exited`` (handle open, exit code 0) or ``protected``
    (OpenProcess denied); any other pid does not exist."""

    def __init__(self, running=(), exited=(), protected=()):
        self.running, self.exited, self.protected = set(running), set(exited), set(protected)
        self.error = 0
        self.open_handles: set[int] = set()
        self.killed: list[int] = []

    def OpenProcess(self, access, inherit, pid):
        assert access == 0x1000 and inherit is False  # query only: never PROCESS_TERMINATE
        if pid in self.protected:
            self.error = 5  # ERROR_ACCESS_DENIED
            return 0
        if pid not in self.running | self.exited:
            self.error = 87  # ERROR_INVALID_PARAMETER: no such process
            return 0
        handle = 1000 + pid
        self.open_handles.add(handle)
        return handle

    def GetExitCodeProcess(self, handle, code_ref):
        pid = handle - 1000
        ctypes.cast(code_ref, ctypes.POINTER(ctypes.c_ulong)).contents.value = 259 if pid in self.running else 0
        return 1

    def CloseHandle(self, handle):
        self.open_handles.remove(handle)
        return 1

    def TerminateProcess(self, *args):
        self.killed.append(args)
        return 1


def test_windows_process_probe_queries_and_never_terminates():
    kernel = FakeKernel32(running=[10], exited=[11], protected=[12])
    alive = {pid: audio_files._windows_pid_alive(pid, kernel, lambda: kernel.error) for pid in (10, 11, 12, 13)}
    assert alive == {10: True, 11: False, 12: True, 13: False}
    assert kernel.open_handles == set() and kernel.killed == []


def test_the_windows_branch_is_taken_on_windows(monkeypatch):
    """On Windows os.kill(pid, 0) terminates the process: pid_alive must not call it there."""
    kernel = FakeKernel32(running=[4242])
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "WinDLL", lambda name, use_last_error=False: kernel, raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: kernel.error, raising=False)

    def no_kill(*args):
        raise AssertionError("os.kill called on Windows")

    monkeypatch.setattr(os, "kill", no_kill)
    assert audio.pid_alive(4242) is True and audio.pid_alive(4243) is False


def test_posix_probe():
    assert audio.pid_alive(os.getpid()) is True
    assert audio.pid_alive(0) is False and audio.pid_alive(-1) is False


@pytest.mark.parametrize("host", ["WIN-PC:1", "mac.local", "a b/c\\d"])
def test_temporary_names_are_valid_on_ntfs(host, monkeypatch, tmp_path):
    """NTFS refuses ':' and the other reserved characters in names: the owner tag keeps letters
    and digits only, whatever the host name."""
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: host)
    tag = audio.owner_tag()
    assert not set(tag) & set('<>:"/\\|?*') and tag.endswith(f"-{os.getpid()}")
