"""uvrsep.compat.uvr5 driven the way RVC, GPT-SoVITS and yuki_builder drive RVC's uvr5 classes.

The helpers below are written from those callers' call patterns (RVC's ``modules.uvr``,
GPT-SoVITS' ``webui.uvr``, yuki_builder's ``process.uvr`` / ``uvr_prediction``): a folder loop
with ffprobe, an ffmpeg reformat to 44.1 kHz stereo and one retry, ``del pre.model`` and cache
cleanup. Their outputs must carry the original's names and folders and equal what
``uvrsep separate --aggressiveness AGG`` writes at 16 bits with the same weights.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import traceback
import weakref
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from uvrsep import Separator
from uvrsep.cli import app
from uvrsep.compat import uvr5
from uvrsep.compat.uvr5 import AudioPre, AudioPreDeEcho, _audio_pre_, _audio_pre_new
from uvrsep.errors import AudioReadError, AudioWriteError, ConfigError, UvrsepError
from uvrsep.evaluation import sdr
from uvrsep.network import CascadedNet, LstmNetConfig
from uvrsep.separator import resolve_device

from .conftest import SR, music_like, random_net

HAS_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg/ffprobe not installed")
AGG = 10
#: Clip names as users have them: spaces, CJK text, a quote.
CLIPS = {"a song.wav": 1, "0003_0.00.56.18_0.00.58.98_为了逃避 it's.wav": 2}


# -- fixtures: tiny weights, clips and uvrsep's own outputs, made once per module ----------------
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A private uvrsep cache for the module-scoped separations (never the user's)."""
    path = tmp_path_factory.mktemp("compat_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UVRSEP_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, home) -> dict[str, Path]:
    """RVC-style file names: an HP net, the same kind named HP3 (vocal-primary), a VR 5.1 DeEcho net."""
    root = tmp_path_factory.mktemp("uvr5_weights")
    paths = {"hp": root / "HP5_tiny.pth", "hp3": root / "HP3_tiny.pth", "deecho": root / "VR-DeEchoTiny.pth"}
    torch.save(random_net(channels=4, seed=0).state_dict(), paths["hp"])
    torch.save(random_net(channels=4, seed=1).state_dict(), paths["hp3"])
    torch.manual_seed(2)
    torch.save(CascadedNet(LstmNetConfig(bins=672, nout=4, nout_lstm=8)).eval().state_dict(), paths["deecho"])
    return paths


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """A folder of short 44.1 kHz stereo 16-bit clips (no reformat needed)."""
    folder = tmp_path_factory.mktemp("songs")
    for name, seed in CLIPS.items():
        sf.write(folder / name, music_like(0.5 + 0.1 * seed, seed=seed).T, SR, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, weights, songs, home):
    """``reference(kind, agg, fmt, clips)``: the folder where ``uvrsep separate CLIPS -m WEIGHTS
    --aggressiveness AGG --output-format FMT`` wrote its 16-bit stems (run once per setting).
    (libsndfile rounds float to 16 bits differently for wav and flac: compare like with like.)"""
    done: dict[tuple, Path] = {}

    def get(kind: str, agg: int = AGG, fmt: str = "wav", clips: tuple[str, ...] = ("a song.wav",)) -> Path:
        key = (kind, agg, fmt, clips)
        if key not in done:
            out = tmp_path_factory.mktemp(f"ref_{kind}_{agg}_{fmt}")
            result = CliRunner().invoke(
                app,
                [
                    "separate",
                    *[str(songs / c) for c in clips],
                    "-m",
                    str(weights[kind]),
                    "--aggressiveness",
                    str(agg),
                    "-o",
                    str(out),
                    "--device",
                    "cpu",
                    "--output-format",
                    fmt,
                ],
            )
            assert result.exit_code == 0, result.output
            done[key] = out
        return done[key]

    return get


def pcm(path: Path) -> np.ndarray:
    data, sr = sf.read(path, dtype="int16", always_2d=True)
    assert sr == SR
    return data


def assert_same_pcm(path: Path, ref: Path) -> None:
    got, want = pcm(path), pcm(ref)
    assert got.shape == want.shape, (path, got.shape, want.shape)
    assert np.array_equal(got, want), f"{path} differs from uvrsep's own {ref}"


def files_in(folder: Path) -> set[str]:
    """Every entry below ``folder`` (hidden ones too: no temporary file may be left)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def out_name(head: str, clip: str, fmt: str, agg: int = AGG) -> str:
    """The original's file name: ``<head><input file name with extension>_<agg>.<fmt>``."""
    return f"{head}{clip}_{agg}.{fmt}"


# -- callers' flows, written from their call patterns -------------------------------------------
def ffprobe_stream(path: Path) -> dict:
    """What ``ffmpeg.probe(path)["streams"][0]`` gives the callers."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)], capture_output=True, check=True
    ).stdout
    return json.loads(out)["streams"][0]


def reformat(inp: Path, temp: Path) -> Path:
    """The callers' ``ffmpeg -i IN -vn -acodec pcm_s16le -ac 2 -ar 44100 TEMP/<name>.reformatted.wav -y``."""
    tmp_path = temp / f"{inp.name}.reformatted.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(inp),
            "-vn",
            "-acodec",
            "pcm_s16le",
            "-ac",
            "2",
            "-ar",
            "44100",
            str(tmp_path),
            "-y",
        ],
        capture_output=True,
    )
    return tmp_path


def rvc_uvr(
    model_path: Path, inp_root: Path, save_root_vocal: Path, save_root_ins: Path, fmt: str, temp: Path, agg: int = AGG
) -> list[str]:
    """RVC's ``infer/modules/uvr5/modules.py`` ``uvr()``: class by "DeEcho" in the name, probe,
    reformat what is not 44.1 kHz stereo, retry once, ``del pre_fun.model``, empty the CUDA cache."""
    infos = []
    model_name = model_path.stem
    func = AudioPre if "DeEcho" not in model_name else AudioPreDeEcho
    pre_fun = func(agg=int(agg), model_path=str(model_path), device="cpu", is_half=False)
    is_hp3 = "HP3" in model_name
    try:
        for name in sorted(os.listdir(inp_root)):
            inp_path = os.path.join(inp_root, name)
            need_reformat, done = 1, 0
            try:
                info = ffprobe_stream(Path(inp_path))
                if info["channels"] == 2 and info["sample_rate"] == "44100":
                    need_reformat = 0
                    pre_fun._path_audio_(inp_path, str(save_root_ins), str(save_root_vocal), fmt, is_hp3=is_hp3)
                    done = 1
            except Exception:
                need_reformat = 1
            if need_reformat == 1:
                inp_path = str(reformat(Path(inp_path), temp))
            try:
                if done == 0:
                    pre_fun._path_audio_(inp_path, str(save_root_ins), str(save_root_vocal), fmt)
                infos.append(f"{os.path.basename(inp_path)}->Success")
            except Exception:
                try:
                    if done == 0:
                        pre_fun._path_audio_(inp_path, str(save_root_ins), str(save_root_vocal), fmt)
                    infos.append(f"{os.path.basename(inp_path)}->Success")
                except Exception:
                    infos.append(f"{os.path.basename(inp_path)}->{traceback.format_exc()}")
    finally:
        del pre_fun.model
        del pre_fun
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return infos


# -- RVC / GPT-SoVITS: the folder loop ----------------------------------------------------------
@pytest.mark.slow
def test_rvc_folder_loop_names_folders_and_equal_stems(weights, songs, reference, tmp_path):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    ins, voc = tmp_path / "opt_ins", tmp_path / "opt_vocal"
    for name in sorted(os.listdir(songs)):  # RVC: _path_audio_(inp, save_root_ins, save_root_vocal, fmt, is_hp3=)
        returned = pre._path_audio_(os.path.join(songs, name), str(ins), str(voc), "wav", is_hp3=False)
        assert returned == (str(voc / out_name("vocal_", name, "wav")), str(ins / out_name("instrument_", name, "wav")))
    assert files_in(ins) == {out_name("instrument_", n, "wav") for n in CLIPS}
    assert files_in(voc) == {out_name("vocal_", n, "wav") for n in CLIPS}
    ref = reference("hp", clips=tuple(CLIPS))
    floats = Separator(weights["hp"], device="cpu", aggressiveness=AGG).separate_many([songs / n for n in CLIPS])
    for (name, _), stems in zip(CLIPS.items(), floats):
        stem = Path(name).stem
        assert_same_pcm(ins / out_name("instrument_", name, "wav"), ref / f"{stem}_instrumental.wav")
        assert_same_pcm(voc / out_name("vocal_", name, "wav"), ref / f"{stem}_vocals.wav")
        for label, path in (
            ("instrumental", ins / out_name("instrument_", name, "wav")),
            ("vocals", voc / out_name("vocal_", name, "wav")),
        ):
            written, _ = sf.read(path, dtype="float32", always_2d=True)
            assert written.shape[0] == round((0.5 + 0.1 * CLIPS[name]) * SR)  # full length
            for c in range(2):
                assert sdr(stems[label][c], written[:, c]) >= 60


@pytest.mark.slow
def test_hp3_routes_vocals_to_the_vocal_folder_with_or_without_is_hp3(weights, songs, reference, tmp_path):
    """GPT-SoVITS passes is_hp3 positionally; RVC's retry path and yuki_builder do not pass it."""
    pre = AudioPre(AGG, str(weights["hp3"]), torch.device("cpu"), False)
    name = "a song.wav"
    ref = reference("hp3", fmt="flac")
    for folder, call in (
        ("gsv", lambda i, v: pre._path_audio_(str(songs / name), i, v, "flac", True)),
        ("retry", lambda i, v: pre._path_audio_(str(songs / name), i, v, "flac")),
    ):
        ins, voc = tmp_path / folder / "ins", tmp_path / folder / "voc"
        vocal_path, ins_path = call(str(ins), str(voc))
        assert vocal_path == str(voc / out_name("vocal_", name, "flac"))
        assert ins_path == str(ins / out_name("instrument_", name, "flac"))
        assert_same_pcm(Path(vocal_path), ref / "a song_vocals.flac")  # the masked stem of a vocal-primary net
        assert_same_pcm(Path(ins_path), ref / "a song_instrumental.flac")


def test_is_hp3_is_honoured_for_any_weights(weights, songs, reference, tmp_path):
    """The caller's is_hp3 names the masked stem "vocal_", as in the original (whatever the net)."""
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    vocal_path, ins_path = pre._path_audio_(
        str(songs / "a song.wav"), str(tmp_path / "i"), str(tmp_path / "v"), "wav", is_hp3=True
    )
    assert Path(vocal_path).parent == tmp_path / "v"
    assert_same_pcm(Path(vocal_path), reference("hp") / "a song_instrumental.wav")
    assert_same_pcm(Path(ins_path), reference("hp") / "a song_vocals.wav")


@pytest.mark.slow
def test_none_roots(weights, songs, reference, tmp_path):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    assert pre._path_audio_(str(songs / "a song.wav")) == "No save root."
    assert not any(tmp_path.iterdir())
    vocal_path, ins_path = pre._path_audio_(str(songs / "a song.wav"), None, str(tmp_path / "v"), "wav")
    assert ins_path is None and files_in(tmp_path) == {"v", "v/" + out_name("vocal_", "a song.wav", "wav")}
    assert_same_pcm(Path(vocal_path), reference("hp") / "a song_vocals.wav")
    # As the original: a second run (RVC's retry, a re-run of the folder) replaces the outputs.
    assert pre._path_audio_(str(songs / "a song.wav"), None, str(tmp_path / "v"), "wav") == (vocal_path, None)
    floats = Separator(weights["hp"], device="cpu", aggressiveness=AGG).separate(songs / "a song.wav")
    written, _ = sf.read(vocal_path, dtype="float32", always_2d=True)
    assert min(sdr(floats["vocals"][c], written[:, c]) for c in range(2)) >= 60


# -- DeEcho / DeReverb (VR 5.1) -------------------------------------------------------------------
@pytest.mark.slow
def test_deecho_rvc_call_puts_the_dry_signal_in_the_vocal_folder(weights, songs, reference, tmp_path):
    pre = AudioPreDeEcho(AGG, str(weights["deecho"]), "cpu", False)
    assert pre.separator.architecture.family == "vr51"
    ins, voc = tmp_path / "ins", tmp_path / "voc"
    name = "0003_0.00.56.18_0.00.58.98_为了逃避 it's.wav"
    # RVC's uvr(): _path_audio_(inp, save_root_ins, save_root_vocal, fmt, is_hp3=...) against
    # the signature (music_file, vocal_root, ins_root, ...): the folders are "reversed".
    vocal_path, ins_path = pre._path_audio_(str(songs / name), str(ins), str(voc), "wav", is_hp3=False)
    assert vocal_path == str(voc / out_name("vocal_", name, "wav"))
    assert ins_path == str(ins / out_name("instrument_", name, "wav"))
    ref = reference("deecho", clips=(name,))
    stem = Path(name).stem
    assert_same_pcm(Path(vocal_path), ref / f"{stem}_no_echo.wav")
    assert_same_pcm(Path(ins_path), ref / f"{stem}_echo.wav")


@pytest.mark.slow
def test_yuki_audio_pre_new_keeps_its_2023_names(weights, songs, reference, tmp_path):
    """yuki_builder's uvr(): ``_path_audio_(inp, save_ins_path, save_vocal_path, fmt)`` on
    ``_audio_pre_new``, whose names were the reverse of today's RVC (dry = ``instrument_``)."""
    pre = _audio_pre_new(agg=AGG, model_path=str(weights["deecho"]), device=torch.device("cpu"), is_half=True)
    save_ins, save_vocal = tmp_path / "instrument" / "haruhi", tmp_path / "voice" / "haruhi"
    name = "0003_0.00.56.18_0.00.58.98_为了逃避 it's.wav"
    vocal_path, instrument_path = pre._path_audio_(str(songs / name), str(save_ins), str(save_vocal), "wav")
    assert instrument_path == str(save_vocal / out_name("instrument_", name, "wav"))
    assert vocal_path == str(save_ins / out_name("vocal_", name, "wav"))
    ref = reference("deecho", clips=(name,))
    assert_same_pcm(Path(instrument_path), ref / f"{Path(name).stem}_no_echo.wav")
    assert_same_pcm(Path(vocal_path), ref / f"{Path(name).stem}_echo.wav")


# -- yuki_builder: the swapped-folder call and its return value --------------------------------
def test_yuki_uvr_prediction_swapped_folders_and_return_value(weights, songs, reference, tmp_path):
    save_root_vocal, save_root_ins = tmp_path / "vocal_out", tmp_path / "ins_out"
    pre_fun = _audio_pre_(agg=int(AGG), model_path=str(weights["hp"]), device="cpu", is_half=True)
    # uvr_prediction: _path_audio_(inp_path, save_root_vocal, save_root_ins, format0) against the
    # signature (music_file, ins_root, vocal_root, ...): the files land in each other's folder.
    vocal_path, others_path = pre_fun._path_audio_(
        str(songs / "a song.wav"), str(save_root_vocal), str(save_root_ins), "wav"
    )
    assert vocal_path == str(save_root_ins / out_name("vocal_", "a song.wav", "wav"))
    assert others_path == str(save_root_vocal / out_name("instrument_", "a song.wav", "wav"))
    assert_same_pcm(Path(vocal_path), reference("hp") / "a song_vocals.wav")
    assert_same_pcm(Path(others_path), reference("hp") / "a song_instrumental.wav")
    del pre_fun.model
    del pre_fun


# -- the attributes callers touch -----------------------------------------------------------------
def test_attributes_and_del_model_frees_the_net(weights, songs, tmp_path):
    device = torch.device("cpu")
    pre = AudioPre(AGG, str(weights["hp"]), device, is_half=False, tta=True)
    assert pre.data["agg"] == AGG and pre.data["tta"] is True and pre.data["window_size"] == 512
    assert pre.device is device and pre.model_path == str(weights["hp"])
    assert isinstance(pre.model, torch.nn.Module)
    net = weakref.ref(pre.model)
    del pre.model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    assert net() is None, "del pre.model must release the network"
    assert not hasattr(pre, "model")
    with pytest.raises(UvrsepError, match="deleted"):
        pre._path_audio_(str(songs / "a song.wav"), str(tmp_path), str(tmp_path), "wav")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_data_changes_apply_to_the_next_call(weights, songs, reference, tmp_path):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    pre.data["agg"] = 20
    vocal_path, _ins_path = pre._path_audio_(str(songs / "a song.wav"), str(tmp_path), str(tmp_path), "wav")
    assert Path(vocal_path).name == out_name("vocal_", "a song.wav", "wav", agg=20)
    assert_same_pcm(Path(vocal_path), reference("hp", 20) / "a song_vocals.wav")
    pre.data["agg"] = 101
    with pytest.raises(ConfigError, match="agg"):
        pre._path_audio_(str(songs / "a song.wav"), str(tmp_path), str(tmp_path), "wav")


def test_is_half_on_cpu_runs_fp32_with_a_note(weights, songs, caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="uvrsep"):
        half = AudioPre(AGG, str(weights["hp"]), "cpu", True)
    assert "fp16" in caplog.text and half.separator.precision == "fp32"
    assert next(half.model.parameters()).dtype == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        Separator(weights["hp"], device="cpu", precision="fp8")


def test_devices():
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert uvr5._device(None) == "cpu"  # the original's model.to(None)
    assert uvr5._device("cuda:0") == "cuda:0" and uvr5._device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert uvr5._device(torch.device("privateuseone", 0)) == "cpu"  # DirectML: not driven by uvrsep
    with pytest.raises(ConfigError):
        uvr5._device("gpu please")


def test_errors_are_one_line_and_leave_nothing(weights, songs, tmp_path):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    out = tmp_path / "out"
    with pytest.raises(AudioReadError) as info:
        pre._path_audio_(str(bad), str(out), str(out), "wav")
    assert "broken.wav" in str(info.value) and "\n" not in str(info.value)
    assert files_in(out) == set()  # the folders exist (as in the original), nothing in them
    with pytest.raises(UvrsepError, match="not found"):
        AudioPre(AGG, str(tmp_path / "missing.pth"), "cpu", False)


@pytest.mark.slow
def test_long_inputs_stream(weights, tmp_path, monkeypatch):
    """Inputs over the segment threshold go through separate_streamed, written as they come."""
    clip = tmp_path / "long take.wav"
    sf.write(clip, music_like(5.0, seed=5).T, SR, subtype="PCM_16")  # segments need > 4.5 s with 4band_v2
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    pre.separator.segment_threshold, pre.separator.segment_windows = 1.0, 1
    calls = []
    streamed = pre.separator.separate_streamed
    monkeypatch.setattr(
        pre.separator, "separate_streamed", lambda path, **kw: calls.append(path) or streamed(path, **kw)
    )
    vocal_path, ins_path = pre._path_audio_(str(clip), str(tmp_path / "i"), str(tmp_path / "v"), "wav")
    assert calls == [clip]
    whole = Separator(weights["hp"], device="cpu", aggressiveness=AGG).separate(clip)
    for label, path in (("vocals", vocal_path), ("instrumental", ins_path)):
        written, _ = sf.read(path, dtype="float32", always_2d=True)
        assert written.shape[0] == whole[label].shape[1]
        assert min(sdr(whole[label][c], written[:, c]) for c in range(2)) >= 60


# -- formats through ffmpeg -------------------------------------------------------------------------
@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["mp3", "m4a"])
def test_ffmpeg_formats(weights, songs, tmp_path, fmt):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    name = "0003_0.00.56.18_0.00.58.98_为了逃避 it's.wav"
    ins, voc = tmp_path / "in s", tmp_path / "vo'c"
    vocal_path, _ins_path = pre._path_audio_(str(songs / name), str(ins), str(voc), fmt)
    assert files_in(ins) == {out_name("instrument_", name, fmt)}  # no .wav, no temporary folder
    assert files_in(voc) == {out_name("vocal_", name, fmt)}
    assert vocal_path == str(voc / out_name("vocal_", name, fmt))
    assert ffprobe_stream(Path(vocal_path))["codec_name"] == {"mp3": "mp3", "m4a": "aac"}[fmt]
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", vocal_path, "-f", "f32le", "-ac", "2", "-ar", "44100", "-"],
        capture_output=True,
        check=True,
    ).stdout
    assert abs(len(decoded) // 8 - sf.info(songs / name).frames) < 0.1 * SR  # codec padding aside, the input's length


@needs_ffmpeg
def test_ffmpeg_failure_is_one_line_and_leaves_nothing(weights, songs, tmp_path):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    with pytest.raises(AudioWriteError) as info:
        pre._path_audio_(str(songs / "a song.wav"), str(tmp_path), None, "notaformat")
    assert out_name("instrument_", "a song.wav", "notaformat") in str(info.value) and "\n" not in str(info.value)
    assert files_in(tmp_path) == set()


def test_no_ffmpeg_fails_before_separating(weights, songs, tmp_path, monkeypatch):
    pre = AudioPre(AGG, str(weights["hp"]), "cpu", False)
    monkeypatch.setattr(uvr5.shutil, "which", lambda _: None)
    monkeypatch.setattr(pre.separator, "separate_batch", lambda *a, **k: pytest.fail("separated anyway"))
    with pytest.raises(AudioWriteError, match="needs ffmpeg"):
        pre._path_audio_(str(songs / "a song.wav"), str(tmp_path), str(tmp_path), "mp3")
    assert files_in(tmp_path) == set()


# -- RVC's whole uvr(): probe, reformat, retry, cleanup ------------------------------------------
@pytest.mark.slow
@needs_ffmpeg
def test_rvc_uvr_reformat_and_retry(weights, tmp_path):
    inp = tmp_path / "todo songs"
    inp.mkdir()
    sf.write(inp / "ok song.wav", music_like(0.5, seed=3).T, SR, subtype="PCM_16")
    sf.write(inp / "mono 48k.flac", music_like(0.5, sr=48000, channels=1, seed=4).T, 48000)
    nan = music_like(0.5, seed=6)
    nan[0, 100] = np.nan  # read fails (non-finite); the reformatted 16-bit copy is fine
    sf.write(inp / "float nan.wav", nan.T, SR, subtype="FLOAT")
    (inp / "broken.wav").write_bytes(b"RIFF\x00\x00 nothing")
    temp, voc, ins = tmp_path / "TEMP", tmp_path / "opt_vocal", tmp_path / "opt_ins"
    temp.mkdir()
    infos = rvc_uvr(weights["hp3"], inp, voc, ins, "wav", temp)
    assert infos[1:] == [
        "float nan.wav.reformatted.wav->Success",
        "mono 48k.flac.reformatted.wav->Success",
        "ok song.wav->Success",
    ]
    assert infos[0].startswith("broken.wav.reformatted.wav->") and "AudioReadError" in infos[0]
    names = ["float nan.wav.reformatted.wav", "mono 48k.flac.reformatted.wav", "ok song.wav"]
    # HP3 weights: vocals are vocal_ in the vocal folder, also on the retry path (no is_hp3 there).
    assert files_in(voc) == {out_name("vocal_", n, "wav") for n in names}
    assert files_in(ins) == {out_name("instrument_", n, "wav") for n in names}
    retried = Separator(weights["hp3"], device="cpu", aggressiveness=AGG).separate(temp / names[1])
    written, _ = sf.read(voc / out_name("vocal_", names[1], "wav"), dtype="float32", always_2d=True)
    assert min(sdr(retried["vocals"][c], written[:, c]) for c in range(2)) >= 60


@needs_ffmpeg
def test_yuki_uvr_role_folders(weights, tmp_path):
    """yuki_builder's uvr(): ``<in>/<role>/`` clips cut at 48 kHz, reformatted, written to
    ``<out>/voice/<role>/`` and ``<out>/instrument/<role>/``."""
    role = tmp_path / "role_audios" / "凉宫春日"
    role.mkdir(parents=True)
    clip = "0001_0.00.01.50_0.00.02.10_你好.wav"
    sf.write(role / clip, music_like(0.6, sr=48000, seed=7).T, 48000, subtype="PCM_16")
    pre_fun = _audio_pre_(agg=AGG, model_path=str(weights["hp"]), device="cpu", is_half=True)
    save_ins_path, save_vocal_path = tmp_path / "out" / "instrument" / role.name, tmp_path / "out" / "voice" / role.name
    inp_path = role / clip
    if not (ffprobe_stream(inp_path)["channels"] == 2 and ffprobe_stream(inp_path)["sample_rate"] == "44100"):
        inp_path = reformat(inp_path, tmp_path)
    pre_fun._path_audio_(str(inp_path), str(save_ins_path), str(save_vocal_path), "wav")
    assert files_in(save_vocal_path) == {out_name("vocal_", clip + ".reformatted.wav", "wav")}
    assert files_in(save_ins_path) == {out_name("instrument_", clip + ".reformatted.wav", "wav")}


# -- fp16 where it exists ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_is_half_on_cuda(weights, songs, tmp_path):
    half = AudioPre(AGG, str(weights["hp"]), torch.device("cuda"), True)
    assert next(half.model.parameters()).dtype == torch.float16 and half.separator.precision == "fp16"
    full = AudioPre(AGG, str(weights["hp"]), "cuda:0", False)
    a = half._path_audio_(str(songs / "a song.wav"), str(tmp_path / "h"), str(tmp_path / "h"), "wav")
    b = full._path_audio_(str(songs / "a song.wav"), str(tmp_path / "f"), str(tmp_path / "f"), "wav")
    for x, y in zip(a, b):
        got, want = sf.read(x, always_2d=True)[0], sf.read(y, always_2d=True)[0]
        assert min(sdr(want[:, c], got[:, c]) for c in range(2)) >= 30
