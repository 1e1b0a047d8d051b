"""Messages and progress (issue 24): one line each, saying what to do with the option the user
used (a flag on the command line, an argument in Python), names shown escaped, progress that
keeps coming off a terminal and a summary that agrees with it."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, music_like
from uvrsep.batch import BatchProgress, format_duration
from uvrsep.cli import app

runner = CliRunner()


def separate(*args):
    return runner.invoke(app, ["separate", *map(str, args), "--device", "cpu"])


def test_names_holding_newlines_are_shown_escaped(tiny_weights, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "good\nclip.wav", music_like(0.3).T, SR, format="WAV")
    (clips / "bad\nclip.wav").write_bytes(b"")
    result = separate(clips, "-m", tiny_weights, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert f"error: {clips}/bad\\nclip.wav: is an empty (0-byte) file" in result.output
    assert f"{clips}/good\\nclip.wav -> {tmp_path}/out/good\\nclip_instrumental.wav" in result.output
    # every line of the output is one message: no name broke a line
    assert all(re.match(r"^(note|error|done|warning|progress):|^/", line) for line in result.output.splitlines()), (
        result.output
    )


@pytest.mark.parametrize("with_manifest", [False, True])
def test_the_interruption_advice_names_the_manifest_only_when_given(
    with_manifest, tiny_weights, short_wav, tmp_path, monkeypatch
):
    import uvrsep.batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(uvrsep.batch, "run_batch", interrupted)
    manifest = ["--manifest", tmp_path / "run.jsonl"] if with_manifest else []
    result = separate(short_wav, "-m", tiny_weights, "-o", tmp_path / "out", *manifest)
    assert result.exit_code == 130
    if with_manifest:
        assert "re-run with the same --manifest to go on" in result.output
    else:
        assert "--manifest" not in result.output and "re-run to go on" in result.output


def test_a_read_only_manifest_folder_names_manifest(tiny_weights, short_wav, tmp_path, monkeypatch):
    import os

    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    result = separate(short_wav, "-m", tiny_weights, "-o", tmp_path / "out", "--manifest", folder / "run.jsonl")
    assert result.exit_code == 2
    assert f"error: --manifest {folder / 'run.jsonl'}: its folder {folder} is not writable" in result.output


def test_the_advice_for_inputs_that_differ_by_extension_works(tiny_weights, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "clip.wav", music_like(0.3).T, SR)
    sf.write(clips / "clip.flac", music_like(0.3, seed=2).T, SR)
    out = tmp_path / "out"
    result = separate(clips, "-m", tiny_weights, "-o", out)
    assert result.exit_code == 2
    advice = re.search(r"put \{input_ext\} in --name-template \(e\.g\. '([^']+)'\)", result.output)
    assert advice, result.output
    again = separate(clips, "-m", tiny_weights, "-o", out, "--name-template", advice.group(1))
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_flac_instrumental.wav",
        "clip_flac_vocals.wav",
        "clip_wav_instrumental.wav",
        "clip_wav_vocals.wav",
    ]


def test_the_advice_for_inputs_of_different_folders_works(tiny_weights, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "clip.wav", music_like(0.3).T, SR)
    out = tmp_path / "out"
    result = separate(tmp_path / "a", tmp_path / "b", "-m", tiny_weights, "-o", out)
    assert result.exit_code == 2
    advice = re.search(r"put \{parent\} in --name-template \(e\.g\. '([^']+)'\)", result.output)
    assert advice and "--mirror-tree" in result.output, result.output
    assert (
        separate(
            tmp_path / "a", tmp_path / "b", "-m", tiny_weights, "-o", out, "--name-template", advice.group(1)
        ).exit_code
        == 0
    )
    assert len(list(out.rglob("*.wav"))) == 4


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        for sub in getattr(cmd, "commands", {None: cmd}):
            yield [name] + ([sub] if sub else [])


def test_boolean_options_show_as_flags():
    for path in _commands():
        text = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
        assert "<bool>" not in text, (path, text)
    text = runner.invoke(app, ["separate", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"^\s+--tta\s+Second pass", text, re.MULTILINE), text


def test_a_terminal_bar_that_overruns_ends_without_a_warning():
    stream = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        progress = BatchProgress(1.2, 2, stream=stream, terminal=True)
        for _ in range(3):
            progress.advance(0.4004)  # rounding: 1.2012 s counted against 1.2 s
        progress.file_done(0.3)
        progress.file_done(0.3)
        progress.close()
    assert [str(w.message) for w in caught] == []


def test_progress_lines_keep_coming_while_nothing_finishes():
    """Off a terminal, a line at least every ``interval`` seconds, also while one long input
    (or one long segment) is being separated and nothing advances."""
    import time

    stream = io.StringIO()
    progress = BatchProgress(600.0, 1, stream=stream, interval=0.3, terminal=False)
    time.sleep(1.2)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("progress: 0/1 files") for line in lines), lines
    progress.advance(600.0)
    progress.close()
    last = stream.getvalue().splitlines()[-1]
    assert last.endswith("ETA 0:00:00") and f"{format_duration(progress.elapsed)} elapsed" in last


def test_a_run_that_fails_before_any_work_ends_without_a_progress_line():
    """An error before the first input (an unreachable --ray address, say) is the run's one line;
    a run that fails after some work still gets its last progress line."""
    stream = io.StringIO()
    BatchProgress(60.0, 3, stream=stream, interval=30, terminal=False).close(failed=True)
    assert stream.getvalue() == ""
    progress = BatchProgress(60.0, 3, stream=stream, interval=30, terminal=False)
    progress.file_done(20.0)
    progress.close(failed=True)
    assert stream.getvalue().startswith("progress: 1/3 files")


def test_the_summary_time_is_the_last_progress_line(tiny_weights, tmp_path, monkeypatch):
    import uvrsep.batch

    real = uvrsep.batch.BatchProgress

    class Logged(real):  # off a terminal, as in a job's log
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **dict(kwargs, terminal=False))

    monkeypatch.setattr(uvrsep.batch, "BatchProgress", Logged)
    clip = tmp_path / "c.wav"
    sf.write(clip, music_like(1.0).T, SR)
    result = separate(clip, "-m", tiny_weights, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    progress = [line for line in result.output.splitlines() if line.startswith("progress:")]
    elapsed = re.search(r"(\d+:\d\d:\d\d) elapsed", progress[-1]).group(1)
    assert re.search(rf"of audio in {elapsed} ", result.output.splitlines()[-1]), result.output
