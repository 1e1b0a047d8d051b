import pytest
import torch

from tests.conftest import TINY_CHANNELS, random_net
from uvrsep.errors import IncompatibleCheckpointError
from uvrsep.network import Architecture, AsppNetConfig, CascadedASPPNet, CascadedNet, LstmNetConfig, load_network
from uvrsep.network.layers import crop_center


def test_crop_center_crops_time_only():
    skip = torch.arange(2 * 3 * 8 * 10, dtype=torch.float32).reshape(2, 3, 8, 10)
    target = torch.zeros(2, 3, 8, 6)
    out = crop_center(skip, target)
    assert out.shape == (2, 3, 8, 6)
    assert torch.equal(out, skip[:, :, :, 2:8])
    assert crop_center(skip, torch.zeros(2, 3, 8, 10)) is skip
    with pytest.raises(ValueError):
        crop_center(target, skip)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [16, 32])
def test_mask_shape_and_range(channels):
    net = CascadedASPPNet(AsppNetConfig(bins=672, channels=channels)).eval()
    with torch.inference_mode():
        mask = net(torch.rand(2, 2, 673, 256))
        aux = net.forward_with_aux(torch.rand(1, 2, 673, 256))
    assert mask.shape == (2, 2, 673, 256)
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    assert torch.equal(mask[:, :, 672], mask[:, :, 671])  # replicate-padded last row
    assert [a.shape for a in aux] == [(1, 2, 673, 256)] * 3


def test_official_key_layout_for_123812kb():
    from tests.conftest import PARITY

    listing = PARITY / "keys_123812KB.txt"
    if not listing.is_file():
        pytest.skip("../shared/fixtures/parity is not present")
    rows = [line.split() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]
    expected = {row[0]: row for row in rows}
    ours = CascadedASPPNet(AsppNetConfig(bins=672, channels=32)).state_dict()
    assert set(ours) == set(expected)
    for key, tensor in ours.items():
        assert str(tuple(tensor.shape)).replace(" ", "") in " ".join(expected[key]).replace(" ", ""), key


def test_7_branch_aspp_keeps_conv6_and_conv7():
    net = CascadedASPPNet(AsppNetConfig(bins=672, channels=16, dilations=(4, 8, 16, 16, 16)))
    keys = net.state_dict()
    assert "stg1_low_band_net.aspp.conv6.conv.0.weight" in keys
    assert "stg1_low_band_net.aspp.conv7.conv.0.weight" in keys
    assert keys["stg1_low_band_net.aspp.bottleneck.0.conv.0.weight"].shape[1] == 7 * 128


@pytest.mark.slow
def test_fp16_and_fp32_files_load_to_same_fp32_net(tiny_weights, tiny_weights_fp16):
    a = load_network(tiny_weights, 672)
    b = load_network(tiny_weights_fp16, 672)
    assert a.file_dtype == torch.float32 and b.file_dtype == torch.float16
    assert a.net.config.channels == TINY_CHANNELS
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and va.dtype == vb.dtype
        if va.is_floating_point():
            assert va.dtype == torch.float32
            torch.testing.assert_close(va, vb, atol=1e-2, rtol=1e-3)


def test_missing_and_misshapen_keys_are_named(tmp_path):
    state = random_net(calibrate=False).state_dict()
    del state["out.weight"]
    state["aux1_out.weight"] = torch.zeros(2, 99, 1, 1)
    state["extra.thing"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(IncompatibleCheckpointError) as err:
        load_network(path, 672)
    message = str(err.value)
    assert "broken.pth" in message
    assert "missing: out.weight" in message
    assert "unexpected: extra.thing" in message
    assert "aux1_out.weight (2, 99, 1, 1) (net wants (2, 16, 1, 1))" in message
    assert "cascaded ASPP net (width 16" in message


def test_vr51_weights_pin_their_bins(tmp_path):
    state = CascadedNet(LstmNetConfig(bins=672, nout=16)).state_dict()
    path = tmp_path / "VR-DeEchoNormal.pth"
    torch.save(state, path)
    loaded = load_network(path)  # bins come from the LSTM input size
    assert loaded.architecture == Architecture(family="vr51", width=16, nout_lstm=128, bins=672)
    with pytest.raises(IncompatibleCheckpointError, match="needs a band config with 672 bins, not 768"):
        load_network(path, 768)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
        (b"\x00\x01garbage" * 10, "not a readable PyTorch weight file"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(IncompatibleCheckpointError, match=message):
        load_network(path, 672)


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(IncompatibleCheckpointError, match="not found"):
        load_network(tmp_path / "nothere.pth", 672)
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(IncompatibleCheckpointError, match="state dict of tensors"):
        load_network(path, 672)


def _calibrated(net: torch.nn.Module, bins: int) -> torch.nn.Module:
    """BatchNorm statistics from one pass, so that the fused and unfused nets differ if the
    fusion (or the decoders' chunked convolution) is wrong."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.rand(1, 2, bins + 1, 128) ** 4)
    return net.eval()


@pytest.mark.parametrize("family", ["aspp", "vr51"])
def test_inference_rewrites_keep_the_function(family):
    """fuse_for_inference (BatchNorm folded, decoders convolving the upsampled input in channel
    groups and the skip apart, in-place activations) and the aux-free forward give the original
    net's mask to float rounding; forward_with_aux's final mask is forward's."""
    import copy

    from uvrsep.network.fusion import fuse_for_inference

    torch.manual_seed(3)
    if family == "aspp":
        net = CascadedASPPNet(AsppNetConfig(bins=64, channels=16, context=8))
    else:
        net = CascadedNet(LstmNetConfig(bins=64, nout=16, nout_lstm=32, context=8))
    net = _calibrated(net, 64)
    x = torch.rand(2, 2, 65, 48) ** 2
    with torch.inference_mode():
        plain = net(x)
        with_aux = net.forward_with_aux(x)[0]
        fused = fuse_for_inference(copy.deepcopy(net))(x)
    assert torch.equal(plain, with_aux)
    assert float((fused - plain).abs().max()) < 1e-4  # fp32 rounding: the plain net is 3e-5 from its fp64 twin
    assert float((plain - plain.mean()).abs().max()) > 0.05  # the mask varies: the check has teeth


def test_loading_weights_draws_no_random_initialisation(tiny_weights, monkeypatch):
    """The net is built on the meta device and then filled from the file: PyTorch's random
    initialisation (a third of the load time of the 64-wide HP2 net) would be overwritten."""

    def only_on_meta(init):
        def checked(tensor, *args, **kwargs):
            assert tensor.device.type == "meta", "random initialisation of real memory while loading weights"
            return init(tensor, *args, **kwargs)

        return checked

    for name in ("kaiming_uniform_", "uniform_", "ones_", "zeros_"):
        monkeypatch.setattr(torch.nn.init, name, only_on_meta(getattr(torch.nn.init, name)))
    loaded = load_network(tiny_weights, 672)
    want = torch.load(tiny_weights, weights_only=True)
    for key, value in loaded.net.state_dict().items():
        assert torch.equal(value, want[key].to(value.dtype)), key
