"""``uvrsep`` command line: a thin typer layer over the library, one module per command group.

- :mod:`.separate`: ``uvrsep separate`` (the batch, here or on a Ray cluster).
- :mod:`.models`: ``uvrsep models list / info / download / path / verify / import``.
- :mod:`.params`: ``uvrsep params`` (the shipped band configs).
- :mod:`.train`: ``uvrsep eval``, ``uvrsep prepare-data`` and ``uvrsep train``.

Commands only parse, call the library and print. Start-up stays light: torch, librosa and the
network are imported inside the commands that need them, so ``uvrsep --help`` and
``uvrsep --version`` answer at once.
"""

from __future__ import annotations

import signal
import sys
from enum import Enum
from typing import Annotated

import typer

from .. import __version__
from ..errors import Terminated, UvrsepError, cli_messages, printable

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
        bool, typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Separate vocals from accompaniment (UVR5 VR models)."""
    ctx.with_resource(cli_messages())  # messages name settings as flags while a command runs


def version() -> None:
    """Print uvrsep's version."""
    typer.echo(__version__)


def _terminate(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    """The ``uvrsep`` entry point: SIGTERM is handled like Ctrl-C (clean-up, then exit 143)."""
    signal.signal(signal.SIGTERM, _terminate)
    app(args=_ray_flag(sys.argv[1:]))


def _ray_flag(args: list[str]) -> list[str]:
    """``--ray`` given without an address (last, or before another option) means ``--ray local``
    (typer options cannot have an optional value)."""
    args = list(args)
    for k, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--ray" and (k + 1 == len(args) or args[k + 1].startswith("-")):
            args.insert(k + 1, "local")
            break
    return args


# The command groups register themselves on ``app``, in the order ``uvrsep --help`` lists them.
from . import separate, train, params  # noqa: E402, F401, I001

app.command()(version)

from . import models  # noqa: E402, F401
