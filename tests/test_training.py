"""Training: data preparation, deterministic mixing, bit-identical resume, export, validation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import music_like
from uvrsep import Separator
from uvrsep.training import (
    PackedSet,
    Source,
    TrainConfig,
    compact_checkpoint,
    export_model,
    make_example,
    prepare_dataset,
    train,
)
from uvrsep.training.loop import validate


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    vocals, music = [], []
    for i in range(3):
        path = root / f"voice{i}.wav"
        sf.write(path, music_like(2.0, sr=48000, channels=1, seed=i)[0], 48000)
        vocals.append(str(path))
        path = root / f"band{i}.flac"
        rng = np.random.default_rng(10 + i)
        sf.write(path, (0.1 * rng.standard_normal((2, 44100 * 2))).T, 44100)
        music.append(str(path))
    sources = [
        Source("songs", "vocals", tuple(vocals[:2]), weight=1.0),
        Source("dialog", "vocals", tuple(vocals[2:]), weight=1.0, bandwidth_hz=5500),
        Source("bgm", "music", tuple(music)),
    ]
    out = tmp_path_factory.mktemp("packed")
    prepare_dataset(sources, out, max_mb=1.0, seed=0, codec="float16")
    return out


def test_prepare_keeps_budget_and_sources(packed):
    data = PackedSet(packed)
    size = (packed / "vocals.npy").stat().st_size + (packed / "music.npy").stat().st_size
    assert size <= 1.0 * 2**20 + 1024
    assert {s.source for s in data.by_kind["vocals"]} == {"songs", "dialog"}
    assert data.vocals.dtype == np.float16 and data.music.shape[0] == 2


def test_opus_packing_holds_more_audio(packed, tmp_path):
    import json

    index = json.loads((packed / "index.json").read_text())
    sources = []
    for kind in ("vocals", "music"):
        files = tuple(sorted({s["file"] for s in index["segments"] if s["kind"] == kind}))
        sources.append(Source(kind, kind, files))
    prepare_dataset(sources, tmp_path / "opus", max_mb=0.2, seed=0, codec="opus")
    data = PackedSet(tmp_path / "opus")
    size = sum(p.stat().st_size for p in (tmp_path / "opus").glob("*.opus"))
    assert size <= 0.25 * 2**20
    assert data.vocals.shape[1] == data.index["vocals_samples"] > 0
    float16_seconds = 0.1 * 2**20 / 88200  # the vocals' half of the budget as float16: 1.2 s
    assert data.vocals.shape[1] / 44100 > 4 * float16_seconds  # here: all 6 s of the sources
    mix, _acc = make_example(data, 0, 1, 0, 1.0)
    assert np.isfinite(mix).all() and mix.shape == (2, 44100)


def test_examples_are_deterministic_and_mixed(packed):
    data = PackedSet(packed)
    a_mix, a_acc = make_example(data, 0, 5, 1, 1.0)
    b_mix, b_acc = make_example(data, 0, 5, 1, 1.0)
    c_mix, _ = make_example(data, 0, 6, 1, 1.0)
    assert np.array_equal(a_mix, b_mix) and np.array_equal(a_acc, b_acc)
    assert not np.array_equal(a_mix, c_mix)
    assert a_mix.shape == (2, 44100) and np.abs(a_mix).max() <= 0.95 + 1e-6


def tiny_config(packed, out, **kw) -> TrainConfig:
    fields = dict(
        data=str(packed),
        out=str(out),
        family="aspp",
        width=4,
        params="1band_sr44100_hl256",
        steps=4,
        batch_size=2,
        crop_frames=32,
        warmup_steps=2,
        checkpoint_every=1,
        seed=3,
    )
    fields.update(kw)
    return TrainConfig(**fields)


@pytest.mark.slow
def test_stopped_and_resumed_run_is_bit_identical(packed, tmp_path):
    train(tiny_config(packed, tmp_path / "straight"))
    train(tiny_config(packed, tmp_path / "resumed"), stop_after=2)
    middle = torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
    assert middle["step"] == 2
    train(tiny_config(packed, tmp_path / "resumed"))
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]


@pytest.mark.slow
def test_compact_checkpoint_resumes(packed, tmp_path):
    """fp32 moments resume exactly, bf16 ones (half the optimizer bytes) nearly, none still resume."""
    train(tiny_config(packed, tmp_path / "first"), stop_after=2)
    full = tmp_path / "first" / "last.pth"
    middle = torch.load(full, weights_only=True)["state_dict"]
    results, sizes = {}, {}
    for moments in ("exact", "fp32", "bf16", "drop"):
        run = tmp_path / moments
        run.mkdir()
        if moments == "exact":
            shutil.copyfile(full, run / "last.pth")
        else:
            compact_checkpoint(full, run / "last.pth", moments=moments)
            sizes[moments] = (run / "last.pth").stat().st_size
            state = torch.load(run / "last.pth", weights_only=True)["optimizer"]["state"]
            dtypes = {t.dtype for st in state.values() for n, t in st.items() if n.startswith("exp_avg")}
            assert dtypes == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}, "drop": set()}[moments]
        record = train(tiny_config(packed, run), stop_after=1)
        assert record["step"] == 3 and np.isfinite(record["loss"])
        resumed = torch.load(run / "last.pth", weights_only=True)
        assert all(
            t.dtype == torch.float32
            for st in resumed["optimizer"]["state"].values()
            for n, t in st.items()
            if n.startswith("exp_avg")
        )
        results[moments] = resumed["state_dict"]
    for key, ref in results["exact"].items():
        assert torch.equal(results["fp32"][key], ref), key
        if ref.is_floating_point() and not torch.equal(ref, middle[key]):
            step = (ref - middle[key]).norm()
            assert (results["bf16"][key] - ref).norm() <= 0.05 * step, key  # the step, within 5 %
    assert sizes["drop"] < sizes["bf16"] < sizes["fp32"]
    with pytest.raises(ValueError):
        compact_checkpoint(full, tmp_path / "x.pth", moments="fp16")


@pytest.mark.slow
def test_export_loads_like_official_weights(packed, tmp_path):
    cfg = tiny_config(packed, tmp_path / "run", steps=1)
    train(cfg)
    exported = export_model(tmp_path / "run" / "last.pth", tmp_path / "model.pth")
    sep = Separator(exported, device="cpu")
    assert sep.layout.name == "1band_sr44100_hl256" and sep.primary == "instrumental"
    assert not sep.notes  # the checkpoint says its band config: no default assumed
    assert sep.weights.file_dtype == torch.float16
    stems = sep.separate_array(music_like(0.3), 44100)
    assert stems["vocals"].shape == (2, 13230)


@pytest.mark.slow
def test_vr51_family_trains(packed, tmp_path):
    cfg = tiny_config(packed, tmp_path / "vr", family="vr51", width=8, nout_lstm=16, steps=1, crop_frames=32)
    record = train(cfg)
    assert record["step"] == 1 and np.isfinite(record["loss"])


@pytest.mark.slow
def test_validation_reports_sdr(packed, tmp_path):
    folder = tmp_path / "val" / "singing_00"
    folder.mkdir(parents=True)
    voc = music_like(0.5, seed=4)
    acc = 0.05 * np.random.default_rng(0).standard_normal(voc.shape).astype(np.float32)
    for name, wave in (("mixture", voc + acc), ("vocals", voc), ("accompaniment", acc)):
        sf.write(folder / f"{name}.wav", wave.T, 44100, subtype="FLOAT")
    cfg = tiny_config(packed, tmp_path / "run", steps=2, val_dir=str(tmp_path / "val"), val_every=2)
    record = train(cfg)
    assert "val_vocals_sdr" in record and np.isfinite(record["val_vocals_sdr"])
    assert set(validate(tmp_path / "run" / "last.pth", cfg)) == {
        "vocals_sdr",
        "accompaniment_sdr",
        "singing_vocals_sdr",
    }


@pytest.mark.slow
def test_validation_never_overruns_the_time_budget(packed, tmp_path, monkeypatch):
    """A validation pass that would end past --time-budget is skipped; training goes on to its steps."""
    from uvrsep.training import loop

    clock = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock[0])  # only validation takes "time"

    def slow_validate(checkpoint, cfg):
        clock[0] += 10.0
        return {"vocals_sdr": 1.0}

    monkeypatch.setattr(loop, "validate", slow_validate)
    cfg = tiny_config(packed, tmp_path / "run", steps=5, val_every=1, val_dir=str(tmp_path), time_budget_s=25.0)
    record = train(cfg)
    history = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["history"]
    assert [r["step"] for r in history if "val_vocals_sdr" in r] == [1, 2]  # a third would end at 30 s
    assert record["step"] == 5 and clock[0] <= cfg.time_budget_s


def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint(packed, tmp_path, monkeypatch):
    """`timeout` sends SIGTERM: the run ends after the current step, saved, and can resume."""
    import os
    import signal

    from uvrsep.training import loop

    def terminate_during_validation(checkpoint, cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        return {"vocals_sdr": 1.0}

    monkeypatch.setattr(loop, "validate", terminate_during_validation)
    before = signal.getsignal(signal.SIGTERM)
    cfg = tiny_config(packed, tmp_path / "run", steps=4, val_every=2, val_dir=str(tmp_path), checkpoint_every=100)
    record = train(cfg)
    assert record["step"] == 2 and signal.getsignal(signal.SIGTERM) is before
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["step"] == 2
