"""A device the machine lacks (``--device mps`` off Apple silicon, ``--device cuda`` without a
CUDA GPU) is a one-line usage error naming the flag, found before any model is loaded or
downloaded and before anything is written. The absence is simulated, so this runs anywhere."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep import Separator
from uvrsep.cli import app
from uvrsep.errors import ConfigError

MESSAGES = {
    "mps": "--device mps: MPS (Apple-silicon GPU) is not available on this machine (use --device auto or --device cpu)",
    "cuda": "--device cuda: no CUDA GPU is available to this process (use --device auto or --device cpu)",
}


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_separate_on_an_absent_device(no_gpu, device, tmp_path, isolated_cache):
    song = tmp_path / "song.wav"
    sf.write(song, music_like(0.2).T, SR)
    out = tmp_path / "out"
    # The default model is not cached: without the early check it would be downloaded first.
    result = CliRunner().invoke(app, ["separate", str(song), "--device", device, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [f"error: {MESSAGES[device]}"]
    assert not out.exists() and not (isolated_cache / "models").exists()


@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_train_and_eval_on_an_absent_device(no_gpu, device, tmp_path, tiny_weights):
    result = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--device", device]
    )
    assert result.exit_code == 2 and result.output.splitlines() == [f"error: {MESSAGES[device]}"]
    item = tmp_path / "items" / "a"
    item.mkdir(parents=True)
    for stem in ("mixture", "vocals", "accompaniment"):
        sf.write(item / f"{stem}.wav", music_like(0.2).T, SR)
    result = CliRunner().invoke(
        app,
        ["eval", str(tmp_path / "items"), "-m", str(tiny_weights), "--device", device, "-o", str(tmp_path / "report")],
    )
    assert result.exit_code == 1 and result.output.splitlines() == [f"error: {MESSAGES[device]}"]
    assert not (tmp_path / "report.csv").exists()


def test_the_api_names_its_argument(no_gpu, tiny_weights):
    with pytest.raises(
        ConfigError,
        match=r"^device='mps': MPS \(Apple-silicon GPU\) is not available on this machine "
        r"\(use device='auto' or device='cpu'\)$",
    ):
        Separator(tiny_weights, device="mps")
    with pytest.raises(ConfigError, match=r"^device='cuda:1': no CUDA GPU"):
        Separator(tiny_weights, device="cuda:1")
