"""Output names: the ``--name-template`` language and where each stem of an input goes.

Light on purpose (no numpy, no torch): the CLI checks a template before it loads anything.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path, PurePath

from .errors import ConfigError

DEFAULT_TEMPLATE = "{name}_{stem}.{ext}"
TEMPLATE_FIELDS = {
    "name": "input file name without extension",
    "stem": "stem label (vocals, instrumental, no_echo, ...)",
    "ext": "output format (wav, flac, mp3, ogg)",
    "model": "model name (registry name, or weight file name without .pth; a chain: first+second)",
    "parent": "name of the input's folder",
}


@dataclass(frozen=True)
class InputItem:
    """One input: its path and the folder it was found under (for ``--mirror-tree``)."""

    path: Path
    root: Path


def template_fields(template: str) -> set[str]:
    """The fields a template uses; a :class:`ConfigError` for one that is malformed, names an
    unknown field, or leaves the output folder (absolute, or ``..``)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"--name-template {template!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    fields = set()
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ConfigError(f"--name-template {template!r}: fields need a name ({', '.join(TEMPLATE_FIELDS)})")
        if spec and any(c in spec for c in "{}"):
            raise ConfigError(f"--name-template {template!r}: nested fields are not supported")
        fields.add(name)
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(
            f"--name-template {template!r}: unknown field(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(TEMPLATE_FIELDS)})"
        )
    literal = PurePath(template.replace("{", "").replace("}", ""))
    if literal.is_absolute() or ".." in literal.parts:
        raise ConfigError(f"--name-template {template!r}: must be a relative path below --output-dir")
    if not template.strip() or template.endswith(("/", "\\")):
        raise ConfigError(f"--name-template {template!r}: must name a file")
    return fields


def check_template(template: str, n_stems: int | None) -> None:
    """A :class:`ConfigError` if ``template`` cannot name ``n_stems`` stems apart: ``{stem}`` is
    needed when more than one stem is written (``None``: not known yet, taken as several)."""
    fields = template_fields(template)
    if "stem" not in fields and (n_stems is None or n_stems > 1):
        raise ConfigError(
            f"--name-template {template!r} must contain {{stem}} when {n_stems or 'several'} stems are written "
            "(or the stems would overwrite each other); with --stems LABEL it may leave it out"
        )


def output_paths(
    item: InputItem, stems: tuple[str, ...], *, output_dir: Path, template: str, fmt: str, model: str,
    mirror_tree: bool,
) -> dict[str, Path]:
    """``{stem: path}`` for one input (``template`` below ``output_dir``; with ``mirror_tree`` the
    input's folders below the folder it was found in are kept)."""
    folder = output_dir
    if mirror_tree:
        try:
            folder = folder / item.path.parent.relative_to(item.root)
        except ValueError:
            pass
    parent = Path(os.path.abspath(item.path)).parent.name  # "a/../b.wav": b's real folder, never ".."
    return {
        stem: folder / template.format(name=item.path.stem, stem=stem, ext=fmt, model=model, parent=parent)
        for stem in stems
    }
