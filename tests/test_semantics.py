"""Settings and the two semantics (RVC's AudioPre, UVR5 / audio-separator), step by step."""

from __future__ import annotations

import dataclasses
import itertools

import librosa
import numpy as np
import pytest
import torch

from tests.conftest import SR, music_like
from uvrsep import Separator, bands
from uvrsep.config import load_band_layout
from uvrsep.dsp.bands import from_channels, to_channels
from uvrsep.errors import ConfigError
from uvrsep.evaluation import sdr
from uvrsep.masks import (
    apply_merge_weights,
    apply_silence_ops,
    apply_uvr_aggression,
    mask_silence,
    merge_weights,
    silence_ops,
    uvr_exponents,
)
from uvrsep.registry import parse_stem_label
from uvrsep.segments import SequentialResampler
from uvrsep.semantics import RvcSemantics, Settings, UvrSemantics
from uvrsep.stems import mirror_high_end

# -- settings ---------------------------------------------------------------------------------


def test_defaults_follow_the_semantics():
    rvc = Settings().resolve()
    assert (rvc.aggressiveness, rvc.high_end, rvc.window_size, rvc.postprocess_threshold) == (10, "mirroring", 512, 0.2)
    uvr = Settings(semantics="uvr").resolve()
    assert (uvr.aggressiveness, uvr.high_end, uvr.window_size, uvr.postprocess_threshold) == (5, "none", 512, 0.2)
    assert Settings(semantics="uvr", aggressiveness=-100, high_end="mirroring").resolve().aggressiveness == -100


@pytest.mark.parametrize(
    "settings, message",
    [
        (Settings(aggressiveness=-1), "between 0 and 100 with rvc"),
        (Settings(semantics="uvr", aggressiveness=101), "between -100 and 100 with uvr"),
        (Settings(semantics="uvr", high_end="mirroring2"), "mirroring2.*uvr semantics"),
        (Settings(high_end="mirror"), "use mirroring, mirroring2, none"),
        (Settings(semantics="UVR5"), "unknown semantics"),
        (Settings(primary_stem="kazoo"), "unknown stem 'kazoo'"),
        (Settings(window_size=0), "window size"),
        (Settings(postprocess_threshold=float("nan")), "threshold"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        settings.resolve()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, name",
    [
        ("Vocals", "Vocals"),
        ("vocals", "Vocals"),
        ("No Echo", "No Echo"),
        ("no_echo", "No Echo"),
        ("NO-ECHO", "No Echo"),
        ("  instrumental ", "Instrumental"),
        ("wind inst", "Wind Inst"),
        ("no_reverb", "No Reverb"),
    ],
)
def test_stem_labels_in_either_spelling(text, name):
    assert parse_stem_label(text) == name


def test_separator_takes_settings_or_keywords(tiny_weights):
    sep = Separator(tiny_weights, device="cpu", aggressiveness=30, tta=True)
    assert sep.settings == Settings(aggressiveness=30, tta=True).resolve()
    base = Settings(semantics="uvr", window_size=320, primary_stem="vocals")
    sep = Separator(tiny_weights, device="cpu", settings=base, postprocess=True)
    assert sep.settings == dataclasses.replace(base, postprocess=True).resolve()
    assert (sep.primary, sep.secondary, sep.settings.aggressiveness) == ("vocals", "instrumental", 5)
    assert isinstance(sep.semantics, UvrSemantics) and sep.semantics.inverted
    with pytest.raises(ConfigError, match="unknown argument 'agressiveness'; did you mean aggressiveness"):
        Separator(tiny_weights, device="cpu", agressiveness=5)


@pytest.mark.parametrize(
    "window, message",
    [
        (256, "window size 256 is too small.*larger than 256"),
        (1000, "window size 1000 does not fit.*multiple of 16"),
    ],
)
def test_window_the_net_cannot_take_is_a_clear_error(tiny_weights, window, message):
    with pytest.raises(ConfigError, match=message) as info:
        Separator(tiny_weights, device="cpu", semantics="uvr", window_size=window)
    assert "\n" not in str(info.value)


def test_unknown_primary_stem_notice(tiny_weights):
    sep = Separator(tiny_weights, device="cpu")
    assert any("no primary stem known" in note and "instrumental" in note for note in sep.notes)
    sep = Separator(tiny_weights, device="cpu", primary_stem="No Echo")
    assert (sep.primary, sep.secondary) == ("no_echo", "echo")
    assert not any("primary stem" in note for note in sep.notes)


# -- UVR's steps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aggression, inverted, expected",
    [
        (10, False, (1 + 0.2 / 3, 1.2)),
        (5, True, (1.3, 1.9)),  # a = 1 − 0.1 (case b of the fixtures)
        (0, True, (1, 1)),  # no inversion at 0
        (-30, True, (1 + 1.6 / 3, 2.6)),
        (-30, False, (0.8, 0.4)),
    ],
)
def test_uvr_exponents(aggression, inverted, expected):
    np.testing.assert_allclose(uvr_exponents(aggression, inverted), expected, rtol=1e-12)


def runs(n, *spans, low=0.1, high=0.5):
    """A per-frame minimum with the frames of each (first, last) span above the threshold."""
    m = np.full(n, low, dtype=np.float32)
    for first, last in spans:
        m[first : last + 1] = high
    return m


def test_merge_weights_one_run():
    w = merge_weights(runs(300, (100, 199)), 0.2)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w[100:132], np.linspace(0, 1, 32), rtol=1e-6)
    np.testing.assert_allclose(w[167:199], np.linspace(1, 0, 32), rtol=1e-6)
    assert (w[132:167] == 1).all() and w[199] == 0
    assert not w[:100].any() and not w[200:].any()


def test_merge_weights_at_the_ends_and_short_runs():
    w = merge_weights(runs(300, (0, 99)), 0.2)  # from frame 0: no fade in
    assert (w[:67] == 1).all()
    np.testing.assert_allclose(w[67:99], np.linspace(1, 0, 32), rtol=1e-6)
    w = merge_weights(runs(300, (200, 299)), 0.2)  # to the last frame: still fades out
    np.testing.assert_allclose(w[267:299], np.linspace(1, 0, 32), rtol=1e-6)
    assert w[299] == 0
    assert not merge_weights(runs(300, (10, 74)), 0.2).any()  # last − first = 64: too short
    assert not merge_weights(runs(300), 0.2).any()  # nothing above: unchanged, no error


def test_merge_weights_close_runs():
    """A run starting < 32 frames after the previous one's last frame starts 64 frames before it."""
    w = merge_weights(runs(400, (100, 199), (210, 320)), 0.2)
    np.testing.assert_allclose(w[100:132], np.linspace(0, 1, 32), rtol=1e-6)
    np.testing.assert_allclose(w[135:167], np.linspace(0, 1, 32), rtol=1e-6)  # 199 − 64 = 135
    assert (w[167:288] == 1).all()
    np.testing.assert_allclose(w[288:320], np.linspace(1, 0, 32), rtol=1e-6)


def test_apply_merge_weights():
    mask = torch.full((2, 3, 4), 0.25)
    assert apply_merge_weights(mask, np.array([0, 0.5, 1, 0], dtype=np.float32)) is mask
    np.testing.assert_allclose(mask[0, 0].numpy(), [0.25, 0.625, 1, 0.25])
    apply_merge_weights(mask, torch.tensor([1.0, 0, 0, 0]))
    np.testing.assert_allclose(mask[1, 2].numpy(), [1, 0.625, 1, 0.25])


# -- the torch steps against the numpy formulas they replace ---------------------------------
# Each oracle below is the numpy expression of the step before it moved to torch.

LAYOUT = load_band_layout("4band_v2")  # F = 673 rows, split bin 85, 101 high-end rows
SHAPE = (2, LAYOUT.bins + 1, 300)


def mix_and_masks(seed: int = 0):
    """A complex64 mix ``[2, 673, 300]`` quiet over frames 40–139 and from 200 to the end (RVC's
    ``mask_silence`` runs, one past the original's end), and two float32 masks confident (>= 0.6)
    over frames 20–119 and 150–279 (UVR's ``merge_artifacts`` runs)."""
    rng = np.random.default_rng(seed)
    spec = (rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)).astype(np.complex64)
    spec[:, :, 40:140] *= 0.05
    spec[:, :, 200:] *= 0.05
    masks = []
    for _ in range(2):
        m = rng.random(SHAPE, dtype=np.float32)
        for a, b in ((20, 120), (150, 280)):
            m[:, :, a:b] = 0.6 + 0.4 * m[:, :, a:b]
        masks.append(m)
    return spec, masks


def np_silence_ops(mag, ref, ops, offset=0):
    t = mag.shape[2]
    for start, stop, weights in ops:
        lo, hi = max(start, offset), min(stop, offset + t)
        if lo >= hi:
            continue
        piece = ref[:, :, lo - offset : hi - offset]
        if weights is not None:
            piece = weights[lo - start : hi - start] * piece
        mag[:, :, lo - offset : hi - offset] += piece


def np_uvr_aggression(mask, aggression, split_bin, inverted):
    low, high = uvr_exponents(aggression, inverted)
    if (low, high) != (1, 1):
        mask[:, :split_bin] = np.power(mask[:, :split_bin], np.float32(low))
        mask[:, split_bin:] = np.power(mask[:, split_bin:], np.float32(high))
    return mask


def np_estimate(name, masks, norm, coef, aggression, inverted):
    if name == "rvc":
        preds = [mask * norm for mask in masks]
        return (preds[0] + preds[1]) * 0.5 * coef if len(preds) == 2 else preds[0] * coef
    mask = (masks[0] + masks[1]) * 0.5 if len(masks) == 2 else np.array(masks[0], dtype=np.float32)
    return np_uvr_aggression(mask, aggression, LAYOUT.split_bin, inverted)


def np_frame_stats(name, est, mag):
    return np.clip(mag - est, 0, np.inf).mean(axis=(0, 1)) if name == "rvc" else est.min(axis=(0, 1))


def np_apply_post(name, est, mag, plan, offset, n_frames):
    if name == "rvc":
        ref = np.clip(mag - est, 0, np.inf)
        cut = min(est.shape[2], max(0, n_frames - offset))
        np_silence_ops(est[:, :, :cut], ref[:, :, :cut], plan[0], offset=offset)
        np_silence_ops(est[:, :, cut:], ref[:, :, cut:], plan[1], offset=offset + cut)
    else:
        frames = np.minimum(np.arange(offset, offset + est.shape[2]), n_frames - 1)
        est += plan[frames].astype(np.float32)[None, None, :] * (1 - est)


def np_stems(name, spec, mag, est):
    primary = np.exp(1.0j * np.angle(spec))
    primary *= est if name == "rvc" else est * mag
    if name == "rvc":
        return primary, spec - primary
    secondary = np.exp(1.0j * np.angle(spec))
    secondary *= (1 - est) * mag
    return primary, secondary


def np_mirror(stem, high_end, layout, mode):
    h = high_end.shape[1]
    pfs = layout.pre_filter[0] if layout.pre_filter is not None else layout.bins
    mirror = np.flip(np.abs(stem[:, pfs - 10 - h : pfs - 10, :]), 1)
    if mode == "mirroring":
        mirror = mirror * np.exp(1.0j * np.angle(high_end))
    else:
        mirror = np.multiply(mirror, high_end * 1.7)
    return np.where(np.abs(high_end) <= np.abs(mirror), high_end, mirror)


def make_semantics(name: str, aggressiveness: float, inverted: bool, tta: bool):
    kind = RvcSemantics if name == "rvc" else UvrSemantics
    settings = Settings(semantics=name, aggressiveness=aggressiveness, tta=tta, postprocess=True).resolve()
    primary = "Vocals" if inverted else "Instrumental"
    return kind(settings, kind.adapt_layout(LAYOUT, "aspp"), family="aspp", primary=primary, uses_aggressiveness=True)


def run_steps(sem, spec, masks, n_frames, segments, device):
    """Every step of ``sem`` on ``device``: the estimate, its statistics and plan, post-processing
    applied segment by segment (``segments``: the first frames of the later ones), the stems."""
    spec_t = torch.from_numpy(spec).to(device)
    mag_t = torch.from_numpy(np.abs(spec)).to(device)  # the oracle's magnitudes: each step compared alone
    coef = float(mag_t.max())
    est = sem.estimate([torch.from_numpy(m).to(device) for m in masks], mag_t / coef, coef)
    out = {"estimate": est.clone(), "magnitudes": sem.magnitudes(est, mag_t).clone()}
    stats = sem.frame_stats(est, mag_t).cpu().numpy()
    plan = sem.post_plan(stats, n_frames)
    edges = [0, *segments, est.shape[2]]
    for a, b in itertools.pairwise(edges):
        sem.apply_post(est[:, :, a:b], mag_t[:, :, a:b], plan, a, n_frames)
    primary = sem.primary_spec(spec_t, mag_t, est)
    out.update(stats=stats, post=est, primary=primary.clone())
    out["secondary"] = sem.secondary_spec(spec_t, mag_t, est, primary)
    return out, plan


def same_plan(a, b) -> bool:
    """Whether two post-processing plans (UVR: weights; RVC: two lists of silence ops) agree."""
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)

    def flat(plan):
        return [[(s, e, None if w is None else w.tolist()) for s, e, w in ops] for ops in plan]

    return flat(a) == flat(b)


STEP_CASES = [
    ("rvc", 10, False),
    ("rvc", 0, False),
    ("rvc", 100, False),
    ("uvr", 5, True),
    ("uvr", 5, False),
    ("uvr", 0, True),
    ("uvr", -30, True),
    ("uvr", 100, False),
]


@pytest.mark.parametrize("tta", [False, True], ids=["one_mask", "tta"])
@pytest.mark.parametrize("name, aggressiveness, inverted", STEP_CASES)
def test_semantics_steps_match_numpy(name, aggressiveness, inverted, tta):
    spec, masks = mix_and_masks()
    masks = masks if tta else masks[:1]
    n_frames = 290  # the last 10 frames lie past the original's end
    sem = make_semantics(name, aggressiveness, inverted, tta)
    ours, plan = run_steps(sem, spec, masks, n_frames, [97, 183], "cpu")

    mag = np.abs(spec)
    coef = float(np.float32(mag.max()))
    est = np_estimate(name, masks, mag / coef, coef, sem.settings.aggressiveness, inverted)
    assert sdr(est, ours["estimate"]) >= 100
    assert sdr(est if name == "rvc" else est * mag, ours["magnitudes"]) >= 100
    stats = np_frame_stats(name, est, mag)
    assert ours["stats"].dtype == np.float32 and ours["stats"].shape == (300,)
    np.testing.assert_allclose(ours["stats"], stats, rtol=1e-5, atol=1e-7)
    assert same_plan(plan, sem.post_plan(stats, n_frames))
    before = est.copy()
    np_apply_post(name, est, mag, plan, 0, n_frames)
    assert ((est != before).any(axis=(0, 1))).sum() >= 100  # post-processing changed many frames
    assert sdr(est, ours["post"]) >= 100
    primary, secondary = np_stems(name, spec, mag, est)
    assert ours["primary"].dtype == ours["secondary"].dtype == torch.complex64
    assert sdr(primary, ours["primary"]) >= 100
    assert sdr(secondary, ours["secondary"]) >= 100


@pytest.mark.parametrize("aggression, inverted", [(0, True), (5, True), (-30, True), (10, False), (-100, False)])
def test_uvr_aggression_matches_numpy(aggression, inverted):
    mask = mix_and_masks()[1][0]
    ours = torch.from_numpy(mask.copy())
    assert apply_uvr_aggression(ours, aggression, LAYOUT.split_bin, inverted) is ours
    torch.testing.assert_close(
        ours, torch.from_numpy(np_uvr_aggression(mask, aggression, LAYOUT.split_bin, inverted)), rtol=2e-6, atol=1e-7
    )


def test_mask_silence_and_silence_ops_match_numpy():
    spec, masks = mix_and_masks()
    mag = np.abs(spec)
    pred = masks[0] * mag
    ref = np.clip(mag - pred, 0, np.inf)
    ops = silence_ops(ref.mean(axis=(0, 1)))
    assert len(ops) >= 4
    whole = pred.copy()
    np_silence_ops(whole, ref, ops)
    ours = mask_silence(torch.from_numpy(pred), torch.from_numpy(ref))
    torch.testing.assert_close(ours, torch.from_numpy(whole), rtol=0, atol=0)
    parts = torch.from_numpy(pred.copy())
    for a, b in ((0, 45), (45, 150), (150, 300)):  # a plan applied to slices at their offsets
        apply_silence_ops(parts[:, :, a:b], torch.from_numpy(ref[:, :, a:b]), ops, offset=a)
    torch.testing.assert_close(parts, ours, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["mirroring", "mirroring2"])
def test_mirror_high_end_matches_numpy(mode):
    spec, masks = mix_and_masks()
    stem = (masks[0] * spec).astype(np.complex64)
    rng = np.random.default_rng(1)
    h = LAYOUT.high_end_rows
    high = ((rng.standard_normal((2, h, 300)) + 1j * rng.standard_normal((2, h, 300))) * 0.4).astype(np.complex64)
    expected = np_mirror(stem, high, LAYOUT, mode)
    ours = mirror_high_end(torch.from_numpy(stem), torch.from_numpy(high), LAYOUT, mode)
    assert ours.dtype == torch.complex64 and ours.shape == (2, h, 300)
    kept = (ours.numpy() == high).mean()
    assert 0.2 < kept < 0.8  # both branches of the choice are taken
    assert sdr(expected, ours) >= 100
    with pytest.raises(ValueError, match="unknown high-end mode"):
        mirror_high_end(torch.from_numpy(stem), torch.from_numpy(high), LAYOUT, "none")


@pytest.mark.gpu
@pytest.mark.parametrize("name, aggressiveness, inverted", [("rvc", 10, False), ("uvr", 5, True), ("uvr", -30, False)])
def test_steps_on_cuda_match_the_cpu(name, aggressiveness, inverted):
    spec, masks = mix_and_masks()
    sem = make_semantics(name, aggressiveness, inverted, True)
    cpu, cpu_plan = run_steps(sem, spec, masks, 290, [97, 183], "cpu")
    gpu, gpu_plan = run_steps(sem, spec, masks, 290, [97, 183], "cuda")
    assert same_plan(cpu_plan, gpu_plan)
    np.testing.assert_allclose(gpu["stats"], cpu["stats"], rtol=1e-5, atol=1e-7)
    for step in ("estimate", "magnitudes", "post", "primary", "secondary"):
        assert gpu[step].device.type == "cuda"
        assert sdr(cpu[step].numpy(), gpu[step].cpu().numpy()) >= 100, step
    stem = cpu["primary"]
    high = torch.from_numpy(spec[:, 300 : 300 + LAYOUT.high_end_rows]) * 0.4
    for mode in ("mirroring", "mirroring2"):
        on_cpu = mirror_high_end(stem, high, LAYOUT, mode)
        on_gpu = mirror_high_end(stem.cuda(), high.cuda(), LAYOUT, mode)
        assert sdr(on_cpu.numpy(), on_gpu.cpu().numpy()) >= 100, mode
    mask = torch.from_numpy(masks[0])
    torch.testing.assert_close(
        apply_uvr_aggression(mask.cuda(), -30, LAYOUT.split_bin, True).cpu(),
        apply_uvr_aggression(mask.clone(), -30, LAYOUT.split_bin, True),
        rtol=2e-6,
        atol=1e-7,
    )


# -- band processing --------------------------------------------------------------------------


def test_uvr_layouts():
    v2 = load_band_layout("4band_v2")
    assert v2.synthesis_resamplers == ("sinc_fastest", "scipy", "scipy")  # RVC's
    uvr = UvrSemantics.adapt_layout(v2, "aspp")
    assert uvr.synthesis_resamplers == ("sinc_fastest",) * 3
    assert (uvr.channel_modes, uvr.pre_filter_shape) == (v2.channel_modes, "gains")
    assert RvcSemantics.adapt_layout(v2, "vr51") is v2
    sn = UvrSemantics.adapt_layout(load_band_layout("4band_v3_sn"), "vr51")
    assert sn.channel_modes == ("stereo", "stereo", "stereo", "stereo_n") and sn.pre_filter_shape == "ramp"
    assert UvrSemantics.adapt_layout(load_band_layout("4band_44100_reverse"), "vr51").channel_modes == ("stereo",) * 4


def test_vr51_pre_filter_is_a_linear_ramp():
    layout = UvrSemantics.adapt_layout(load_band_layout("4band_v3"), "vr51")
    x = music_like(1.0) + 0.05 * np.random.default_rng(0).standard_normal((2, SR)).astype(np.float32)
    filtered = bands.analyze(torch.from_numpy(x), layout).spec.numpy()
    plain = bands.analyze(torch.from_numpy(x), dataclasses.replace(layout, pre_filter=None)).spec.numpy()
    ratios = [np.abs(filtered[0, r]).sum() / np.abs(plain[0, r]).sum() for r in range(666, 672)]
    np.testing.assert_allclose(ratios, [1, 1, 0.75, 0.5, 0.25, 0], atol=1e-6)
    assert not filtered[:, 672].any()


@pytest.mark.parametrize("mode", ["stereo", "mid_side", "mid_side_b2", "mid_side_c", "stereo_n", "reverse"])
def test_channel_transforms_invert(mode):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 64)))
    np.testing.assert_allclose(from_channels(to_channels(x, mode), mode).numpy(), x.numpy(), atol=1e-12)


@pytest.mark.parametrize("converter", ["sinc_fastest", "sinc_best"])
@pytest.mark.parametrize("ratio", [2, 3])
def test_sequential_resampler_is_librosas_resampling(converter, ratio):
    """Fed piece by piece and read in uneven ranges, libsamplerate gives the one-shot samples."""
    x = np.random.default_rng(ratio).standard_normal((2, 5003))
    whole = librosa.resample(x, orig_sr=7350, target_sr=7350 * ratio, res_type=converter)
    asked = []

    def source(a, b):
        asked.append((a, b))
        return x[:, a:b]

    seq = SequentialResampler(source, x.shape[1], float(ratio), converter)
    edges = [0, 1, 700, 701, 4000, whole.shape[1], whole.shape[1] + 50]
    got = np.concatenate([seq.read(a, b) for a, b in itertools.pairwise(edges)], axis=1)
    np.testing.assert_array_equal(got[:, : whole.shape[1]], whole)
    assert not got[:, whole.shape[1] :].any()
    assert all(b <= x.shape[1] for _, b in asked) and [a for a, _ in asked] == sorted(a for a, _ in asked)
    with pytest.raises(ValueError, match="in order|asked for after"):
        seq.read(0, 10)


def test_uvr_stems_add_up_to_the_mix(tiny_weights):
    sep = Separator(tiny_weights, device="cpu", semantics="uvr", high_end="none", aggressiveness=-40)
    x = music_like(0.7)
    stems = sep.separate(x, SR)
    mix = bands.synthesize(bands.analyze(torch.from_numpy(x), sep.layout).spec, sep.layout).numpy()
    total = stems["vocals"] + stems["instrumental"]
    n = mix.shape[1]
    err = total[:, :n] - mix
    assert 10 * np.log10((mix**2).sum() / (err**2).sum()) > 100


def test_configure_switches_settings_without_reloading(tiny_weights):
    sep = Separator(tiny_weights, device="cpu")
    net = sep.net
    sep.configure(semantics="uvr", window_size=320, primary_stem="vocals")
    assert sep.net is net and isinstance(sep.semantics, UvrSemantics)
    assert sep.layout.synthesis_resamplers == ("sinc_fastest",) * 3 and sep.primary == "vocals"
    assert sep.settings.aggressiveness == 5  # the new semantics' default
    before = sep.settings
    with pytest.raises(ConfigError, match="window size 200"):
        sep.configure(window_size=200)
    assert sep.settings == before  # nothing changed
    sep.configure(Settings())
    assert isinstance(sep.semantics, RvcSemantics) and sep.layout.synthesis_resamplers[1] == "scipy"
    assert sep.primary == "instrumental"
