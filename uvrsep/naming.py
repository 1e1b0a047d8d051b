"""Output names: the ``--name-template`` language and where each stem of an input goes.

Light on purpose (no numpy, no torch): the CLI checks a template before it loads anything.

The one rule every output obeys, whatever the template, its format specs and conversions, the
input's name or the folders on disk do: its final, resolved path (symbolic links followed) lies
inside the output folder (:func:`contained_path`). A template that breaks it for every input is a
:class:`~uvrsep.errors.ConfigError` before any work; an input whose own name makes it break fails
alone with an :class:`~uvrsep.errors.AudioWriteError`.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath

from .errors import AudioWriteError, ConfigError, option

DEFAULT_TEMPLATE = "{name}_{stem}.{ext}"
TEMPLATE_FIELDS = {
    "name": "input file name without extension",
    "stem": "stem label (vocals, instrumental, no_echo, ...)",
    "ext": "output format (wav, flac, mp3, ogg)",
    "model": "model name (registry name, or weight file name without .pth; an ensemble: A&B; a chain: first+second)",
    "parent": "name of the input's folder",
    "input_ext": "the input file's extension without the dot (wav, m4a, mp4; keeps clip.mp4 and clip.m4a apart)",
}
#: What ``{model}`` puts between the models of an ensemble, and between the stages of a chain:
#: ``-m A -m B --then C`` is ``A&B+C``. Both are valid in file names on Windows, macOS and Linux
#: (Windows refuses ``<>:"/\|?*``) and neither is a path separator.
ENSEMBLE_JOIN = "&"
CHAIN_JOIN = "+"


def _template_option() -> str:
    return option("name_template", "template")


#: Values the template is tried with before any work (each must give a path inside the folder).
_PROBES = (
    {"name": "clip", "stem": "vocals", "model": "HP2_all_vocals", "parent": "clips", "input_ext": "wav"},
    {
        "name": "a",
        "stem": "instrumental",
        "model": f"m{ENSEMBLE_JOIN}n{CHAIN_JOIN}o",
        "parent": "b",
        "input_ext": "m4a",
    },
)


def model_name(model: str | os.PathLike | None) -> str:
    """What ``{model}`` says for one model: its registry name, or its weight file's name without
    ``.pth`` (``None``: the registry's default model)."""
    if model is None:
        from .hub import default_model_name

        model = default_model_name()
    return PurePath(str(model)).name.removesuffix(".pth")


def model_field(ensemble: list, then: list | tuple = ()) -> str:
    """``{model}`` for a run: the first stage's models (one, or an ensemble's, joined by
    :data:`ENSEMBLE_JOIN`), then a chain's later models, each after :data:`CHAIN_JOIN`.

    >>> model_field(["HP2_all_vocals.pth", "models/2_HP-UVR.pth"], ["VR-DeEchoNormal"])
    'HP2_all_vocals&2_HP-UVR+VR-DeEchoNormal'
    """
    return ENSEMBLE_JOIN.join(map(model_name, ensemble)) + "".join(CHAIN_JOIN + model_name(m) for m in then)


@dataclass(frozen=True)
class InputItem:
    """One input: its path and the folder it was found under (for ``--mirror-tree``)."""

    path: Path
    root: Path


def template_fields(template: str) -> set[str]:
    """The fields a template uses; a :class:`ConfigError` for one that is malformed or names an
    unknown field (format specs and conversions are checked by :func:`check_template`)."""
    if not isinstance(template, str):
        raise ConfigError(f"{_template_option()} must be text, got {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{_template_option()} {template!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    fields = set()
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ConfigError(f"{_template_option()} {template!r}: fields need a name ({', '.join(TEMPLATE_FIELDS)})")
        if spec and any(c in spec for c in "{}"):
            raise ConfigError(f"{_template_option()} {template!r}: nested fields are not supported")
        fields.add(name)
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(
            f"{_template_option()} {template!r}: unknown field(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(TEMPLATE_FIELDS)})"
        )
    if not template.strip() or template.endswith(("/", "\\")):
        raise ConfigError(f"{_template_option()} {template!r}: must name a file")
    return fields


def render(template: str, **values: str) -> str:
    """``template`` filled in; a format spec or conversion that cannot apply (``{name:d}``,
    ``{name!z}``) is a one-line :class:`ConfigError`."""
    try:
        return template.format(**values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{_template_option()} {template!r}: {exc}") from None


def check_template(template: str, n_stems: int | None, fmt: str | None = None) -> None:
    """A :class:`ConfigError` if ``template`` cannot name ``n_stems`` stems apart (``{stem}`` is
    needed when more than one stem is written; ``None``: not known yet, taken as several), lacks
    ``{ext}`` at the end of the file name, has a format spec or conversion that cannot apply,
    or leaves the output folder whatever the input (tried with sample values)."""
    fields = template_fields(template)
    if "stem" not in fields and (n_stems is None or n_stems > 1):
        raise ConfigError(
            f"{_template_option()} {template!r} must contain {{stem}} when {n_stems or 'several'} stems are written "
            "(or the stems would overwrite each other); with --stems LABEL it may leave it out"
        )
    if "ext" not in fields:
        raise ConfigError(
            f"{_template_option()} {template!r} must end with .{{ext}}: the file's extension is what says its format"
        )
    for values in _PROBES:
        for ext in (fmt,) if fmt else ("wav", "flac"):
            text = render(template, ext=ext, **values)
            why = relative_problem(text, portable=True)
            if why is not None:
                raise ConfigError(
                    f"{_template_option()} {template!r} gives {text!r}: {why}; it must stay below {option('output_dir')}"
                )
            if not text.lower().endswith("." + ext):
                raise ConfigError(
                    f"{_template_option()} {template!r} gives {text!r}: the file name must end with .{{ext}} (.{ext})"
                )


def relative_problem(text: str, *, portable: bool = False) -> str | None:
    """Why ``text`` cannot be a path below a folder (absolute, a drive, ``..``, no file name) on
    this platform (``portable``: on Windows too); ``None`` when it can."""
    if not text or "\x00" in text:
        return "an empty name" if not text else "a NUL character"
    for flavour in (PurePath(text), PureWindowsPath(text)) if portable else (PurePath(text),):
        if flavour.anchor or flavour.drive:
            return "an absolute path"
        if ".." in flavour.parts:
            return "a '..' that climbs out"
    if text.endswith(("/", "\\")) or PurePath(text).name in ("", ".", ".."):
        return "no file name"
    return None


def contained_path(output_dir: Path, relative: str, *, base: Path | None = None) -> Path:
    """``output_dir / relative``, refused (:class:`AudioWriteError`) unless its final path, with
    every symbolic link on the way resolved, lies strictly inside ``output_dir`` (resolved too;
    ``base``: that resolved folder, when the caller has it already)."""
    why = relative_problem(relative)
    path = Path(output_dir) / relative
    if why is None:
        base = base if base is not None else Path(os.path.realpath(output_dir))
        final = Path(os.path.realpath(path))
        if final == base or base not in final.parents:
            why = f"it resolves to {final}, outside {base}"
    if why is not None:
        raise AudioWriteError(f"output {relative!r} would not stay inside {output_dir}: {why}")
    return path


def output_paths(
    item: InputItem,
    stems: tuple[str, ...],
    *,
    output_dir: Path,
    template: str,
    fmt: str,
    model: str,
    mirror_tree: bool,
    base: Path | None = None,
    contained: bool = True,
) -> dict[str, Path]:
    """``{stem: path}`` for one input (``template`` below ``output_dir``; with ``mirror_tree`` the
    input's folders below the folder it was found in are kept). Raises :class:`AudioWriteError`
    naming the input when one of its outputs would not stay inside ``output_dir`` (unless
    ``contained`` is false: the paths as named, for comparisons only)."""
    folder = ""
    if mirror_tree:
        try:
            folder = str(item.path.parent.relative_to(item.root))
        except ValueError:
            pass
    parent = Path(os.path.abspath(item.path)).parent.name  # "a/../b.wav": b's real folder, never ".."
    base = base if base is not None else Path(os.path.realpath(output_dir))
    paths = {}
    for stem in stems:
        name = render(
            template,
            name=item.path.stem,
            stem=stem,
            ext=fmt,
            model=model,
            parent=parent,
            input_ext=item.path.suffix.lstrip("."),
        )
        relative = os.path.join(folder, name) if folder not in ("", ".") else name
        if not contained:
            paths[stem] = Path(output_dir) / relative
            continue
        try:
            paths[stem] = contained_path(output_dir, relative, base=base)
        except AudioWriteError as exc:
            raise AudioWriteError(f"{item.path}: {exc}") from None
    return paths
