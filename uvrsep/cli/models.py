"""``uvrsep models``: the registry, the download cache and your own weights
(:mod:`uvrsep.registry`, :mod:`uvrsep.hub`, :mod:`uvrsep.downloads`, :func:`uvrsep.model.import_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UvrsepError
from .common import error, fail, notice

models_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Known models, the download cache and your own weights."
)


def _registry():
    from ..hub import home_dir
    from ..registry import load_registry

    return load_registry(home_dir())


def _spec_or_exit(name: str):
    try:
        return _registry().get(name)
    except UvrsepError as exc:
        raise fail(exc) from None


@models_app.command("list")
def models_list() -> None:
    """List the registry: name, source, network, band config, stems, and whether the file is cached."""
    from ..hub import cached_path, models_dir
    from ..model import band_config_of

    registry = _registry()
    rows = [("NAME", "SOURCE", "NET", "BAND CONFIG", "STEMS (MASKED/RESIDUAL)", "CACHED")]
    for spec in registry.models:
        name = spec.name + (" *" if spec.name == registry.default else "")
        net = f"{spec.family or '?'}-{spec.width or '?'}"
        cached = "yes" if cached_path(spec).is_file() else "no"
        rows.append((name, spec.source, net, band_config_of(spec, registry), "/".join(spec.stems), cached))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo("* the default model, used when no --model is given; NET: network family-width")
    typer.echo(
        f"CACHED yes: the weight file is in {models_dir()}; no: it is downloaded on first use "
        "(or by `uvrsep models download NAME`)"
    )


@models_app.command("info")
def models_info(name: str) -> None:
    """Everything known about a model (a registry name, or a weight file), and where its file is
    (or would be) cached."""
    from ..hub import UNVERIFIED, cached_path, human_size, reference_digest
    from ..model import band_config_of, file_info
    from ..resolve import named_model, weight_file

    registry = _registry()
    try:
        if weight_file(name, given_as=None) is not None:
            for key, value in file_info(Path(name)):
                typer.echo(f"{key:13} {value}")
            return
        spec, _ = named_model(name, registry, given_as=None)  # a cached file must have its pinned sha256
    except UvrsepError as exc:
        raise fail(exc) from None
    path = cached_path(spec)
    digest = reference_digest(spec)
    if digest is not None:
        sha_line = f"{digest.sha256} ({digest.describe()})"
    elif spec.urls:
        sha_line = f"{UNVERIFIED}: recorded on download, to notice a later change"
    else:
        sha_line = "not recorded"
    lines = [
        ("name", spec.name + (" (the default model)" if spec.name == registry.default else "")),
        ("aliases", ", ".join(spec.aliases) or "-"),
        ("source", spec.source),
        (
            "architecture",
            f"{spec.family or 'detected from the weights'}" + (f", width {spec.width}" if spec.width else ""),
        ),
        ("band config", band_config_of(spec, registry)),
        ("stems", f"{spec.stems[0]} (masked), {spec.stems[1]} (residual)"),
        ("urls", "\n              ".join(spec.urls) or "-"),
        ("file", f"{path} ({'cached' if path.is_file() else 'not downloaded'})"),
        ("size", f"{spec.size} bytes ({human_size(spec.size)})" if spec.size else "not recorded in the registry"),
        ("sha256", sha_line),
    ]
    if spec.note:
        lines.append(("note", spec.note))
    for key, value in lines:
        typer.echo(f"{key:13} {value}")


@models_app.command("download")
def models_download(names: list[str]) -> None:
    """Download models into the cache (resumed only where proven, retried, checked against the
    registry's size and sha256 where it has them; see UVRSEP_MIRROR and UVRSEP_DOWNLOAD_DEADLINE
    in the README)."""
    from ..downloads import download

    failed = 0
    for name in names:
        try:
            path = download(_registry().get(name), on_notice=notice)
        except UvrsepError as exc:
            failed += 1
            error(str(exc))
            continue
        typer.echo(f"{name}: {path}")
    if failed:
        raise typer.Exit(1)


@models_app.command("path")
def models_path(name: str) -> None:
    """Print the cached file of a model (error if it is not downloaded)."""
    from ..hub import cached_path

    path = cached_path(_spec_or_exit(name))
    if not path.is_file():
        error(f"{name} is not downloaded (uvrsep models download {name})")
        raise typer.Exit(1)
    typer.echo(str(path))


@models_app.command("verify")
def models_verify(
    names: Annotated[list[str] | None, typer.Argument(help="Models to check.", show_default="all cached")] = None,
) -> None:
    """Re-hash cached files against their pinned sha256 (the registry's, or the one recorded on
    import). Files downloaded without a published checksum are unverified: for them only a change
    since the download is detected. Exit status 1 when a file mismatches or changed."""
    from ..hub import cached_path, verify

    registry = _registry()
    specs = [_spec_or_exit(n) for n in names] if names else [m for m in registry.models if cached_path(m).is_file()]
    bad = 0
    labels = {"ok": "OK: ", "mismatch": "MISMATCH: ", "changed": "CHANGED since the download: "}
    for spec in specs:
        verdict = verify(spec)
        bad += verdict.failed
        typer.echo(f"{spec.name}: {labels.get(verdict.status, '')}{verdict.detail}")
    if not specs:
        typer.echo("no cached models")
    if bad:
        raise typer.Exit(1)


@models_app.command("import")
def models_import(
    file: Path,
    name: Annotated[
        str | None, typer.Option(help="Registry name, a plain file name.", show_default="the file name without .pth")
    ] = None,
    params: Annotated[str | None, typer.Option(help="Band config to record for it.")] = None,
    primary: Annotated[
        str | None,
        typer.Option(help="Primary (masked) stem, UVR's spelling or uvrsep's, any case: 'Vocals', 'no_echo'."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Copy your own weight file into the cache and register it under a name.

    The file is checked first (a loadable VR net with finite float weights). The band config is
    recorded: --params, else UVR's hash table, else the family's default.
    """
    from ..model import import_model

    try:
        done = import_model(file, name=name, params=params, primary=primary, overwrite=overwrite)
    except UvrsepError as exc:
        raise fail(exc) from None
    spec = done.spec
    typer.echo(
        f"imported {file} as {spec.name}: {done.architecture.label}, band config {spec.params} ({done.params_source}), "
        f"stems {'/'.join(spec.stems)} -> {done.path}"
    )
