"""The weight cache: records, verification, names to files, the registry and the `models`
commands (downloads themselves: tests/test_downloads.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.http_server import (
    PAYLOAD,
    SHA,
    WIDTH,
    cache_files,
    clear_network_env,
    closed_port,
    serving,
    spec_for,
    weight_bytes,
)
from uvrsep import downloads, hub, resolve
from uvrsep.cli import app
from uvrsep.registry import ModelSpec, add_user_model, load_registry


@pytest.fixture(autouse=True)
def no_proxy_no_mirror(monkeypatch):
    clear_network_env(monkeypatch)


@pytest.fixture
def server():
    with serving() as srv:
        yield srv


# -- names to files, the default model --------------------------------------------------------


def test_default_model_downloads_once_with_one_notice(server, isolated_cache):
    add_user_model(
        isolated_cache,
        ModelSpec(
            name="HP2_all_vocals",
            file="HP2_all_vocals.pth",
            urls=(server.url("/m.pth"),),
            family="aspp",
            width=WIDTH,
            params="4band_v2",
        ),
    )
    notices = []
    resolved = resolve.resolve_model(None, progress=False, on_notice=notices.append)
    target = isolated_cache / "models" / "HP2_all_vocals.pth"
    assert resolved.path == target and resolved.spec.name == "HP2_all_vocals" and target.read_bytes() == PAYLOAD
    assert notices == [f"downloading the default model HP2_all_vocals to {target}"]
    assert resolve.resolve_model(None, on_notice=notices.append).path == target and len(notices) == 1


def test_default_model_offline_or_unreachable_says_what_to_get_and_where(isolated_cache, monkeypatch):
    target = isolated_cache / "models" / "HP2_all_vocals.pth"
    url = load_registry().get("HP2_all_vocals").urls[0]
    with pytest.raises(hub.DownloadError) as err:
        resolve.resolve_model(None, offline=True)
    assert str(err.value) == (
        f"the default model HP2_all_vocals is not in the cache and downloads are off "
        f"(offline=True): get {url} and put it at {target}, or give a weight file you have "
        "(model=PATH)"
    )
    from uvrsep.errors import cli_messages

    with cli_messages(), pytest.raises(hub.DownloadError) as err:  # the command line names its flags
        resolve.resolve_model(None, offline=True)
    assert str(err.value) == (
        f"the default model HP2_all_vocals is not in the cache and downloads are off "
        f"(--offline): get {url} and put it at {target}, or give a weight file you have "
        "(--model PATH)"
    )
    monkeypatch.setenv(downloads.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(hub.DownloadError) as err:
        resolve.resolve_model(None, progress=False, on_notice=lambda _: None)
    message = str(err.value)
    assert message.startswith("could not download the default model HP2_all_vocals (127.0.0.1:")
    assert "connection refused" in message and message.count(url) == 1 and "\n" not in message
    assert message.endswith(f"get {url} and put it at {target}, or give a weight file you have (model=PATH)")
    assert not target.parent.exists() or cache_files(isolated_cache) == []


def test_registry_names_a_default():
    registry = load_registry()
    assert registry.default == "HP2_all_vocals" and registry.default_spec().name == "HP2_all_vocals"


@pytest.mark.slow
def test_a_mirror_cannot_substitute_a_pinned_model(server, isolated_cache, monkeypatch):
    """RVC's six files have published sha256 sums (RVC's sha256.env): a mirror (a third party)
    serving another file, even a valid net of the right width, is refused and nothing is kept."""
    server.files["/HP2_all_vocals.pth"] = weight_bytes(width=32)
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url())
    with pytest.raises(hub.DownloadError, match="sha256 .* differs from 39796caa"):
        resolve.resolve_model(None, progress=False, on_notice=lambda _: None)
    assert cache_files(isolated_cache) == []
    assert (
        load_registry().get("HP2_all_vocals").sha256
        == "39796caa5db18d7f9382d8ac997ac967bfd85f7761014bb807d2543cc844ef05"
    )


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


# -- digests: pinned or unverified; records kept by concurrent runs; no fcntl needed --------------


RECORDER = """
import sys
from pathlib import Path
from uvrsep import hub
home, tag = Path(sys.argv[1]), sys.argv[2]
for k in range(100):
    hub.record_hash(f"{tag}_{k}.pth", "%064x" % k, home)
"""


@pytest.mark.slow
def test_concurrent_record_updates_keep_every_record(tmp_path):
    """4 processes x 100 updates of the record file: read-modify-write under the lock, written
    atomically, so none is lost."""
    (tmp_path / "models").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, str(tmp_path), f"p{i}"]) for i in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 4
    records = json.loads((tmp_path / "models" / "recorded_sha256.json").read_text(encoding="utf-8"))
    assert len(records) == 400
    assert hub.recorded_hashes(tmp_path)["p3_99.pth"] == hub.Digest(f"{99:064x}", "download")
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["recorded_sha256.json"]  # no temporary left


NO_FCNTL = """
import sys
sys.modules["fcntl"] = None  # as on Windows
{imports}
from pathlib import Path
from uvrsep import hub
home = Path(sys.argv[1])
hub.record_hash("a.pth", "0" * 64, home, source="import")
print(hub.recorded_hashes(home)["a.pth"].source)
"""


def run_without_fcntl(tmp_path, imports: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", NO_FCNTL.format(imports=imports), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_uvrsep_imports_and_records_where_fcntl_does_not_exist(tmp_path):
    result = run_without_fcntl(tmp_path, "import uvrsep, uvrsep.cli, uvrsep.hub, uvrsep.downloads")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "import"


@pytest.mark.slow
def test_every_module_imports_where_fcntl_does_not_exist(tmp_path):
    imports = (
        "import importlib, pkgutil, uvrsep\n"
        "for m in pkgutil.walk_packages(uvrsep.__path__, 'uvrsep.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)"
    )
    result = run_without_fcntl(tmp_path, imports)
    assert result.returncode == 0, result.stderr


def test_record_file_replacement_waits_for_a_reader(isolated_cache, monkeypatch):
    """On Windows, replacing a file another process has open fails for a moment: the record is
    written when it is free, or not at all (no temporary file left)."""
    real, fails = os.replace, [2]

    def busy(src, dst):
        if fails[0]:
            fails[0] -= 1
            raise PermissionError(13, "in use by another process")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    monkeypatch.setattr("uvrsep.registry.time.sleep", lambda seconds: None)  # the atomic writer lives there
    hub.record_hash("a.pth", "0" * 64)
    assert hub.recorded_hashes() == {"a.pth": hub.Digest("0" * 64, "download")}
    fails[0] = hub.REPLACE_TRIES
    with pytest.raises(PermissionError):
        hub.record_hash("b.pth", "1" * 64)
    assert set(hub.recorded_hashes()) == {"a.pth"}
    assert cache_files(isolated_cache) == ["recorded_sha256.json"]


def test_older_record_files_are_read(isolated_cache):
    """Records written before sources were kept ({file: sha256}): imported for entries without
    URLs (pinned), downloaded for the others (unverified)."""
    (isolated_cache / "models").mkdir()
    (isolated_cache / "models" / "recorded_sha256.json").write_text(json.dumps({"a.pth": "1" * 64, "b.pth": "2" * 64}))
    assert hub.reference_digest(ModelSpec(name="a", file="a.pth")) == hub.Digest("1" * 64, "import")
    assert hub.reference_digest(ModelSpec(name="b", file="b.pth", urls=("https://x/b.pth",))) == hub.Digest(
        "2" * 64, "download"
    )
    hub.record_hash("c.pth", "3" * 64)
    assert set(hub.recorded_hashes()) == {"a.pth", "b.pth", "c.pth"}


def test_models_verify_and_info_never_call_an_unpinned_download_verified(server, isolated_cache):
    add_user_model(isolated_cache, spec_for(server))  # no published sha256
    add_user_model(isolated_cache, spec_for(server, name="pinned", file="pinned.pth", sha256=SHA))
    runner = CliRunner()
    info = runner.invoke(app, ["models", "info", "local"]).output
    assert "sha256        unverified (no published checksum): recorded on download, to notice a later change" in info
    assert runner.invoke(app, ["models", "download", "local", "pinned"]).exit_code == 0
    info = runner.invoke(app, ["models", "info", "local"]).output
    assert f"sha256        {SHA} (recorded on download: unverified (no published checksum))" in info
    assert f"sha256        {SHA} (registry)" in runner.invoke(app, ["models", "info", "pinned"]).output
    result = runner.invoke(app, ["models", "verify", "local", "pinned"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"local: unverified (no published checksum): unchanged since the download (sha256 {SHA})",
        "pinned: OK: sha256 matches (registry)",
    ]
    for name in ("local", "pinned"):
        (isolated_cache / "models" / f"{name}.pth").write_bytes(b"tampered")
    other = hashlib.sha256(b"tampered").hexdigest()
    result = runner.invoke(app, ["models", "verify"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"local: CHANGED since the download: sha256 {other}, recorded {SHA}; unverified (no published checksum)",
        f"pinned: MISMATCH: sha256 {other} differs from {SHA} (registry)",
    ]


# -- a cached file used by name is checked against its pinned sha256 ------------------------------


def cached_model(home, data: bytes, **kw) -> Path:
    """A registry entry ``local`` (pinned to PAYLOAD's sha256 unless told) whose cached file,
    placed by hand, holds ``data``."""
    fields = dict(
        name="local",
        file="local.pth",
        urls=("http://127.0.0.1:9/local.pth",),
        family="aspp",
        width=WIDTH,
        params="4band_v2",
        sha256=SHA,
    )
    add_user_model(home, ModelSpec(**{**fields, **kw}))
    target = home / "models" / "local.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def test_wrong_cached_file_used_by_name_is_one_line(isolated_cache):
    target = cached_model(isolated_cache, weight_bytes(seed=1))  # a loadable net, not the pinned one
    with pytest.raises(hub.UvrsepError) as err:
        resolve.resolve_model("local", offline=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{target}: not the file of model local (sha256 ")
    assert message.endswith(
        f"pinned in the registry: {SHA[:16]}...); run `uvrsep models verify` to check the "
        "cache, and delete it to download it again"
    )


def test_wrong_default_model_file_is_one_line(isolated_cache):
    target = isolated_cache / "models" / "HP2_all_vocals.pth"  # the shipped registry pins its sha256
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    with pytest.raises(
        hub.UvrsepError,
        match=r"HP2_all_vocals.pth: not the file of model HP2_all_vocals .*"
        r"pinned in the registry: 39796caa5db18d7f\.\.\.",
    ):
        resolve.resolve_model(None, offline=True)


def test_first_use_check_is_remembered_by_size_and_mtime(isolated_cache, monkeypatch):
    target = cached_model(isolated_cache, PAYLOAD)
    hashed = []
    real = hub.sha256_file
    monkeypatch.setattr(hub, "sha256_file", lambda path: hashed.append(path) or real(path))
    assert resolve.resolve_model("local", offline=True).path == target
    assert resolve.resolve_model("local", offline=True).path == target
    assert hashed == [target]  # the second use costs a stat, not a read
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert resolve.resolve_model("local", offline=True).path == target and len(hashed) == 2
    target.write_bytes(weight_bytes(seed=1))
    with pytest.raises(hub.UvrsepError, match="not the file of model local"):
        resolve.resolve_model("local", offline=True)


def test_unpinned_and_imported_files_used_by_name(isolated_cache, tmp_path):
    """No pinned digest: nothing to refuse (the file is unverified, not wrong). An imported
    file is pinned by the import: changed later, it is refused."""
    target = cached_model(isolated_cache, weight_bytes(seed=1), sha256=None)
    assert resolve.resolve_model("local", offline=True).path == target
    mine = tmp_path / "mine.pth"
    mine.write_bytes(PAYLOAD)
    assert CliRunner().invoke(app, ["models", "import", str(mine)]).exit_code == 0
    assert resolve.resolve_model("mine", offline=True).path == isolated_cache / "models" / "mine.pth"
    (isolated_cache / "models" / "mine.pth").write_bytes(weight_bytes(seed=1))
    with pytest.raises(
        hub.UvrsepError,
        match=r"not the file of model mine .*pinned on import: .*uvrsep models import FILE --name mine --overwrite",
    ):
        resolve.resolve_model("mine", offline=True)


def test_separate_with_a_wrong_cached_file_is_one_line_and_writes_nothing(isolated_cache, tmp_path, short_wav):
    target = cached_model(isolated_cache, weight_bytes(seed=1))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["separate", str(short_wav), "-m", "local", "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"error: {target}: not the file of model local")
    assert "uvrsep models verify" in result.output and not (out.exists() and any(out.iterdir()))


def test_every_use_of_a_wrong_cached_file_by_name_is_one_line(isolated_cache, tiny_weights, tmp_path, short_wav):
    """Planning the stems (model_stems), the Separator, a --then model and `models info` all
    check a cached file used by name against its pinned sha256 (a loadable net, not the one
    pinned: nothing else would notice)."""
    from uvrsep import Separator
    from uvrsep.model import model_stems

    target = cached_model(isolated_cache, weight_bytes(seed=1))
    expected = f"{target}: not the file of model local (sha256 "
    for use in (lambda: model_stems("local"), lambda: Separator("local", device="cpu", offline=True)):
        with pytest.raises(hub.UvrsepError) as err:
            use()
        assert str(err.value).startswith(expected) and "uvrsep models verify" in str(err.value)
        assert "\n" not in str(err.value)
    out = tmp_path / "out"
    for args in (
        ["models", "info", "local"],
        ["separate", str(short_wav), "-m", str(tiny_weights), "--then", "local", "-o", str(out)],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and result.output.startswith(f"error: {expected}"), result.output
        assert result.output.count("\n") == 1 and "uvrsep models verify" in result.output
    assert not out.exists()


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

    monkeypatch.setattr(resolve, "load_registry", patched)
    sep = Separator(weights, device="cpu")
    assert sep.layout.name == "4band_44100" and sep.primary == "vocals"
    assert any("UVR's model hash" in note for note in sep.notes)


# -- the `models` commands ----------------------------------------------------------------------


@pytest.mark.slow
def test_cli_download_and_separate_by_name(server, isolated_cache, tmp_path, short_wav):
    server.files["/tiny.pth"] = PAYLOAD
    add_user_model(
        isolated_cache,
        ModelSpec(
            name="tiny-local",
            file="tiny-local.pth",
            urls=(server.url("/tiny.pth"),),
            family="aspp",
            width=WIDTH,
            params="4band_v2",
            primary="Vocals",
        ),
    )
    runner = CliRunner()
    out = tmp_path / "out"
    offline = runner.invoke(app, ["separate", str(short_wav), "-m", "tiny-local", "--offline", "-o", str(out)])
    assert offline.exit_code == 1 and "downloads are off" in offline.output
    download = runner.invoke(app, ["models", "download", "tiny-local"])
    assert download.exit_code == 0 and "note: downloading model tiny-local to " in download.output
    result = runner.invoke(
        app, ["separate", str(short_wav), "-m", "tiny-local", "--offline", "-o", str(out), "--stems", "vocals"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip_vocals.wav"]  # primary "Vocals": masked stem
    info = runner.invoke(app, ["models", "info", "tiny-local"]).output
    assert "(recorded on download: unverified (no published checksum))" in info
    assert runner.invoke(app, ["models", "verify"]).exit_code == 0  # unverified, unchanged: not a failure
    assert runner.invoke(app, ["models", "path", "tiny-local"]).output.strip().endswith("tiny-local.pth")


def test_cli_download_failure_is_one_line_with_visible_retries(server, isolated_cache, monkeypatch):
    monkeypatch.setattr(downloads.time, "sleep", lambda seconds: None)  # the CLI's backoff: 1, 2, 4 s
    server.plan["/m.pth"] = ["429"] * 10
    add_user_model(isolated_cache, spec_for(server))
    result = CliRunner().invoke(app, ["models", "download", "local"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert [line.split(" (")[0] for line in lines[1:4]] == [
        (f"note: download of model local from 127.0.0.1:{server.httpd.server_address[1]} failed")
    ] * 3
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
    assert (
        f"cascaded ASPP net (width {WIDTH}" in result.output
        and "band config 4band_v2 (the family default)" in result.output
    )
    spec = load_registry(isolated_cache).get("my_model")
    assert (spec.family, spec.width, spec.params, spec.source) == ("aspp", WIDTH, "4band_v2", "user")
    row = next(
        line for line in runner.invoke(app, ["models", "list"]).output.splitlines() if line.startswith("my_model")
    )
    assert "4band_v2" in row and "hash table" not in row and row.endswith(" yes")
    info = runner.invoke(app, ["models", "info", "my_model"]).output
    assert f"sha256        {hashlib.sha256(PAYLOAD).hexdigest()} (recorded on import)" in info
    assert "first download" not in info and "band config: the family default" in info
    assert runner.invoke(app, ["models", "import", str(weights)]).exit_code == 1  # exists: needs --overwrite
    explicit = runner.invoke(app, ["models", "import", str(weights), "--name", "other", "--params", "4band_44100"])
    assert explicit.exit_code == 0 and "band config 4band_44100 (given on import)" in explicit.output


def test_legacy_user_entry_shows_the_family_default(isolated_cache):
    add_user_model(isolated_cache, ModelSpec(name="older", file="older.pth", family="aspp", width=16))
    row = next(
        line for line in CliRunner().invoke(app, ["models", "list"]).output.splitlines() if line.startswith("older")
    )
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

    add_user_model(
        isolated_cache,
        ModelSpec(
            name="HP2_all_vocals",
            file="HP2_all_vocals.pth",
            urls=(server.url("/m.pth"),),
            family="aspp",
            width=WIDTH,
            params="4band_v2",
        ),
    )
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
