"""The model's facts: one rule for what a weight file does not say, used by the API and the CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from uvrsep.cli import app
from uvrsep.model import default_primary, load_model, model_stems
from uvrsep.network import Architecture
from uvrsep.registry import STEM_LABELS, load_registry


@pytest.fixture(scope="module")
def vr51_state():
    torch.manual_seed(0)
    return Architecture("vr51", 16, bins=672).build(672).state_dict()


@pytest.mark.parametrize(
    "file, family, expected",
    [
        ("my_model.pth", "aspp", "Instrumental"),
        ("my_HP3_finetune.pth", "aspp", "Vocals"),
        ("dry.pth", "vr51", "No Echo"),
        ("VR-DeReverb-mine.pth", "vr51", "No Reverb"),
    ],
)
def test_the_default_stem_rule_is_one_for_the_api_and_models_import(
    tmp_path, isolated_cache, tiny_weights, vr51_state, file, family, expected
):
    """``models import`` records the stem the separator would use for the same file (it used to
    record Instrumental / No Echo whatever the file's name said)."""
    path = tmp_path / file
    if family == "aspp":
        path.write_bytes(tiny_weights.read_bytes())
    else:
        torch.save(vr51_state, path)
    loaded = load_model(path)  # what Separator uses
    assert default_primary(loaded.architecture, path) == loaded.primary == expected
    assert loaded.stems == STEM_LABELS[expected] == model_stems(path)
    result = CliRunner().invoke(app, ["models", "import", str(path), "--name", "imported"])
    assert result.exit_code == 0, result.output
    assert load_registry(isolated_cache).get("imported").primary == expected


def test_load_model_gives_net_layout_and_stems(tiny_weights):
    loaded = load_model(tiny_weights)
    assert loaded.layout.name == "4band_v2" and loaded.stems == ("instrumental", "vocals")
    assert loaded.primary_is_default and not loaded.net.training
    assert any("4band_v2" in note for note in loaded.notes)
