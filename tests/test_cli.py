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


def test_flac_24_bit_and_options(tiny_weights, short_wav, tmp_path):
    result = invoke(
        "separate", short_wav, "-m", tiny_weights, "-o", tmp_path, "--output-format", "flac",
        "--bit-depth", "24", "--aggressiveness", "5", "--tta", "--postprocess", "--batch-size", "2",
        "--params", "4band_v2", "--device", "cpu",
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


def test_bad_file_does_not_stop_the_others(tiny_weights, short_wav, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    result = invoke("separate", tmp_path / "missing.wav", bad, short_wav, "-m", tiny_weights, "-o", tmp_path, "--device", "cpu")
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
    assert result.exit_code == 1 and "unknown band config 'nope'" in result.output


def test_params_and_version():
    result = invoke("params")
    assert result.exit_code == 0 and "4band_v2" in result.output.split()
    assert invoke("version").exit_code == 0
