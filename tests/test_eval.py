"""Evaluation metrics on synthetic items with known SDR, and the eval command."""

import math

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from uvrsep.cli import app
from uvrsep.evaluation import Item, baselines, evaluate, oracle_irm, score_item, sdr, si_sdr

SR = 44100


def test_sdr_of_reference_plus_noise_at_a_set_level():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 44100))
    noise = rng.standard_normal((2, 44100))
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2)) * 10 ** (-20 / 20)  # exactly 20 dB below
    assert sdr(ref, ref + noise) == pytest.approx(20.0, abs=1e-9)
    assert sdr(ref, ref) == math.inf


def test_si_sdr_ignores_scale_but_sdr_does_not():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 10000))
    assert si_sdr(ref, 0.5 * ref) == math.inf
    assert sdr(ref, 0.5 * ref) == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-9)  # 6.02 dB
    noise = rng.standard_normal((2, 10000))
    noise -= ref * np.sum(noise * ref) / np.sum(ref * ref)  # orthogonal to ref
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2)) * 0.1  # 20 dB
    assert si_sdr(ref, 3.0 * (ref + noise)) == pytest.approx(20.0, abs=1e-9)


def make_item(seed=0, silent_vocals=False):
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    voc = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2) * (0 if silent_vocals else 1)
    acc = 0.1 * rng.standard_normal((2, SR))
    return Item(f"item{seed}", (voc + acc).astype(np.float32), voc.astype(np.float32), acc.astype(np.float32), SR)


def test_silent_reference_is_left_out():
    item = make_item(silent_vocals=True)
    row = score_item(item, {"vocals": item.mixture, "accompaniment": item.mixture})
    assert row["vocals_sdr"] is None and row["accompaniment_sdr"] == pytest.approx(
        sdr(item.accompaniment, item.mixture)
    )


def test_oracle_beats_mixture_and_mixture_sdr_is_the_ratio():
    item = make_item()
    mix_row, oracle_row = (evaluate([item], baselines())[k].rows[item.name] for k in (0, 1))
    expected = 10 * np.log10(
        np.sum(item.vocals.astype(np.float64) ** 2) / np.sum(item.accompaniment.astype(np.float64) ** 2)
    )
    assert mix_row["vocals_sdr"] == pytest.approx(expected, abs=1e-6)
    assert oracle_row["vocals_sdr"] > mix_row["vocals_sdr"] + 10
    est = oracle_irm(item.mixture, item.vocals, item.accompaniment)
    assert est["vocals"].shape == item.vocals.shape


@pytest.mark.slow
def test_eval_command_writes_reports(tmp_path, tiny_weights):
    for seed in (0, 1):
        item = make_item(seed)
        folder = tmp_path / "set" / item.name
        folder.mkdir(parents=True)
        for stem in ("mixture", "vocals", "accompaniment"):
            sf.write(folder / f"{stem}.wav", getattr(item, stem).T, SR, subtype="FLOAT")
    result = CliRunner().invoke(
        app, ["eval", str(tmp_path / "set"), "-m", str(tiny_weights), "-o", str(tmp_path / "report"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "MEDIAN" in result.output and "oracle_irm" in result.output and "tiny_fp32" in result.output
    assert (tmp_path / "report.csv").read_text().count("\n") == 1 + 3 * 2
    assert '"median"' in (tmp_path / "report.json").read_text()


def test_sdr_of_complex_arrays_counts_the_imaginary_part():
    """The one SDR serves the spectrogram checks too: complex arrays in complex128."""
    rng = np.random.default_rng(3)
    ref = (rng.standard_normal((2, 64, 40)) + 1j * rng.standard_normal((2, 64, 40))).astype(np.complex64)
    est = ref + 0.1j * np.abs(ref)  # wrong only in the imaginary part
    expected = 10 * math.log10(np.sum(np.abs(ref.astype(np.complex128)) ** 2) / np.sum((0.1 * np.abs(ref)) ** 2))
    assert sdr(ref, est) == pytest.approx(expected, abs=1e-6)
    assert sdr(ref, ref) == math.inf


def test_one_sdr_in_the_repository():
    """Tests and scripts score with uvrsep.evaluation.sdr; no second definition."""
    from tests.conftest import REPO

    found = [
        str(p.relative_to(REPO))
        for folder in ("uvrsep", "tests", "scripts")
        for p in (REPO / folder).rglob("*.py")
        if any(f"def {name}(" in p.read_text(encoding="utf-8") for name in ("sdr", "sdr_db", "_sdr"))
    ]
    assert found == ["uvrsep/evaluation.py"]
