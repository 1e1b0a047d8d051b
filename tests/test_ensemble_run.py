"""Ensembles in the product (issue 27): ``Separator([A, B, ...])`` and ``uvrsep separate -m A -m B``.

Each member separates every input exactly as it would alone, so an ensemble's stems equal
:func:`uvrsep.ensemble.ensemble` of the members' own stems: that is what most tests here check,
for settings, batches, long inputs, chains and the CLI. The algorithms themselves (against
audio-separator's ``Ensembler``) are tests/test_ensemble.py's. Members are tiny random HP-layout
nets (two seeds, 8 channels wide: what is checked here is how the members' stems are combined, not
the nets, and the narrowest net keeps the file's network time small) and, for refusals, a tiny
VR 5.1 net named as a DeEcho model.
"""

from __future__ import annotations

import json
from pathlib import PureWindowsPath

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tests.conftest import SR, TINY_CHANNELS, music_like, random_net
from uvrsep import Ensemble, Separator
from uvrsep.chain import Chain
from uvrsep.cli import app
from uvrsep.ensemble import ensemble
from uvrsep.errors import ConfigError
from uvrsep.evaluation import sdr
from uvrsep.naming import CHAIN_JOIN, ENSEMBLE_JOIN, check_template, model_field, render
from uvrsep.semantics import Settings

runner = CliRunner()


@pytest.fixture(scope="module")
def second_weights(tmp_path_factory):
    """The ensemble's second member: a net as wide as conftest's ``tiny_weights`` (the first
    member, seed 0), seed 1."""
    path = tmp_path_factory.mktemp("second") / "tiny_b.pth"
    torch.save(random_net(channels=TINY_CHANNELS, seed=1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def deecho_weights(tmp_path_factory):
    """A tiny random VR 5.1 net saved under a DeEcho name (stems no_echo / echo)."""
    from uvrsep.network import Architecture

    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("vr51") / "tiny-DeEcho.pth"
    torch.save(Architecture("vr51", 16, bins=672).build(672).state_dict(), path)
    return path


@pytest.fixture
def loads(monkeypatch):
    """Counts the weight files loaded (``{file name: times}``)."""
    import uvrsep.separator

    counted: dict[str, int] = {}
    real = uvrsep.separator.load_model

    def counting(model, **kwargs):
        name = str(model).replace("\\", "/").rsplit("/", 1)[-1]
        counted[name] = counted.get(name, 0) + 1
        return real(model, **kwargs)

    monkeypatch.setattr(uvrsep.separator, "load_model", counting)
    return counted


def combined(members: list[Separator], wave: np.ndarray, algorithm: str, weights=None) -> dict[str, np.ndarray]:
    """Each member's stems alone, combined with :func:`ensemble`."""
    alone = [m.separate(wave, SR) for m in members]
    return {name: ensemble([s[name] for s in alone], algorithm, weights).numpy() for name in alone[0].names}


def write_clip(path, seconds: float, seed: int = 1):
    sf.write(path, music_like(seconds, seed=seed).T, SR, subtype="PCM_16")
    return path


# -- quick: the rules, before any work ---------------------------------------------------------


@pytest.mark.slow
def test_one_model_is_the_model_alone(tiny_weights):
    """``avg_wave`` (the default) of one model is that model's own stems, bit for bit."""
    wave = music_like(0.3)
    alone = Separator(tiny_weights, device="cpu").separate(wave, SR)
    ens = Separator([tiny_weights], device="cpu")
    assert isinstance(ens, Ensemble) and isinstance(ens, Separator) and ens.ensemble_algorithm == "avg_wave"
    got = ens.separate(wave, SR)
    assert got.names == alone.names and got.primary == alone.primary
    for name in alone.names:
        np.testing.assert_array_equal(got[name], alone[name])


def test_members_whose_stems_do_not_match_are_refused_before_any_work(
    tiny_weights, deecho_weights, short_wav, tmp_path, loads
):
    """vocals/instrumental against no_echo/echo: one line naming each model and its stems, from
    Python and from the CLI, before any model is built and with nothing written."""
    with pytest.raises(ConfigError) as caught:
        Separator([tiny_weights, deecho_weights], device="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert "tiny_fp32: instrumental/vocals" in message and "tiny-DeEcho: no_echo/echo" in message
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "separate",
            str(short_wav),
            "-m",
            str(tiny_weights),
            "-m",
            str(deecho_weights),
            "-o",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "tiny-DeEcho: no_echo/echo" in result.output and result.output.count("\n") == 1
    assert loads == {} and not out.exists()


@pytest.mark.parametrize(
    "weights, words",
    [
        ([1.0], "1 weight for 2 models"),
        ([1.0, 2.0, 3.0], "3 weights for 2 models"),
        ([1.0, float("nan")], "not a finite number"),
        ([1.0, float("inf")], "not a finite number"),
        ([1.0, -0.5], "-0.5 is negative"),
        ([0, 0.0], "all weights are 0"),
        ([1.0, "2"], "'2' is not a number"),
        ("1,2", "expected numbers"),
    ],
)
def test_bad_weights_are_one_line_errors_before_any_load(tiny_weights, second_weights, weights, words, loads):
    with pytest.raises(ConfigError, match="ensemble_weights") as caught:
        Separator([tiny_weights, second_weights], device="cpu", ensemble_weights=weights)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert loads == {}


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ensemble-weights", "1,x"], "--ensemble-weights '1,x': 'x' is not a number"),
        (["--ensemble-weights", "1", "--ensemble-weights", "2", "--ensemble-weights", "3"], "3 weights for 2 models"),
        (["--ensemble-weights", "1,-1"], "--ensemble-weights: -1 is negative"),
        (["--ensemble-weights", "0,0"], "all weights are 0"),
        (["--primary-stem", "vocals"], "--primary-stem cannot be used with an ensemble"),
    ],
)
def test_cli_refuses_bad_ensemble_settings_in_one_line(
    tiny_weights, second_weights, short_wav, tmp_path, args, words, loads
):
    result = runner.invoke(
        app,
        [
            "separate",
            str(short_wav),
            "-m",
            str(tiny_weights),
            "-m",
            str(second_weights),
            "-o",
            str(tmp_path / "out"),
            *args,
        ],
    )
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.count("\n") == 1 and loads == {}


def test_ensemble_settings_need_an_ensemble(tiny_weights, short_wav, tmp_path, loads):
    """--ensemble-* with one model is an error (not a silent no-op), and so are the keywords
    given to a one-model Separator; a list of one model is an ensemble and takes them."""
    for args in (["--ensemble-algorithm", "avg_fft"], ["--ensemble-weights", "1"]):
        result = runner.invoke(app, ["separate", str(short_wav), "-m", str(tiny_weights), "-o", str(tmp_path), *args])
        assert result.exit_code == 2 and "are for an ensemble: give --model two or more times" in result.output
    with pytest.raises(ConfigError, match="are for an ensemble: give a list of models"):
        Separator(tiny_weights, ensemble_algorithm="avg_wave")
    with pytest.raises(ConfigError, match="primary_stem cannot be used with an ensemble"):
        Separator([tiny_weights], primary_stem="vocals")
    with pytest.raises(ConfigError, match="unknown algorithm 'max spec'"):
        Separator([tiny_weights], ensemble_algorithm="max spec")
    with pytest.raises(ConfigError, match="at least one model"):
        Separator([])
    assert loads == {}


def test_model_field_joins_an_ensemble_apart_from_a_chain():
    """``{model}`` is ``A&B`` for an ensemble, ``A+B`` for a chain, ``A&B+C`` for both; ``&`` is
    allowed in file names on Windows (which refuses <>:"/\\|?*) and passes the template checks."""
    assert model_field(["x/HP2_all_vocals.pth", "2_HP-UVR"]) == "HP2_all_vocals&2_HP-UVR"
    assert model_field(["A"], ["B"]) == "A+B"
    assert model_field(["A", "B", "C"], ["D", "E"]) == "A&B&C+D+E"
    assert ENSEMBLE_JOIN != CHAIN_JOIN
    for join in (ENSEMBLE_JOIN, CHAIN_JOIN):
        assert join not in '<>:"/\\|?*' and join.isprintable() and not join.isspace()
    template = "{model}/{name}_{stem}.{ext}"
    check_template(template, 2, "wav")
    text = render(template, model=model_field(["A", "B"], ["C"]), name="song", stem="vocals", ext="wav")
    assert PureWindowsPath(text).parts == ("A&B+C", "song_vocals.wav")


@pytest.mark.slow
def test_params_apply_to_members_that_record_no_band_config(tiny_weights, tmp_path):
    """A member whose file records its band config keeps it; the others take ``params``; a
    ``params`` no member takes is noted; members of different rates are refused; settings
    (``configure``) reach every member, a primary stem never."""
    recorded = tmp_path / "recorded.pth"
    torch.save(
        {
            "format": "uvrsep-checkpoint/1",
            "state_dict": random_net(channels=8, seed=3).state_dict(),
            "params": "4band_v2",
            "primary": "vocals",
        },
        recorded,
    )
    ens = Separator([recorded, tiny_weights], device="cpu", params="4band_v3")
    assert [m.layout.name for m in ens.members] == ["4band_v2", "4band_v3"]
    assert ens.labels == ("vocals", "instrumental")  # the first member's order
    assert not any("is not used" in note for note in ens.notes)
    ens = Separator([recorded, recorded], device="cpu", params="4band_v3")
    assert any("4band_v3 is not used: every model of the ensemble records its band config" in n for n in ens.notes)
    with pytest.raises(ConfigError, match=r"share a sample rate \(recorded: 44100 Hz, tiny_fp32: 32000 Hz\)"):
        Separator([recorded, tiny_weights], device="cpu", params="1band_sr32000_hl512")
    ens.configure(tta=True, window_size=320)
    assert all(m.settings.tta and m.settings.window_size == 320 for m in ens.members) and ens.settings.tta
    with pytest.raises(ConfigError, match="cannot be used with an ensemble"):
        ens.configure(primary_stem="vocals")
    assert all(m.settings.primary_stem is None for m in ens.members)


# -- slow: separations -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, algorithm, weights",
    [
        (dict(semantics="rvc", tta=True), "avg_fft", [2, 1]),
        (
            dict(semantics="uvr", aggressiveness=20, postprocess=True, window_size=320, high_end="mirroring"),
            "uvr_max_spec",
            None,
        ),
        (dict(semantics="rvc", postprocess=True, aggressiveness=15, high_end="none"), "ensemble_wav", None),
    ],
)
def test_every_member_separates_with_the_ensembles_settings(tiny_weights, second_weights, settings, algorithm, weights):
    """Both semantics, TTA, post-processing, window size, aggression, high end: every member has
    the settings a model alone would have, and the ensemble's stems are the members' own stems
    (each member is that model's :class:`Separator`, separating alone) combined."""
    wave = music_like(0.6, seed=4)
    ens = Separator(
        [tiny_weights, second_weights], device="cpu", ensemble_algorithm=algorithm, ensemble_weights=weights, **settings
    )
    assert all(m.settings == Settings(**settings).resolve() for m in ens.members)
    got, want = ens.separate(wave, SR), combined(ens.members, wave, algorithm, weights)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.slow
def test_a_batch_loads_each_model_once_records_the_ensemble_and_resumes(tiny_weights, second_weights, tmp_path, loads):
    """Two clips: each model loaded once; every record names the ensemble, its algorithm and
    its weights (given repeated); the stems written are the Python ensemble's with the same
    settings. A rerun with one more clip separates only that one."""
    src = tmp_path / "in"
    src.mkdir()
    for k, seconds in enumerate((0.4, 0.9)):
        write_clip(src / f"clip{k}.wav", seconds, seed=k)
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    args = [
        "separate",
        str(src),
        "-m",
        str(tiny_weights),
        "-m",
        str(second_weights),
        "--ensemble-algorithm",
        "avg_fft",
        "--ensemble-weights",
        "2",
        "--ensemble-weights",
        "0.5",
        "-o",
        str(out),
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
        "--bit-depth",
        "32f",
        "--name-template",
        "{name}_{stem}_{model}.{ext}",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert loads == {"tiny_fp32.pth": 1, "tiny_b.pth": 1}
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 2
    assert all(
        r["model"] == "tiny_fp32&tiny_b" and r["ensemble"] == {"algorithm": "avg_fft", "weights": [2.0, 0.5]}
        for r in records
    )
    ens = Separator(
        [tiny_weights, second_weights], device="cpu", ensemble_algorithm="avg_fft", ensemble_weights=[2, 0.5]
    )
    stems = ens.separate(src / "clip1.wav")
    for name in stems.names:
        written, sr = sf.read(out / f"clip1_{name}_tiny_fp32&tiny_b.wav", dtype="float32", always_2d=True)
        assert sr == SR
        np.testing.assert_array_equal(written.T, stems[name])
    write_clip(src / "clip2.wav", 0.5, seed=3)
    loads.clear()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["input"].rsplit("/", 1)[-1] for r in records[2:]] == ["clip2.wav"]
    assert "2 skipped" in result.output
    assert loads == {"tiny_fp32.pth": 1, "tiny_b.pth": 1}


@pytest.mark.slow
def test_an_ensemble_batch_records_the_measures_a_single_model_records(tiny_weights, second_weights, tmp_path):
    """An ``ok`` record of an ensemble's batch has a single model's fields (the writer's result,
    then the run's ``model`` and ``ensemble``) and carries the per-clip measures of the input and
    of the ensemble's stems as written: what :func:`uvrsep.report.measure_clip` gives on those
    files, which is what a single model's record holds (tests/test_report_batch.py)."""
    from dataclasses import fields

    from uvrsep.batch import ItemResult
    from uvrsep.report import measure_clip

    clip = tmp_path / "a.wav"
    sf.write(clip, music_like(0.4, seed=2).T, SR, subtype="FLOAT")  # read back as written
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    models = ["-m", str(tiny_weights), "-m", str(second_weights)]
    result = runner.invoke(
        app,
        [
            "separate",
            str(clip),
            *models,
            "-o",
            str(out),
            "--manifest",
            str(manifest),
            "--device",
            "cpu",
            "--bit-depth",
            "32f",
        ],
    )
    assert result.exit_code == 0, result.output
    (rec,) = map(json.loads, manifest.read_text().splitlines())
    assert rec["status"] == "ok" and rec["measures"] is not None, rec
    assert set(rec) == {f.name for f in fields(ItemResult)} | {"model", "ensemble"}
    x, _ = sf.read(clip, dtype="float32", always_2d=True)
    stems = {s: sf.read(out / f"a_{s}.wav", dtype="float32", always_2d=True)[0].T for s in ("vocals", "instrumental")}
    assert rec["measures"] == measure_clip(x.T, stems, "vocals", SR)


@pytest.mark.slow
def test_a_long_input_streams_through_all_members_with_the_whole_result(tiny_weights, second_weights, tmp_path):
    """Segments of one network window (members streaming side by side, their blocks
    combined as they come, through the spectral algorithms' STFT context) against the
    whole-input ensemble: >= 90 dB per stem and channel, same length. (``ensemble_wav``, which
    gives its blocks at the end, streams through the same code: tests/test_ensemble.py.)"""
    path = tmp_path / "long.wav"
    sf.write(path, music_like(6.0, seed=7).T, SR, subtype="FLOAT")  # segments need 6 s (min_frames)
    models, algorithm = [tiny_weights, second_weights], "avg_fft"
    settings = dict(device="cpu", ensemble_algorithm=algorithm, ensemble_weights=[1, 3])
    whole = Separator(models, segment_threshold=float("inf"), **settings).separate(path)
    ens = Separator(models, segment_threshold=1, segment_windows=1, **settings)
    assert ens.streams(6.0)
    ((_, streamed),) = list(ens.separate_batch([path]))
    blocks = list(streamed)
    assert len(blocks) > 1
    for name in whole.names:
        got = np.concatenate([b[name] for b in blocks], axis=1)
        assert got.shape == whole[name].shape
        for ch in range(2):
            assert sdr(whole[name][ch], got[ch]) >= 90, (name, ch)


@pytest.mark.slow
def test_then_after_an_ensemble(tiny_weights, second_weights, tmp_path):
    """``-m A -m B --then C``: C runs on the ensemble's vocals; ``{model}`` is ``A&B+C``; the
    stems are Python's ``Chain(Separator([A, B]), Separator(C))``."""
    from uvrsep.network import Architecture

    torch.manual_seed(1)
    dereverb = tmp_path / "tiny-DeReverb.pth"
    torch.save(Architecture("vr51", 16, bins=672).build(672).state_dict(), dereverb)
    clip = write_clip(tmp_path / "song.wav", 0.6)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "separate",
            str(clip),
            "-m",
            str(tiny_weights),
            "-m",
            str(second_weights),
            "--then",
            str(dereverb),
            "--ensemble-algorithm",
            "min_wave",
            "-o",
            str(out),
            "--bit-depth",
            "32f",
            "--device",
            "cpu",
            "--name-template",
            "{model}/{name}_{stem}.{ext}",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = out / "tiny_fp32&tiny_b+tiny-DeReverb"
    assert sorted(p.name for p in folder.iterdir()) == [
        "song_instrumental.wav",
        "song_vocals_no_reverb.wav",
        "song_vocals_reverb.wav",
    ]
    chain = Chain(
        Separator([tiny_weights, second_weights], device="cpu", ensemble_algorithm="min_wave"),
        Separator(dereverb, device="cpu"),
    )
    stems = chain.separate(clip)
    for name in stems.names:
        written, _ = sf.read(folder / f"song_{name}.wav", dtype="float32", always_2d=True)
        np.testing.assert_array_equal(written.T, stems[name])
