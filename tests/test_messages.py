"""Messages and progress (issue 24): one line each, saying what to do with the option the user
used (a flag on the command line, an argument in Python), names shown escaped, progress that
keeps coming off a terminal and a summary that agrees with it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, TINY_CHANNELS, music_like
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# -- the option that named the setting: a flag on the command line, an argument in Python ---------


def test_separator_messages_name_its_arguments_or_the_flags(tiny_weights):
    from uvrsep import Separator
    from uvrsep.errors import ConfigError, cli_messages
    from uvrsep.model import default_params
    from uvrsep.network import Architecture

    vr51 = Architecture("vr51", 16, bins=1024)  # no default band config: the message says how to give one
    cases = [
        (
            lambda: Separator(tiny_weights, device="cpu", batch_size=0),
            "batch_size must be at least 1",
            "--batch-size must be at least 1",
        ),
        (
            lambda: Separator(tiny_weights, device="cpu", params="nope"),
            "params='nope': unknown band config",
            "--params nope: unknown band config",
        ),
        (lambda: default_params(vr51), "give it with params (", "give it with --params ("),
        (
            lambda: Separator(tiny_weights, device="cpu", primary_stem="voice"),
            "primary_stem='voice': unknown stem",
            "--primary-stem voice: unknown stem",
        ),
    ]
    for make, python, flag in cases:
        with pytest.raises(ConfigError) as err:
            make()
        assert python in str(err.value) and "--" not in str(err.value), str(err.value)
        with cli_messages(), pytest.raises(ConfigError) as err:
            make()
        assert flag in str(err.value), str(err.value)
    assert any(note.endswith("; primary_stem sets it)") for note in Separator(tiny_weights, device="cpu").notes)
    with cli_messages():
        assert any(note.endswith("; --primary-stem sets it)") for note in Separator(tiny_weights, device="cpu").notes)


def test_a_missing_model_names_the_option_that_gave_it(tiny_weights, short_wav, tmp_path):
    from uvrsep.errors import UvrsepError
    from uvrsep.model import model_stems

    missing = tmp_path / "missing.pth"
    with pytest.raises(UvrsepError, match=re.escape(f"model='{missing}': weight file not found")):
        model_stems(missing)
    out = tmp_path / "out"
    result = separate(short_wav, "-m", missing, "-o", out)
    assert result.exit_code == 1 and f"error: --model {missing}: weight file not found" in result.output
    result = separate(short_wav, "-m", tiny_weights, "--then", missing, "-o", out)
    assert result.exit_code == 1 and f"error: --then {missing}: weight file not found" in result.output
    result = separate(short_wav, "-m", tiny_weights, "--then", "HP5_only_main_vocalz", "-o", out)
    assert result.exit_code == 2, result.output
    assert (
        "error: --then HP5_only_main_vocalz: unknown model: not a file and not a registry name; did you mean "
        "HP5_only_main_vocal" in result.output
    )
    # a --then model that is not in the cache, downloads off: the advice names --then
    result = separate(short_wav, "-m", tiny_weights, "--then", "HP5_only_main_vocal", "--offline", "-o", out)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith("or give a weight file you have (--then PATH)"), (
        result.output
    )
    assert not out.exists() or not any(out.iterdir())


def test_a_file_name_longer_than_the_file_system_allows_is_one_line(tiny_weights, short_wav, tmp_path):
    from uvrsep import Separator
    from uvrsep.errors import UvrsepError
    from uvrsep.model import model_stems

    name = "a" * 300 + ".pth"
    for call in (lambda: model_stems(name), lambda: Separator(name, device="cpu")):
        with pytest.raises(UvrsepError, match=rf"^model='{name}': ") as err:
            call()
        assert "\n" not in str(err.value)
    for args in (["--model", name], ["--model", tiny_weights, "--then", name]):
        result = separate(short_wav, *args, "-o", tmp_path / "out")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert result.output.startswith(f"error: {args[-2]} {name}: ") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()


def test_models_info_describes_a_weight_file(tiny_weights, tmp_path):
    import hashlib

    result = runner.invoke(app, ["models", "info", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.output.splitlines())
    assert rows["file"] == str(tiny_weights) and rows["registry"] == "-"
    assert rows["architecture"] == f"cascaded ASPP net (width {TINY_CHANNELS}, 5-branch ASPP)"
    assert rows["band config"] == "4band_v2 (family default)"
    assert rows["stems"] == "instrumental (masked), vocals (residual) (family default; --primary-stem sets it)"
    assert rows["sha256"] == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    missing = runner.invoke(app, ["models", "info", str(tmp_path / "none.pth")])
    assert missing.exit_code == 1 and missing.output == f"error: {tmp_path / 'none.pth'}: weight file not found\n"


@pytest.mark.slow  # a child process and its exit handlers
def test_nothing_is_printed_after_a_failed_runs_error_line(tmp_path):
    """What a library still does while the failed command's process ends (Ray's connection
    attempt, given up at the deadline, logs from C++ seconds later; here an exit handler that
    writes to file descriptor 2) cannot add lines after the ``error:`` line."""
    late = (
        "import atexit, os, sys\n"
        "from uvrsep.cli import main\n"
        "atexit.register(lambda: os.write(2, b'late line\\n'))\n"
        f"sys.argv = ['uvrsep', 'separate', {str(tmp_path / 'missing.wav')!r}, '--name-template', '{{name:d}}']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--name-template" in lines[0], done.stderr
