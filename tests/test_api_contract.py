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


@pytest.mark.parametrize(
    "array, message",
    [
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
    ],
)
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


@pytest.mark.slow
def test_huge_samples_warn_once_that_the_stems_were_clipped(tiny_weights, tmp_path):
    from uvrsep.cli import app

    loud = tmp_path / "loud.wav"
    sf.write(loud, 3e4 * music_like(0.5).T, SR, subtype="FLOAT")  # finite, far above full scale
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, 0.5 * music_like(0.5).T, SR)
    result = runner.invoke(
        app, ["separate", str(loud), str(quiet), "-m", str(tiny_weights), "-o", str(tmp_path / "o"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{loud}: clipped at full scale: " in warnings[0], result.output
    assert "dBFS" in warnings[0] and "--bit-depth 32f keeps every sample" in warnings[0]
    floats = runner.invoke(
        app,
        [
            "separate",
            str(loud),
            "-m",
            str(tiny_weights),
            "-o",
            str(tmp_path / "f"),
            "--bit-depth",
            "32f",
            "--device",
            "cpu",
        ],
    )
    assert floats.exit_code == 0 and "warning:" not in floats.output, floats.output
    assert np.abs(sf.read(next((tmp_path / "f").glob("*_vocals.wav")))[0]).max() > 100


def test_unknown_separator_arguments_name_the_closest_valid_one(tiny_weights):
    from uvrsep import Separator

    for kwargs, message in [
        (
            dict(batchsize=2),
            "Separator() got unknown argument 'batchsize'; did you mean batch_size?",
        ),  # its own argument
        (dict(agression=5), "Separator() got unknown argument 'agression'; did you mean aggressiveness?"),  # a setting
        (dict(window=512, tt=True), "Separator() got unknown arguments 'tt', 'window'; did you mean tta?"),
    ]:
        with pytest.raises(ConfigError) as err:
            Separator(tiny_weights, device="cpu", **kwargs)
        assert str(err.value) == message
    with pytest.raises(
        ConfigError, match=r"^Separator\(\) got unknown argument 'zzz'; the arguments are model, .*primary_stem$"
    ):
        Separator(tiny_weights, device="cpu", zzz=1)
    sep = Separator(tiny_weights, device="cpu")
    with pytest.raises(
        ConfigError, match=r"^configure\(\) got unknown argument 'postproces'; did you mean postprocess\?$"
    ):
        sep.configure(postproces=True)


# -- every dtype and layout through Separator.separate ---------------------------------------------

N = 2205  # 0.05 s: one network window


@pytest.fixture(scope="module")
def small_separator(tmp_path_factory):
    """A 4-wide random net on a one-band 128-bin config at 44.1 kHz, one 272-frame window per
    call (~0.1 CPU s): the sweep below stays quick. The dtypes and layouts are the API's
    business, before any band config."""
    import json

    import torch

    from tests.conftest import random_net
    from uvrsep import Separator

    folder = tmp_path_factory.mktemp("contract")
    band = {
        "sr": SR,
        "hl": 128,
        "n_fft": 256,
        "crop_start": 0,
        "crop_stop": 128,
        "hpf_start": -1,
        "res_type": "sinc_best",
    }
    config = {
        "bins": 128,
        "unstable_bins": 0,
        "reduction_bins": 0,
        "band": {"1": band},
        "sr": SR,
        "pre_filter_start": 127,
        "pre_filter_stop": 128,
    }
    (folder / "small.json").write_text(json.dumps(config))
    torch.save(random_net(channels=4, bins=128).state_dict(), folder / "tiny4.pth")
    return Separator(folder / "tiny4.pth", params=folder / "small.json", device="cpu", window_size=272)


_expected: dict[bytes, dict[str, np.ndarray]] = {}


def _key(wave: np.ndarray) -> bytes:
    return repr(wave.shape).encode() + np.ascontiguousarray(wave, np.float32).tobytes()


def _result_of(sep, wave: np.ndarray) -> dict[str, np.ndarray]:
    """The stems of float32 ``[C, T]`` ``wave`` (the reference a case must equal), once per audio."""
    key = _key(wave)
    if key not in _expected:
        _expected[key] = dict(sep.separate(np.ascontiguousarray(wave, np.float32), SR).items())
    return _expected[key]


def _pcm_float(wave: np.ndarray, subtype: str) -> np.ndarray:
    """``wave`` [C, T] written as integer PCM and read back as float32 [C, T] by soundfile."""
    buffer = io.BytesIO()
    sf.write(buffer, wave.T, SR, format="WAV", subtype=subtype)
    buffer.seek(0)
    return sf.read(buffer, dtype="float32")[0].T


def _cases():
    """(id, input, float32 [C, T] audio it stands for, or None: it must be refused)."""
    import torch

    x = music_like(N / SR)
    extra = music_like(N / SR, channels=6, seed=3)
    wide = np.zeros((2, 2 * N), np.float32)
    wide[:, ::2] = x
    i8 = np.round(x * 100).astype(np.int8)
    i64 = np.round(x.astype(np.float64) * 2**40).astype(np.int64) * 2**20
    yield from [
        ("float32", x, x),
        ("float64", x.astype(np.float64), x),
        ("float16", x.astype(np.float16), x.astype(np.float16).astype(np.float32)),
        ("int8", i8, i8.astype(np.float32) / 128),
        ("int16", _pcm(x, "int16").T, _pcm_float(x, "PCM_16")),
        ("int32", _pcm(x, "int32").T, _pcm_float(x, "PCM_32")),
        ("int64", i64, (i64.astype(np.float64) / 2**63).astype(np.float32)),
        ("big-endian >i2", _pcm(x, "int16").astype(">i2"), _pcm_float(x, "PCM_16")),
        ("big-endian >f4", x.astype(">f4"), x),
        ("(n,)", x[0], x[:1]),
        ("(1,n)", x[:1], x[:1]),
        ("(n,1)", x[:1].T, x[:1]),
        ("(n,2)", x.T, x),
        ("(3,n): the first two", np.vstack([x, extra[:1]]), x),
        ("(8,n): the first two", np.vstack([x, extra]), x),
        ("strided", wide[:, ::2], x),
        ("strided (n,2)", wide.T[::2], x),
        ("Fortran order", np.asfortranarray(x), x),
        ("Fortran order (n,2)", np.asfortranarray(x.T), x),
        ("torch float32", torch.from_numpy(x).requires_grad_(), x),
        ("torch bfloat16", torch.from_numpy(x).bfloat16(), torch.from_numpy(x).bfloat16().float().numpy()),
        ("torch int16", torch.from_numpy(_pcm(x, "int16").T.copy()), _pcm_float(x, "PCM_16")),
        ("nested list", x.tolist(), x),
    ]
    refused = {
        "bool": x > 0,
        "uint8": (x * 100 + 128).astype(np.uint8),
        "uint16": (x * 3e4 + 32768).astype(np.uint16),
        "uint32": np.zeros_like(x, np.uint32),
        "uint64": np.zeros_like(x, np.uint64),
        "complex64": x.astype(np.complex64),
        "complex128": x.astype(np.complex128),
        "object": x.astype(object),
        "str": x.astype(str),
        "bytes": x.astype("S8"),
        "datetime64": np.zeros(N, "datetime64[s]"),
        "(9,n)": np.vstack([x, extra, x[:1]]),
        "3-D": x[None],
        "0-D": np.float32(0.1),
        "empty (0,)": np.zeros(0, np.float32),
        "empty (2,0)": np.zeros((2, 0), np.float32),
        "empty (0,2)": np.zeros((0, 2), np.int16),
        "(5,5)": x[:, :5].repeat(3, 0)[:5],
        "NaN": np.where(np.arange(N) == 7, np.nan, x).astype(np.float32),
        "ragged list": [[0.1, 0.2], [0.3]],
        "torch complex": torch.from_numpy(x.astype(np.complex64)),
        "torch uint8": torch.zeros(2, N, dtype=torch.uint8),
        "torch sparse": torch.from_numpy(x).to_sparse(),
    }
    yield from ((name, value, None) for name, value in refused.items())


CASES = list(_cases())


@pytest.mark.parametrize("name, audio, same_as", CASES, ids=[c[0] for c in CASES])
def test_every_dtype_and_layout_is_separated_as_its_float32_audio_or_refused(small_separator, name, audio, same_as):
    sep = small_separator
    if same_as is None:
        with pytest.raises(UvrsepError) as err:
            sep.separate(audio, SR)
        assert "\n" not in str(err.value) and str(err.value).startswith("array: "), str(err.value)
        return
    stems = sep.separate(audio, SR)
    if (
        isinstance(audio, np.ndarray)
        and audio.dtype == np.float32
        and audio.shape == same_as.shape
        and np.array_equal(audio, same_as)
    ):  # it is its own reference
        _expected.setdefault(_key(same_as), dict(stems.items()))
    expected = _result_of(sep, same_as)
    assert list(stems.keys()) == list(expected)
    for key, wave in stems.items():
        assert wave.shape == (2, N) and wave.dtype == np.float32
        np.testing.assert_array_equal(wave, expected[key], err_msg=f"{name}: {key}")


@pytest.mark.parametrize(
    "rate, message",
    [
        (44100.0, "sample_rate must be a whole number of Hz, got 44100.0"),
        (True, "whole number of Hz, got True"),
        ("44100", "whole number of Hz, got '44100'"),
        (0, "sample_rate 0 is outside"),
        (10**6, "outside 1–384000 Hz"),
        (None, "needs its sample_rate"),
    ],
)
def test_sample_rates_that_are_no_rate_are_refused(small_separator, rate, message):
    with pytest.raises(ConfigError, match=message) as err:
        small_separator.separate(music_like(N / SR), rate)
    assert "\n" not in str(err.value)


def test_any_integer_type_is_a_rate_and_other_rates_are_resampled(small_separator):
    x = music_like(N / SR)
    assert (
        _result_of(small_separator, x)["vocals"].tobytes()
        == small_separator.separate(x, np.int64(SR))["vocals"].tobytes()
    )
    assert small_separator.separate(x, np.uint16(22050))["vocals"].shape == (2, 2 * N)  # at the model's rate
