"""Model chains: HP2 then a DeEcho/DeReverb model on its vocals, in one pass of the batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep import Separator
from uvrsep.chain import Chain, chain_labels, voice_stem
from uvrsep.cli import app
from uvrsep.errors import ConfigError
from uvrsep.evaluation import sdr

runner = CliRunner()


@pytest.fixture(scope="module")
def dereverb_weights(tmp_path_factory):
    """A tiny random VR 5.1 net saved under a DeReverb name (stems no_reverb / reverb)."""
    from uvrsep.network import Architecture

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("vr51") / "tiny-DeReverb.pth"
    torch.save(Architecture("vr51", 16, bins=672).build(672).state_dict(), path)
    return path


def test_final_labels():
    assert chain_labels([("instrumental", "vocals"), ("no_reverb", "reverb")]) == (
        "instrumental",
        "vocals_no_reverb",
        "vocals_reverb",
    )
    assert chain_labels([("vocals", "instrumental"), ("no_echo", "echo"), ("no_noise", "noise")]) == (
        "instrumental",
        "vocals_echo",
        "vocals_no_echo_no_noise",
        "vocals_no_echo_noise",
    )
    assert voice_stem(("no_reverb", "reverb")) == "no_reverb"
    with pytest.raises(ConfigError, match="no voice stem"):
        chain_labels([("no_woodwinds", "woodwinds"), ("instrumental", "vocals")])


@pytest.mark.slow
def test_chain_equals_the_second_model_on_the_first_ones_vocals(tiny_weights, dereverb_weights):
    first = Separator(tiny_weights, device="cpu")
    second = Separator(dereverb_weights, device="cpu", params="4band_v3")
    chain = Chain(first, second)
    wave = music_like(1.5)
    got = chain.separate(wave, SR)
    assert got.names == ("instrumental", "vocals_no_reverb", "vocals_reverb")
    one = first.separate(wave, SR)
    two = second.separate(one["vocals"], SR)
    np.testing.assert_array_equal(got["instrumental"], one["instrumental"])
    np.testing.assert_array_equal(got["vocals_no_reverb"], two["no_reverb"])
    np.testing.assert_array_equal(got["vocals_reverb"], two["reverb"])


@pytest.mark.slow
def test_cli_chain_writes_final_stems_and_records_them(tmp_path, tiny_weights, dereverb_weights):
    for name, seconds in (("a", 0.6), ("b", 1.1)):
        sf.write(tmp_path / f"{name}.wav", music_like(seconds, seed=len(name)).T, SR)
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    result = runner.invoke(
        app,
        [
            "separate",
            str(tmp_path / "a.wav"),
            str(tmp_path / "b.wav"),
            "-m",
            str(tiny_weights),
            "--then",
            str(dereverb_weights),
            "-o",
            str(out),
            "--manifest",
            str(manifest),
            "--device",
            "cpu",
            "--params",
            "4band_v2",  # the first model's; the VR 5.1 net keeps its own default (4band_v3)
            "--name-template",
            "{name}_{stem}_{model}.{ext}",
            "--stems",
            "instrumental,vocals_no_reverb",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "a_instrumental_tiny_fp32+tiny-DeReverb.wav",
        "a_vocals_no_reverb_tiny_fp32+tiny-DeReverb.wav",
        "b_instrumental_tiny_fp32+tiny-DeReverb.wav",
        "b_vocals_no_reverb_tiny_fp32+tiny-DeReverb.wav",
    ]
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [len(r["outputs"]) for r in records if r["status"] == "ok"] == [2, 2]
    result = runner.invoke(
        app,
        [
            "separate",
            str(tmp_path / "a.wav"),
            "-m",
            str(tiny_weights),
            "--then",
            str(dereverb_weights),
            "--stems",
            "no_reverb",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 2 and "instrumental, vocals_no_reverb, vocals_reverb" in result.output


@pytest.mark.slow
def test_streamed_chain_equals_the_whole_file_chain(tmp_path, tiny_weights):
    """A long input streams through both models (bounded memory) with the whole-file result.

    Streaming one model gives its whole-file stems to about 110 dB; the second model then sees
    that (tiny) difference in its input, and a random net can amplify it by a few dB: the chain's
    bound is 80 dB (measured: 88 dB and more)."""
    path = tmp_path / "long.wav"
    sf.write(path, music_like(7.0, seed=3).T, SR, subtype="FLOAT")
    stages = [Separator(tiny_weights, device="cpu", segment_threshold=1, segment_windows=1) for _ in range(2)]
    chain = Chain(*stages)
    whole = chain.separate(path)
    ((_, streamed),) = list(chain.separate_batch([path]))
    streamed = streamed.collect()
    assert streamed.names == whole.names == ("instrumental", "vocals_instrumental", "vocals_vocals")
    for name in whole.names:
        for ch in range(2):
            assert sdr(whole[name][ch], streamed[name][ch]) >= 80, name
    assert not list(tmp_path.glob("uvrsep-chain-*"))


def test_models_of_a_chain_share_a_rate(tiny_weights):
    with pytest.raises(ConfigError, match="share a sample rate"):
        Chain(
            Separator(tiny_weights, device="cpu"), Separator(tiny_weights, device="cpu", params="1band_sr32000_hl512")
        )
