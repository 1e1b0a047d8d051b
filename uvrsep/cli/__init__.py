"""``uvrsep`` command line: a thin typer layer over the library, one module per command group.

- :mod:`.separate`: ``uvrsep separate`` (the batch, here or on a Ray cluster).
- :mod:`.models`: ``uvrsep models list / info / download / path / verify / import``.
- :mod:`.params`: ``uvrsep params`` (the shipped band configs).
- :mod:`.report`: ``uvrsep report`` (the per-clip quality page of a manifest).
- :mod:`.train`: ``uvrsep eval``, ``uvrsep prepare-data`` and ``uvrsep train``.
- :mod:`.common`: the typer ``app``, its callback and the helpers the commands share.

The commands are registered here, in the order ``uvrsep --help`` lists them.

Commands only parse, call the library and print. Start-up stays light: torch, librosa and the
network are imported inside the commands that need them, so ``uvrsep --help`` and
``uvrsep --version`` answer at once.
"""

from __future__ import annotations

import signal
import sys

from ..errors import Terminated
from . import models, params, report, separate, train
from .common import app, version

# The commands, in the order ``uvrsep --help`` lists them.
app.command()(separate.separate)
app.command("eval")(train.eval_command)
app.command("prepare-data")(train.prepare_data)
app.command("train")(train.train_command)
app.command("params")(params.params_list)
app.command("report")(report.report_command)
app.command()(version)
app.add_typer(models.models_app, name="models")


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
