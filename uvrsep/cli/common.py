"""What the command modules of :mod:`uvrsep.cli` share: the typer ``app`` and its callback,
``--device``'s choices, and printing errors and notices."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from .. import __version__
from ..errors import UvrsepError, cli_messages, printable

app = typer.Typer(
    rich_markup_mode=None,  # plain click help: flags show as flags (no "<bool>"), usage errors without boxes
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Separate vocals from accompaniment (UVR5 VR models).",
)


class Device(str, Enum):
    """``--device`` of ``separate`` and ``eval``."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def error(message: str) -> None:
    """Print ``error: message`` (control characters escaped) on stderr."""
    typer.secho(f"error: {printable(message)}", err=True, fg=typer.colors.RED)


def fail(exc: UvrsepError, code: int = 1) -> typer.Exit:
    """Print ``exc`` as one error line; the :class:`typer.Exit` to raise with ``code``."""
    error(str(exc))
    return typer.Exit(code)


def notice(message: str) -> None:
    """Print a one-line notice (download started, retry, file discarded) on stderr, above any
    progress bar: the ``on_notice`` hook of :func:`uvrsep.downloads.download` / :func:`uvrsep.resolve.resolve_model`."""
    from tqdm import tqdm

    tqdm.write(f"note: {message}", file=sys.stderr)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"uvrsep {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Separate vocals from accompaniment (UVR5 VR models)."""
    ctx.with_resource(cli_messages())  # messages name settings as flags while a command runs


def version() -> None:
    """Print uvrsep's version."""
    typer.echo(__version__)
