"""Batch processing over a corpus of awkward and bad inputs, resume, conflicts, cross-clip batching."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep import Separator
from uvrsep.batch import InputItem, OutputPlan, collect_inputs, find_conflicts
from uvrsep.cli import app
from uvrsep.errors import ConfigError

runner = CliRunner()


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, set[str], set[str]]:
    """A folder of inputs that must separate (good) and inputs that must fail (bad)."""
    root = tmp_path_factory.mktemp("corpus")
    good, bad = set(), set()

    def put(name, data, sr, subtype=None, ok=True):
        sf.write(root / name, data, sr, subtype=subtype)
        (good if ok else bad).add(name)

    put("short 0.1 s.wav", music_like(0.1).T, SR)
    put("silence.wav", np.zeros((SR // 2, 2), dtype=np.float32), SR)
    put("eight_ch_8k.wav", np.repeat(music_like(0.5, sr=8000, channels=1).T, 8, axis=1) * 0.2, 8000)
    put("hi_192k.wav", music_like(0.3, sr=192000).T, 192000)
    put("pcm24.wav", music_like(0.4).T, SR, "PCM_24")
    put("float.wav", music_like(0.4).T, SR, "FLOAT")
    put("ひらがな ünïcode.flac", music_like(0.4).T, SR)
    put("song.mp3", music_like(0.5).T, SR)
    nan = music_like(0.3).T.copy()
    nan[100, 0] = np.nan
    put("nan.wav", nan, SR, "FLOAT", ok=False)
    (root / "empty.wav").write_bytes(b"")
    bad.add("empty.wav")
    full = root / "pcm24.wav"
    (root / "truncated.wav").write_bytes(full.read_bytes()[:30])
    bad.add("truncated.wav")
    (root / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    bad.add("random.wav")
    put("tiny 3 samples 192k.wav", np.full((3, 2), 0.1, dtype=np.float32), 192000, "FLOAT")
    huge = np.random.default_rng(1).uniform(-3e38, 3e38, (SR // 10, 2)).astype(np.float32)
    put("huge.wav", huge, SR, "FLOAT", ok=False)
    return root, good, bad


@pytest.mark.slow
@pytest.mark.needs_ffmpeg
def test_video_inputs(tmp_path, tiny_weights):
    """A video's first audio stream is separated; a video without audio fails alone."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=0.6",
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=32x32:d=0.6",
        "-shortest",
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        str(tmp_path / "video.mp4"),
    )
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=32x32:d=0.5", "-c:v", "mpeg4", str(tmp_path / "no_audio.mp4"))
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "separate",
            str(tmp_path / "video.mp4"),
            str(tmp_path / "no_audio.mp4"),
            "-m",
            str(tiny_weights),
            "-o",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "no_audio.mp4: has no audio stream" in result.output
    assert "1 processed, 0 skipped, 1 failed" in result.output
    info = sf.info(str(out / "video_vocals.wav"))
    assert info.samplerate == SR and abs(info.duration - 0.6) < 0.05
    assert not list(out.glob("no_audio*"))


@pytest.mark.slow
def test_corpus_batch(corpus, tiny_weights, tmp_path):
    root, good, bad = corpus
    out = tmp_path / "out"
    manifest = tmp_path / "run.jsonl"
    result = runner.invoke(
        app,
        [
            "separate",
            str(root),
            "-m",
            str(tiny_weights),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--manifest",
            str(manifest),
        ],
    )
    assert result.exit_code == 1, result.output  # some inputs are bad
    assert "Traceback" not in result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, manifest.read_text().splitlines())}
    assert set(records) == good | bad
    for name in good:
        assert records[name]["status"] == "ok", records[name]
        stem = Path(name).stem
        for label in ("vocals", "instrumental"):
            data, sr = sf.read(out / f"{stem}_{label}.wav")
            assert sr == SR and data.shape[1] == 2 and np.isfinite(data).all()
            assert abs(len(data) / SR - sf.info(str(out / f"{stem}_{label}.wav")).duration) < 1e-9
    for name in bad:
        rec = records[name]
        assert rec["status"] == "failed" and name in rec["error"] and "\n" not in rec["error"], rec
        assert not list(out.glob(f"{Path(name).stem}_*"))
    assert "is an empty (0-byte) file" in records["empty.wav"]["error"]
    assert "too large to analyse" in records["huge.wav"]["error"]
    assert "silence" in {Path(n).stem for n in good}
    silent, _ = sf.read(out / "silence_vocals.wav")
    assert not silent.any()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    assert f"{len(good)} processed, 0 skipped, {len(bad)} failed" in result.output


@pytest.mark.slow
def test_asr_ready_output_template_and_stems(corpus, tiny_weights, tmp_path):
    root, _, _ = corpus
    out = tmp_path / "asr"
    result = runner.invoke(
        app,
        [
            "separate",
            str(root / "pcm24.wav"),
            str(root / "float.wav"),
            "-m",
            str(tiny_weights),
            "-o",
            str(out),
            "--stems",
            "vocals",
            "--sample-rate",
            "16000",
            "--mono",
            "--output-format",
            "flac",
            "--name-template",
            "{stem}/{name}_{model}.{ext}",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert files == ["vocals/float_tiny_fp32.flac", "vocals/pcm24_tiny_fp32.flac"]
    info = sf.info(str(out / files[0]))
    assert info.samplerate == 16000 and info.channels == 1
    assert abs(info.duration - 0.4) < 1e-3


@pytest.mark.slow
def test_lossy_formats(corpus, tiny_weights, tmp_path):
    root, _, _ = corpus
    for fmt in ("mp3", "ogg"):
        result = runner.invoke(
            app,
            [
                "separate",
                str(root / "pcm24.wav"),
                "-m",
                str(tiny_weights),
                "-o",
                str(tmp_path),
                "--output-format",
                fmt,
                "--device",
                "cpu",
            ],
        )
        assert result.exit_code == 0, result.output
        assert sf.info(str(tmp_path / f"pcm24_vocals.{fmt}")).samplerate == SR


@pytest.mark.slow
def test_conflicts_are_reported_before_any_work(tmp_path, tiny_weights):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        sf.write(tmp_path / "in" / sub / "clip.wav", music_like(0.2).T, SR)
    out = tmp_path / "out"
    result = runner.invoke(app, ["separate", str(tmp_path / "in"), "-r", "-m", str(tiny_weights), "-o", str(out)])
    assert result.exit_code == 2 and "would both write" in result.output
    assert not out.exists()
    result = runner.invoke(
        app,
        [
            "separate",
            str(tmp_path / "in"),
            "-r",
            "--mirror-tree",
            "-m",
            str(tiny_weights),
            "-o",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == [
        "a/clip_instrumental.wav",
        "a/clip_vocals.wav",
        "b/clip_instrumental.wav",
        "b/clip_vocals.wav",
    ]


def test_collect_inputs_globs_lists_and_missing(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for p in ("d/x.wav", "d/e/y.flac", "d/notes.txt"):
        (tmp_path / p).write_bytes(b"x")
    items, problems = collect_inputs([str(tmp_path / "d")])
    assert [i.path.name for i in items] == ["x.wav"]
    items, _ = collect_inputs([str(tmp_path / "d")], recursive=True)
    assert sorted(i.path.name for i in items) == ["x.wav", "y.flac"]
    items, _ = collect_inputs([str(tmp_path / "d" / "**" / "*.flac")])
    assert [i.path.name for i in items] == ["y.flac"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{tmp_path / 'd' / 'x.wav'}\n\n{tmp_path / 'gone.wav'}\n")
    items, problems = collect_inputs([], from_list=str(listing))
    assert [i.path.name for i in items] == ["x.wav", "gone.wav"]  # the missing one fails when read
    _, problems = collect_inputs([str(tmp_path / "nothing*.wav")])
    assert problems and "matches no file" in problems[0][1]


def test_template_must_name_the_stem_only_when_several_are_written():
    with pytest.raises(ConfigError, match="must contain {stem} when 2 stems"):
        OutputPlan(template="{name}.{ext}", stems=("vocals", "instrumental"))
    with pytest.raises(ConfigError, match="must contain {stem}"):
        OutputPlan(template="{name}.{ext}")  # stems not known yet: taken as several
    plan = OutputPlan(template="{name}.{ext}", stems=("vocals",))
    assert plan.paths(InputItem(Path("/x/a b.wav"), Path("/x")), ["vocals"]) == {"vocals": Path("a b.wav")}
    plan = OutputPlan(template="{parent}/{name}_{stem}.{ext}")
    items = [InputItem(Path("/x/a/clip.wav"), Path("/x")), InputItem(Path("/x/b/clip.wav"), Path("/x"))]
    assert not find_conflicts(items, plan, ("vocals",))


@pytest.mark.parametrize(
    "template, message",
    [
        ("{stem}{", "Single '{' encountered"),
        ("{stem}}", "Single '}' encountered"),
        ("{}_{stem}.wav", "fields need a name"),
        ("{name.upper}_{stem}", "unknown field"),
        ("{nmae}_{stem}.{ext}", r"unknown field\(s\) nmae"),
        ("../{name}_{stem}.{ext}", "climbs out; it must stay below output_dir"),
        ("/tmp/{name}_{stem}.{ext}", "an absolute path; it must stay below output_dir"),
    ],
)
def test_bad_templates_are_one_line_usage_errors(template, message, tiny_weights, short_wav, tmp_path):
    with pytest.raises(ConfigError, match=message):
        OutputPlan(template=template, stems=("vocals",))
    result = runner.invoke(
        app,
        ["separate", str(short_wav), "-m", str(tiny_weights), "-o", str(tmp_path / "o"), "--name-template", template],
    )
    assert result.exit_code == 2 and "--name-template" in result.output and "Traceback" not in result.output
    assert result.output.count("\n") <= 2, result.output
    if "must stay below" in message:  # the command line names its flags, Python its arguments
        assert "must stay below --output-dir" in result.output


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a separator (a model) is loaded."""

    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("uvrsep.separator.Separator.__init__", boom)


def test_everything_is_checked_before_the_model_loads(tiny_weights, short_wav, tmp_path, no_model_load):
    def run(*args):
        return runner.invoke(app, ["separate", *map(str, args), "-m", str(tiny_weights), "--device", "cpu"])

    result = run(tmp_path / "missing.wav", "-o", tmp_path / "o1")
    assert result.exit_code == 1 and "missing.wav: no such file" in result.output
    assert "0 processed, 0 skipped, 1 failed" in result.output and "model was loaded" not in result.output
    (tmp_path / "sets" / "a").mkdir(parents=True)
    sf.write(tmp_path / "sets" / "a" / "x.wav", music_like(0.1).T, SR)
    result = run(tmp_path / "sets", "-o", tmp_path / "o2")
    assert result.exit_code == 1 and "add --recursive" in result.output
    result = run(short_wav, "-o", tmp_path / "o3", "--stems", "vocal")
    assert result.exit_code == 2 and "--stems 'vocal': this model writes instrumental, vocals" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run(short_wav, "-o", blocker)
    assert result.exit_code == 2 and "is not a folder" in result.output
    result = run(short_wav, "-o", blocker / "sub")
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    result = run(short_wav, "-o", tmp_path / "o4", "--manifest", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.output
    for stem in ("vocals", "instrumental"):  # all outputs there: nothing to do, nothing loaded
        (tmp_path / "o5").mkdir(exist_ok=True)
        (tmp_path / "o5" / f"clip_{stem}.wav").write_bytes(b"x")
    result = run(short_wav, "-o", tmp_path / "o5")
    assert result.exit_code == 0 and "0 processed, 1 skipped, 0 failed" in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("o") and p.name != "o5"]  # no folder made


def test_from_list_problems_are_one_line(tmp_path, tiny_weights):
    binary = tmp_path / "list.bin"
    binary.write_bytes(b"\x00\xff\xfe\x00" * 100)
    for spec, message in (
        (tmp_path / "nope.txt", "no such file"),
        (tmp_path, "is a folder"),
        (binary, "UTF-8 text file"),
    ):
        result = runner.invoke(app, ["separate", "--from-list", str(spec), "-m", str(tiny_weights)])
        assert result.exit_code == 2 and f"--from-list {spec}: " in result.output and message in result.output
        assert "Traceback" not in result.output


def _yuki_clips(root: Path) -> dict[str, list[str]]:
    """Chat-Haruhi yuki_builder's layout: <role>/<index>_<start>_<end>_<text>.wav, 48 kHz stereo PCM_16."""
    names = {
        "春日": ["0001_00.01.200_00.03.500_ちょっと待って.wav", "0002_00.05.000_00.06.100_我们 走吧.wav"],
        "kyon b": ["0003_00.10.000_00.11.250_Hello there.wav"],
    }
    for role, files in names.items():
        (root / role).mkdir(parents=True)
        for k, name in enumerate(files):
            sf.write(root / role / name, music_like(1.0 + 0.3 * k, sr=48000, seed=k).T, 48000, subtype="PCM_16")
    return names


@pytest.mark.slow
def test_readme_dataset_recipe_keeps_yuki_clip_names(tmp_path, tiny_weights):
    """The dataset recipe as printed (README, docs/datasets.md): role folders kept, each clip's name
    unchanged (the recognition step parses <index>_<start>_<end>_<text>), 16 kHz mono vocals only."""
    clips = tmp_path / "clips"
    names = _yuki_clips(clips)
    out = tmp_path / "clips_vocals"
    result = runner.invoke(
        app,
        [
            "separate",
            str(clips),
            "--recursive",
            "--mirror-tree",
            "-m",
            str(tiny_weights),
            "--stems",
            "vocals",
            "--sample-rate",
            "16000",
            "--mono",
            "--name-template",
            "{name}.{ext}",
            "-o",
            str(out),
            "--manifest",
            str(out / "manifest.jsonl"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert written == sorted(f"{role}/{name}" for role, files in names.items() for name in files)
    for rel in written:
        info = sf.info(str(out / rel))
        assert info.samplerate == 16000 and info.channels == 1
        index, start, end, text = Path(rel).stem.split("_", 3)
        assert index.isdigit() and start.count(".") == 2 and end.count(".") == 2 and text
        assert abs(info.duration - sf.info(str(clips / rel)).duration) < 1e-3


@pytest.mark.slow
def test_manifest_format_and_resume(tmp_path, tiny_weights):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        sf.write(clips / f"c{i}.wav", music_like(0.5 + i, seed=i).T, SR)
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    args = [
        "separate",
        str(clips),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
        "--window-size",
        "288",  # 2, 5 and 8 windows of this net for 0.5, 1.5 and 2.5 s (at 512 each is one window)
    ]
    assert runner.invoke(app, args).exit_code == 0
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 3
    # The three clips shared network calls: the time is split by windows, not put on the first.
    seconds = [r["seconds"] for r in records]
    assert all(s > 0 for s in seconds) and max(seconds) < 0.9 * sum(seconds)
    assert seconds[2] > seconds[0]  # 8 windows of 2.5 s take longer than 2 of 0.5 s
    before = manifest.read_text()
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "0 processed, 3 skipped" in result.output
    assert manifest.read_text() == before  # finished inputs skipped on resume write no new record


# Two cases in the quick loop (a cut character, a cut line without newline), all in the full suite.
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b'{"status": "ok"}\n', marks=pytest.mark.slow),
        pytest.param(b"[1, 2]\n", marks=pytest.mark.slow),
        pytest.param(b'{"input": 3, "status": "ok"}\n', marks=pytest.mark.slow),
        b"\xe3\x81",  # cut inside a character
        pytest.param(b'{"input": "x", "status": "ok", "outputs": "a"}', marks=pytest.mark.slow),
        b'{"input": "cut',  # cut without newline
    ],
)
@pytest.mark.slow
def test_manifest_garbage_is_skipped_with_a_warning(tmp_path, tiny_weights, short_wav, garbage):
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    manifest.write_bytes(garbage)
    args = [
        "separate",
        str(short_wav),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert (
        "unreadable manifest line skipped" in result.output and "1 unreadable manifest line(s) skipped" in result.output
    )
    last = manifest.read_bytes().split(b"\n")[-2]
    assert json.loads(last)["status"] == "ok"  # the new record stands on its own line
    result = runner.invoke(app, args)
    assert "0 processed, 1 skipped" in result.output  # and resume finds it


@pytest.mark.slow
def test_manifest_write_failure_is_reported_once(tmp_path, tiny_weights, monkeypatch):
    import errno

    for i in range(2):
        sf.write(tmp_path / f"c{i}.wav", music_like(0.2, seed=i).T, SR)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("uvrsep.batch.manifest.os.fsync", full)
    result = runner.invoke(
        app,
        [
            "separate",
            str(tmp_path / "c0.wav"),
            str(tmp_path / "c1.wav"),
            "-m",
            str(tiny_weights),
            "-o",
            str(tmp_path / "out"),
            "--manifest",
            str(tmp_path / "m.jsonl"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("cannot be written (disk full)") == 1
    assert "2 processed" in result.output


@pytest.mark.slow
def test_progress_lines_when_not_a_terminal(tmp_path, tiny_weights):
    """Logs of long jobs get periodic one-line progress, also inside one long (streamed) file."""
    import io

    from uvrsep.batch import BatchProgress, Manifest, plan_batch, run_batch

    sf.write(tmp_path / "long.wav", music_like(14.0).T, SR)
    sf.write(tmp_path / "short.wav", music_like(0.5).T, SR)
    sep = Separator(tiny_weights, device="cpu", segment_threshold=5)
    plan = OutputPlan(output_dir=tmp_path / "out", stems=("vocals",))
    items = [InputItem(tmp_path / "long.wav", tmp_path), InputItem(tmp_path / "short.wav", tmp_path)]
    work = plan_batch(items, plan, sep.labels, Manifest(None))
    stream = io.StringIO()
    progress = BatchProgress(work.audio_seconds, len(work.jobs), stream=stream, interval=0, terminal=False)
    report = run_batch(sep, work, plan, progress=progress)
    assert report.count("ok") == 2
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("progress: ") and "ETA" in line for line in lines)
    within_first = [line for line in lines if line.startswith("progress: 0/2 files")]
    assert len(within_first) >= 2  # the long file reports progress while it is written
    assert lines[-1].startswith("progress: 2/2 files, 0:00:14 of 0:00:14 audio")


def test_summary_reads_as_durations():
    from uvrsep.batch import BatchReport, ItemResult, format_duration

    assert format_duration(3725.4) == "1:02:05"
    report = BatchReport([ItemResult("a", "ok", duration_s=90.0), ItemResult("b", "skipped")], wall_seconds=30.0)
    assert (
        report.summary() == "1 processed, 1 skipped, 0 failed; 0:01:30 of audio in 0:00:30 (3.0x faster than real time)"
    )
    report.wall_seconds = 180.0
    assert report.summary().endswith("(2.0x slower than real time)")


@pytest.mark.slow
def test_cross_clip_batching_equals_one_at_a_time(tiny_weights):
    clips = [(music_like(d, seed=s), SR) for d, s in ((0.3, 1), (1.7, 2), (0.05, 3), (3.5, 4))]
    clips.append((np.zeros((2, 4000), dtype=np.float32), SR))
    batched = Separator(tiny_weights, device="cpu", batch_size=4).separate_many(clips)
    alone = Separator(tiny_weights, device="cpu", batch_size=1)
    for (wave, sr), together in zip(clips, batched):
        single = alone.separate_array(wave, sr)
        for name in together.names:
            np.testing.assert_allclose(together[name], single[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_shared_runs_time_is_split_by_network_windows(tiny_weights, tmp_path):
    """Clips separated in one network run share its time in proportion to their windows."""
    sep = Separator(tiny_weights, device="cpu", window_size=288)
    lengths = (0.3, 0.6, 1.0)  # 1, 2 and 3 windows
    paths = []
    for i, length in enumerate(lengths):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], music_like(length, seed=i).T, SR)
    windows = [sep.n_windows(sep._frames_for(length)) for length in lengths]
    assert len(set(windows)) == 3
    outcomes = dict(sep.separate_batch(paths))
    seconds = [outcomes[p].seconds for p in paths]
    assert all(s > 0 for s in seconds)
    for s, w in zip(seconds, windows):
        assert s / sum(seconds) == pytest.approx(w / sum(windows), rel=1e-9)


@pytest.mark.slow
def test_separate_batch_yields_errors_per_item(tiny_weights, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, music_like(0.3).T, SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    sep = Separator(tiny_weights, device="cpu")
    results = list(sep.separate_batch([good, bad, good]))
    assert [p.name for p, _ in results] == ["good.wav", "bad.wav", "good.wav"]
    assert isinstance(results[1][1], Exception) and "bad.wav" in str(results[1][1])
    assert results[0][1]["vocals"].shape == (2, int(0.3 * SR))


@pytest.mark.slow
def test_killed_batch_resumes(tmp_path, tiny_weights):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(6):
        sf.write(clips / f"c{i}.wav", music_like(1.0, seed=i).T, SR)
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        "separate",
        str(clips),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    deadline = time.time() + 120
    for line in proc.stdout:
        if "->" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {json.loads(x)["input"] for x in manifest.read_text().splitlines() if '"ok"' in x}
    assert 1 <= len(done_before) < 6
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("*.wav"))) == 12
    for path, mtime in mtimes.items():
        assert path.stat().st_mtime_ns == mtime  # nothing complete was redone
    assert f"{6 - len(done_before)} processed, {len(done_before)} skipped, 0 failed" in rerun.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def _sigint_default() -> None:
    """In the child: Ctrl-C as a terminal gives it. A test run started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(tmp_path, tiny_weights):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(5):
        sf.write(clips / f"c{i}.wav", music_like(1.0, seed=i).T, SR)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        "separate",
        str(clips),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=_sigint_default,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "->" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    for wav in out.glob("*.wav"):
        assert sf.info(str(wav)).frames == SR  # every file there is complete


@pytest.mark.slow
def test_ctrl_c_during_a_streamed_input_leaves_nothing(tmp_path, tiny_weights):
    """Ctrl-C while a long input is being written segment by segment: exit 130, no file."""
    sf.write(tmp_path / "long.wav", music_like(20.0).T, SR)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "uvrsep",
        "separate",
        str(tmp_path / "long.wav"),
        "-m",
        str(tiny_weights),
        "-o",
        str(out),
        "--device",
        "cpu",
        "--segment-threshold",
        "5",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=_sigint_default,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(out.glob(".*.part")) if out.is_dir() else []
        if parts and all(p.stat().st_size > 44 for p in parts):  # a first segment is written
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_clips_are_written_in_the_background_while_the_next_ones_are_separated(tmp_path, monkeypatch):
    """In-memory stems go to a writer thread: the next group's separation starts before the last
    group's files are written; results keep the inputs' order, a failed write lands on its
    input, and a streamed input waits for the writes before it."""
    import threading

    from uvrsep.batch import Job, separate_jobs
    from uvrsep.batch import run as batch
    from uvrsep.errors import AudioReadError
    from uvrsep.stems import Stems

    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def note(kind: str, name: str) -> None:
        with lock:
            events.append((kind, name))

    def stems(seconds: float = 0.5) -> Stems:
        wave = np.zeros((2, int(SR * seconds)), np.float32)
        return Stems({"vocals": wave, "instrumental": wave}, SR, "vocals", seconds=0.1)

    class TwoGroups:
        labels = ("vocals", "instrumental")

        def separate_batch(self, paths, group_windows, durations):
            for group in (paths[:2], paths[2:]):
                for path in group:
                    note("separate", path.stem)
                for path in group:
                    yield path, (AudioReadError(f"{path}: holds NaN") if path.stem == "c" else stems())

    real = batch.write_stems

    def slow_write(result, targets, **kw):
        name = next(iter(targets.values())).stem.split("_")[0]
        time.sleep(0.3)
        if name == "b":
            raise OSError(28, "No space left on device")
        out = real(result, targets, **kw)
        note("written", name)
        return out

    monkeypatch.setattr(batch, "write_stems", slow_write)
    plan = OutputPlan(output_dir=tmp_path, template="{name}_{stem}.{ext}", stems=("vocals", "instrumental"))
    jobs = [
        Job(InputItem(Path(f"{n}.wav"), Path(".")), {s: tmp_path / f"{n}_{s}.wav" for s in plan.stems}, 0.5)
        for n in "abcd"
    ]
    blocks: list[float] = []
    results = list(separate_jobs(TwoGroups(), jobs, plan, on_block=blocks.append))
    assert [(r.input, r.status) for r in results] == [
        ("a.wav", "ok"),
        ("b.wav", "failed"),
        ("c.wav", "failed"),
        ("d.wav", "ok"),
    ]
    assert "No space left on device" in results[1].error and results[2].error == "c.wav: holds NaN"
    assert events.index(("separate", "c")) < events.index(("written", "a"))  # the overlap
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a_instrumental.wav",
        "a_vocals.wav",
        "d_instrumental.wav",
        "d_vocals.wav",
    ]
    assert blocks == [0.5, 0.5] and all(r.seconds >= 0.1 for r in results if r.status == "ok")


def test_the_network_waits_for_a_slow_writer(tmp_path, monkeypatch):
    """Clips separated but not written are bounded (MAX_QUEUED_WRITES): with a writer far slower
    than the network, the separator is not asked for more until the writer catches up."""
    import threading

    from uvrsep.batch import Job, separate_jobs
    from uvrsep.batch import run as batch
    from uvrsep.stems import Stems

    lock = threading.Lock()
    counts = {"separated": 0, "written": 0}
    backlog: list[int] = []
    wave = np.zeros((2, 4410), np.float32)

    class Fast:
        labels = ("vocals", "instrumental")

        def separate_batch(self, paths, group_windows, durations):
            for path in paths:
                with lock:
                    backlog.append(counts["separated"] - counts["written"])
                    counts["separated"] += 1
                yield path, Stems({"vocals": wave, "instrumental": wave}, SR, "vocals", seconds=0.01)

    real = batch.write_stems

    def slow_write(result, targets, **kw):
        time.sleep(0.01)
        out = real(result, targets, **kw)
        with lock:
            counts["written"] += 1
        return out

    monkeypatch.setattr(batch, "write_stems", slow_write)
    plan = OutputPlan(output_dir=tmp_path, template="{name}_{stem}.{ext}", stems=("vocals", "instrumental"))
    jobs = [
        Job(InputItem(Path(f"c{k}.wav"), Path(".")), {s: tmp_path / f"c{k}_{s}.wav" for s in plan.stems}, 0.1)
        for k in range(40)
    ]
    results = list(separate_jobs(Fast(), jobs, plan))
    assert [r.status for r in results] == ["ok"] * 40
    assert max(backlog) <= batch.MAX_QUEUED_WRITES + 1, backlog
    assert max(backlog) >= batch.MAX_QUEUED_WRITES - 1, backlog  # the writer did fall behind


def test_a_set_of_outputs_cut_by_a_kill_is_completed_not_redone_or_refused(tmp_path):
    """A run killed between renaming one finished stem into place and the next leaves the
    others complete (``.ready``): the next run renames them into place; a set whose missing
    file was never complete is refused as before (the existing file may be the user's)."""
    from uvrsep.audio import owner_tag, write_audio
    from uvrsep.batch import Manifest, plan_batch

    clip = tmp_path / "c.wav"
    sf.write(clip, music_like(0.5).T, SR)
    plan = OutputPlan(output_dir=tmp_path / "out", stems=("instrumental", "vocals"))
    item = InputItem(clip, tmp_path)
    targets = plan.paths(item, ("instrumental", "vocals"))
    write_audio(targets["instrumental"], music_like(0.5), SR)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tag = f"{owner_tag().rsplit('-', 1)[0]}-{int(dead.stdout)}-x1"
    vocals = targets["vocals"]

    refused = plan_batch([item], plan, ("instrumental", "vocals"), Manifest(None))
    assert not refused.jobs and refused.done[0].status == "skipped" and "--overwrite" in refused.done[0].error
    part = vocals.parent / f".{vocals.name}.{tag}.part"  # cut while writing: not complete
    part.write_bytes(b"RIFF")
    assert plan_batch([item], plan, ("instrumental", "vocals"), Manifest(None)).done[0].status == "skipped"

    ready = vocals.parent / f".{vocals.name}.{tag}.ready"
    write_audio(ready.with_suffix(".wav"), music_like(0.5, seed=1), SR)
    ready.with_suffix(".wav").rename(ready)
    result = plan_batch([item], plan, ("instrumental", "vocals"), Manifest(None))
    assert not result.jobs and result.done[0].status == "ok" and result.done[0].duration_s == 0.5
    assert vocals.exists() and not ready.exists()
    assert sf.read(vocals)[0].shape == (int(0.5 * SR), 2)


@pytest.mark.slow
def test_the_next_group_is_read_while_the_current_one_is_separated(tiny_weights, tmp_path, monkeypatch):
    """separate_batch reads (decodes, resamples) group k + 1 on a background thread while group
    k is separated; results keep the inputs' order and a file that cannot be read fails alone."""
    import threading

    paths = []
    for i in range(6):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, music_like(0.4, seed=i).T, SR)
        paths.append(path)
    (tmp_path / "c3.wav").write_bytes(b"not audio")
    sep = Separator(tiny_weights, device="cpu")
    events: list[tuple[str, str, str]] = []
    load, run = sep.load, sep._separate_waves

    def traced_load(path):
        events.append(("read", Path(path).stem, threading.current_thread().name))
        return load(path)

    def traced_run(waves, *args):
        events.append(("start", str(len(waves)), threading.current_thread().name))
        time.sleep(0.3)  # long enough for the reader to get the next group
        out = run(waves, *args)
        events.append(("end", str(len(waves)), threading.current_thread().name))
        return out

    monkeypatch.setattr(sep, "load", traced_load)
    monkeypatch.setattr(sep, "_separate_waves", traced_run)
    durations = {p: 0.4 for p in paths}
    windows = sep.n_windows(sep._frames_for(0.4))
    results = list(sep.separate_batch(paths, group_windows=2 * windows, durations=durations))
    assert [p.stem for p, _ in results] == [p.stem for p in paths]
    assert isinstance(results[3][1], Exception) and "c3.wav" in str(results[3][1])
    assert all(not isinstance(r, Exception) for k, (_, r) in enumerate(results) if k != 3)
    assert {thread for kind, _, thread in events if kind == "read"} == {"uvrsep-read_0"}
    first_end = next(k for k, e in enumerate(events) if e[0] == "end")
    assert {"c2", "c3"} <= {name for kind, name, _ in events[:first_end] if kind == "read"}
