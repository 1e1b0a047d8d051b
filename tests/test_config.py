import json

import pytest

from uvrsep.config import band_layout_dir, list_band_layouts, load_band_layout, parse_band_layout
from uvrsep.errors import ConfigError


def test_every_shipped_config_parses():
    names = list_band_layouts()
    assert len(names) >= 25 and "4band_v2" in names
    for name in names:
        layout = load_band_layout(name)
        assert sum(b.width for b in layout.bands) <= layout.bins
        assert layout.top.sample_rate == layout.sample_rate


def test_4band_v2_values():
    layout = load_band_layout("4band_v2")
    assert layout.bins == 672 and layout.sample_rate == 44100
    assert [b.sample_rate for b in layout.bands] == [7350, 7350, 14700, 44100]
    assert layout.split_bin == 85
    assert layout.pre_filter == (668, 672)
    assert layout.high_end_rows == 101
    assert layout.bands[1].highpass == (25, 12)  # hpf_stop < hpf_start is normal
    assert layout.top.resample_type == "kaiser_fast"


def test_n_bins_spelling_and_ignored_flags():
    assert load_band_layout("4band_v3_sn").bins == 672
    assert load_band_layout("4band_44100_sw").stereo_mode == "stereo"  # stereo_w is ignored
    assert load_band_layout("3band_44100_msb2").stereo_mode == "mid_side_b2"
    assert load_band_layout("4band_44100_reverse").stereo_mode == "reverse"
    assert load_band_layout("4band_v4_ms_fullband").pre_filter is None


def test_unknown_name_lists_known():
    with pytest.raises(ConfigError, match="unknown band config 'nope'.*4band_v2"):
        load_band_layout("nope")


def test_config_from_path_and_broken_json(tmp_path):
    good = tmp_path / "mine.json"
    raw = json.loads((band_layout_dir() / "4band_v2.json").read_text())
    good.write_text(json.dumps(raw))
    assert load_band_layout(good).name == "mine"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json.*JSON"):
        load_band_layout(bad)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("bins"), "missing 'bins'"),
        (lambda d: d["band"]["4"].update(res_type="magic"), "unknown res_type 'magic'"),
        (lambda d: d["band"]["2"].update(crop_stop=999), "crop_start/crop_stop"),
        (lambda d: d["band"]["1"].pop("lpf_stop"), "missing 'lpf_stop'"),
        (lambda d: d["band"]["3"].update(hl=161), "hl/sr"),
        (lambda d: d.update(bins=600), "more than bins=600"),
        (lambda d: d["band"].pop("2"), "numbered"),
        (lambda d: d["band"]["1"].update(n_fft="640"), "must be an integer"),
    ],
)
def test_wrong_configs_are_clear_errors(mutate, message):
    raw = json.loads((band_layout_dir() / "4band_v2.json").read_text())
    mutate(raw)
    with pytest.raises(ConfigError, match=message):
        parse_band_layout(raw, "x")
