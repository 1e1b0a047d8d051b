"""Model downloads against a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from typer.testing import CliRunner

from uvrsep import hub
from uvrsep.cli import app
from uvrsep.network import AsppNetConfig, CascadedASPPNet
from uvrsep.registry import ModelSpec, add_user_model, load_registry

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
    up), "nolength-half" (no Content-Length, half the file, hang up), "html" (an HTML error page
    with 200), "html-octet" (the same page labelled application/octet-stream), "drip" (one byte
    every 20 ms), "loop" (a redirect to itself)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
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
                start = 0
                rng = self.headers.get("Range")
                if rng:
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
                if step != "nolength-half":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if step in ("truncate", "nolength-half"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if step == "drip":
                    try:
                        for i in range(min(len(body), 500)):  # at most 10 s
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(0.02)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy_no_mirror(monkeypatch):
    """Name-resolution and refused-connection tests must reach the resolver / port directly."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                hub.MIRROR_ENV, hub.DEADLINE_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    srv = Server()
    srv.files["/m.pth"] = PAYLOAD
    yield srv
    srv.close()


def spec_for(server, **kw) -> ModelSpec:
    fields = dict(name="local", file="local.pth", urls=(server.url("/m.pth"),), family="aspp", width=WIDTH)
    fields.update(kw)
    return ModelSpec(**fields)


def fetch(spec, home, notices=None, **kw):
    kw.setdefault("backoff", 0)
    return hub.download(spec, home, progress=False, on_notice=(notices.append if notices is not None else None), **kw)


def cache_files(home) -> list[str]:
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


# -- accepted downloads --------------------------------------------------------------------


def test_download_records_hash_then_verifies(server, isolated_cache):
    notices = []
    path = fetch(spec_for(server), isolated_cache, notices)
    assert path.read_bytes() == PAYLOAD and path.parent == isolated_cache / "models"
    assert hub.recorded_hashes(isolated_cache) == {"local.pth": SHA}
    assert hub.verify(spec_for(server), isolated_cache) == (True, "sha256 matches (recorded on first download)")
    assert notices == [f"downloading model local to {path}"]
    assert cache_files(isolated_cache) == ["local.pth", "recorded_sha256.json"]  # no .lock, no .part left
    path.write_bytes(b"tampered")
    assert hub.verify(spec_for(server), isolated_cache)[0] is False
    n = len(server.requests)
    assert fetch(spec_for(server), isolated_cache) == path and len(server.requests) == n  # cached: no request


def test_resume_after_interrupted_transfer(server, isolated_cache):
    part = isolated_cache / "models" / "local.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:300_000])
    path = fetch(spec_for(server, sha256=SHA), isolated_cache)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1][1] == "bytes=300000-"


def test_truncated_transfer_is_resumed_with_a_visible_notice(server, isolated_cache):
    server.plan["/m.pth"] = ["truncate"]
    notices = []
    path = fetch(spec_for(server, sha256=SHA), isolated_cache, notices)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"
    assert len(notices) == 2 and "retry 1 of 3" in notices[1] and "transfer" in notices[1]


def test_500_then_success_on_retry(server, isolated_cache):
    server.plan["/m.pth"] = ["500", "500"]
    notices = []
    path = fetch(spec_for(server, sha256=SHA), isolated_cache, notices)
    assert path.read_bytes() == PAYLOAD and len(server.requests) == 3
    assert [n.split("; ")[-1] for n in notices[1:]] == ["retry 1 of 3 in 0 s", "retry 2 of 3 in 0 s"]
    assert all("HTTP 500" in n for n in notices[1:])


def test_second_url_is_tried(server, isolated_cache):
    spec = spec_for(server, urls=(server.url("/missing.pth"), server.url("/m.pth")))
    assert fetch(spec, isolated_cache).read_bytes() == PAYLOAD


def test_known_size_without_content_length_resumes_a_short_transfer(server, isolated_cache):
    server.plan["/m.pth"] = ["nolength-half"]
    path = fetch(spec_for(server, size=len(PAYLOAD)), isolated_cache)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"


def test_legacy_format_weight_files_are_accepted(server, isolated_cache):
    torch.manual_seed(0)
    state = CascadedASPPNet(AsppNetConfig(bins=672, channels=WIDTH)).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)  # UVR's 2020-2021 files
    server.files["/old.pth"] = buffer.getvalue()
    assert fetch(spec_for(server, urls=(server.url("/old.pth"),)), isolated_cache).is_file()


# -- failures: fast, few, visible, one line, nothing left behind ------------------------------


def test_retries_stop_after_three_with_one_line_and_no_cached_file(server, isolated_cache):
    server.plan["/m.pth"] = ["500"] * 10
    notices = []
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec_for(server), isolated_cache, notices)  # the default number of retries
    assert len(server.requests) == 4 and len(notices) == 1 + 3
    message = str(err.value)
    assert "\n" not in message and message.count(server.url("/m.pth")) == 1
    assert "HTTP 500 (4 attempts)" in message and str(isolated_cache / "models" / "local.pth") in message
    assert cache_files(isolated_cache) == []  # no model, no lock file, no hash


def test_always_truncated_gives_up_keeping_the_part_for_later(server, isolated_cache):
    server.plan["/m.pth"] = ["truncate"] * 10
    with pytest.raises(hub.DownloadError, match="could not download model local"):
        fetch(spec_for(server), isolated_cache, retries=2)
    assert cache_files(isolated_cache) == ["local.pth.part"]


def test_404_names_the_url_once_and_where_to_put_the_file(server, isolated_cache):
    spec = spec_for(server, urls=(server.url("/missing.pth"),))
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec, isolated_cache)
    message = str(err.value)
    assert "HTTP 404" in message and message.count(server.url("/missing.pth")) == 1
    assert f"put it at {isolated_cache / 'models' / 'local.pth'}, or use --model PATH" in message
    assert len(server.requests) == 1  # a 404 is not retried
    assert cache_files(isolated_cache) == []


def test_name_resolution_failure_fails_fast(isolated_cache):
    spec = ModelSpec(name="far", file="far.pth", urls=("http://nonexistent.invalid/far.pth",))
    notices = []
    start = time.monotonic()
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec, isolated_cache, notices, backoff=30)  # a retry would sleep 30 s
    assert time.monotonic() - start < 10
    assert "does not resolve" in str(err.value) and len(notices) == 1  # "downloading ...", no retry
    assert cache_files(isolated_cache) == []


def test_refused_connection_fails_fast(isolated_cache):
    url = f"http://127.0.0.1:{closed_port()}/x.pth"
    notices = []
    start = time.monotonic()
    with pytest.raises(hub.DownloadError, match="connection refused"):
        fetch(ModelSpec(name="x", file="x.pth", urls=(url,)), isolated_cache, notices, backoff=30)
    assert time.monotonic() - start < 10 and len(notices) == 1
    assert cache_files(isolated_cache) == []


def test_slow_drip_hits_the_deadline(server, isolated_cache):
    server.plan["/m.pth"] = ["drip"]
    start = time.monotonic()
    with pytest.raises(hub.DownloadError, match="not complete within the 1 s deadline"):
        fetch(spec_for(server), isolated_cache, deadline=1, timeout=1)
    assert time.monotonic() - start < 4
    assert cache_files(isolated_cache) == ["local.pth.part"]  # resumable later


def test_deadline_from_the_environment(monkeypatch):
    monkeypatch.setenv(hub.DEADLINE_ENV, "12.5")
    assert hub.download_deadline() == 12.5
    monkeypatch.setenv(hub.DEADLINE_ENV, "soon")
    with pytest.raises(hub.UvrsepError, match="UVRSEP_DOWNLOAD_DEADLINE"):
        hub.download_deadline()
    monkeypatch.delenv(hub.DEADLINE_ENV)
    assert hub.download_deadline() == hub.DEFAULT_DEADLINE


def test_redirect_loop_is_one_line(server, isolated_cache):
    server.plan["/m.pth"] = ["loop"] * 50
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec_for(server), isolated_cache)
    assert "redirect loop" in str(err.value) and "\n" not in str(err.value)


# -- bad downloads are discarded, nothing recorded ----------------------------------------------


@pytest.mark.parametrize("step, reason", [("html", r"web page \(text/html\)"), ("html-octet", "it is a web page")])
def test_html_error_page_with_200_is_not_stored(server, isolated_cache, step, reason):
    server.plan["/m.pth"] = [step]
    with pytest.raises(hub.DownloadError, match=reason):
        fetch(spec_for(server), isolated_cache)
    assert cache_files(isolated_cache) == []
    assert hub.verify(spec_for(server), isolated_cache) == (None, "not downloaded")


def test_response_without_length_closed_half_way_is_discarded(server, isolated_cache):
    server.plan["/m.pth"] = ["nolength-half"]
    notices = []
    with pytest.raises(hub.DownloadError, match="not a readable PyTorch weight file"):
        fetch(spec_for(server), isolated_cache, notices)
    assert cache_files(isolated_cache) == [] and hub.recorded_hashes(isolated_cache) == {}
    assert notices[-1].startswith("discarded the download of model local from 127.0.0.1")
    assert fetch(spec_for(server), isolated_cache).read_bytes() == PAYLOAD  # the next run downloads again


def test_weights_of_another_width_are_discarded(server, isolated_cache):
    with pytest.raises(hub.DownloadError, match="holds a cascaded ASPP net .width 4.*not the aspp family, width 8"):
        fetch(spec_for(server, width=8), isolated_cache)
    assert cache_files(isolated_cache) == []


def test_wrong_size_is_refused_before_the_transfer(server, isolated_cache):
    with pytest.raises(hub.DownloadError, match=f"offers {len(PAYLOAD)} bytes; the file has 1000"):
        fetch(spec_for(server, size=1000), isolated_cache)
    assert cache_files(isolated_cache) == []


def test_wrong_sha256_is_rejected_and_cache_untouched(server, isolated_cache):
    models = isolated_cache / "models"
    models.mkdir(parents=True)
    (models / "other.pth").write_bytes(b"keep me")
    with pytest.raises(hub.DownloadError, match="differs from 0000"):
        fetch(spec_for(server, sha256="0" * 64), isolated_cache)
    assert cache_files(isolated_cache) == ["other.pth"]
    assert (models / "other.pth").read_bytes() == b"keep me"


def test_bad_mirror_file_falls_back_to_the_registry_url(server, isolated_cache, monkeypatch):
    server.files["/mirror/local.pth"] = b"\x00garbage" * 100
    monkeypatch.setenv(hub.MIRROR_ENV, server.url("/mirror"))
    path = fetch(spec_for(server), isolated_cache)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/mirror/local.pth", "/mirror/m.pth", "/m.pth"]  # 2nd: 404


# -- locking, mirror, default model -----------------------------------------------------------


def test_concurrent_downloads_of_the_same_model(server, isolated_cache):
    results, errors = [], []

    def worker():
        try:
            results.append(fetch(spec_for(server, sha256=SHA), isolated_cache))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert results[0].read_bytes() == PAYLOAD
    assert sum(1 for p, _ in server.requests if p == "/m.pth") == 1  # the others waited and reused it
    assert cache_files(isolated_cache) == ["local.pth"]  # the lock file is gone


def test_lock_removed_by_the_holder_still_excludes(tmp_path):
    """A waiter that wakes up on a removed lock file takes the new one instead of running
    beside the next holder."""
    target = tmp_path / "m.pth"
    inside, order = threading.Semaphore(0), []

    def hold(tag):
        with hub._locked(target):
            order.append(f"{tag}+")
            inside.release()
            time.sleep(0.1)
            order.append(f"{tag}-")

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(order) == 6 and all(order[i][:-1] == order[i + 1][:-1] for i in range(0, 6, 2))
    assert not (tmp_path / "m.pth.lock").exists()


def test_mirror_is_tried_first(server, isolated_cache, monkeypatch):
    server.files["/mirror/local.pth"] = PAYLOAD
    monkeypatch.setenv(hub.MIRROR_ENV, server.url("/mirror/"))
    spec = spec_for(server, urls=("http://nonexistent.invalid/lj/resolve/main/local.pth",))
    assert fetch(spec, isolated_cache).read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/mirror/local.pth"]


def test_mirror_with_the_hosts_layout(server, isolated_cache, monkeypatch):
    """hf-mirror.com serves Hugging Face's paths: {mirror}/{file} misses, {mirror}/{path} works."""
    server.files["/lj/resolve/main/uvr5/local.pth"] = PAYLOAD
    monkeypatch.setenv(hub.MIRROR_ENV, server.url())
    spec = spec_for(server, urls=("https://nonexistent.invalid/lj/resolve/main/uvr5/local.pth",))
    assert fetch(spec, isolated_cache).read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/local.pth", "/lj/resolve/main/uvr5/local.pth"]


def test_default_model_downloads_once_with_one_notice(server, isolated_cache):
    add_user_model(isolated_cache, ModelSpec(
        name="HP2_all_vocals", file="HP2_all_vocals.pth", urls=(server.url("/m.pth"),), family="aspp", width=WIDTH,
        params="4band_v2",
    ))
    notices = []
    resolved = hub.resolve_model(None, progress=False, on_notice=notices.append)
    target = isolated_cache / "models" / "HP2_all_vocals.pth"
    assert resolved.path == target and resolved.spec.name == "HP2_all_vocals" and target.read_bytes() == PAYLOAD
    assert notices == [f"downloading the default model HP2_all_vocals to {target}"]
    assert hub.resolve_model(None, on_notice=notices.append).path == target and len(notices) == 1


def test_default_model_offline_or_unreachable_says_what_to_get_and_where(isolated_cache, monkeypatch):
    target = isolated_cache / "models" / "HP2_all_vocals.pth"
    url = load_registry().get("HP2_all_vocals").urls[0]
    with pytest.raises(hub.DownloadError) as err:
        hub.resolve_model(None, offline=True)
    assert str(err.value) == (f"the default model HP2_all_vocals is not in the cache and downloads are off "
                              f"(--offline): get {url} and put it at {target}, or use --model PATH")
    monkeypatch.setenv(hub.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(hub.DownloadError) as err:
        hub.resolve_model(None, progress=False, on_notice=lambda _: None)
    message = str(err.value)
    assert message.startswith("could not download the default model HP2_all_vocals (127.0.0.1:")
    assert "connection refused" in message and message.count(url) == 1 and "\n" not in message
    assert message.endswith(f"get {url} and put it at {target}, or use --model PATH")
    assert not target.parent.exists() or cache_files(isolated_cache) == []


def test_registry_names_a_default():
    registry = load_registry()
    assert registry.default == "HP2_all_vocals" and registry.default_spec().name == "HP2_all_vocals"


@pytest.mark.slow
def test_a_mirror_cannot_substitute_a_pinned_model(server, isolated_cache, monkeypatch):
    """RVC's six files have published sha256 sums (RVC's sha256.env): a mirror (a third party)
    serving another file, even a valid net of the right width, is refused and nothing is kept."""
    server.files["/HP2_all_vocals.pth"] = weight_bytes(width=32)
    monkeypatch.setenv(hub.MIRROR_ENV, server.url())
    with pytest.raises(hub.DownloadError, match="sha256 .* differs from 39796caa"):
        hub.resolve_model(None, progress=False, on_notice=lambda _: None)
    assert cache_files(isolated_cache) == []
    assert load_registry().get("HP2_all_vocals").sha256 == "39796caa5db18d7f9382d8ac997ac967bfd85f7761014bb807d2543cc844ef05"


def test_offline_refuses_with_instructions(isolated_cache):
    spec = ModelSpec(name="HP2_all_vocals", file="HP2_all_vocals.pth", urls=("http://127.0.0.1:9/x",))
    with pytest.raises(hub.DownloadError, match="downloads are off.*put it at"):
        hub.download(spec, isolated_cache, offline=True)


def test_unwritable_cache_is_one_line(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").write_text("a file where the folder should be")
    with pytest.raises(hub.DownloadError, match="cannot write in .*models.*set UVRSEP_HOME"):
        fetch(spec_for(server), home)


def test_cache_folder_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UVRSEP_HOME", str(tmp_path / "h"))
    assert hub.home_dir() == tmp_path / "h"
    monkeypatch.delenv("UVRSEP_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.home_dir() == tmp_path / "xdg" / "uvrsep"


def test_file_names_cannot_leave_the_cache():
    for bad in ("../../escaped.pth", "/etc/x.pth", "a/b.pth", "..", ".hidden.pth", "a\\b.pth", ""):
        with pytest.raises(hub.UvrsepError, match="plain file name"):
            ModelSpec(name="x", file=bad)


# -- the registry ------------------------------------------------------------------------------


def test_registry_entries_are_consistent():
    from uvrsep.config import list_band_layouts

    registry = load_registry()
    layouts = set(list_band_layouts())
    assert len(registry.models) >= 30
    for spec in registry.models:
        assert spec.params is None or spec.params in layouts, spec.name
        assert spec.urls and all(u.startswith("https://") for u in spec.urls)
        assert spec.file.endswith(".pth")
        assert spec.size is None or spec.size > 1_000_000
    for entry in registry.uvr_hashes.values():
        assert entry["params"] in layouts
    assert registry.get("HP3").stems == ("vocals", "instrumental")
    assert registry.get("VR-DeEchoDeReverb.pth").stems == ("no_reverb", "reverb")
    assert registry.get("UVR-DeNoise").stems == ("noise", "no_noise")
    assert registry.get("UVR-DeEcho-DeReverb").size == 223650277


def test_uvr_hash_identifies_user_files(tmp_path, monkeypatch):
    from uvrsep import registry as reg

    big = tmp_path / "big.pth"
    data = bytes(range(256)) * (45 * 1024)  # 11.25 MiB: only the last 10,000 KiB count
    big.write_bytes(data)
    assert reg.uvr_hash(big) == hashlib.md5(data[-10_000 * 1024 :]).hexdigest()
    small = tmp_path / "small.pth"
    small.write_bytes(b"abc")
    assert reg.uvr_hash(small) == hashlib.md5(b"abc").hexdigest()
    table = load_registry()
    table.uvr_hashes[reg.uvr_hash(big)] = {"params": "4band_44100", "primary": "Vocals"}
    assert table.identify_by_uvr_hash(big)["params"] == "4band_44100"
    assert table.identify_by_uvr_hash(small) is None


def test_separator_uses_uvr_hash_for_unknown_files(tmp_path, monkeypatch):
    from uvrsep import Separator
    from uvrsep import registry as reg

    weights = tmp_path / "mystery.pth"
    weights.write_bytes(PAYLOAD)
    real = reg.load_registry

    def patched(home=None):
        table = real(home)
        table.uvr_hashes[reg.uvr_hash(weights)] = {"params": "4band_44100", "primary": "Vocals"}
        return table

    monkeypatch.setattr(reg, "load_registry", patched)
    sep = Separator(weights, device="cpu")
    assert sep.layout.name == "4band_44100" and sep.primary == "vocals"
    assert any("UVR's model hash" in note for note in sep.notes)


# -- the `models` commands ----------------------------------------------------------------------


@pytest.mark.slow
def test_cli_download_and_separate_by_name(server, isolated_cache, tmp_path, short_wav):
    server.files["/tiny.pth"] = PAYLOAD
    add_user_model(isolated_cache, ModelSpec(
        name="tiny-local", file="tiny-local.pth", urls=(server.url("/tiny.pth"),), family="aspp", width=WIDTH,
        params="4band_v2", primary="Vocals",
    ))
    runner = CliRunner()
    out = tmp_path / "out"
    offline = runner.invoke(app, ["separate", str(short_wav), "-m", "tiny-local", "--offline", "-o", str(out)])
    assert offline.exit_code == 1 and "downloads are off" in offline.output
    download = runner.invoke(app, ["models", "download", "tiny-local"])
    assert download.exit_code == 0 and "note: downloading model tiny-local to " in download.output
    result = runner.invoke(app, ["separate", str(short_wav), "-m", "tiny-local", "--offline", "-o", str(out),
                                 "--stems", "vocals"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip_vocals.wav"]  # primary "Vocals": masked stem
    info = runner.invoke(app, ["models", "info", "tiny-local"]).output
    assert "recorded on first download" in info
    assert runner.invoke(app, ["models", "verify"]).exit_code == 0
    assert runner.invoke(app, ["models", "path", "tiny-local"]).output.strip().endswith("tiny-local.pth")


def test_cli_download_failure_is_one_line_with_visible_retries(server, isolated_cache, monkeypatch):
    monkeypatch.setattr(hub.time, "sleep", lambda seconds: None)  # the CLI's backoff: 1, 2, 4 s
    server.plan["/m.pth"] = ["429"] * 10
    add_user_model(isolated_cache, spec_for(server))
    result = CliRunner().invoke(app, ["models", "download", "local"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert [line.split(" (")[0] for line in lines[1:4]] == ["note: download of model local from 127.0.0.1:"
                                                           f"{server.httpd.server_address[1]} failed"] * 3
    assert lines[-1].startswith("error: could not download model local") and len(lines) == 5
    assert not (isolated_cache / "models" / "local.pth.lock").exists()


def test_models_list_has_a_header_a_legend_and_the_default(isolated_cache):
    (isolated_cache / "models").mkdir(parents=True)
    (isolated_cache / "models" / "HP3_all_vocals.pth").write_bytes(b"x")
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "NET", "BAND", "CONFIG", "STEMS", "(MASKED/RESIDUAL)", "CACHED"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["HP2_all_vocals"].split()[1] == "*" and rows["HP2_all_vocals"].endswith(" no")
    assert rows["HP3_all_vocals"].endswith(" yes")
    assert lines[-2].startswith("* the default model, used when no --model is given")
    assert lines[-1].startswith(f"CACHED yes: the weight file is in {isolated_cache / 'models'}")


def test_import_records_what_will_be_used(isolated_cache, tmp_path):
    weights = tmp_path / "my_model.pth"
    weights.write_bytes(PAYLOAD)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "import", str(weights)])
    assert result.exit_code == 0, result.output
    assert f"cascaded ASPP net (width {WIDTH}" in result.output and "band config 4band_v2 (the family default)" in result.output
    spec = load_registry(isolated_cache).get("my_model")
    assert (spec.family, spec.width, spec.params, spec.source) == ("aspp", WIDTH, "4band_v2", "user")
    row = next(line for line in runner.invoke(app, ["models", "list"]).output.splitlines() if line.startswith("my_model"))
    assert "4band_v2" in row and "hash table" not in row and row.endswith(" yes")
    info = runner.invoke(app, ["models", "info", "my_model"]).output
    assert f"sha256        {hashlib.sha256(PAYLOAD).hexdigest()} (recorded on import)" in info
    assert "first download" not in info and "band config: the family default" in info
    assert runner.invoke(app, ["models", "import", str(weights)]).exit_code == 1  # exists: needs --overwrite
    explicit = runner.invoke(app, ["models", "import", str(weights), "--name", "other", "--params", "4band_44100"])
    assert explicit.exit_code == 0 and "band config 4band_44100 (given on import)" in explicit.output


def test_legacy_user_entry_shows_the_family_default(isolated_cache):
    add_user_model(isolated_cache, ModelSpec(name="older", file="older.pth", family="aspp", width=16))
    row = next(line for line in CliRunner().invoke(app, ["models", "list"]).output.splitlines()
               if line.startswith("older"))
    assert "4band_v2 (family default)" in row and "hash table" not in row


@pytest.mark.parametrize("name", ["../../escaped", "sub/dir", ".hidden", "..", "a\\b"])
def test_import_name_must_be_a_plain_file_name(isolated_cache, tmp_path, name):
    weights = tmp_path / "w.pth"
    weights.write_bytes(PAYLOAD)
    result = CliRunner().invoke(app, ["models", "import", str(weights), "--name", name])
    assert result.exit_code == 1 and "must be a plain file name" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (isolated_cache / "models").exists() and not (isolated_cache.parent / "escaped.pth").exists()


def test_unknown_name_suggests(isolated_cache):
    result = CliRunner().invoke(app, ["models", "info", "HP2_all_vocal"])
    assert result.exit_code == 1 and "did you mean HP2_all_vocals" in result.output


@pytest.mark.slow
def test_bare_separate_command_uses_the_default_model(server, isolated_cache, tmp_path, monkeypatch):
    """`uvrsep separate song.wav`, no flags: the registry's default (here served from 127.0.0.1)
    is downloaded once with one notice, and the two stems land in the current folder."""
    import numpy as np
    import soundfile as sf

    add_user_model(isolated_cache, ModelSpec(
        name="HP2_all_vocals", file="HP2_all_vocals.pth", urls=(server.url("/m.pth"),), family="aspp", width=WIDTH,
        params="4band_v2",
    ))
    monkeypatch.chdir(tmp_path)
    sf.write("song.wav", (0.1 * np.sin(np.arange(22050) / 10.0)).astype(np.float32), 44100)
    runner = CliRunner()
    result = runner.invoke(app, ["separate", "song.wav"])
    assert result.exit_code == 0, result.output
    target = isolated_cache / "models" / "HP2_all_vocals.pth"
    assert result.output.count(f"downloading the default model HP2_all_vocals to {target}") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav", "song_instrumental.wav", "song_vocals.wav"]
    n = len(server.requests)
    result = runner.invoke(app, ["separate", "song.wav", "--overwrite"])
    assert result.exit_code == 0 and "downloading" not in result.output and len(server.requests) == n
    result = runner.invoke(app, ["separate", "song.wav", "-o", "other", "--offline"])
    assert result.exit_code == 0, result.output  # cached: offline is fine
