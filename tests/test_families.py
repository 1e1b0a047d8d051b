"""Every VR network family and width: random weights with the official key layout are detected,
loaded from fp16 and fp32 files, and run (anchors.md §c gives the layouts)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import PARITY
from uvrsep.network import Architecture, detect_architecture, load_network

# (name, architecture, band bins, tensors in the state dict, parameters in millions)
FAMILIES = [
    ("31191 (v4/SP)", Architecture("aspp", 16), 672, 459, 7.92),
    ("33966 (7-branch)", Architecture("aspp", 16, dilations=(4, 8, 16, 16, 16)), 672, 515, 8.62),
    ("123812 (HP)", Architecture("aspp", 32), 672, 459, 31.62),
    ("129605 (5 levels)", Architecture("aspp", 16, dilations=(4, 8, 16, 16), levels=5), 768, 559, 33.09),
    ("537238 (HP2, 7-branch)", Architecture("aspp", 64, dilations=(4, 8, 16, 16, 16)), 672, 515, 137.41),
    ("VR 5.1 nout 16 (DeNoise-Lite)", Architecture("vr51", 16, bins=1024), 1024, 689, 4.40),
    ("VR 5.1 nout 32", Architecture("vr51", 32, bins=672), 672, 689, 14.46),
    ("VR 5.1 nout 48 (DeEcho)", Architecture("vr51", 48, bins=672), 672, 689, 31.69),
    ("VR 5.1 nout 64 (DeEcho-DeReverb)", Architecture("vr51", 64, bins=672), 672, 689, 55.80),
]


# The families over 10 million parameters take seconds each: full suite only (the quick loop keeps
# a 5-branch and a 7-branch ASPP net and a VR 5.1 net).
CASES = [pytest.param(*f, id=f[0], marks=[pytest.mark.slow] if f[4] > 10 else []) for f in FAMILIES]


@pytest.mark.parametrize("name, arch, bins, n_tensors, mparams", CASES)
def test_family_detect_load_run(tmp_path, name, arch, bins, n_tensors, mparams):
    torch.manual_seed(0)
    net = arch.build(bins)
    state = net.state_dict()
    assert len(state) == n_tensors
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - mparams) < 0.01
    assert detect_architecture(state) == arch
    for dtype in (torch.float32, torch.float16):
        path = tmp_path / f"w_{dtype}.pth"
        torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, path)
        loaded = load_network(path, bins)
        assert loaded.architecture == arch and loaded.file_dtype == dtype
        del loaded
    loaded = load_network(path, bins)
    frames = 64 if arch.levels == 5 else 32
    with torch.inference_mode():
        mask = loaded.net(torch.rand(1, 2, bins + 1, frames))
    assert mask.shape == (1, 2, bins + 1, frames)
    assert torch.isfinite(mask).all() and 0 <= float(mask.min()) and float(mask.max()) <= 1


def _keys_file(path):
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {row[0]: row[1] for row in rows}


@pytest.mark.parametrize(
    "listing, arch",
    [
        ("keys_123812KB.txt", Architecture("aspp", 32)),
        ("vr51/keys_vr51_nout48.txt", Architecture("vr51", 48, bins=672)),
    ],
)
def test_key_layout_matches_official_listing(listing, arch):
    path = PARITY / listing
    if not path.is_file():
        pytest.skip("the golden fixtures ($UVRSEP_SHARED or ../shared)/fixtures/parity are not present")
    expected = _keys_file(path)
    ours = {k: str(tuple(v.shape)) for k, v in arch.build(672).state_dict().items()}
    assert ours == expected


@pytest.mark.slow
def test_seven_branch_and_vr51_layouts_per_anchors():
    hp2 = Architecture("aspp", 64, dilations=(4, 8, 16, 16, 16)).build(672).state_dict()
    assert hp2["stg2_bridge.conv.0.weight"].shape == (32, 66, 1, 1)
    assert hp2["stg3_bridge.conv.0.weight"].shape == (64, 130, 1, 1)
    assert hp2["out.weight"].shape == (2, 128, 1, 1)
    for i in (3, 4, 5, 6, 7):  # depthwise + pointwise + BN, conv6 and conv7 separate
        assert hp2[f"stg1_low_band_net.aspp.conv{i}.conv.0.weight"].shape == (512, 1, 3, 3)
        assert hp2[f"stg1_low_band_net.aspp.conv{i}.conv.1.weight"].shape == (512, 512, 1, 1)
    assert hp2["stg1_low_band_net.aspp.bottleneck.0.conv.0.weight"].shape == (1024, 7 * 512, 1, 1)
    vr = Architecture("vr51", 64, bins=672).build(672).state_dict()
    assert vr["out.weight"].shape == (2, 64, 1, 1)
    assert vr["aux_out.weight"].shape == (2, 48, 1, 1)
    assert vr["stg3_full_band_net.lstm_dec2.lstm.weight_ih_l0"].shape == (256, 336)
    assert vr["stg3_full_band_net.lstm_dec2.lstm.weight_hh_l0"].shape == (256, 64)
    assert vr["stg1_low_band_net.0.lstm_dec2.lstm.weight_ih_l0"].shape == (256, 168)
    assert vr["stg1_high_band_net.lstm_dec2.lstm.weight_hh_l0"].shape == (128, 32)
    assert vr["stg3_full_band_net.lstm_dec2.dense.1.running_mean"].shape == (336,)
