"""The per-clip measures (uvrsep.report.measures) against independent computations.

The reference below is plain Python over lists (loops, ``statistics.median``, a hand-written
percentile), written from the definitions in docs/report.md, not from the module's code. The
synthetic signals have answers known in closed form: silence, a sine at a known level, a
clipped signal, a voice stem silent half the time, music leaked at −20 dB.
"""

from __future__ import annotations

import json
import math
import statistics
import time

import numpy as np
import pytest
import torch

from uvrsep.report.measures import ClipMeter, frame_length, measure_clip

SR = 44100
FRAME = 2048  # at 44.1 kHz


def reference(x: np.ndarray, stems: dict, voice: str, sr: int) -> dict:
    """The measures, plain Python, from the documented formulas."""
    n = x.shape[1]
    frame = round(2048 * sr / 44100)
    bounds = [(s, min(s + frame, n)) for s in range(0, n, frame)]

    def rows(w):
        return [[float(v) for v in ch] for ch in w]

    def level(w):
        peak = max(abs(v) for ch in w for v in ch)
        power = sum(v * v for ch in w for v in ch) / (len(w) * n)
        db = lambda p: max(10 * math.log10(p), -160.0) if p > 0 else -160.0
        return {
            "peak_dbfs": db(peak * peak),
            "rms_dbfs": db(power),
            "clipped": sum(1 for ch in w for v in ch if abs(v) > 1.0),
        }

    def frame_power(w):
        return [sum(v * v for ch in w for v in ch[a:b]) / (len(w) * (b - a)) for a, b in bounds]

    xs = rows(x)
    ss = {name: rows(w) for name, w in stems.items()}
    energy = {name: sum(v * v for ch in w for v in ch) for name, w in ss.items()}
    p_v, p_x = frame_power(ss[voice]), frame_power(xs)
    ranked = sorted(p_v)
    pos = 0.99 * (len(ranked) - 1)
    lo = math.floor(pos)
    p99 = ranked[lo] + (ranked[min(lo + 1, len(ranked) - 1)] - ranked[lo]) * (pos - lo)
    threshold = max(p99 * 10 ** (-20 / 10), 1e-6)
    active = [p >= threshold for p in p_v]
    pauses = [10 * math.log10(max(pv / px, 1e-16)) for pv, px, a in zip(p_v, p_x, active) if not a and px >= 1e-6]
    total = sum(energy.values())
    return {
        "duration_s": n / sr,
        "input": level(xs),
        "stems": {name: level(w) for name, w in ss.items()},
        "clipped": sum(level(w)["clipped"] for w in ss.values()),
        "voice_share": energy[voice] / total if total else 0.0,
        "voice_active": sum(b - a for (a, b), on in zip(bounds, active) if on) / n,
        "music_left_db": statistics.median(pauses) if pauses else None,
    }


def assert_matches(got: dict, want: dict, db_tol: float = 0.011, frac_tol: float = 1e-4) -> None:
    assert got["duration_s"] == pytest.approx(want["duration_s"], abs=1e-3)
    for part in ("input",):
        for key in ("peak_dbfs", "rms_dbfs"):
            assert got[part][key] == pytest.approx(want[part][key], abs=db_tol), (part, key)
        assert got[part]["clipped"] == want[part]["clipped"]
    assert got["stems"].keys() == want["stems"].keys()
    for name, levels in want["stems"].items():
        for key in ("peak_dbfs", "rms_dbfs"):
            assert got["stems"][name][key] == pytest.approx(levels[key], abs=db_tol), (name, key)
        assert got["stems"][name]["clipped"] == levels["clipped"]
    assert got["clipped"] == want["clipped"]
    assert got["voice_share"] == pytest.approx(want["voice_share"], abs=frac_tol)
    assert got["voice_active"] == pytest.approx(want["voice_active"], abs=frac_tol)
    if want["music_left_db"] is None:
        assert got["music_left_db"] is None
    else:
        assert got["music_left_db"] == pytest.approx(want["music_left_db"], abs=db_tol)


def song(sr: int, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, voice, music) float32 [2, T]: a voice in bursts of uneven length, noise music."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    gate = (np.sin(2 * np.pi * 0.7 * t) + 0.3 * np.sin(2 * np.pi * 2.3 * t)) > 0.2
    voice = 0.4 * np.sin(2 * np.pi * 310 * t) * gate * np.linspace(0.3, 1.0, n)
    music = 0.05 * rng.standard_normal((2, n))
    voice2 = np.stack([voice, 0.9 * voice])
    return (voice2 + music).astype(np.float32), voice2.astype(np.float32), music.astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 22050])
def test_measures_match_a_plain_python_reference(sr):
    x, voice, music = song(sr, 2.3)
    v = voice + 0.08 * music  # leaked music
    stems = {"instrumental": x - v, "vocals": v}
    got = measure_clip(x, stems, "vocals", sr)
    assert_matches(got, reference(x, stems, "vocals", sr))
    assert 0.2 < got["voice_active"] < 0.8 and got["music_left_db"] is not None  # the case is not trivial
    json.dumps(got, allow_nan=False)  # JSON-able as it is


def test_silence():
    z = np.zeros((2, SR), np.float32)
    got = measure_clip(z, {"instrumental": z, "vocals": z}, "vocals", SR)
    assert got["duration_s"] == 1.0
    for levels in (got["input"], *got["stems"].values()):
        assert levels == {"peak_dbfs": -160.0, "rms_dbfs": -160.0, "clipped": 0}
    assert got["voice_share"] == 0.0 and got["voice_active"] == 0.0 and got["music_left_db"] is None
    assert got["clipped"] == 0


def test_a_sine_at_a_known_level():
    """A sine of amplitude A at sr/4, from phase 0: samples 0, A, 0, −A, ..., so its peak is A
    and its RMS A/√2 exactly (−6 dBFS peak, −9.01 dBFS RMS)."""
    amplitude = 10 ** (-6 / 20)
    n = 4 * 11025
    wave = amplitude * np.sin(np.pi / 2 * np.arange(n))
    x = np.stack([wave, wave]).astype(np.float32)
    z = np.zeros_like(x)
    got = measure_clip(x, {"vocals": x, "instrumental": z}, "vocals", SR)
    assert got["stems"]["vocals"]["peak_dbfs"] == pytest.approx(-6.0, abs=0.01)
    assert got["stems"]["vocals"]["rms_dbfs"] == pytest.approx(-6.0 - 10 * math.log10(2), abs=0.01)  # −9.01
    assert got["voice_share"] == 1.0 and got["voice_active"] == 1.0
    assert got["music_left_db"] is None  # the voice never pauses
    mono = measure_clip(x[:1], {"vocals": x[:1], "instrumental": z[:1]}, "vocals", SR)
    assert mono["stems"]["vocals"]["rms_dbfs"] == got["stems"]["vocals"]["rms_dbfs"]  # per channel, not summed


def test_clipped_samples_are_counted_per_channel_and_stem():
    rng = np.random.default_rng(3)
    v = (0.5 * rng.standard_normal((2, SR))).astype(np.float32)
    i = (0.2 * rng.standard_normal((2, SR))).astype(np.float32)
    v[0, 100], v[1, 200], v[1, 201], i[0, 5] = 1.5, -1.0001, 1.0, -3.0  # 1.0 itself is not over
    want_v = sum(1 for ch in v for s in ch if s > 1.0 or s < -1.0)
    got = measure_clip(v + i, {"vocals": v, "instrumental": i}, "vocals", SR)
    assert got["stems"]["vocals"]["clipped"] == want_v >= 2
    assert got["stems"]["instrumental"]["clipped"] == sum(1 for ch in i for s in ch if abs(s) > 1.0) >= 1
    assert got["clipped"] == want_v + got["stems"]["instrumental"]["clipped"]
    assert got["stems"]["instrumental"]["peak_dbfs"] == pytest.approx(20 * math.log10(3.0), abs=0.01)


def test_a_voice_silent_half_the_time_with_music_leaked_at_minus_20_db():
    """Voice on in the first half (whole frames), music throughout; the voice stem keeps
    music at −20 dB (amplitude 0.1): active half the time, music left −20 dB exactly."""
    frames = 40
    n = frames * FRAME
    rng = np.random.default_rng(5)
    music = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    voice = np.zeros((2, n), np.float32)
    voice[:, : n // 2] = (0.5 * rng.standard_normal((2, n // 2))).astype(np.float32)
    x = voice + music
    v = voice + np.float32(0.1) * music
    got = measure_clip(x, {"vocals": v, "instrumental": x - v}, "vocals", SR)
    assert got["voice_active"] == 0.5
    assert got["music_left_db"] == pytest.approx(-20.0, abs=0.01)
    e_v, e_i = float(np.sum(v.astype(np.float64) ** 2)), float(np.sum((x - v).astype(np.float64) ** 2))
    assert got["voice_share"] == pytest.approx(e_v / (e_v + e_i), abs=1e-4)
    # No music in the input's pauses: nothing to measure there.
    quiet = measure_clip(voice, {"vocals": voice, "instrumental": np.zeros_like(voice)}, "vocals", SR)
    assert quiet["voice_active"] == 0.5 and quiet["music_left_db"] is None


def test_activity_threshold_is_20_db_below_the_loudest_frames():
    """Frames at −15 dB of the loudest are active, at −25 dB not (relative rule); at −65 dBFS
    never (absolute floor), however quiet the rest."""
    levels_db = [0, 0, 0, -15, -25, -25, -15, 0]
    n = FRAME * len(levels_db)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((1, n))
    gain = np.repeat([0.3 * 10 ** (d / 20) for d in levels_db], FRAME)[None, :]
    v = (noise * gain).astype(np.float32)
    got = measure_clip(v, {"vocals": v, "other": np.zeros_like(v)}, "vocals", SR)
    assert got["voice_active"] == pytest.approx(6 / 8, abs=1e-4)
    faint = (v * 10 ** (-65 / 20) / 0.3).astype(np.float32)  # loudest frames at −65 dBFS
    got = measure_clip(faint, {"vocals": faint, "other": np.zeros_like(faint)}, "vocals", SR)
    assert got["voice_active"] == 0.0


def test_blocks_of_any_size_give_the_same_measures():
    x, voice, music = song(SR, 1.7, seed=4)
    stems = {"instrumental": music, "vocals": voice}
    whole = measure_clip(x, stems, "vocals", SR)
    meter = ClipMeter(SR, ["instrumental", "vocals"], "vocals")
    rng = np.random.default_rng(0)
    start = 0
    while start < x.shape[1]:
        t = int(rng.integers(1, 5000))
        meter.add(x[:, start : start + t], {name: w[:, start : start + t] for name, w in stems.items()})
        start += t
    assert meter.result() == whole


def test_torch_tensors_and_other_rates():
    x, voice, music = song(48000, 1.0, seed=6)
    as_numpy = measure_clip(x, {"vocals": voice, "instrumental": music}, "vocals", 48000)
    as_torch = measure_clip(
        torch.from_numpy(x),
        {"vocals": torch.from_numpy(voice), "instrumental": torch.from_numpy(music)},
        "vocals",
        48000,
    )
    assert as_torch == as_numpy
    assert frame_length(48000) == 2229 and frame_length(44100) == 2048 and frame_length(1) == 1


def test_mistakes_of_the_caller_are_clear():
    x = np.zeros((2, 100), np.float32)
    with pytest.raises(ValueError, match="voice stem 'voice' is not one of"):
        measure_clip(x, {"vocals": x}, "voice", SR)
    with pytest.raises(ValueError, match="differ in length"):
        measure_clip(x, {"vocals": x[:, :50]}, "vocals", SR)
    with pytest.raises(ValueError, match=r"expected \[channels, samples\]"):
        measure_clip(x[0], {"vocals": x}, "vocals", SR)


@pytest.mark.slow
def test_measuring_costs_under_2_percent_of_separating(tmp_path):
    """The bound of the issue: measuring a 3 s clip against separating it with a 4-wide random
    net (faster than any real one, so the bound is stricter than in use). Best of runs each."""
    from uvrsep import Separator

    from .conftest import music_like, random_net

    weights = tmp_path / "tiny4.pth"
    torch.save(random_net(channels=4).state_dict(), weights)
    wave = music_like(3.0)
    sep = Separator(weights, device="cpu")
    sep.separate(wave[:, : SR // 2], SR)  # warm-up
    separate_s, stems = math.inf, None
    for _ in range(2):
        t0 = time.perf_counter()
        stems = sep.separate(wave, SR)
        separate_s = min(separate_s, time.perf_counter() - t0)
    waves = {name: stems[name] for name in stems}
    measure_s = math.inf
    for _ in range(7):
        t0 = time.perf_counter()
        measure_clip(wave, waves, "vocals", SR)
        measure_s = min(measure_s, time.perf_counter() - t0)
    assert measure_s <= 0.02 * separate_s, (measure_s, separate_s)
