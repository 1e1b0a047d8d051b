"""The docs as printed: every code block of README.md and docs/*.md marked ```` ```bash runnable ````
or ```` ```python runnable ```` is run on fixtures, so no page goes stale.

A runnable block needs neither a download, a GPU, a cluster nor the internet. It runs in a fresh
copy of a folder holding ``song.wav`` (3 s, 44.1 kHz stereo), ``clips/`` (short 48 kHz WAV clips
named as yuki_builder names them, one folder per role) and ``model.pth`` (random weights of an
HP-layout net as wide as the other tests' tiny one), with ``UVRSEP_HOME`` pointing at a private cache in which that file is imported
under the default model's name, ``HP2_all_vocals``, so the default-model commands work offline.
``uvrsep`` in a bash block runs as ``python -m uvrsep`` with this interpreter, and ``python`` is
this interpreter. A block fails the test when it exits non-zero, and when a file that a
``# -> a, b`` comment in it names is missing afterwards. Identical blocks (a README recipe
repeated on its docs page) run once.

The quick checks need no run: every block is classified (a fenced block whose lines start with
``uvrsep`` says ``bash`` or ``text``), every ``uvrsep`` command in a bash block names existing
commands and options, every Python block compiles and imports only names uvrsep has, every link
between the pages finds its page and heading, and the README keeps its two commands.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf
import torch
import typer
from typer.testing import CliRunner

from tests.conftest import REPO, TINY_CHANNELS, music_like, random_net
from uvrsep.cli import app

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^`]*)$")
#: The README's two commands: CI and scripts/new_user_check.sh run them as printed.
INSTALL_COMMAND = "pip install . && uvrsep separate song.wav"
TEST_COMMAND = 'pip install ".[test]" && python -m pytest -q'
#: Clips as a dataset builder has them: ``<index>_<start>_<end>_<text>.wav``, one folder per role.
CLIPS = {
    "haruhi/0001_0.00.01.00_0.00.01.60_hello there.wav": 0.6,
    "haruhi/0004_0.00.07.20_0.00.08.00_again.wav": 0.8,
    "kyon/0002_0.00.02.10_0.00.03.00_fine.wav": 0.9,
}


@dataclass(frozen=True)
class Block:
    """One fenced code block: its page, first line (1-based), language, marks and text."""

    page: Path
    line: int
    lang: str
    marks: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO).as_posix()}:{self.line}"

    @property
    def runnable(self) -> bool:
        return "runnable" in self.marks


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order (an unclosed block is an error)."""
    blocks, lines = [], page.read_text(encoding="utf-8").splitlines()
    k = 0
    while k < len(lines):
        match = FENCE.match(lines[k])
        if match is None:
            k += 1
            continue
        words = match["info"].split()
        end = next(
            (j for j in range(k + 1, len(lines)) if lines[j].startswith(match["fence"]) and not lines[j].strip("`")),
            None,
        )
        assert end is not None, f"{page}:{k + 1}: code block never closed"
        text = "\n".join(lines[k + 1 : end]) + "\n"
        blocks.append(Block(page, k + 1, words[0] if words else "", tuple(words[1:]), text))
        k = end + 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in read_blocks(page)]
RUNNABLE = [b for b in ALL_BLOCKS if b.runnable]


def unique_runnable() -> list[list[Block]]:
    """Runnable blocks grouped by identical language and text, in page order."""
    groups: dict[tuple[str, str], list[Block]] = {}
    for block in RUNNABLE:
        groups.setdefault((block.lang, block.text), []).append(block)
    return list(groups.values())


# -- bash blocks: commands and options ------------------------------------------------------------
def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of a bash block as word lists (continuations joined, comments dropped,
    split at ``&&``, ``||``, ``;`` and ``|``)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words: list[str] = []
        for word in shlex.split(line, comments=True):
            if word in ("&&", "||", ";", "|"):
                commands.append(words)
                words = []
            else:
                words.append(word)
        commands.append(words)
    return [c for c in commands if c]


def takes_value(param) -> bool:
    """Whether a click option (typer ships its own click: duck-typed) consumes the next word."""
    return getattr(param, "param_type_name", "") == "option" and not param.is_flag and not param.count


def check_uvrsep_command(words: list[str]) -> list[str]:
    """What is wrong with ``uvrsep ...`` (``words`` without ``uvrsep``): unknown commands or options."""
    command = typer.main.get_command(app)
    path = ["uvrsep"]
    rest = list(words)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            return [f"{' '.join(path)}: no command {rest[0]!r}"]
        command, path = sub, [*path, rest.pop(0)]
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}
    problems, k = [], 0
    while k < len(rest):
        word = rest[k]
        k += 1
        if word in ("-", "--help", "-h") or not word.startswith("-") or re.fullmatch(r"-\d+(\.\d*)?", word):
            continue
        name = word.split("=", 1)[0]
        if name not in options:
            problems.append(f"{' '.join(path)}: no option {name}")
        elif "=" not in word and takes_value(options[name]):
            k += 1  # its value, which may start with '-'
    return problems


def uvrsep_commands(block: Block) -> list[list[str]]:
    """The arguments of each ``uvrsep`` command of a bash block."""
    return [c[1:] for c in shell_commands(block.text) if c[0] == "uvrsep"]


BASH_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("bash", "sh", "shell") and uvrsep_commands(b)]


def test_there_are_runnable_blocks_in_the_readme_and_the_docs():
    pages = {b.page.name for b in RUNNABLE}
    assert "README.md" in pages and len(pages) > 1, pages
    assert {b.lang for b in RUNNABLE} == {"bash", "python"}, {b.lang for b in RUNNABLE}


def test_every_block_with_uvrsep_commands_says_its_language():
    """A block of shell lines without a language escapes the option check below: say ``bash``
    (checked, and run if marked runnable) or ``text`` (a synopsis, with placeholders)."""
    unmarked = [
        b.where for b in ALL_BLOCKS if not b.lang and any(line.startswith("uvrsep ") for line in b.text.splitlines())
    ]
    assert not unmarked, f"blocks of uvrsep commands without a language: {unmarked}"
    other = [b.where for b in RUNNABLE if b.lang not in ("bash", "python")]
    assert not other, f"runnable blocks in a language the runner does not run: {other}"


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=[b.where for b in BASH_BLOCKS])
def test_bash_blocks_use_existing_commands_and_options(block):
    problems = [p for words in uvrsep_commands(block) for p in check_uvrsep_command(words)]
    assert not problems, f"{block.where}: {problems}"


def test_the_usage_synopsis_names_existing_options():
    """The synopsis of ``uvrsep separate`` in docs/usage.md (a text block, placeholders and all)."""
    blocks = read_blocks(REPO / "docs" / "usage.md")
    synopsis = next(b.text for b in blocks if b.text.startswith("uvrsep separate INPUT"))
    separate = synopsis.split("\nuvrsep models", 1)[0]
    flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", separate)
    assert len(flags) > 20, flags
    unknown = [p for flag in flags for p in check_uvrsep_command(["separate", flag])]
    assert not unknown, unknown


def test_the_option_check_finds_what_does_not_exist():
    assert check_uvrsep_command(["separate", "x.wav", "-m", "m.pth", "--aggressiveness", "-5", "--ray=auto"]) == []
    typo = ["separate", "x.wav", "--agressiveness", "5"]
    assert check_uvrsep_command(typo) == ["uvrsep separate: no option --agressiveness"]
    assert check_uvrsep_command(["models", "fetch", "HP2"]) == ["uvrsep models: no command 'fetch'"]
    assert check_uvrsep_command(["models", "import", "m.pth", "--name", "--overwrite"]) == []


# -- python blocks --------------------------------------------------------------------------------
PY_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


def missing_uvrsep_names(tree: ast.AST) -> list[str]:
    """``from uvrsep... import X`` / ``import uvrsep...`` names that do not exist."""
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "uvrsep":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "uvrsep":
                    try:
                        importlib.import_module(alias.name)
                    except ImportError:
                        missing.append(alias.name)
    return missing


@pytest.mark.parametrize("block", PY_BLOCKS, ids=[b.where for b in PY_BLOCKS])
def test_python_blocks_compile_and_import_what_exists(block):
    tree = compile(block.text, block.where, "exec", flags=ast.PyCF_ONLY_AST)
    assert not missing_uvrsep_names(tree), f"{block.where}: {missing_uvrsep_names(tree)}"


# -- links and the README's commands ---------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    inside, found = False, set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_between_pages_find_their_page_and_heading(page):
    broken = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*\.md|)(?:#([^)\s]+))?\)", page.read_text(encoding="utf-8")):
        linked = (page.parent / target).resolve() if target else page
        if not linked.is_file():
            broken.append(target)
        elif anchor and anchor not in anchors(linked):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{page.name}: broken links {broken}"


def test_the_readme_keeps_its_two_commands():
    """CI runs the printed test command and scripts/new_user_check.sh both commands: the first
    block of "## Install and run" and the block after "Run the tests"."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    install = text.split("## Install and run", 1)[1]
    assert install.split("```", 2)[1].strip() == INSTALL_COMMAND
    assert text.split("\nRun the tests", 1)[1].split("```", 2)[1].strip() == TEST_COMMAND


# -- running the runnable blocks -------------------------------------------------------------------
@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory) -> Path:
    """The folder the runnable blocks expect (see the module's docstring), made once."""
    root = tmp_path_factory.mktemp("docs_fixture")
    sf.write(root / "song.wav", music_like(3.0, seed=3).T, 44100, subtype="PCM_16")
    for k, (name, seconds) in enumerate(CLIPS.items()):
        (root / "clips" / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / "clips" / name, music_like(seconds, sr=48000, seed=k).T, 48000, subtype="PCM_16")
    torch.save(random_net(channels=TINY_CHANNELS, seed=5).state_dict(), root / "model.pth")
    result = CliRunner().invoke(
        app,
        ["models", "import", str(root / "model.pth"), "--name", "HP2_all_vocals"],
        env={"UVRSEP_HOME": str(root / "home")},
    )
    assert result.exit_code == 0, result.output
    return root


def _link_or_copy(src: str, dst: str) -> None:
    """Weight files are hard-linked (uvrsep never writes them in place), the rest copied."""
    if src.endswith(".pth"):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def bash_script(text: str) -> str:
    """The block with each ``uvrsep`` command run by this interpreter, stopping at the first failure."""
    uvrsep = f"{shlex.quote(sys.executable)} -m uvrsep"
    body = re.sub(r"(?m)(^|&&|\|\||;|\|)(\s*)uvrsep(?=\s|$)", lambda m: f"{m[1]}{m[2]}{uvrsep}", text)
    return "set -eo pipefail\n" + body


def promised_files(text: str) -> list[str]:
    """Paths named in ``# -> a, b (note)`` comments, except those abbreviated with ``...``."""
    paths = []
    for listed in re.findall(r"#\s*->\s*(.+)$", text, flags=re.MULTILINE):
        for item in listed.split(","):
            words = item.split()
            if words and "..." not in words[0]:
                paths.append(words[0])
    return paths


def test_promised_files_are_read_from_arrow_comments():
    text = "f()\n# -> opt/a.flac, opt/b_10.flac (dry), opt/echo/instrument_..._10.wav\n"
    assert promised_files(text) == ["opt/a.flac", "opt/b_10.flac"]


def test_uvrsep_is_replaced_only_where_it_is_the_command():
    block = "uvrsep separate a.wav && uvrsep models list | head\nls uvrsep/  # uvrsep\nexport UVRSEP_HOME=/x\n"
    script = bash_script(block)
    exe = shlex.quote(sys.executable)
    assert script.splitlines()[1:] == [
        f"{exe} -m uvrsep separate a.wav && {exe} -m uvrsep models list | head",
        "ls uvrsep/  # uvrsep",
        "export UVRSEP_HOME=/x",
    ]


GROUPS = unique_runnable()


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS, ids=[" = ".join(b.where for b in g) for g in GROUPS])
def test_runnable_block_runs_as_printed(group, docs_folder, tmp_path):
    block = group[0]
    work = tmp_path / "work"
    shutil.copytree(docs_folder, work, copy_function=_link_or_copy)
    env = {
        **os.environ,
        "UVRSEP_HOME": str(work / "home"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if block.lang == "bash":
        assert shutil.which("bash"), "bash is needed to run the docs' shell blocks"
        cmd = ["bash", "-c", bash_script(block.text)]
    else:
        cmd = [sys.executable, "-c", block.text]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{output}"
    missing = [p for p in promised_files(block.text) if not (work / p).exists()]
    assert not missing, f"{block.where}: files its comments promise are missing: {missing}"
