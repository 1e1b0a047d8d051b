"""Model downloads against a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import random_net
from uvrsep import hub
from uvrsep.cli import app
from uvrsep.registry import ModelSpec, add_user_model, load_registry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Serves ``files[path]`` with Range support; ``plan[path]`` scripts failures per request."""

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
                if step == "500":
                    self.send_error(500)
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
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if step == "truncate":  # promise everything, send half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    srv.files["/m.pth"] = PAYLOAD
    yield srv
    srv.close()


def spec_for(server, **kw) -> ModelSpec:
    fields = dict(name="local", file="local.pth", urls=(server.url("/m.pth"),))
    fields.update(kw)
    return ModelSpec(**fields)


def fetch(spec, home, **kw):
    return hub.download(spec, home, progress=False, backoff=0, **kw)


def test_download_records_hash_then_verifies(server, isolated_cache):
    path = fetch(spec_for(server), isolated_cache)
    assert path.read_bytes() == PAYLOAD and path.parent == isolated_cache / "models"
    assert hub.recorded_hashes(isolated_cache) == {"local.pth": SHA}
    assert hub.verify(spec_for(server), isolated_cache) == (True, "sha256 matches (recorded on first download)")
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


def test_truncated_transfer_is_resumed(server, isolated_cache):
    server.plan["/m.pth"] = ["truncate"]
    path = fetch(spec_for(server, sha256=SHA), isolated_cache)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"


def test_always_truncated_gives_up_without_a_cached_file(server, isolated_cache):
    server.plan["/m.pth"] = ["truncate"] * 10
    with pytest.raises(hub.DownloadError, match="could not download model local"):
        fetch(spec_for(server), isolated_cache, retries=2)
    assert not (isolated_cache / "models" / "local.pth").exists()


def test_500_then_success_on_retry(server, isolated_cache):
    server.plan["/m.pth"] = ["500", "500"]
    path = fetch(spec_for(server, sha256=SHA), isolated_cache, retries=3)
    assert path.read_bytes() == PAYLOAD and len(server.requests) == 3


def test_404_names_the_url_and_where_to_put_the_file(server, isolated_cache):
    spec = spec_for(server, urls=(server.url("/missing.pth"),))
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec, isolated_cache)
    message = str(err.value)
    assert "/missing.pth: HTTP 404" in message
    assert str(isolated_cache / "models" / "local.pth") in message
    assert len(server.requests) == 1  # a 404 is not retried


def test_second_url_is_tried(server, isolated_cache):
    spec = spec_for(server, urls=(server.url("/missing.pth"), server.url("/m.pth")))
    assert fetch(spec, isolated_cache).read_bytes() == PAYLOAD


def test_wrong_sha256_is_rejected_and_cache_untouched(server, isolated_cache):
    models = isolated_cache / "models"
    models.mkdir(parents=True)
    (models / "other.pth").write_bytes(b"keep me")
    with pytest.raises(hub.ChecksumMismatchError, match="expected 0000"):
        fetch(spec_for(server, sha256="0" * 64), isolated_cache)
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == ["other.pth"]
    assert (models / "other.pth").read_bytes() == b"keep me"


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


def test_offline_refuses_with_instructions(isolated_cache):
    spec = ModelSpec(name="HP2_all_vocals", file="HP2_all_vocals.pth", urls=("http://127.0.0.1:9/x",))
    with pytest.raises(hub.DownloadError, match="downloads are off.*put it at"):
        hub.download(spec, isolated_cache, offline=True)


def test_cache_folder_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UVRSEP_HOME", str(tmp_path / "h"))
    assert hub.home_dir() == tmp_path / "h"
    monkeypatch.delenv("UVRSEP_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.home_dir() == tmp_path / "xdg" / "uvrsep"


def test_cli_download_and_separate_by_name(server, isolated_cache, tmp_path, short_wav):
    weights = tmp_path / "w.pth"
    torch.save(random_net().state_dict(), weights)
    server.files["/tiny.pth"] = weights.read_bytes()
    add_user_model(isolated_cache, ModelSpec(
        name="tiny-local", file="tiny-local.pth", urls=(server.url("/tiny.pth"),), family="aspp", width=16,
        params="4band_v2", primary="Vocals",
    ))
    runner = CliRunner()
    out = tmp_path / "out"
    offline = runner.invoke(app, ["separate", str(short_wav), "-m", "tiny-local", "--offline", "-o", str(out)])
    assert offline.exit_code == 1 and "downloads are off" in offline.output
    assert runner.invoke(app, ["models", "download", "tiny-local"]).exit_code == 0
    result = runner.invoke(app, ["separate", str(short_wav), "-m", "tiny-local", "--offline", "-o", str(out),
                                 "--stems", "vocals"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip_vocals.wav"]  # primary "Vocals": masked stem
    info = runner.invoke(app, ["models", "info", "tiny-local"]).output
    assert "recorded on first download" in info
    assert runner.invoke(app, ["models", "verify"]).exit_code == 0
    assert runner.invoke(app, ["models", "path", "tiny-local"]).output.strip().endswith("tiny-local.pth")


def test_import_identifies_architecture(isolated_cache, tmp_path):
    weights = tmp_path / "my_model.pth"
    torch.save(random_net().state_dict(), weights)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "import", str(weights), "--params", "4band_v2"])
    assert result.exit_code == 0, result.output
    assert "cascaded ASPP net (width 16" in result.output
    spec = load_registry(isolated_cache).get("my_model")
    assert (spec.family, spec.width, spec.params, spec.source) == ("aspp", 16, "4band_v2", "user")
    assert runner.invoke(app, ["models", "import", str(weights)]).exit_code == 1  # exists: needs --overwrite


def test_unknown_name_suggests(isolated_cache):
    result = CliRunner().invoke(app, ["models", "info", "HP2_all_vocal"])
    assert result.exit_code == 1 and "did you mean HP2_all_vocals" in result.output


def test_registry_entries_are_consistent():
    from uvrsep.config import list_band_layouts

    registry = load_registry()
    layouts = set(list_band_layouts())
    assert len(registry.models) >= 30
    for spec in registry.models:
        assert spec.params is None or spec.params in layouts, spec.name
        assert spec.urls and all(u.startswith("https://") for u in spec.urls)
        assert spec.file.endswith(".pth")
    for entry in registry.uvr_hashes.values():
        assert entry["params"] in layouts
    assert registry.get("HP3").stems == ("vocals", "instrumental")
    assert registry.get("VR-DeEchoDeReverb.pth").stems == ("no_reverb", "reverb")
    assert registry.get("UVR-DeNoise").stems == ("noise", "no_noise")


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


def test_separator_uses_uvr_hash_for_unknown_files(tmp_path, monkeypatch, tiny_weights):
    from uvrsep import Separator
    from uvrsep import registry as reg

    weights = tmp_path / "mystery.pth"
    weights.write_bytes(tiny_weights.read_bytes())
    real = reg.load_registry

    def patched(home=None):
        table = real(home)
        table.uvr_hashes[reg.uvr_hash(weights)] = {"params": "4band_44100", "primary": "Vocals"}
        return table

    monkeypatch.setattr(reg, "load_registry", patched)
    sep = Separator(weights, device="cpu")
    assert sep.layout.name == "4band_44100" and sep.primary == "vocals"
    assert any("UVR's model hash" in note for note in sep.notes)
