"""Weight files that cannot be right are refused when read, naming the file and the tensor, in
`separate` (Separator) and `models import` alike."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from typer.testing import CliRunner

from uvrsep.cli import app
from uvrsep.errors import IncompatibleCheckpointError
from uvrsep.network import AsppNetConfig, CascadedASPPNet, check_weight_file, read_state_dict

KEY = "stg1_low_band_net.enc1.conv1.conv.0.weight"


def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return CascadedASPPNet(AsppNetConfig(bins=672, channels=4)).state_dict()


def save(tmp_path, state, name="w.pth") -> str:
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("bad, count", [(float("nan"), "all"), (float("inf"), 1)])
def test_non_finite_tensors_are_refused_naming_the_tensor(tmp_path, bad, count):
    state = tiny_state()
    n = state[KEY].numel() if count == "all" else 1
    state[KEY].view(-1)[:n] = bad
    path = save(tmp_path, state)
    with pytest.raises(IncompatibleCheckpointError) as err:
        read_state_dict(path)
    assert (
        str(err.value)
        == f"{path}: tensor {KEY} holds {n} NaN or infinite value(s) of {state[KEY].numel()}; the file is damaged"
    )


def test_all_tensors_nan_in_float16_counts_the_others(tmp_path):
    state = {
        k: torch.full_like(v, float("nan")).half() if v.is_floating_point() else v for k, v in tiny_state().items()
    }
    path = save(tmp_path, state)
    with pytest.raises(
        IncompatibleCheckpointError, match=r"holds .* NaN or infinite value\(s\) .*\(and \d+ more tensors\)"
    ):
        check_weight_file(path)


def test_integer_weights_are_refused_not_a_stopiteration(tmp_path):
    state = {k: (v * 100).to(torch.int32) if v.is_floating_point() else v for k, v in tiny_state().items()}
    path = save(tmp_path, state)
    with pytest.raises(
        IncompatibleCheckpointError,
        match=rf"{path}: tensor \S+ is int32 \(and \d+ more tensors\); weights must be floating point",
    ):
        read_state_dict(path)


def test_batchnorm_counters_stay_integer(tmp_path):
    state = tiny_state()
    assert any(k.endswith("num_batches_tracked") and not v.is_floating_point() for k, v in state.items())
    assert check_weight_file(save(tmp_path, state), "aspp", 4).width == 4


def test_separator_refuses_damaged_weights(tmp_path):
    from uvrsep import Separator

    state = tiny_state()
    state[KEY].view(-1)[0] = float("nan")
    path = save(tmp_path, state, "HP2_damaged.pth")
    with pytest.raises(IncompatibleCheckpointError, match=f"HP2_damaged.pth: tensor {KEY} holds 1 NaN"):
        Separator(path, device="cpu")
    ints = save(tmp_path, {k: v.to(torch.int32) for k, v in tiny_state().items()}, "ints.pth")
    with pytest.raises(IncompatibleCheckpointError, match="is int32"):
        Separator(ints, device="cpu")


def test_models_import_refuses_damaged_weights_in_one_line(tmp_path, isolated_cache):
    state = tiny_state()
    state[KEY].view(-1)[0] = float("inf")
    path = save(tmp_path, state)
    result = CliRunner().invoke(app, ["models", "import", str(path)])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"error: {path}: tensor {KEY} holds 1 NaN or infinite value(s) of {state[KEY].numel()}; the file is damaged"
    )
    assert not (isolated_cache / "models").exists()


def test_raw_pickle_files_give_no_torch_warning(tmp_path, isolated_cache):
    path = tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))  # torch warns about protocol 4 here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(IncompatibleCheckpointError, match="not a readable PyTorch weight file"):
            read_state_dict(path)
    assert caught == []
    result = CliRunner().invoke(app, ["models", "import", str(path)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "Warning" not in result.output and "pickle protocol" not in result.output


def test_legacy_weight_files_still_load_silently(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save(tiny_state(), path, _use_new_zipfile_serialization=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_weight_file(path, "aspp", 4).family == "aspp"
    assert caught == []


class _RunsCode:
    """A pickle that would run a command when loaded unsafely."""

    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize("payload", [{"a": _RunsCode()}, {"w": object()}])
def test_a_pickle_holding_code_is_refused_without_advice_to_load_it_unsafely(payload, tmp_path):
    """torch's own message says to re-run torch.load with weights_only=False or to allow-list the
    class: advice a user must never get from uvrsep."""
    path = tmp_path / "evil.pth"
    torch.save(payload, path)
    result = CliRunner().invoke(app, ["separate", str(path), "-m", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "holds Python objects besides tensors, which could run code if loaded" in result.output
    for advice in ("weights_only", "allowlist", "safe_globals", "trust"):
        assert advice not in result.output, result.output
    assert "this must never run" not in result.output
