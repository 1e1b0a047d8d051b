"""Data safety (issue 23): every output stays inside --output-dir and never lands on an input,
whatever the template, the input's name or the folders on disk; combinations that cannot work
are refused in one line before any model is loaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep.batch import InputItem, Manifest, OutputPlan, find_conflicts, plan_batch
from uvrsep.cli import app
from uvrsep.errors import AudioWriteError, ConfigError, UvrsepError

runner = CliRunner()


def separate(*args) -> object:
    return runner.invoke(app, ["separate", *map(str, args), "--device", "cpu"])


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors, result.output
    return result.output


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


# -- 1: the resolved path stays inside --output-dir -------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{name:/>1.0}tmp/{name}_{stem}.{ext}",  # a fill character that makes an absolute path
        "{stem:.>2.0}/{name}_{stem}.{ext}",  # a fill that makes '..'
        "{name:.<2.0}/{stem}.{ext}",
        "x/{ext:.>2.0}/../../{name}_{stem}.{ext}",
    ],
)
def test_format_specs_that_climb_out_are_one_line_before_any_work(template, tiny_weights, short_wav, tmp_path):
    with pytest.raises(ConfigError, match="must stay below output_dir"):
        OutputPlan(template=template, stems=("vocals", "instrumental"), output_dir=tmp_path / "o")
    result = separate(short_wav, "-m", tiny_weights, "-o", tmp_path / "o", "--name-template", template)
    assert "must stay below --output-dir" in one_line_error(result)
    assert not (tmp_path / "o").exists() and files_under(tmp_path) == {short_wav}


@pytest.mark.parametrize(
    "template, message",
    [
        ("{name:d}_{stem}.{ext}", "Unknown format code 'd'"),
        ("{name!z}_{stem}.{ext}", "Unknown conversion specifier z"),
        ("{name:%Y}_{stem}.{ext}", "Invalid format specifier"),
    ],
)
def test_format_specs_and_conversions_that_cannot_apply_are_one_line(
    template, message, tiny_weights, short_wav, tmp_path
):
    result = separate(short_wav, "-m", tiny_weights, "-o", tmp_path / "o", "--name-template", template)
    assert message in one_line_error(result)
    assert not (tmp_path / "o").exists()


def test_a_conversion_that_applies_stays_inside(tmp_path):
    plan = OutputPlan(template="{name!r}/{stem}.{ext}", output_dir=tmp_path / "o")
    paths = plan.paths(InputItem(tmp_path / "it's.wav", tmp_path), ("vocals",))
    assert paths["vocals"].parent.name == repr("it's") and paths["vocals"].parent.parent == tmp_path / "o"


def test_an_input_named_dot_dot_fails_alone(tiny_weights, tmp_path):
    """``...wav`` has the name ``..``: with ``{name}/{stem}.{ext}`` its stems would land beside
    the output folder. It fails alone, in one line; the other input is separated."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("...wav", "ok.wav"):
        sf.write(clips / name, music_like(0.3).T, SR, format="WAV")
    out = tmp_path / "work" / "out"
    before = files_under(tmp_path)
    result = separate(clips, "-m", tiny_weights, "-o", out, "--name-template", "{name}/{stem}.{ext}")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"{clips / '...wav'}: output '../" in result.output and "would not stay inside" in result.output
    assert "1 processed, 0 skipped, 1 failed" in result.output
    assert files_under(tmp_path) - before == {out / "ok" / "vocals.wav", out / "ok" / "instrumental.wav"}


def test_parent_of_an_input_in_the_root_folder(tmp_path):
    plan = OutputPlan(template="{parent}/{name}_{stem}.{ext}", output_dir=tmp_path)
    with pytest.raises(AudioWriteError, match="would not stay inside .*an absolute path"):
        plan.paths(InputItem(Path("/clip.wav"), Path("/")), ("vocals",))


def test_a_symlink_inside_the_output_folder_that_points_out(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    plan = OutputPlan(template="link/{name}_{stem}.{ext}", output_dir=out)
    with pytest.raises(AudioWriteError, match=f"resolves to {elsewhere}"):
        plan.paths(InputItem(tmp_path / "a.wav", tmp_path), ("vocals",))
    inside = OutputPlan(template="{name}_{stem}.{ext}", output_dir=out / "link")  # the folder itself may be a link
    assert inside.paths(InputItem(tmp_path / "a.wav", tmp_path), ("vocals",))


@pytest.mark.parametrize("track", ["../../escaped", "/tmp/abs", "a/../../b", "../..", "../out/../../x"])
def test_stems_write_refuses_a_track_that_climbs_out(track, tmp_path):
    from uvrsep.stems import Stems

    stems = Stems({"vocals": music_like(0.1), "instrumental": music_like(0.1)}, SR, "vocals")
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(AudioWriteError, match="would not stay inside"):
        stems.write(out, track)
    assert files_under(tmp_path) == set()
    assert set(stems.write(out, "album/song").values()) == {
        out / "album" / "song_vocals.wav",
        out / "album" / "song_instrumental.wav",
    }


# -- 2: never onto an input --------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_that_is_an_input_is_refused_before_the_model_loads(overwrite, short_wav, tmp_path):
    original = short_wav.read_bytes()
    args = [
        short_wav,
        "-m",
        _weights(tmp_path),
        "-o",
        short_wav.parent,
        "--name-template",
        "{name}.{ext}",
        "--stems",
        "vocals",
    ] + (["--overwrite"] if overwrite else [])
    result = separate(*args)
    text = one_line_error(result)
    assert f"{short_wav} would overwrite the input {short_wav}" in text
    assert "an input is never overwritten" in text
    assert short_wav.read_bytes() == original


def test_links_to_an_input_are_refused_too(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = clips / "a.wav"
    sf.write(clip, music_like(0.2).T, SR)
    out = tmp_path / "out"
    out.mkdir()
    os.link(clip, out / "a_vocals.wav")  # a hard link: the same file under the output's name
    (out / "a_instrumental.wav").symlink_to(clip)
    plan = OutputPlan(output_dir=out, stems=("vocals", "instrumental"), overwrite=True)
    found = find_conflicts([InputItem(clip, clips)], plan, ("vocals", "instrumental"))
    assert sorted(found.overwrites) == [
        f"{out / 'a_instrumental.wav'} would overwrite the input {clip}",
        f"{out / 'a_vocals.wav'} would overwrite the input {clip}",
    ]


def test_the_manifest_and_the_list_are_never_outputs(short_wav, tmp_path):
    listing = tmp_path / "clip_vocals.wav"  # an odd name for a list, but the user's file
    listing.write_text(f"{short_wav}\n")
    result = separate("--from-list", listing, "-m", _weights(tmp_path), "-o", tmp_path, "--overwrite")
    assert f"would overwrite the list of inputs (--from-list) {listing}" in one_line_error(result)
    assert listing.read_text() == f"{short_wav}\n"


def _weights(tmp_path: Path) -> Path:
    import torch

    from tests.conftest import random_net

    path = tmp_path / "w.pth"
    if not path.exists():
        torch.save(random_net().state_dict(), path)
    return path


# -- 6: bounds of rates and window sizes ------------------------------------------------------


@pytest.mark.parametrize("rate", ["999999999", "7999", "384001", "0", "-5"])
def test_output_sample_rate_is_bounded(rate, short_wav, tmp_path):
    result = separate(short_wav, "-m", _weights(tmp_path), "-o", tmp_path / "o", "--sample-rate", rate)
    assert "8000–384000 Hz" in one_line_error(result)


def test_api_sample_rate_is_a_positive_int_up_to_384k(tiny_weights):
    from uvrsep import Separator

    sep = Separator(tiny_weights, device="cpu")
    for rate in (10**9, 384001, 0, -1, 44100.0, "44100", True, None):
        with pytest.raises(ConfigError, match="sample_rate"):
            sep.separate(music_like(0.1), sample_rate=rate)
    stems = sep.separate(music_like(0.1, sr=8000), sample_rate=np.int64(8000))
    assert stems["vocals"].shape[1] == round(0.1 * SR)


def test_window_size_is_bounded(tiny_weights, short_wav, tmp_path):
    from uvrsep import Separator

    with pytest.raises(ConfigError, match="at most 2048 frames"):
        Separator(tiny_weights, device="cpu", window_size=4096)
    result = separate(short_wav, "-m", tiny_weights, "-o", tmp_path / "o", "--window-size", "1000000")
    assert "at most 2048 frames" in one_line_error(result)


# -- 9, 10, 11 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_at_an_output_name(overwrite, tiny_weights, short_wav, tmp_path):
    out = tmp_path / "out"
    (out / "clip_instrumental.wav").mkdir(parents=True)
    result = separate(short_wav, "-m", tiny_weights, "-o", out, *(["--overwrite"] if overwrite else []))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "clip_instrumental.wav: a folder or special file stands at this output name" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip_instrumental.wav"]  # no half set
    assert (out / "clip_instrumental.wav").is_dir()


def test_a_folder_that_appears_while_writing_leaves_no_half_set(tmp_path):
    from uvrsep.batch import write_stems
    from uvrsep.stems import Stems

    stems = Stems({"vocals": music_like(0.1), "instrumental": music_like(0.1)}, SR, "vocals")
    targets = {"vocals": tmp_path / "v.wav", "instrumental": tmp_path / "i.wav"}
    with pytest.raises(AudioWriteError, match="i.wav: is a folder"):
        write_stems(
            stems, targets, overwrite=True, before_commit=lambda: None, on_block=lambda _: (tmp_path / "i.wav").mkdir()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.wav"]


def test_a_long_legal_input_name_works(tiny_weights, tmp_path):
    """229 bytes: its outputs (up to 242 bytes) are legal names; the temporary names, which add
    the owner and a suffix, must not make them fail."""
    clip = tmp_path / ("n" * 225 + ".wav")
    sf.write(clip, music_like(0.3).T, SR)
    out = tmp_path / "out"
    result = separate(clip, "-m", tiny_weights, "-o", out, "--output-format", "flac")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["n" * 225 + "_instrumental.flac", "n" * 225 + "_vocals.flac"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output-format", "flac", "--bit-depth", "32f"], "flac cannot store bit depth 32f"),
        (["--output-format", "mp3", "--sample-rate", "96000"], "mp3 cannot be written at 96000 Hz"),
        (["--output-format", "mp3", "--sample-rate", "44099"], "mp3 cannot be written at 44099 Hz"),
        (["--output-format", "ogg", "--sample-rate", "384000"], "ogg cannot be written at 384000 Hz"),
        (["--output-format", "mp3", "--bit-depth", "24"], "--bit-depth does not apply to mp3"),
        (["--output-format", "ogg", "--bit-depth", "16"], "--bit-depth does not apply to ogg"),
        (["--name-template", "{name}_{stem}.wav"], "must end with .{ext}"),
        (["--name-template", "{name}_{stem}"], "must end with .{ext}"),
        (["--name-template", "{name}_{stem}.{ext}x"], "the file name must end with .{ext}"),
    ],
)
def test_combinations_that_cannot_work_are_one_line_before_the_model_loads(args, message, short_wav, tmp_path):
    result = separate(short_wav, "-m", _weights(tmp_path), "-o", tmp_path / "o", *args)
    assert message in one_line_error(result)
    assert not (tmp_path / "o").exists()


def test_the_writer_refuses_an_ogg_rate_that_would_crash_libvorbis(tmp_path):
    from uvrsep.audio import write_audio

    with pytest.raises(AudioWriteError, match="ogg cannot be written at 384000 Hz"):
        write_audio(tmp_path / "x.ogg", np.zeros((2, 100), np.float32), 384000)
    assert list(tmp_path.iterdir()) == []


# -- the planner, fuzzed -----------------------------------------------------------------------


def _check_plan(template: str, names: list[str], layout: dict, mirror: bool, overwrite: bool) -> None:
    """Every output of a plan that is accepted lies strictly inside the output folder and never
    on an input; anything refused is a uvrsep error."""
    out, items = (
        layout["out"],
        [InputItem(folder / name, layout["root"]) for folder in layout["folders"] for name in names] + layout["items"],
    )
    try:
        plan = OutputPlan(
            output_dir=out,
            template=template,
            stems=("vocals", "instrumental"),
            fmt="wav",
            mirror_tree=mirror,
            overwrite=overwrite,
        )
    except UvrsepError:
        return
    base = Path(os.path.realpath(out))
    conflicts = find_conflicts(items, plan, ("vocals", "instrumental"))
    inputs = {os.path.realpath(item.path) for item in items}
    flagged = {line.split(" would overwrite ")[0] for line in conflicts.overwrites}
    for item in items:
        try:
            paths = plan.paths(item, ("vocals", "instrumental"))
        except UvrsepError:
            continue
        for path in paths.values():
            final = Path(os.path.realpath(path))
            assert base in final.parents, (template, item, path, final)
            if str(final) in inputs:
                assert str(path) in flagged, (template, item, path)
    planned = plan_batch(items, plan, ("vocals", "instrumental"), Manifest(None))
    for job in planned.jobs:
        assert all(base in Path(os.path.realpath(p)).parents for p in job.targets.values())


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """A tree with inputs inside and beside the output folder, a symbolic link out of it, a
    folder that is itself a link, and inputs named like path syllables."""
    root = tmp_path_factory.mktemp("planner")
    out = root / "out"
    (out / "sub").mkdir(parents=True)
    (root / "outside").mkdir()
    (out / "escape").symlink_to(root / "outside", target_is_directory=True)
    (root / "linked").symlink_to(out / "sub", target_is_directory=True)
    real = []
    for folder, name in (
        (out, "song.wav"),
        (out / "sub", "clip.wav"),
        (root, "...wav"),
        (root, "..wav"),
        (root / "outside", "x.wav"),
    ):
        (folder / name).write_bytes(b"RIFF")
        real.append(InputItem(folder / name, root))
    return {
        "out": out,
        "root": root,
        "folders": [root, out, out / "sub", root / "linked", out / "escape", Path("/")],
        "items": real,
    }


_FIELDS = [
    "{name}",
    "{stem}",
    "{ext}",
    "{model}",
    "{parent}",
    "{name!r}",
    "{name!s}",
    "{name!a}",
    "{stem:.>2.0}",
    "{name:/>1.0}",
    "{parent:.^3}",
    "{name:.2}",
    "{stem:.<3.1}",
    "{name:>{}}",
    "{name:x}",
]
_LITERALS = ["/", "..", ".", "_", "-", "\\", ":", "C:", "~", "escape", "sub", "a b", "é", "..wav", "{{", "}}", ""]


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the [test] extra
    st = None

if st is not None:
    fragment = st.one_of(st.sampled_from(_FIELDS), st.sampled_from(_LITERALS), st.text(max_size=4))
    template_st = st.one_of(
        st.lists(fragment, max_size=8).map(lambda parts: "".join(parts) + ".{ext}"),
        st.lists(fragment, max_size=8).map("".join),
    )
    name_st = st.one_of(
        st.sampled_from(["..", ".", "...", "-", "~", "a:b", " ", "x" * 240, "é"]),
        st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20),
    ).map(lambda stem: stem + ".wav")

    def _fuzz(layout, template, names, mirror, overwrite):
        _check_plan(template, names, layout, mirror, overwrite)

    quick = settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
    )
    thorough = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

    @quick
    @given(template=template_st, names=st.lists(name_st, max_size=3), mirror=st.booleans(), overwrite=st.booleans())
    def test_planner_fuzzed_quick(layout, template, names, mirror, overwrite):
        _fuzz(layout, template, names, mirror, overwrite)

    @pytest.mark.slow
    @thorough
    @given(template=template_st, names=st.lists(name_st, max_size=4), mirror=st.booleans(), overwrite=st.booleans())
    def test_planner_fuzzed_thorough(layout, template, names, mirror, overwrite):
        _fuzz(layout, template, names, mirror, overwrite)
