"""The CLI is a package of thin command modules; the rules they used to hold are library
functions, callable (and tested) without typer: the band config a registry entry gets, importing
a weight file, the stems a model or chain writes, choosing stems, a model's output name, the
training sources, the users of each band config."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

import uvrsep.cli
from uvrsep.batch import Manifest, OutputPlan, plan_batch, run_batch, select_stems
from uvrsep.chain import final_labels
from uvrsep.errors import ConfigError, UvrsepError
from uvrsep.hub import cached_path
from uvrsep.model import band_config_of, import_model
from uvrsep.naming import InputItem, model_name
from uvrsep.registry import ModelSpec, load_registry
from uvrsep.training.data import music_source, speech_source

CLI_DIR = Path(uvrsep.cli.__file__).parent


def test_cli_is_a_package_of_short_command_modules():
    modules = {p.name for p in CLI_DIR.glob("*.py")}
    assert {"__init__.py", "common.py", "options.py", "separate.py", "models.py", "params.py", "train.py"} <= modules
    for path in CLI_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert len(path.read_text(encoding="utf-8").splitlines()) < 450, path
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                body = node.body[0].end_lineno if len(node.body) == 1 else node.body[-1].end_lineno
                start = (
                    node.body[1].lineno
                    if isinstance(node.body[0], ast.Expr) and len(node.body) > 1
                    else node.body[0].lineno
                )
                assert body - start < 70, f"{path.name}:{node.name} has a {body - start}-line body"
            # no class of the CLI shadows the library's Semantics
            if isinstance(node, ast.ClassDef):
                assert node.name != "Semantics", path


def test_the_cluster_is_split_by_job():
    """The Ray run (cluster.py) and the pool / work-unit planning (clusterplan.py), each short."""
    for name in ("cluster.py", "clusterplan.py"):
        path = CLI_DIR.parent / name
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 450, name


def test_band_config_of_follows_the_entry_then_the_family(isolated_cache):
    registry = load_registry(isolated_cache)
    named = ModelSpec(name="a", file="a.pth", params="1band_sr44100_hl256")
    assert band_config_of(named, registry) == "1band_sr44100_hl256"
    user_vr = ModelSpec(name="b", file="b.pth", source="user", family="vr51", width=32)
    assert band_config_of(user_vr, registry) == "4band_v3 (family default)"
    shipped = ModelSpec(name="c", file="c.pth", source="official", family="aspp", width=16)
    assert band_config_of(shipped, registry) == "from UVR's hash table (on download)"
    cached_path(shipped, isolated_cache).parent.mkdir(parents=True, exist_ok=True)
    cached_path(shipped, isolated_cache).write_bytes(b"not in UVR's table")
    assert band_config_of(shipped, registry) == "4band_v2 (family default)"


def test_import_model_records_its_facts_and_refuses_twice(tiny_weights, tmp_path, isolated_cache):
    mine = tmp_path / "My HP3 net.pth"
    shutil.copyfile(tiny_weights, mine)
    done = import_model(mine)
    assert done.spec.name == "My HP3 net" and done.params_source == "the family default"
    assert done.spec.params == "4band_v2" and done.spec.primary == "Vocals"  # RVC's HP3 rule, from uvrsep.model
    assert done.path.read_bytes() == mine.read_bytes()
    assert load_registry(isolated_cache).get("My HP3 net").primary == "Vocals"
    with pytest.raises(UvrsepError, match="already in the cache"):
        import_model(mine)
    again = import_model(mine, name="other", params="4band_v3", primary="no_echo")
    assert (again.spec.params, again.spec.primary, again.params_source) == ("4band_v3", "No Echo", "given on import")
    with pytest.raises(ConfigError, match="name '../x' must be a plain file name"):
        import_model(mine, name="../x")  # the API names the argument, not the flag


def test_final_labels_and_select_stems(tiny_weights):
    assert final_labels([str(tiny_weights)]) == ("instrumental", "vocals")
    assert final_labels([str(tiny_weights)], primary_stem="vocals") == ("vocals", "instrumental")
    assert final_labels([str(tiny_weights), str(tiny_weights)]) == (
        "instrumental",
        "vocals_instrumental",
        "vocals_vocals",
    )
    assert select_stems(None, ("a", "b")) == ("a", "b")
    assert select_stems(" b, a ,b", ("a", "b")) == ("b", "a")
    assert select_stems(["a"], ("a", "b")) == ("a",)
    for bad in ("c", ",", ["a", "zz"]):
        with pytest.raises(ConfigError, match="this model writes a, b"):
            select_stems(bad, ("a", "b"))


def test_model_name():
    assert model_name("folder/My net.pth") == "My net"
    assert model_name("HP5_only_main_vocal") == "HP5_only_main_vocal"
    assert model_name(None) == load_registry().default


def test_nothing_to_separate_needs_no_model(tmp_path, short_wav):
    plan = OutputPlan(output_dir=tmp_path / "out", stems=("vocals",))
    item = InputItem(Path(short_wav), Path(short_wav).parent)
    target = plan.paths(item, ("vocals",))["vocals"]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"exists")
    work = plan_batch([item], plan, ("instrumental", "vocals"), Manifest(None))
    assert not work.jobs
    report = run_batch(None, work, plan)  # no separator at all: nothing was left to do
    assert [r.status for r in report.results] == ["skipped"]


def test_training_sources(tmp_path):
    speech = tmp_path / "speech"
    (speech / "sub").mkdir(parents=True)
    for name in ("a.wav", "sub/b.flac", "notes.txt"):
        (speech / name).write_bytes(b"")
    plain = speech_source(speech)
    assert plain.bandwidth_hz is None and [Path(f).name for f in plain.files] == ["a.wav", "b.flac"]
    limited = speech_source(f"{speech}:5500")
    assert limited.bandwidth_hz == 5500.0 and limited.files == plain.files and limited.name == "speech:speech"
    music = tmp_path / "music"
    music.mkdir()
    for k in range(10):
        (music / f"{k}.wav").write_bytes(b"")
    train, valid = music_source(music, "train", 0.2, 0), music_source(music, "valid", 0.2, 0)
    assert len(valid.files) == 2 and len(train.files) == 8 and not set(train.files) & set(valid.files)


def test_band_config_users(isolated_cache):
    registry = load_registry(isolated_cache)
    users = registry.band_config_users()
    for spec in registry.models:
        if spec.params:
            assert spec.name in users[spec.params]
    in_table = sum(int(u.split()[0]) for us in users.values() for u in us if u.endswith("UVR's hash table"))
    assert in_table == len(registry.uvr_hashes)
    json.dumps(users)
