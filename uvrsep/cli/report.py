"""``uvrsep report``: the per-clip quality page (and CSV) of a batch's manifest (docs/report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UvrsepError, printable
from .common import fail


def report_command(
    manifest: Annotated[
        Path,
        typer.Argument(metavar="MANIFEST", help="The batch's --manifest (JSONL); the last record of an input wins."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="FILE", help="The page; its pictures go to <page name>_files/ beside it."
        ),
    ] = Path("report.html"),
    csv: Annotated[
        Path | None,
        typer.Option("--csv", metavar="FILE", help="Also write the table as CSV (same columns).", show_default=False),
    ] = None,
    pictures: Annotated[
        bool, typer.Option("--pictures/--no-pictures", help="Spectrogram pictures of each clip's input and voice stem.")
    ] = True,
    base_dir: Annotated[
        Path | None,
        typer.Option(
            "--base-dir",
            metavar="DIR",
            help="Folder the manifest's relative paths are taken from.",
            show_default="the current folder",
        ),
    ] = None,
    flag_music_left_db: Annotated[
        float, typer.Option("--flag-music-left-db", metavar="DB", help="Flag 'music left' above this music_left_db.")
    ] = -20.0,
    flag_voice_share: Annotated[
        float,
        typer.Option(
            "--flag-voice-share", metavar="FRACTION", help="Flag 'little voice' below this voice_share (0-1)."
        ),
    ] = 0.05,
    flag_voice_active: Annotated[
        float,
        typer.Option(
            "--flag-voice-active", metavar="FRACTION", help="Flag 'voice rarely active' below this voice_active (0-1)."
        ),
    ] = 0.10,
    flag_clipped: Annotated[
        float, typer.Option("--flag-clipped", metavar="SAMPLES", help="Flag 'clipped' above this many clipped samples.")
    ] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the page and the CSV if they exist.")] = False,
) -> None:
    """A static page (and CSV) of a batch's clips: sortable measures, suspect clips flagged,
    players and spectrograms (docs/report.md)."""
    from ..report import Thresholds, build_report

    try:
        clipped = int(flag_clipped) if float(flag_clipped).is_integer() else flag_clipped
        thresholds = Thresholds(
            music_left_db=flag_music_left_db,
            voice_share=flag_voice_share,
            voice_active=flag_voice_active,
            clipped=clipped,
        )
        summary = build_report(
            manifest, output, csv, thresholds=thresholds, pictures=pictures, base_dir=base_dir, overwrite=overwrite
        )
    except UvrsepError as exc:
        raise fail(exc) from None
    for warning in summary.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    wrote = f"{summary.page}" + (f" and {summary.csv}" if summary.csv else "")
    typer.echo(
        f"report: {summary.clips} clips, {summary.flagged} flagged, {summary.pictures} pictures; wrote {wrote}",
        err=True,
    )
