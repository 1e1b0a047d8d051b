"""Model downloads against a real HTTP server on 127.0.0.1 (never the internet): resuming only
what the server proves or a pinned sha256 checks, size ceilings, clean failures, locks."""

from __future__ import annotations

import errno
import hashlib
import io
import threading
import time

import pytest
import torch

from tests.http_server import (
    PAYLOAD,
    SHA,
    WIDTH,
    cache_files,
    clear_network_env,
    closed_port,
    fetch,
    serving,
    spec_for,
    weight_bytes,
)
from uvrsep import downloads, hub
from uvrsep import fetch as transfer_module
from uvrsep.network import AsppNetConfig, CascadedASPPNet
from uvrsep.registry import ModelSpec


@pytest.fixture(autouse=True)
def no_proxy_no_mirror(monkeypatch):
    clear_network_env(monkeypatch)


@pytest.fixture
def server():
    with serving() as srv:
        yield srv


# -- accepted downloads --------------------------------------------------------------------


def test_download_without_a_pinned_digest_is_recorded_as_unverified(server, isolated_cache):
    """Nobody published this file's sha256: it is recorded (to notice a later change) but is
    never called verified."""
    notices = []
    path = fetch(spec_for(server), isolated_cache, notices)
    assert path.read_bytes() == PAYLOAD and path.parent == isolated_cache / "models"
    assert notices == [f"downloading model local to {path}"]
    assert cache_files(isolated_cache) == ["local.pth", "recorded_sha256.json"]  # no .part, no sidecar left
    assert hub.recorded_hashes(isolated_cache) == {"local.pth": hub.Digest(SHA, "download")}
    assert hub.reference_digest(spec_for(server), isolated_cache).pinned is False
    assert hub.verify(spec_for(server), isolated_cache) == hub.Verdict(
        "unverified", f"unverified (no published checksum): unchanged since the download (sha256 {SHA})"
    )
    path.write_bytes(b"tampered")
    verdict = hub.verify(spec_for(server), isolated_cache)
    assert verdict.status == "changed" and verdict.failed
    assert verdict.detail == (
        f"sha256 {hashlib.sha256(b'tampered').hexdigest()}, recorded {SHA}; unverified (no published checksum)"
    )
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


def test_cut_transfer_without_validator_or_pinned_digest_starts_again(server, isolated_cache):
    """The server gave no ETag / Last-Modified and nobody published the sha256: nothing can prove
    the rest belongs to the bytes we have, so the retry asks for the whole file (no Range)."""
    server.plan["/m.pth"] = ["nolength-half"]
    path = fetch(spec_for(server, size=len(PAYLOAD)), isolated_cache)
    assert path.read_bytes() == PAYLOAD
    assert [rng for _, rng in server.requests] == [None, None]


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


def test_always_truncated_gives_up_leaving_nothing(server, isolated_cache):
    server.plan["/m.pth"] = ["truncate"] * 10
    with pytest.raises(hub.DownloadError, match="could not download model local"):
        fetch(spec_for(server), isolated_cache, retries=2)
    assert cache_files(isolated_cache) == []  # the next download starts clean


def test_404_names_the_url_once_and_where_to_put_the_file(server, isolated_cache):
    spec = spec_for(server, urls=(server.url("/missing.pth"),))
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec, isolated_cache)
    message = str(err.value)
    assert "HTTP 404" in message and message.count(server.url("/missing.pth")) == 1
    assert (
        f"put it at {isolated_cache / 'models' / 'local.pth'}, or give a weight file you have (model=PATH)" in message
    )
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


@pytest.mark.slow
def test_slow_drip_hits_the_deadline(server, isolated_cache):
    server.plan["/m.pth"] = ["drip"]
    start = time.monotonic()
    with pytest.raises(hub.DownloadError, match="not complete within the 1 s deadline"):
        fetch(spec_for(server), isolated_cache, deadline=1, timeout=1)
    assert time.monotonic() - start < 4
    assert cache_files(isolated_cache) == []  # the next download starts clean


def test_deadline_from_the_environment(monkeypatch):
    monkeypatch.setenv(downloads.DEADLINE_ENV, "12.5")
    assert downloads.download_deadline() == 12.5
    monkeypatch.setenv(downloads.DEADLINE_ENV, "soon")
    with pytest.raises(hub.UvrsepError, match="UVRSEP_DOWNLOAD_DEADLINE"):
        downloads.download_deadline()
    monkeypatch.delenv(downloads.DEADLINE_ENV)
    assert downloads.download_deadline() == downloads.DEFAULT_DEADLINE


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
    assert hub.verify(spec_for(server), isolated_cache) == hub.Verdict("absent", "not downloaded")


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
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url("/mirror"))
    path = fetch(spec_for(server), isolated_cache)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/mirror/local.pth", "/mirror/m.pth", "/m.pth"]  # 2nd: 404


# -- resuming only what the server proves (or a pinned sha256 checks) ------------------------------


def interrupted(server, home, spec):
    """A first run stopped by Ctrl-C after a cut transfer (as a kill would stop it): what it
    leaves behind is the .part and its validator."""
    server.plan["/m.pth"] = ["truncate"]

    def stop(message):
        if "retry" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        downloads.download(spec, home, progress=False, backoff=0, on_notice=stop)
    return home / "models" / "local.pth.part"


@pytest.mark.parametrize("validator", [{"ETag": '"v1"'}, {"Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"}])
def test_resume_with_if_range_when_the_server_proves_the_same_file(server, isolated_cache, validator):
    server.validators["/m.pth"] = validator
    part = interrupted(server, isolated_cache, spec_for(server))
    assert part.stat().st_size == len(PAYLOAD) // 2 and (part.parent / "local.pth.part.json").is_file()
    path = fetch(spec_for(server), isolated_cache)
    assert path.read_bytes() == PAYLOAD
    last = server.headers[-1]
    assert last["Range"] == f"bytes={len(PAYLOAD) // 2}-" and last["If-Range"] == next(iter(validator.values()))
    assert cache_files(isolated_cache) == ["local.pth", "recorded_sha256.json"]  # sidecar gone with the .part


@pytest.mark.parametrize("header", ["ETag", "Last-Modified"])
def test_changed_file_on_the_server_starts_over(server, isolated_cache, header):
    """The validator changed: the server answers If-Range with the whole new file (200), which
    replaces the old bytes instead of being glued after them."""
    old, new = (
        ('"v1"', '"v2"') if header == "ETag" else ("Tue, 01 Dec 2026 10:00:00 GMT", "Wed, 02 Dec 2026 10:00:00 GMT")
    )
    server.validators["/m.pth"] = {header: old}
    interrupted(server, isolated_cache, spec_for(server))
    updated = weight_bytes(seed=1)
    server.files["/m.pth"], server.validators["/m.pth"] = updated, {header: new}
    path = fetch(spec_for(server), isolated_cache)
    assert server.headers[-1]["If-Range"] == old and path.read_bytes() == updated


def test_part_left_without_proof_is_not_resumed(server, isolated_cache):
    """A .part with no validator (or one given for another URL) and no pinned sha256: deleted,
    and the file is asked for from byte 0."""
    models = isolated_cache / "models"
    models.mkdir(parents=True)
    (models / "local.pth.part").write_bytes(b"\0" * 300_000)
    assert fetch(spec_for(server), isolated_cache).read_bytes() == PAYLOAD
    assert server.requests == [("/m.pth", None)]
    (models / "local.pth").unlink()
    (models / "local.pth.part").write_bytes(b"\0" * 300_000)
    (models / "local.pth.part.json").write_text('{"url": "http://elsewhere/m.pth", "validator": "\\"v1\\""}')
    server.validators["/m.pth"] = {"ETag": '"v1"'}
    assert fetch(spec_for(server), isolated_cache).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/m.pth", None)


def test_resumed_file_with_a_wrong_pinned_sha256_is_fetched_again_from_zero(server, isolated_cache):
    models = isolated_cache / "models"
    models.mkdir(parents=True)
    (models / "local.pth.part").write_bytes(b"\0" * 300_000)  # not the file's first bytes
    notices = []
    path = fetch(spec_for(server, sha256=SHA), isolated_cache, notices)
    assert path.read_bytes() == PAYLOAD
    assert [rng for _, rng in server.requests] == ["bytes=300000-", None]
    assert "is not the file (sha256" in notices[1] and notices[1].endswith("downloading it again from the start")


# -- size ceiling, full disk: stopped, one line, nothing left ---------------------------------------


def test_a_server_announcing_gigabytes_is_refused_before_reading(server, isolated_cache):
    server.plan["/m.pth"] = ["huge"] * 10  # says 10 GB, then sends 64 bytes every 20 ms
    start = time.monotonic()
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec_for(server), isolated_cache, deadline=5)
    assert time.monotonic() - start < 2
    assert "the server offers 10000000000 bytes, more than the 2.0 GB a model may have" in str(err.value)
    assert len(server.requests) == 1 and cache_files(isolated_cache) == []


@pytest.mark.parametrize("size", [None, len(PAYLOAD) - 1000])
def test_a_server_sending_more_than_the_ceiling_is_stopped(server, isolated_cache, monkeypatch, size):
    """No Content-Length: the bytes are counted. The ceiling is the registry's size when known,
    else MAX_DOWNLOAD_BYTES (made small here)."""
    monkeypatch.setattr(transfer_module, "MAX_DOWNLOAD_BYTES", 100_000)
    server.plan["/m.pth"] = ["nolength"] * 10
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec_for(server, size=size), isolated_cache)
    expected = "the 100.0 kB a model may have" if size is None else f"the file's {size} bytes"
    assert f"the server sent more than {expected}" in str(err.value)
    assert len(server.requests) == 1 and cache_files(isolated_cache) == []


def test_content_length_above_the_ceiling_is_refused(server, isolated_cache, monkeypatch):
    monkeypatch.setattr(transfer_module, "MAX_DOWNLOAD_BYTES", 100_000)
    with pytest.raises(hub.DownloadError, match=f"offers {len(PAYLOAD)} bytes, more than the 100.0 kB"):
        fetch(spec_for(server), isolated_cache)
    assert cache_files(isolated_cache) == []


def test_full_disk_is_one_line_and_leaves_no_part(server, isolated_cache, monkeypatch):
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "a" not in mode and "w" not in mode:
            return handle

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, block):
                if handle.tell() >= 200_000:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return handle.write(block)

        return Full()

    monkeypatch.setattr(transfer_module, "open", full_disk, raising=False)  # where the .part is written
    server.validators["/m.pth"] = {"ETag": '"v1"'}
    with pytest.raises(hub.DownloadError) as err:
        fetch(spec_for(server), isolated_cache)
    message = str(err.value)
    assert "\n" not in message and "cannot write in" in message and "(No space left on device)" in message
    assert cache_files(isolated_cache) == []  # neither the .part nor its validator


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


def test_lock_excludes_and_lives_outside_the_models_folder(tmp_path):
    """Holders of one model's lock never overlap; the lock file stays in locks/ (removing it
    would let a waiter and the next holder run at once) and never shows among the models."""
    order = []

    def hold(tag):
        with hub.locked("m.pth", tmp_path):
            order.append(f"{tag}+")
            time.sleep(0.1)
            order.append(f"{tag}-")

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(order) == 6 and all(order[i][:-1] == order[i + 1][:-1] for i in range(0, 6, 2))
    assert (tmp_path / "locks" / "m.pth.lock").is_file() and not (tmp_path / "models").exists()


def test_mirror_is_tried_first(server, isolated_cache, monkeypatch):
    server.files["/mirror/local.pth"] = PAYLOAD
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url("/mirror/"))
    spec = spec_for(server, urls=("http://nonexistent.invalid/lj/resolve/main/local.pth",))
    assert fetch(spec, isolated_cache).read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/mirror/local.pth"]


def test_mirror_with_the_hosts_layout(server, isolated_cache, monkeypatch):
    """hf-mirror.com serves Hugging Face's paths: {mirror}/{file} misses, {mirror}/{path} works."""
    server.files["/lj/resolve/main/uvr5/local.pth"] = PAYLOAD
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url())
    spec = spec_for(server, urls=("https://nonexistent.invalid/lj/resolve/main/uvr5/local.pth",))
    assert fetch(spec, isolated_cache).read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/local.pth", "/lj/resolve/main/uvr5/local.pth"]


def test_offline_refuses_with_instructions(isolated_cache):
    spec = ModelSpec(name="HP2_all_vocals", file="HP2_all_vocals.pth", urls=("http://127.0.0.1:9/x",))
    with pytest.raises(hub.DownloadError, match="downloads are off.*put it at"):
        downloads.download(spec, isolated_cache, offline=True)


def test_unwritable_cache_is_one_line(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").write_text("a file where the folder should be")
    with pytest.raises(hub.DownloadError, match="cannot write in .*models.*set UVRSEP_HOME"):
        fetch(spec_for(server), home)
