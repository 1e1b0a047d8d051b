"""The Python API's written contract (issue 24): what an array, a file object or bytes may be,
how each dtype is scaled, what is refused, and Stems as a read-only mapping."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep.audio import as_waveform, read_audio_object
from uvrsep.errors import ConfigError, EmptyAudioError, UvrsepError
from uvrsep.stems import Stems

runner = CliRunner()


def _pcm(wave: np.ndarray, dtype: str) -> np.ndarray:
    """``wave`` [C, T] as soundfile would read it from an integer PCM file: [T, C] of ``dtype``."""
    buffer = io.BytesIO()
    sf.write(buffer, wave.T, SR, format="WAV", subtype={"int16": "PCM_16", "int32": "PCM_32"}[dtype])
    buffer.seek(0)
    return sf.read(buffer, dtype=dtype)[0]


@pytest.mark.parametrize("dtype", ["int16", "int32"])
def test_integer_arrays_are_scaled_as_soundfile_scales_them(dtype):
    wave = music_like(0.1)
    ints = _pcm(wave, dtype)
    buffer = io.BytesIO()
    sf.write(buffer, wave.T, SR, format="WAV", subtype={"int16": "PCM_16", "int32": "PCM_32"}[dtype])
    buffer.seek(0)
    floats = sf.read(buffer, dtype="float32")[0].T
    np.testing.assert_array_equal(as_waveform(ints), floats)
    assert np.abs(as_waveform(ints)).max() <= 1.0


def test_other_integer_widths_reach_full_scale_at_one():
    assert as_waveform(np.array([-128, 0, 127], np.int8)).tolist() == [[-1.0, 0.0, 127 / 128]]
    assert as_waveform(np.array([-(2**63), 0], np.int64))[0, 0] == -1.0


@pytest.mark.parametrize("array, message", [
    (np.zeros(10, np.uint8), "unsigned integer samples"),
    (np.zeros(10, np.uint16), "unsigned integer samples"),
    (np.zeros(10, bool), "holds booleans"),
    (np.zeros(10, np.complex64), "holds complex numbers"),
    (np.array(["a", "b"]), "not audio samples"),
    (np.zeros((2, 3, 100), np.float32), "a 3-D array of shape (2, 3, 100)"),
    (np.float32(0.5), "a 0-D array"),
    (np.zeros((0, 2), np.float32), "holds no audio samples"),
    (np.zeros((20, 20), np.float32), "cannot tell channels from samples"),
    ([[0.1, 0.2], [0.3]], "not an array of samples"),
])
def test_arrays_that_are_no_audio_are_refused_in_one_line(array, message):
    with pytest.raises(UvrsepError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        as_waveform(array)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, (ConfigError, EmptyAudioError))


def test_file_objects_and_bytes_are_read_as_files_are():
    buffer = io.BytesIO()
    sf.write(buffer, music_like(0.2, sr=22050).T, 22050, format="FLAC")
    wave, sr = read_audio_object(buffer.getvalue())
    assert sr == 22050 and wave.shape == (2, int(0.2 * 22050)) and wave.dtype == np.float32
    buffer.seek(0)
    assert read_audio_object(buffer)[0].shape == wave.shape
    with pytest.raises(UvrsepError, match="^file object: (cannot decode audio|has no audio stream)"):
        read_audio_object(b"not audio at all" * 10)
    with pytest.raises(EmptyAudioError, match="holds no data"):
        read_audio_object(io.BytesIO())
    with pytest.raises(ConfigError, match="open the audio file in binary mode"):
        read_audio_object(io.StringIO("RIFF"))


def test_stems_are_a_read_only_mapping():
    stems = Stems({"vocals": music_like(0.1), "instrumental": music_like(0.1, seed=2)}, SR, "vocals")
    assert list(stems) == ["vocals", "instrumental"] and list(stems.keys()) == ["vocals", "instrumental"]
    assert "vocals" in stems and "drums" not in stems and len(stems) == 2
    assert dict(stems.items())["instrumental"] is stems["instrumental"]
    with pytest.raises(TypeError):
        stems["vocals"] = np.zeros((2, 1))


def test_huge_samples_warn_once_that_the_stems_were_clipped(tiny_weights, tmp_path):
    from uvrsep.cli import app

    loud = tmp_path / "loud.wav"
    sf.write(loud, 3e4 * music_like(0.5).T, SR, subtype="FLOAT")  # finite, far above full scale
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, 0.5 * music_like(0.5).T, SR)
    result = runner.invoke(app, ["separate", str(loud), str(quiet), "-m", str(tiny_weights), "-o", str(tmp_path / "o"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{loud}: clipped at full scale: " in warnings[0], result.output
    assert "dBFS" in warnings[0] and "--bit-depth 32f keeps every sample" in warnings[0]
    floats = runner.invoke(app, ["separate", str(loud), "-m", str(tiny_weights), "-o", str(tmp_path / "f"),
                                 "--bit-depth", "32f", "--device", "cpu"])
    assert floats.exit_code == 0 and "warning:" not in floats.output, floats.output
    assert np.abs(sf.read(next((tmp_path / "f").glob("*_vocals.wav")))[0]).max() > 100


def test_unknown_separator_arguments_name_the_closest_valid_one(tiny_weights):
    from uvrsep import Separator

    for kwargs, message in [
        (dict(batchsize=2), "Separator() got unknown argument 'batchsize'; did you mean batch_size?"),  # its own argument
        (dict(agression=5), "Separator() got unknown argument 'agression'; did you mean aggressiveness?"),  # a setting
        (dict(window=512, tt=True), "Separator() got unknown arguments 'tt', 'window'; did you mean tta?"),
    ]:
        with pytest.raises(ConfigError) as err:
            Separator(tiny_weights, device="cpu", **kwargs)
        assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"^Separator\(\) got unknown argument 'zzz'; the arguments are model, .*primary_stem$"):
        Separator(tiny_weights, device="cpu", zzz=1)
    sep = Separator(tiny_weights, device="cpu")
    with pytest.raises(ConfigError, match=r"^configure\(\) got unknown argument 'postproces'; did you mean postprocess\?$"):
        sep.configure(postproces=True)
