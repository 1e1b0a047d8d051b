"""``uvrsep eval``, ``uvrsep prepare-data`` and ``uvrsep train``: scoring models
(:mod:`uvrsep.evaluation`), packing a training set and training (:mod:`uvrsep.training`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UvrsepError
from .common import Device, fail


def eval_command(
    folder: Annotated[Path, typer.Argument(help="Folder of items, each with mixture, vocals and accompaniment files.")],
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model(s) to score (path or registry name); repeatable.")
    ] = None,
    params: Annotated[str | None, typer.Option(help="Band config for the model(s).")] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Report prefix: writes PREFIX.csv and PREFIX.json.")
    ] = Path("eval_report"),
    device: Annotated[Device, typer.Option(help="Where the network runs.")] = Device.auto,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never download: registry names must already be cached.")
    ] = False,
) -> None:
    """Per-item and median SDR / SI-SDR of both stems, next to the mixture and the oracle IRM."""
    from ..evaluation import STEMS, baselines, evaluate, load_items, separator_system, write_reports
    from ..naming import model_name
    from ..separator import Separator

    try:
        items = load_items(folder)
        systems = {}
        for m in model or []:
            sep = Separator(m, params=params, device=device.value, offline=offline)
            systems[model_name(m)] = separator_system(sep, m)
        systems.update(baselines())
        results = evaluate(items, systems)
    except UvrsepError as exc:
        raise fail(exc) from None
    keys = [f"{s}_{m}" for s in STEMS for m in ("sdr", "si_sdr")]

    def fmt(v: float | None) -> str:
        return "     -" if v is None else f"{v:6.2f}"

    typer.echo(f"{'system':16} {'item':28} " + " ".join(f"{k:>18}" for k in keys))
    for scores in results:
        for item, row in scores.rows.items():
            typer.echo(f"{scores.system:16} {item:28} " + " ".join(f"{fmt(row[k]):>18}" for k in keys))
    for scores in results:
        typer.echo(f"{scores.system:16} {'MEDIAN':28} " + " ".join(f"{fmt(scores.median(k)):>18}" for k in keys))
    csv_path, json_path = write_reports(results, output)
    typer.echo(f"wrote {csv_path} and {json_path}", err=True)


def prepare_data(
    out: Annotated[Path, typer.Argument(help="Folder for the packed training set.")],
    shared_data: Annotated[
        Path,
        typer.Option(
            help="Folder of isolated vocals: manifest.csv and vocals/ (e.g. the project's ../shared/data).",
            show_default=False,
        ),
    ],
    split: Annotated[str, typer.Option(help="Split of the vocal manifest to pack (train / valid).")] = "train",
    music: Annotated[list[Path] | None, typer.Option(help="Folder(s) of instrumental music; repeatable.")] = None,
    speech: Annotated[
        list[Path] | None,
        typer.Option(help="Folder(s) of extra speech; repeatable ('DIR:HZ' marks band-limited audio)."),
    ] = None,
    max_mb: Annotated[float, typer.Option(help="Size budget of the packed set (MB).")] = 50.0,
    codec: Annotated[str, typer.Option(help="opus (~11x more audio per MB) or float16 (memory-mapped).")] = "opus",
    seed: Annotated[int, typer.Option()] = 0,
    hold_out: Annotated[
        float, typer.Option(help="Fraction of music files held out for validation (the first files of a seeded order).")
    ] = 0.1,
) -> None:
    """Decode, resample and pack vocals and music into a compact training set."""
    from ..training.data import music_source, prepare_dataset, sources_from_manifest, speech_source

    sources = sources_from_manifest(shared_data, split)
    sources += [speech_source(folder) for folder in speech or []]
    sources += [music_source(folder, split, hold_out, seed) for folder in music or []]
    index = prepare_dataset(sources, out, max_mb=max_mb, seed=seed, codec=codec)
    typer.echo(
        f"packed {index['vocals_seconds'] / 60:.1f} min of vocals and {index['music_seconds'] / 60:.1f} min of music "
        f"from {len(index['segments'])} files into {out}"
    )


def train_command(
    data: Annotated[Path, typer.Option(help="Packed training set (uvrsep prepare-data).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints (last.pth) and train_log.jsonl.")],
    family: Annotated[str, typer.Option(help="aspp or vr51.")] = "aspp",
    width: Annotated[int, typer.Option(help="ASPP stage-1 channels (16/32/64) or VR 5.1 nout.")] = 16,
    branches: Annotated[int, typer.Option(help="ASPP branches: 5, 6 or 7.")] = 5,
    levels: Annotated[int, typer.Option(help="ASPP U-Net levels: 4, or 5 (UVR's 129605 net, with --branches 6).")] = 4,
    params: Annotated[str, typer.Option(help="Band config.")] = "4band_v2",
    steps: Annotated[int, typer.Option(help="Total optimiser steps (the schedule spans them).")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per optimiser step.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW; warm-up, then cosine decay).")] = 5e-4,
    crop_frames: Annotated[int, typer.Option(help="STFT frames per example.")] = 256,
    val_dir: Annotated[
        Path | None, typer.Option(help="Evaluation items for periodic validation SDR.", show_default=False)
    ] = None,
    val_every: Annotated[int, typer.Option(help="Steps between validations (with --val-dir).")] = 200,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (OUT/last.pth).")] = 100,
    time_budget: Annotated[
        float | None, typer.Option(help="Stop (and checkpoint) after this many seconds.", show_default="no limit")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    workers: Annotated[int, typer.Option(help="Threads preparing examples.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the data order, augmentation and initial weights.")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Continue from OUT/last.pth if it exists.")] = True,
) -> None:
    """Train a model (resumable; deterministic for a given seed)."""
    from tqdm import tqdm

    from ..device import resolve_device
    from ..training import TrainConfig, train

    try:
        device = str(resolve_device(device))
    except UvrsepError as exc:
        raise fail(exc, 2) from None
    cfg = TrainConfig(
        data=str(data),
        out=str(out),
        family=family,
        width=width,
        branches=branches,
        levels=levels,
        params=params,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        crop_frames=crop_frames,
        val_dir=str(val_dir) if val_dir else None,
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        time_budget_s=time_budget,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume,
    )
    bar = tqdm(total=steps, unit="step")

    def on_log(record):
        bar.n = record["step"]
        bar.set_postfix({k: v for k, v in record.items() if k in ("loss", "val_vocals_sdr")})
        if "val_vocals_sdr" in record:
            bar.write(json.dumps(record))

    with bar:
        last = train(cfg, on_log=on_log)
    typer.echo(json.dumps(last))
