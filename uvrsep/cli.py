"""``uvrsep`` command line: a thin typer layer over :class:`uvrsep.Separator`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .config import list_band_layouts
from .errors import ConfigError, UvrsepError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Separate vocals from accompaniment (UVR5 VR models).")


class OutputFormat(str, Enum):
    wav = "wav"
    flac = "flac"


class BitDepth(str, Enum):
    pcm16 = "16"
    pcm24 = "24"
    float32 = "32f"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def _error(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)


@app.command()
def separate(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files to separate.", show_default=False)],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Weight file (.pth) or registry name (see `uvrsep models list`), e.g. HP2_all_vocals.")
    ],
    params: Annotated[
        str | None,
        typer.Option(help="Band config name or .json path [default: 4band_v2 for HP-family weights]."),
    ] = None,
    aggressiveness: Annotated[
        float, typer.Option(min=0, max=100, help="RVC's aggressiveness, 0–100: higher pushes more vocal out of the instrumental.")
    ] = 10,
    tta: Annotated[bool, typer.Option("--tta", help="Second pass shifted by half a window, averaged (2x slower).")] = False,
    postprocess: Annotated[
        bool, typer.Option("--postprocess", help="Give quiet stretches of the residual back to the masked stem (RVC's mask_silence).")
    ] = False,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the stems.")] = Path("."),
    output_format: Annotated[OutputFormat, typer.Option("--output-format", help="Container of the stems.")] = OutputFormat.wav,
    bit_depth: Annotated[BitDepth, typer.Option("--bit-depth", help="16 or 24-bit integer (clipped), or 32-bit float.")] = BitDepth.pcm16,
    device: Annotated[Device, typer.Option(help="Where the network runs.")] = Device.auto,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Windows per network call [default: 1 on CPU, 4 on GPU].")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace stems that already exist.")] = False,
    stems: Annotated[
        str | None, typer.Option("--stems", help="Comma-separated stem labels to write (e.g. vocals) [default: both].")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never download: a registry name must already be cached.")] = False,
) -> None:
    """Write <name>_vocals and <name>_instrumental stems for each input (at the model's rate, 44.1 kHz)."""
    from .separator import Separator

    try:
        separator = Separator(
            model,
            params=params,
            device=device.value,
            aggressiveness=aggressiveness,
            tta=tta,
            postprocess=postprocess,
            batch_size=batch_size,
            progress=True,
            offline=offline,
        )
        wanted = _parse_stems(stems, (separator.primary, separator.secondary))
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    for note in separator.notes:
        typer.echo(f"note: {note}", err=True)

    failed = skipped = 0
    for path in inputs:
        targets = {k: v for k, v in separator.output_paths(path, output_dir, output_format.value).items() if k in wanted}
        if not overwrite and any(p.exists() for p in targets.values()):
            skipped += 1
            typer.echo(f"skipped {path}: output exists ({', '.join(map(str, targets.values()))}; --overwrite replaces)", err=True)
            continue
        try:
            written = separator.separate_file(
                path, output_dir, fmt=output_format.value, bit_depth=bit_depth.value, overwrite=overwrite, stems=wanted
            )
        except UvrsepError as exc:
            failed += 1
            _error(str(exc))
            continue
        except (MemoryError, RuntimeError, ValueError, OSError) as exc:  # never a traceback per input
            failed += 1
            _error(f"{path}: {type(exc).__name__}: {exc}")
            continue
        typer.echo(f"{path} -> {', '.join(str(p) for p in written.values())}")
    if len(inputs) > 1 or failed or skipped:
        typer.echo(f"done: {len(inputs) - failed - skipped} separated, {skipped} skipped, {failed} failed", err=True)
    if failed:
        raise typer.Exit(1)


def _parse_stems(value: str | None, available: tuple[str, str]) -> tuple[str, ...]:
    if value is None:
        return available
    wanted = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in wanted if v not in available]
    if unknown or not wanted:
        raise ConfigError(f"--stems {value!r}: this model writes {', '.join(available)}")
    return wanted


@app.command("params")
def params_list() -> None:
    """List the shipped band configurations (for --params)."""
    for name in list_band_layouts():
        typer.echo(name)


@app.command()
def version() -> None:
    """Print uvrsep's version."""
    typer.echo(__version__)


def main() -> None:
    app()


models_app = typer.Typer(no_args_is_help=True, help="Known models, the download cache and your own weights.")
app.add_typer(models_app, name="models")


def _registry():
    from .hub import home_dir
    from .registry import load_registry

    return load_registry(home_dir())


def _spec_or_exit(name: str):
    try:
        return _registry().get(name)
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None


@models_app.command("list")
def models_list() -> None:
    """List the registry: name, source, family, band config, stems, cached or not."""
    from .hub import cached_path

    for spec in _registry().models:
        mark = "cached" if cached_path(spec).is_file() else "-"
        family = f"{spec.family or '?'}-{spec.width or '?'}"
        typer.echo(f"{spec.name:24} {spec.source:5} {family:7} {spec.params or '(hash table)':21} "
                   f"{'/'.join(spec.stems):24} {mark}")


@models_app.command("info")
def models_info(name: str) -> None:
    """Everything known about a model, and where its file is (or would be) cached."""
    from .hub import cached_path, expected_hash

    spec = _spec_or_exit(name)
    path = cached_path(spec)
    sha, source = expected_hash(spec)
    lines = [
        ("name", spec.name),
        ("aliases", ", ".join(spec.aliases) or "-"),
        ("source", spec.source),
        ("architecture", f"{spec.family or 'detected from the weights'}" + (f", width {spec.width}" if spec.width else "")),
        ("band config", spec.params or "from UVR's hash table, else the family default"),
        ("stems", f"{spec.stems[0]} (masked), {spec.stems[1]} (residual)"),
        ("urls", "\n              ".join(spec.urls) or "-"),
        ("file", f"{path} ({'cached' if path.is_file() else 'not downloaded'})"),
        ("sha256", f"{sha} ({source})" if sha else "not known yet: recorded on first download, verified afterwards"),
    ]
    if spec.note:
        lines.append(("note", spec.note))
    for key, value in lines:
        typer.echo(f"{key:13} {value}")


@models_app.command("download")
def models_download(names: list[str]) -> None:
    """Download models into the cache (resumable, verified)."""
    from .hub import download

    failed = 0
    for name in names:
        try:
            path = download(_registry().get(name))
        except UvrsepError as exc:
            failed += 1
            _error(str(exc))
            continue
        typer.echo(f"{name}: {path}")
    if failed:
        raise typer.Exit(1)


@models_app.command("path")
def models_path(name: str) -> None:
    """Print the cached file of a model (error if it is not downloaded)."""
    from .hub import cached_path

    path = cached_path(_spec_or_exit(name))
    if not path.is_file():
        _error(f"{name} is not downloaded (uvrsep models download {name})")
        raise typer.Exit(1)
    typer.echo(str(path))


@models_app.command("verify")
def models_verify(names: Annotated[list[str] | None, typer.Argument(help="Models to check [default: all cached].")] = None) -> None:
    """Re-hash cached files against the registry (or the hash recorded on first download)."""
    from .hub import cached_path, verify

    registry = _registry()
    specs = [_spec_or_exit(n) for n in names] if names else [m for m in registry.models if cached_path(m).is_file()]
    bad = 0
    for spec in specs:
        ok, detail = verify(spec)
        bad += ok is False
        typer.echo(f"{spec.name}: {'OK' if ok else 'MISMATCH' if ok is False else 'unchecked'}: {detail}")
    if not specs:
        typer.echo("no cached models")
    if bad:
        raise typer.Exit(1)


@models_app.command("import")
def models_import(
    file: Path,
    name: Annotated[str | None, typer.Option(help="Registry name [default: the file name without .pth].")] = None,
    params: Annotated[str | None, typer.Option(help="Band config to record for it.")] = None,
    primary: Annotated[str | None, typer.Option(help="Primary (masked) stem, UVR's naming, e.g. 'Vocals'.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Copy your own weight file into the cache and register it under a name."""
    from .config import load_band_layout
    from .hub import home_dir, import_file, record_hash, sha256_file
    from .network import detect_architecture, read_state_dict
    from .registry import STEM_LABELS, ModelSpec, add_user_model

    try:
        arch = detect_architecture(read_state_dict(file), file)
        registry = _registry()
        entry = registry.identify_by_uvr_hash(file) or {}
        params = params or entry.get("params")
        primary = primary or entry.get("primary")
        if params is not None:
            load_band_layout(params)
        if primary is not None and primary not in STEM_LABELS:
            raise ConfigError(f"unknown primary stem {primary!r} (use one of {', '.join(STEM_LABELS)})")
        name = name or file.name.removesuffix(".pth")
        spec = ModelSpec(
            name=name, file=f"{name}.pth", source="user", family=arch.family, width=arch.width,
            params=params, primary=primary or ("No Echo" if arch.family == "vr51" else "Instrumental"),
            note=f"imported from {file}",
        )
        path = import_file(file, spec, overwrite=overwrite)
        record_hash(spec.file, sha256_file(path))
        add_user_model(home_dir(), spec)
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"imported {file} as {name}: {arch.label}, band config {params or '(family default)'}, "
               f"stems {'/'.join(spec.stems)} -> {path}")
