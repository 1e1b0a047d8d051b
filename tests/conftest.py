"""Shared fixtures: small random weight files and short test signals, made at test time.

The golden fixtures of the original code live in the project's shared folder: ``$UVRSEP_SHARED``
if set, else ``../shared`` beside the checkout. Tests that need them are skipped (and say so)
where it is absent. Markers: ``slow`` (deselect with ``-m "not slow"``), ``gpu`` (skipped without
CUDA), ``needs_ffmpeg`` (skipped without ffmpeg on the PATH).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from uvrsep.network import AsppNetConfig, CascadedASPPNet

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UVRSEP_SHARED") or REPO.parent / "shared")
PARITY = SHARED / "fixtures" / "parity"
UVR_FIXTURES = SHARED / "fixtures" / "uvr"
SR = 44100
#: Width of the tests' random HP-layout net: 8 runs the network about 3x cheaper than 16 (the
#: official HP width) on the same code path; the family tests build their own widths.
TINY_CHANNELS = 8


def pytest_collection_modifyitems(config, items):
    """Skip, with the reason shown, what this machine cannot run."""
    no_ffmpeg = shutil.which("ffmpeg") is None
    no_cuda = not torch.cuda.is_available()
    for item in items:
        if no_ffmpeg and "needs_ffmpeg" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="ffmpeg is not installed"))
        if no_cuda and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU"))


# (channels, bins, seed, calibrate) -> (state dict, torch RNG state after the build): a calibrated
# net costs a forward pass (~0.9 s on 2 cores) and dozens of tests build the same ones.
_RANDOM_NETS: dict[tuple[int, int, int, bool], tuple[dict[str, torch.Tensor], torch.Tensor]] = {}


def random_net(channels: int = 16, bins: int = 672, seed: int = 0, calibrate: bool = True) -> CascadedASPPNet:
    """A random HP-layout net. ``calibrate`` sets the BatchNorm statistics from a forward pass
    on random magnitudes, so activations stay normalised and the mask varies over time and
    frequency (with PyTorch's initial statistics the mask is ~0.5 everywhere).

    Built once per argument set and copied after that; the global torch RNG is left as the
    build leaves it either way, so callers that draw from it after this see the same numbers."""
    key = (channels, bins, seed, calibrate)
    torch.manual_seed(seed)
    net = CascadedASPPNet(AsppNetConfig(bins=bins, channels=channels))
    if calibrate:
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration pass
    if key in _RANDOM_NETS:
        state, rng = _RANDOM_NETS[key]
        net.load_state_dict(state)
        torch.set_rng_state(rng)
        return net.eval()
    if calibrate:
        net.train()
        with torch.no_grad():
            net(torch.rand(1, 2, bins + 1, 256) ** 4)
    net.eval()
    _RANDOM_NETS[key] = ({k: v.clone() for k, v in net.state_dict().items()}, torch.get_rng_state())
    return net


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty uvrsep cache folder (never the user's)."""
    home = tmp_path_factory.mktemp("uvrsep_home")
    monkeypatch.setenv("UVRSEP_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def tiny_weights(weights_dir) -> Path:
    """fp32 weight file of a random HP-layout net, ``TINY_CHANNELS`` wide (seed 0)."""
    path = weights_dir / "tiny_fp32.pth"
    torch.save(random_net(channels=TINY_CHANNELS).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_weights_fp16(weights_dir) -> Path:
    """The same net stored in float16, as RVC ships its files."""
    path = weights_dir / "tiny_fp16.pth"
    torch.save(
        {
            k: v.half() if v.is_floating_point() else v
            for k, v in random_net(channels=TINY_CHANNELS).state_dict().items()
        },
        path,
    )
    return path


def music_like(seconds: float, sr: int = SR, channels: int = 2, seed: int = 1) -> np.ndarray:
    """float32 ``[channels, T]``: a vibrato tone, a chord and a little noise, in (-1, 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    voice = 0.3 * np.sin(2 * np.pi * (440 * t + 3 * np.sin(2 * np.pi * 5 * t)))
    chord = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (130.8, 164.8, 196.0))
    out = np.stack([voice + chord + 0.02 * rng.standard_normal(t.size) for _ in range(channels)])
    out[1 % channels] *= 0.8
    return out.astype(np.float32)


@pytest.fixture
def short_wav(tmp_path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, music_like(0.5).T, SR, subtype="PCM_16")
    return path
