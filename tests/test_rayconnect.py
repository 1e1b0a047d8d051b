"""Starting and joining Ray, without Ray: the address, the deadline, the probe of an address, Ray's
output kept off the terminal, and no use of Ray's private modules anywhere in uvrsep.
(tests/test_ray.py runs the subprocess checks that need Ray installed.)"""

from __future__ import annotations

import ast
import os
import socket
import threading
import time
from pathlib import Path

import pytest

import uvrsep
from uvrsep.errors import ConfigError
from uvrsep.rayconnect import (
    CONNECT_DEADLINE_S,
    DEADLINE_ENV,
    DEBUG_ENV,
    _probe_target,
    _ray_output_hidden,
    check_address,
    connect_deadline,
    reach,
    run_within,
)

PACKAGE = Path(uvrsep.__file__).parent


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def private_ray_uses(source: str) -> list[str]:
    """Every use of a private part of Ray in ``source``: a module or attribute of ``ray`` whose
    name starts with ``_`` (dunders such as ``__version__`` aside), imported or reached, and
    ``_``-arguments of ``ray.*`` calls."""
    found = []

    def private(dotted: str) -> bool:
        parts = dotted.split(".")
        return parts[0] == "ray" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"from {node.module} import {a.name}" for a in node.names if private(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Attribute) and (dotted := _dotted(node)) and private(dotted):
            found.append(dotted)
        elif isinstance(node, ast.Call) and (dotted := _dotted(node.func) or "").startswith("ray."):
            found += [f"{dotted}({k.arg}=...)" for k in node.keywords if k.arg and k.arg.startswith("_")]
    return found


def test_the_checker_sees_private_uses():
    assert private_ray_uses("from ray._private import ray_constants\nray_constants.X = 1") == [
        "from ray._private import ray_constants"
    ]
    assert private_ray_uses("import ray._private.services") == ["import ray._private.services"]
    assert private_ray_uses("import ray\nray._private.ray_constants.ENABLE_RAY_CLUSTER = False")
    assert private_ray_uses("import ray\nray.init(_system_config={})") == ["ray.init(_system_config=...)"]
    assert not private_ray_uses("import ray\nray.init(logging_level=40)\nv = ray.__version__\nself._ray = 1")


def test_uvrsep_never_touches_rays_private_modules():
    """Ray is used through its documented settings only (issue 26): no module of uvrsep imports,
    reads or changes a private part of Ray (today's cluster.py set
    ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` at run time)."""
    uses = {
        path.relative_to(PACKAGE).as_posix(): private_ray_uses(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert {name: found for name, found in uses.items() if found} == {}
    assert {"cluster.py", "clusterplan.py", "rayconnect.py", "cli/separate.py"} <= set(uses)


def test_addresses_need_a_real_port():
    for bad in ("head:0", "head:65536", "ray://head:99999", "[::1]:0"):
        with pytest.raises(ConfigError, match="the port must be 1 to 65535"):
            check_address(bad)
    assert check_address("head:65535") == "head:65535"


def test_probe_targets(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _probe_target("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert _probe_target("ray://head-node:10001") == ("head-node", 10001)
    assert _probe_target("[::1]:6379") == ("::1", 6379)
    assert _probe_target("auto") is None  # Ray finds it: bounded by the deadline only
    monkeypatch.setenv("RAY_ADDRESS", "head:6380")  # Ray's documented variable, read by ray.init("auto")
    assert _probe_target("auto") == ("head", 6380)


def test_deadline_and_its_override(monkeypatch):
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert connect_deadline() == CONNECT_DEADLINE_S == 30.0
    monkeypatch.setenv(DEADLINE_ENV, " 2.5 ")
    assert connect_deadline() == 2.5
    for bad in ("0", "-1", "abc", "inf", "nan", "1e999"):
        monkeypatch.setenv(DEADLINE_ENV, bad)
        with pytest.raises(ConfigError, match=f"{DEADLINE_ENV}=.*not a positive number of seconds"):
            connect_deadline()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reach_says_why_an_address_cannot_be_reached():
    port = _closed_port()
    assert reach("127.0.0.1", port, 5) == f"nothing listens on port {port} of 127.0.0.1 (connection refused)"
    assert reach("nosuchhost.invalid", 6379, 5) == "the name nosuchhost.invalid does not resolve"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert reach("127.0.0.1", server.getsockname()[1], 5) is None


def test_run_within_returns_raises_or_gives_up():
    assert run_within(5, lambda: None, late=lambda: None) is True

    def fails():
        raise ConnectionError("no GCS")

    with pytest.raises(ConnectionError, match="no GCS"):
        run_within(5, fails, late=lambda: None)
    release, lately = threading.Event(), threading.Event()
    start = time.monotonic()
    assert run_within(0.2, release.wait, late=lately.set) is False
    assert time.monotonic() - start < 2
    release.set()  # the abandoned work succeeds after all: undone by `late`
    assert lately.wait(5)


def test_rays_native_output_is_hidden_unless_debugging(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with _ray_output_hidden():
        os.write(2, b"[2026-01-01 00:00:00,000 E 1 1] core_worker.cc:1: native\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    monkeypatch.setenv(DEBUG_ENV, "1")
    with _ray_output_hidden():
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"
