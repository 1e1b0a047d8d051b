import re

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from uvrsep.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_separate_writes_both_stems(tiny_weights, short_wav, tmp_path):
    out = tmp_path / "out"
    result = invoke("separate", short_wav, "--model", tiny_weights, "--output-dir", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "4band_v2" in result.output  # the one-line notice about the default band config
    for stem in ("vocals", "instrumental"):
        data, sr = sf.read(out / f"clip_{stem}.wav")
        info = sf.info(str(out / f"clip_{stem}.wav"))
        assert sr == 44100 and data.shape == (22050, 2) and info.subtype == "PCM_16"
    assert sorted(p.name for p in out.iterdir()) == ["clip_instrumental.wav", "clip_vocals.wav"]


@pytest.mark.parametrize("precision, note", [("tf32", True), pytest.param("bf16", False, marks=pytest.mark.slow)])
def test_precision_reaches_the_network(tiny_weights, short_wav, tmp_path, precision, note):
    result = invoke(
        "separate", short_wav, "-m", tiny_weights, "-o", tmp_path, "--device", "cpu", "--precision", precision
    )
    assert result.exit_code == 0, result.output
    assert (f"{precision} is not used on cpu" in result.output) is note
    assert (tmp_path / "clip_vocals.wav").is_file()
    bad = invoke("separate", short_wav, "-m", tiny_weights, "-o", tmp_path / "x", "--precision", "fp64")
    assert bad.exit_code == 2 and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_flac_24_bit_and_options(tiny_weights, short_wav, tmp_path):
    result = invoke(
        "separate",
        short_wav,
        "-m",
        tiny_weights,
        "-o",
        tmp_path,
        "--output-format",
        "flac",
        "--bit-depth",
        "24",
        "--aggressiveness",
        "5",
        "--tta",
        "--postprocess",
        "--batch-size",
        "2",
        "--params",
        "4band_v2",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "clip_vocals.flac")).subtype == "PCM_24"


def test_existing_outputs_are_skipped_unless_overwrite(tiny_weights, short_wav, tmp_path):
    target = tmp_path / "clip_vocals.wav"
    target.write_bytes(b"precious")
    result = invoke("separate", short_wav, "-m", tiny_weights, "-o", tmp_path, "--device", "cpu")
    assert result.exit_code == 0
    assert "skipped" in result.output and target.read_bytes() == b"precious"
    assert not (tmp_path / "clip_instrumental.wav").exists()
    result = invoke("separate", short_wav, "-m", tiny_weights, "-o", tmp_path, "--device", "cpu", "--overwrite")
    assert result.exit_code == 0
    assert sf.info(str(target)).frames == 22050


@pytest.mark.slow
def test_bad_file_does_not_stop_the_others(tiny_weights, short_wav, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    result = invoke(
        "separate", tmp_path / "missing.wav", bad, short_wav, "-m", tiny_weights, "-o", tmp_path, "--device", "cpu"
    )
    assert result.exit_code == 1
    assert "missing.wav: no such file" in result.output
    assert "broken.wav: cannot decode audio" in result.output
    assert "Traceback" not in result.output
    assert "1 processed, 0 skipped, 2 failed" in result.output
    assert (tmp_path / "clip_vocals.wav").exists()
    assert not list(tmp_path.glob("broken_*")) and not list(tmp_path.glob("*.part"))


def test_bad_weights_are_one_line_errors(short_wav, tmp_path):
    not_weights = tmp_path / "model.pth"
    torch.save({"linear.weight": torch.zeros(3, 3)}, not_weights)
    result = invoke("separate", short_wav, "-m", not_weights, "-o", tmp_path)
    assert result.exit_code == 1
    assert "model.pth: not a supported VR weight file" in result.output
    assert "Traceback" not in result.output
    result = invoke("separate", short_wav, "-m", tmp_path / "none.pth")
    assert result.exit_code == 1 and "weight file not found" in result.output


def test_bad_option_values(tiny_weights, short_wav):
    assert invoke("separate", short_wav, "-m", tiny_weights, "--bit-depth", "12").exit_code == 2
    assert invoke("separate", short_wav, "-m", tiny_weights, "--aggressiveness", "101").exit_code == 2
    result = invoke("separate", short_wav, "-m", tiny_weights, "--params", "nope")
    assert result.exit_code == 2 and "error: --params nope: unknown band config;" in result.output  # a usage error


def test_params_and_version():
    result = invoke("params")
    assert result.exit_code == 0 and "4band_v2" in result.output.split()
    assert invoke("version").exit_code == 0


def _help(*command):
    return runner.invoke(app, [*command, "--help"], env={"COLUMNS": "220", "TERMINAL_WIDTH": "220", "NO_COLOR": "1"})


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            for sub, subcmd in cmd.commands.items():
                yield (name, sub), subcmd
        else:
            yield (name,), cmd


def test_every_help_renders_with_its_defaults():
    """rich read "[default: ...]" written inside help strings as markup and dropped it: defaults
    come from typer (show_default) and every command's help renders."""
    for path, cmd in _commands():
        result = _help(*path)
        assert result.exit_code == 0, (path, result.output)
        # A dropped "[default: ...]" left "path ." behind.
        assert not re.search(r"\w \.(\s|$)", result.output), (path, result.output)
        for param in cmd.params:
            assert "[default" not in (getattr(param, "help", None) or ""), (path, param.name)
    text = " ".join(_help("separate").output.split())
    # (plain click help: a range follows the default inside the brackets, "[default: (...); x>=1]")
    for shown in (
        "[default: (HP2_all_vocals)]",
        "[default: (the model's, 44100)]",
        "[default: (1 on CPU, 4 on GPU)",
        "[default: {name}_{stem}.{ext}]",
        "[default: wav]",
        "[default: (the registry's, else 4band_v2",
    ):
        assert shown in text, shown
    assert "[default: auto]" in " ".join(_help("train").output.split())


def test_version_and_short_help_flags():
    from uvrsep import __version__

    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0 and result.output.strip() == f"uvrsep {__version__}"
    result = invoke("-h")
    assert result.exit_code == 0 and "separate" in result.output
    assert invoke("separate", "-h").exit_code == 0


def test_help_and_version_do_not_import_torch():
    """torch takes seconds to import: the CLI's start-up, --help and --version must not pay it."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom uvrsep.cli import app\n"
        "r = CliRunner()\nassert r.invoke(app, ['--version']).exit_code == 0\n"
        "assert r.invoke(app, ['separate', '--help']).exit_code == 0\n"
        "assert r.invoke(app, ['models', '--help']).exit_code == 0\n"
        "heavy = [m for m in ('torch', 'librosa', 'scipy', 'numba') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_params_lists_bands_rates_and_models():
    result = invoke("params")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert "7350/7350/14700/44100" in lines["4band_v2"] and "640/320/512/960" in lines["4band_v2"]
    assert "HP2_all_vocals" in lines["4band_v2"] and "VR-DeEchoNormal" in lines["4band_v3"]


@pytest.mark.slow
def test_uvr_semantics_options(tiny_weights, short_wav, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "separate",
        short_wav,
        "-m",
        tiny_weights,
        "-o",
        out,
        "--device",
        "cpu",
        "--semantics",
        "uvr",
        "--aggressiveness",
        "-20",
        "--window-size",
        "320",
        "--primary-stem",
        "Vocals",
        "--high-end",
        "mirroring",
        "--tta",
        "--postprocess",
        "--postprocess-threshold",
        "0.1",
    )
    assert result.exit_code == 0, result.output
    assert "primary stem" not in result.output  # given: no notice
    assert sorted(p.name for p in out.iterdir()) == ["clip_instrumental.wav", "clip_vocals.wav"]


@pytest.mark.parametrize(
    "args, message, code",
    [
        (
            ["--semantics", "uvr", "--high-end", "mirroring2"],
            "mirroring2",
            2,
        ),  # usage errors, before any model is loaded
        (["--aggressiveness", "-5"], "between 0 and 100 with rvc semantics", 2),
        (["--primary-stem", "kazoo"], "unknown stem 'kazoo'", 2),
        (["--semantics", "uvr", "--window-size", "256"], "window size 256 is too small", 1),  # needs the net's context
    ],
)
def test_bad_uvr_options_are_one_line_errors(tiny_weights, short_wav, tmp_path, args, message, code):
    out = tmp_path / "out"
    result = invoke("separate", short_wav, "-m", tiny_weights, "-o", out, "--device", "cpu", *args)
    assert result.exit_code == code and message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_import_takes_either_stem_spelling(isolated_cache, tiny_weights):
    from uvrsep.registry import load_registry

    assert invoke("models", "import", tiny_weights, "--name", "mine", "--primary", "no_echo").exit_code == 0
    assert load_registry(isolated_cache).get("mine").primary == "No Echo"
    result = invoke("models", "import", tiny_weights, "--name", "other", "--primary", "kazoo")
    assert result.exit_code == 1 and "unknown stem 'kazoo'" in result.output
