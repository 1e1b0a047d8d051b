"""``uvrsep`` command line: a thin typer layer over :class:`uvrsep.Separator`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .config import list_band_layouts
from .errors import UvrsepError

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
    model: Annotated[Path, typer.Option("--model", "-m", help="VR weight file (.pth), e.g. HP2_all_vocals.pth.")],
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
        )
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    for note in separator.notes:
        typer.echo(f"note: {note}", err=True)

    failed = skipped = 0
    for path in inputs:
        targets = separator.output_paths(path, output_dir, output_format.value)
        if not overwrite and any(p.exists() for p in targets.values()):
            skipped += 1
            typer.echo(f"skipped {path}: output exists ({', '.join(map(str, targets.values()))}; --overwrite replaces)", err=True)
            continue
        try:
            written = separator.separate_file(
                path, output_dir, fmt=output_format.value, bit_depth=bit_depth.value, overwrite=overwrite
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
