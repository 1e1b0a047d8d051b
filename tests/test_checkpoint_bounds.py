"""Weight files are bounded by what they are: every tensor's shape is checked against the net the
file describes (built on the meta device) and that net's sizes against the families' limits,
before any real net is built, so a small hostile file is refused in one line at the cost of its
own size, wherever weights are read (check_weight_file, Separator, `separate -m`, `models
import`). Also: float8 / sparse / meta tensors, checkpoint metadata that cannot be used, and
`models import --name` longer than the file system takes."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from uvrsep.cli import app
from uvrsep.errors import IncompatibleCheckpointError
from uvrsep.network import Architecture, check_weight_file, detect_architecture, read_state_dict
from uvrsep.network.checkpoint import expected_shapes, read_checkpoint

FIRST_CONV = "stg1_low_band_net.enc1.conv1.conv.0.weight"
HP2 = Architecture("aspp", 64, dilations=(4, 8, 16, 16, 16))  # the 537238 net of 7/8/9_HP2


@functools.lru_cache(maxsize=1)
def _tiny_aspp() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = Architecture("aspp", 4).build(672).state_dict()
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def tiny_aspp() -> dict[str, torch.Tensor]:
    """A width-4 ASPP net's weights (1 MB in float16), a fresh copy."""
    return {k: v.clone() for k, v in _tiny_aspp().items()}


def tiny_vr51(nout: int = 4, nout_lstm: int = 8, bins: int = 672) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Architecture("vr51", nout, nout_lstm=nout_lstm, bins=bins).build(bins).state_dict()


def shapes(arch: Architecture) -> dict[str, torch.Size]:
    """Every key of ``arch``'s state dict and its shape (the net built on the meta device)."""
    with torch.device("meta"):
        return {k: v.shape for k, v in arch.build(arch.bins or 768).state_dict().items()}


def expanded(arch: Architecture) -> dict[str, torch.Tensor]:
    """Every tensor of ``arch``'s state dict, each a stride-0 view of one stored value: shapes
    exactly the net's, a file of a few hundred KB."""
    return {k: torch.ones((), dtype=torch.int64 if not s else torch.float16).expand(s) for k, s in shapes(arch).items()}


def meta_state(arch: Architecture) -> dict[str, torch.Tensor]:
    """Meta tensors (no data) of ``arch``'s shapes: :func:`detect_architecture` reads shapes only."""
    return {k: torch.empty(s, device="meta") for k, s in shapes(arch).items()}


def save(tmp_path, state, name="w.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


# -- shapes and sizes --------------------------------------------------------------------------


HOSTILE_SCRIPT = textwrap.dedent("""
    import json, sys
    try:
        import resource
    except ImportError:  # Windows: no limit, no peak figure from resource
        resource = None
    if resource is not None and sys.platform.startswith("linux"):
        # Address-space ceiling, so that a regression fails here instead of exhausting the machine.
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from typer.testing import CliRunner
    from uvrsep import Separator
    from uvrsep.cli import app
    from uvrsep.errors import IncompatibleCheckpointError
    from uvrsep.network import check_weight_file

    files, wav, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    results = []
    for path in files:
        for how in ("check_weight_file", "Separator"):
            try:
                check_weight_file(path) if how == "check_weight_file" else Separator(path, device="cpu")
                results.append([path, how, "accepted"])
            except IncompatibleCheckpointError as exc:
                results.append([path, how, str(exc)])
        for args in (["separate", wav, "-m", path, "-o", out, "--device", "cpu"],
                     ["models", "import", path, "--name", "hostile"]):
            r = CliRunner().invoke(app, args)
            results.append([path, args[0] + " " + args[1], f"exit {r.exit_code}: {r.output}"])
    if sys.platform.startswith("linux"):
        # This image's own high-water mark. (Linux carries ru_maxrss over an exec, so after a fork
        # from a large pytest process it reads the parent's size, not this script's.)
        status = open("/proc/self/status").read()
        peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 2**10
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource else 0
        peak_mb = peak / 2**20  # macOS: bytes
    print(json.dumps({"results": results, "peak_mb": peak_mb}))
""")


def hostile_files(tmp_path) -> dict[Path, str]:
    """Small files declaring huge nets, each with the words its refusal must contain."""
    files = {}
    # 150 KB: a first conv of 4096 channels (float16) and nothing else: the file.
    files[save(tmp_path, {FIRST_CONV: torch.zeros(4096, 2, 3, 3, dtype=torch.float16)}, "first_conv_4096.pth")] = (
        "makes this a cascaded ASPP net with width 4096; uvrsep takes 2 to 128"
    )
    wide = tiny_aspp()
    wide[FIRST_CONV] = torch.zeros(6144, 2, 3, 3)
    files[save(tmp_path, wide, "first_conv_6144.pth")] = "with width 6144"
    vr = tiny_vr51()
    vr["out.weight"] = torch.zeros(2, 6144, 1, 1, dtype=torch.float16)
    files[save(tmp_path, vr, "vr51_nout_6144.pth")] = "makes this a VR 5.1 net with nout 6144"
    # Every shape exactly 7_HP2's (137 M weights), every tensor one stored value repeated.
    files[save(tmp_path, expanded(HP2), "expanded_hp2.pth")] = "repeats stored values"
    return files


@pytest.mark.slow
def test_small_files_declaring_huge_nets_are_refused_in_one_line_and_little_memory(tmp_path):
    """The refusals happen before any real net is built: the whole process (torch imported,
    four hostile files through four entry points) peaks far below 1 GB (measured: 284 MB, of
    which 265 MB is torch and uvrsep imported). Today: 4.4 GB and a traceback, or the OOM
    killer."""
    files = hostile_files(tmp_path)
    assert all(path.stat().st_size < 2_000_000 for path in files)
    assert (tmp_path / "first_conv_4096.pth").stat().st_size < 160_000
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros((4410, 2), np.float32), 44100)
    proc = subprocess.run(
        [sys.executable, "-c", HOSTILE_SCRIPT, json.dumps([str(p) for p in files]), str(wav), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for path, how, outcome in report["results"]:
        words = files[next(p for p in files if str(p) == path)]
        assert "Traceback" not in outcome and "accepted" != outcome, (how, outcome)
        assert words in outcome and path in outcome, (how, outcome)
        if how in ("separate", "models import"):
            assert outcome.startswith("exit 1: error: ") and len(outcome.strip().splitlines()) == 1, (how, outcome)
    assert not (tmp_path / "out").exists()
    if sys.platform != "win32":
        assert 0 < report["peak_mb"] < 600, report["peak_mb"]


def test_a_tiny_file_with_a_4096_channel_first_conv_is_refused_by_its_shape(tmp_path):
    """The refusal is worked out from the shape alone (here also cheaply: a regression that builds
    the net would allocate gigabytes and fail this test slowly, see the slow test above)."""
    path = save(tmp_path, {FIRST_CONV: torch.zeros(4096, 2, 3, 3, dtype=torch.float16)})
    with pytest.raises(IncompatibleCheckpointError) as err:
        check_weight_file(path)
    assert str(err.value) == (
        f"{path}: tensor {FIRST_CONV} (4096, 2, 3, 3) makes this a cascaded ASPP net with width 4096; "
        "uvrsep takes 2 to 128 (the official nets have 16, 32 or 64)"
    )


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: tiny_vr51(bins=8192), "with bins 8192; uvrsep takes 32 to 4096 in steps of 32"),
        (lambda: tiny_vr51(nout=7), "with nout 7; uvrsep takes 4 to 128 in steps of 4"),
        (lambda: tiny_vr51(nout_lstm=6), "with nout_lstm 6; uvrsep takes 4 to 512 in steps of 4"),
    ],
    ids=["bins", "nout", "nout_lstm"],
)
def test_vr51_sizes_outside_the_families_are_refused(tmp_path, make, words):
    """Files consistent with a net that is not a plausible VR 5.1 net: bins far above any band
    config, or a nout / nout_lstm whose quarters do not add up (such a net builds, then fails
    with a traceback in the middle of a separation)."""
    path = save(tmp_path, make())
    with pytest.raises(IncompatibleCheckpointError, match=words):
        check_weight_file(path)


def test_limits_admit_every_official_family():
    from uvrsep.network.checkpoint import LIMITS

    for arch in (
        Architecture("aspp", 16),
        Architecture("aspp", 32, dilations=(4, 8, 16, 16), levels=5),
        HP2,
        Architecture("vr51", 16, bins=1024),
        Architecture("vr51", 64, bins=512),
    ):
        assert detect_architecture(meta_state(arch)) == arch
    assert LIMITS[("aspp", "width")][1] >= 2 * 64 and LIMITS[("vr51", "bins")][1] >= 2 * 1280


def test_shapes_are_checked_before_a_net_is_built(tmp_path, monkeypatch):
    """A width-4 file with one wrong shape deep inside is refused by detect_architecture, which
    builds no real net (only the meta one)."""
    state = tiny_aspp()
    key = "stg3_full_band_net.aspp.bottleneck.0.conv.0.weight"
    state[key] = torch.zeros(3, 3, 1, 1)
    path = save(tmp_path, state)
    built = []
    real_build = Architecture.build
    expected_shapes.cache_clear()  # the meta net's shapes are kept per architecture
    monkeypatch.setattr(
        Architecture, "build", lambda self, bins: built.append(torch.empty(0).device.type) or real_build(self, bins)
    )
    wants = rf"wrong shape: {key} \(3, 3, 1, 1\) \(net wants \(128, 320, 1, 1\)\)"
    with pytest.raises(IncompatibleCheckpointError, match=wants):
        check_weight_file(path)
    assert built == ["meta"]


def test_views_repeating_stored_values_are_refused_but_tied_weights_load(tmp_path):
    """A stride-0 expansion claims values the file does not hold; the same tensor under two keys
    (UVR's conv6 / conv7 share one module) is stored once and loads."""
    state = tiny_aspp()
    state["out.weight"] = torch.ones(1).expand(2, 8, 1, 1)
    repeats = r": tensor out.weight \(2, 8, 1, 1\) repeats stored values: 64 bytes claimed from 4 stored"
    with pytest.raises(IncompatibleCheckpointError, match=repeats):
        read_state_dict(save(tmp_path, state))
    arch = Architecture("aspp", 4, dilations=(4, 8, 16, 16, 16))
    tied = arch.build(672).state_dict()
    for suffix in ("conv.0.weight", "conv.1.weight", "conv.2.weight", "conv.2.bias"):
        tied[f"stg1_low_band_net.aspp.conv7.{suffix}"] = tied[f"stg1_low_band_net.aspp.conv6.{suffix}"]
    assert check_weight_file(save(tmp_path, tied, "tied.pth")) == arch


# -- tensor kinds ------------------------------------------------------------------------------


def _replaced(key: str, make) -> dict[str, torch.Tensor]:
    state = tiny_aspp()
    state[key] = make(state[key])
    return state


FLOATS = "weights must be floating point (float32, float16, bfloat16 or float64)"


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda t: t.to(torch.float8_e4m3fn), f"is float8_e4m3fn; {FLOATS}"),
        (lambda t: t.to(torch.float8_e5m2), f"is float8_e5m2; {FLOATS}"),
        (lambda t: t.to_sparse(), "is a sparse_coo tensor; weights must be dense tensors"),
        (lambda t: t.reshape(t.shape[0], -1).to_sparse_csr(), "is a sparse_csr tensor; weights must be dense tensors"),
        (lambda t: torch.empty(t.shape, device="meta"), "is a meta tensor; it holds no values"),
        (lambda t: t.to(torch.complex64), f"is complex64; {FLOATS}"),
    ],
    ids=["float8_e4m3fn", "float8_e5m2", "sparse_coo", "sparse_csr", "meta", "complex64"],
)
def test_float8_sparse_and_meta_tensors_are_one_line_refusals(tmp_path, make, words):
    with warnings.catch_warnings(action="ignore"):  # torch: "sparse CSR support is in beta"
        path = save(tmp_path, _replaced(FIRST_CONV, make))
    with pytest.raises(IncompatibleCheckpointError) as err:
        read_state_dict(path)
    assert str(err.value) == f"{path}: tensor {FIRST_CONV} {words}"


def test_float8_and_sparse_weights_through_the_cli(tmp_path, short_wav):
    f8 = save(tmp_path, _replaced("out.weight", lambda t: t.to(torch.float8_e4m3fn)), "f8.pth")
    sparse = save(tmp_path, _replaced("out.weight", lambda t: t.to_sparse()), "sparse.pth")
    for path, args in (
        (f8, ["separate", str(short_wav), "-m", str(f8), "-o", str(tmp_path / "out")]),
        (sparse, ["models", "import", str(sparse)]),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith(f"error: {path}: tensor out.weight is ")
        assert len(result.output.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_non_string_keys_are_not_a_state_dict(tmp_path):
    state = tiny_aspp()
    state[3] = state["out.weight"]
    path = save(tmp_path, state)
    with pytest.raises(IncompatibleCheckpointError, match=f"{path}: does not hold a state dict of tensors"):
        check_weight_file(path)


# -- checkpoint metadata -----------------------------------------------------------------------


def checkpoint(tmp_path, name="ckpt.pth", **meta):
    return save(tmp_path, {"format": "uvrsep-checkpoint/1", "state_dict": tiny_aspp(), **meta}, name)


BAD_META = [
    ({"primary": "Banjo"}, "its 'primary' field: unknown stem 'Banjo'"),
    ({"primary": ["Vocals"]}, "its 'primary' field: ['Vocals'] (list) is not a stem name"),
    ({"primary": 1}, "its 'primary' field: 1 (int) is not a stem name"),
    ({"params": 5}, "its 'params' field is 5 (int), not a band config name"),
    ({"params": ["4band_v2"]}, "its 'params' field is ['4band_v2'] (list), not a band config name"),
    ({"params": "4band\nv2"}, "its 'params' field is '4band\\nv2', not a band config name"),
    ({"params": "9band_v9"}, "its 'params' field names no band config uvrsep has: '9band_v9' (known: 1band"),
    pytest.param(
        {"params": "x" * 300 + ".json"},
        "its 'params' field is not a usable path (",
        marks=pytest.mark.skipif(sys.platform == "win32", reason="Windows answers 'no such file'"),
    ),
]


@pytest.mark.parametrize("meta, words", BAD_META)
def test_checkpoint_metadata_that_cannot_be_used_is_refused_naming_the_field(tmp_path, meta, words):
    path = checkpoint(tmp_path, **meta)
    with pytest.raises(IncompatibleCheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: {words}") and "\n" not in str(err.value)


@pytest.mark.parametrize("meta, words", BAD_META[:2] + BAD_META[3:4])
def test_bad_checkpoint_metadata_is_one_line_wherever_the_file_is_used(tmp_path, short_wav, meta, words):
    """Today: KeyError / TypeError tracebacks from the separator's use of the fields."""
    from uvrsep import Separator
    from uvrsep.separator import model_stems

    path = checkpoint(tmp_path, **meta)
    for use in (model_stems, lambda p: Separator(p, device="cpu")):
        with pytest.raises(IncompatibleCheckpointError, match=re.escape(f"{path}: {words}")):
            use(path)
    result = CliRunner().invoke(app, ["separate", str(short_wav), "-m", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.startswith(f"error: {path}: {words}"), result.output
    assert len(result.output.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_checkpoint_primary_in_any_spelling_is_read_in_uvrs(tmp_path):
    from uvrsep.separator import model_stems

    path = checkpoint(tmp_path, primary="no_echo", params="4band_v2")
    assert read_checkpoint(path)[1]["primary"] == "No Echo"
    assert model_stems(path) == ("no_echo", "echo")
    assert read_checkpoint(checkpoint(tmp_path, "plain.pth"))[1]["primary"] is None


# -- models import --name ------------------------------------------------------------------------


def test_models_import_name_longer_than_the_file_system_takes(tmp_path, isolated_cache):
    """Today: OSError (File name too long) and a traceback. The limit is the file system's,
    less a margin for what uvrsep appends (.pth, .part, lock files), counted in bytes."""
    weights = save(tmp_path, tiny_aspp())
    result = CliRunner().invoke(app, ["models", "import", str(weights), "--name", "n" * 300])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith(f"error: --name '{'n' * 37}...' is too long: 300 bytes, at most ")
    assert len(result.output.splitlines()) == 1

    from uvrsep.registry import NAME_MARGIN, name_limit

    limit = name_limit(isolated_cache) - NAME_MARGIN
    too_long = "é" * (limit // 2 + 1)  # few enough characters, too many bytes in UTF-8
    result = CliRunner().invoke(app, ["models", "import", str(weights), "--name", too_long])
    assert result.exit_code == 1
    size = len(too_long.encode())
    assert result.output.startswith(f"error: --name '{too_long[:37]}...' is too long: {size} bytes, at most {limit} ")
    assert not (isolated_cache / "models").exists()
    longest = "n" * limit
    result = CliRunner().invoke(app, ["models", "import", str(weights), "--name", longest])
    assert result.exit_code == 0, result.output
    assert (isolated_cache / "models" / f"{longest}.pth").is_file()
