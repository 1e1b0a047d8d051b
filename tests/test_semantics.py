"""Settings and the two semantics (RVC's AudioPre, UVR5 / audio-separator), step by step."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import torch
import pytest

from tests.conftest import SR, music_like
from uvrsep import Separator, bands
from uvrsep.dsp.bands import from_channels, to_channels
from uvrsep.config import load_band_layout
from uvrsep.errors import ConfigError
from uvrsep.masks import apply_merge_weights, merge_weights, uvr_exponents
from uvrsep.registry import parse_stem_label
from uvrsep.segments import SequentialResampler
from uvrsep.semantics import RvcSemantics, Settings, UvrSemantics


# -- settings ---------------------------------------------------------------------------------


def test_defaults_follow_the_semantics():
    rvc = Settings().resolve()
    assert (rvc.aggressiveness, rvc.high_end, rvc.window_size, rvc.postprocess_threshold) == (10, "mirroring", 512, 0.2)
    uvr = Settings(semantics="uvr").resolve()
    assert (uvr.aggressiveness, uvr.high_end, uvr.window_size, uvr.postprocess_threshold) == (5, "none", 512, 0.2)
    assert Settings(semantics="uvr", aggressiveness=-100, high_end="mirroring").resolve().aggressiveness == -100


@pytest.mark.parametrize("settings, message", [
    (Settings(aggressiveness=-1), "between 0 and 100 with rvc"),
    (Settings(semantics="uvr", aggressiveness=101), "between -100 and 100 with uvr"),
    (Settings(semantics="uvr", high_end="mirroring2"), "mirroring2.*uvr semantics"),
    (Settings(high_end="mirror"), "use mirroring, mirroring2, none"),
    (Settings(semantics="UVR5"), "unknown semantics"),
    (Settings(primary_stem="kazoo"), "unknown stem 'kazoo'"),
    (Settings(window_size=0), "window size"),
    (Settings(postprocess_threshold=float("nan")), "threshold"),
])
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        settings.resolve()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, name", [
    ("Vocals", "Vocals"), ("vocals", "Vocals"), ("No Echo", "No Echo"), ("no_echo", "No Echo"), ("NO-ECHO", "No Echo"),
    ("  instrumental ", "Instrumental"), ("wind inst", "Wind Inst"), ("no_reverb", "No Reverb"),
])
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
    with pytest.raises(TypeError, match="agressiveness"):
        Separator(tiny_weights, device="cpu", agressiveness=5)


@pytest.mark.parametrize("window, message", [
    (256, "window size 256 is too small.*larger than 256"),
    (1000, "window size 1000 does not fit.*multiple of 16"),
])
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


@pytest.mark.parametrize("aggression, inverted, expected", [
    (10, False, (1 + 0.2 / 3, 1.2)),
    (5, True, (1.3, 1.9)),  # a = 1 − 0.1 (case b of the fixtures)
    (0, True, (1, 1)),  # no inversion at 0
    (-30, True, (1 + 1.6 / 3, 2.6)),
    (-30, False, (0.8, 0.4)),
])
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
    mask = np.full((2, 3, 4), 0.25, dtype=np.float32)
    apply_merge_weights(mask, np.array([0, 0.5, 1, 0], dtype=np.float32))
    np.testing.assert_allclose(mask[0, 0], [0.25, 0.625, 1, 0.25])


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
    filtered = bands.analyze(x, layout).spec
    plain = bands.analyze(x, dataclasses.replace(layout, pre_filter=None)).spec
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
    got = np.concatenate([seq.read(a, b) for a, b in zip(edges, edges[1:])], axis=1)
    np.testing.assert_array_equal(got[:, : whole.shape[1]], whole)
    assert not got[:, whole.shape[1] :].any()
    assert all(b <= x.shape[1] for _, b in asked) and [a for a, _ in asked] == sorted(a for a, _ in asked)
    with pytest.raises(ValueError, match="in order|asked for after"):
        seq.read(0, 10)


def test_uvr_stems_add_up_to_the_mix(tiny_weights):
    sep = Separator(tiny_weights, device="cpu", semantics="uvr", high_end="none", aggressiveness=-40)
    x = music_like(0.7)
    stems = sep.separate(x, SR)
    mix = bands.synthesize(bands.analyze(x, sep.layout).spec, sep.layout)
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
