"""A scriptable HTTP server on 127.0.0.1 serving tiny weight files, and helpers for the tests
that download (tests/test_downloads.py, tests/test_hub.py: never the internet)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from uvrsep import downloads
from uvrsep.network import AsppNetConfig, CascadedASPPNet
from uvrsep.registry import ModelSpec

WIDTH = 4  # a tiny but complete cascaded ASPP net: 1.2 MB in float16


def weight_bytes(width: int = WIDTH, seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    state = CascadedASPPNet(AsppNetConfig(bins=672, channels=width)).state_dict()
    buffer = io.BytesIO()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, buffer)
    return buffer.getvalue()


PAYLOAD = weight_bytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()
HTML = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>rate limited</body></html>\n" * 40


class Server:
    """Serves ``files[path]`` with Range support; ``plan[path]`` scripts the answer per request
    (a list of steps, then "ok"): "500", "429", "truncate" (promise everything, send half, hang
    up), "nolength-half" (no Content-Length, half the file, hang up), "nolength" (no
    Content-Length, the whole file), "huge" (announce 10 GB, then send the file slowly), "html"
    (an HTML error page with 200), "html-octet" (the same page labelled
    application/octet-stream), "drip" (one byte every 20 ms), "loop" (a redirect to itself).
    ``validators[path]`` (header -> value, e.g. {"ETag": '"v1"'}) are sent with the file; a
    request whose If-Range matches none of them gets the whole file (200), as RFC 9110 says.
    ``requests``: (path, Range header) of each request; ``headers``: all of its headers."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list[str]] = {}
        self.validators: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                outer.headers.append(dict(self.headers.items()))
                step = outer.plan.get(self.path, []).pop(0) if outer.plan.get(self.path) else "ok"
                if step in ("500", "429"):
                    self.send_error(int(step))
                    return
                if step == "loop":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if step.startswith("html"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html" if step == "html" else "application/octet-stream")
                    self.send_header("Content-Length", str(len(HTML)))
                    self.end_headers()
                    self.wfile.write(HTML)
                    return
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_file(data, step, outer.validators.get(self.path, {}))

            def send_file(self, data: bytes, step: str, validators: dict[str, str]):
                start = 0
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and (if_range is None or if_range in validators.values()):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                for header, value in validators.items():
                    self.send_header(header, value)
                if step == "huge":
                    self.send_header("Content-Length", str(10 * 10**9))
                elif not step.startswith("nolength"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if step in ("truncate", "nolength-half"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if step in ("drip", "huge"):
                    size = 64 if step == "huge" else 1
                    try:
                        for i in range(0, min(len(body), 500 * size), size):  # at most 10 s
                            self.wfile.write(body[i : i + size])
                            self.wfile.flush()
                            time.sleep(0.02)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(body)
                except OSError:  # the client stopped reading (a size ceiling)
                    pass
                if step == "nolength":
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # shutdown() waits up to one poll interval: 0.5 s by default, for every test
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def clear_network_env(monkeypatch) -> None:
    """Name-resolution and refused-connection tests must reach the resolver / port directly, and
    no user's mirror or deadline may change what a test sees."""
    for var in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        downloads.MIRROR_ENV,
        downloads.DEADLINE_ENV,
    ):
        monkeypatch.delenv(var, raising=False)


@contextlib.contextmanager
def serving() -> Iterator[Server]:
    """A server with the tiny net at /m.pth."""
    srv = Server()
    srv.files["/m.pth"] = PAYLOAD
    try:
        yield srv
    finally:
        srv.close()


def spec_for(server, **kw) -> ModelSpec:
    fields = dict(name="local", file="local.pth", urls=(server.url("/m.pth"),), family="aspp", width=WIDTH)
    fields.update(kw)
    return ModelSpec(**fields)


def fetch(spec, home, notices=None, **kw):
    kw.setdefault("backoff", 0)
    return downloads.download(
        spec, home, progress=False, on_notice=(notices.append if notices is not None else None), **kw
    )


def cache_files(home) -> list[str]:
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there
