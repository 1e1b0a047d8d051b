"""``uvrsep`` command line: a thin typer layer over :class:`uvrsep.Separator` and the batch.

Start-up stays light: torch, librosa and the network are imported inside the commands that need
them, so ``uvrsep --help`` and ``uvrsep --version`` answer at once.
"""

from __future__ import annotations

import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .config import list_band_layouts, load_band_layout
from .errors import ConfigError, Terminated, UvrsepError, cli_messages, printable
from .ensemble.rules import ALGORITHMS, DEFAULT_ALGORITHM
from .naming import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, model_field, model_name

app = typer.Typer(
    rich_markup_mode=None,  # plain click help: flags show as flags (no "<bool>"), usage errors without boxes
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Separate vocals from accompaniment (UVR5 VR models).",
)


class OutputFormat(str, Enum):
    wav = "wav"
    flac = "flac"
    mp3 = "mp3"
    ogg = "ogg"


class BitDepth(str, Enum):
    pcm16 = "16"
    pcm24 = "24"
    float32 = "32f"


class Semantics(str, Enum):
    rvc = "rvc"
    uvr = "uvr"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


EnsembleAlgorithm = Enum("EnsembleAlgorithm", {name: name for name in ALGORITHMS}, type=str)


class Precision(str, Enum):
    fp32 = "fp32"
    tf32 = "tf32"
    fp16 = "fp16"
    bf16 = "bf16"


def _error(message: str) -> None:
    typer.secho(f"error: {printable(message)}", err=True, fg=typer.colors.RED)


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


@app.command()
def separate(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Audio or video files, folders, or globs ('clips/**/*.wav').", show_default=False,
                       metavar="INPUT..."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME|PATH", help="Weight file (.pth) or registry name (see `uvrsep models list`); "
                     "downloaded on first use. Repeat for an ensemble (-m A -m B): each model separates the input, their "
                     "stems are combined label by label (docs/ensembles.md).", show_default="HP2_all_vocals"),
    ] = None,
    ensemble_algorithm: Annotated[
        EnsembleAlgorithm | None,
        typer.Option("--ensemble-algorithm", metavar="NAME", help="How an ensemble's stems are combined (audio-separator's "
                     "names, docs/ensembles.md): " + ", ".join(ALGORITHMS) + ".", show_default=DEFAULT_ALGORITHM),
    ] = None,
    ensemble_weights: Annotated[
        list[str] | None,
        typer.Option("--ensemble-weights", metavar="W[,W...]", help="One weight per --model, in order (comma-separated "
                     "or repeated); used by avg_wave and avg_fft.", show_default="equal"),
    ] = None,
    then: Annotated[
        list[str] | None,
        typer.Option("--then", metavar="NAME|PATH", help="Then run this model on the previous one's (or the ensemble's) voice stem (repeatable), e.g. "
                     "--then VR-DeEchoDeReverb: writes instrumental, vocals_no_reverb, vocals_reverb.",
                     show_default=False),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option(metavar="NAME|PATH", help="Band config name or .json path (see `uvrsep params`); in a chain, the first "
                     "model's; in an ensemble, that of each model that records none.",
                     show_default="the registry's, else 4band_v2 / 4band_v3 by family"),
    ] = None,
    # -- separation settings (uvrsep.semantics.Settings) --
    semantics: Annotated[
        Semantics, typer.Option(help="What the settings mean: rvc (RVC's AudioPre) or uvr (UVR5 GUI / python-audio-separator).")
    ] = Semantics.rvc,
    aggressiveness: Annotated[
        float | None, typer.Option(min=-100, max=100, show_default="10 with rvc, 5 with uvr", help=(
            "rvc: 0–100, applied per window; uvr: UVR's aggression, −100–100, applied once to the whole "
            "mask (inverted for vocal-type primary stems). Higher pushes more of the other stem out of "
            "the primary one."))
    ] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Second pass shifted by half a window, averaged (2x slower).")] = False,
    postprocess: Annotated[
        bool, typer.Option("--postprocess", help="rvc: give quiet runs of the residual back to the masked stem (mask_silence); "
                           "uvr: UVR's merge_artifacts (long confident runs of the mask become 1).")
    ] = False,
    postprocess_threshold: Annotated[
        float, typer.Option("--postprocess-threshold", min=0, help="Threshold of --postprocess (uvr: 0.1–0.3 as in UVR).")
    ] = 0.2,
    window_size: Annotated[
        int, typer.Option("--window-size", help=(
            "Frames per network window (UVR offers 320 / 512 / 1024): above twice the net's context, a multiple of 16, "
            "at most 2048."))
    ] = 512,
    high_end: Annotated[
        str | None, typer.Option("--high-end", show_default="mirroring with rvc, none with uvr",
                                 help="rvc: mirroring, mirroring2 or none; uvr: mirroring or none (none is audio-separator's default).")
    ] = None,
    primary_stem: Annotated[
        str | None, typer.Option("--primary-stem", show_default="the registry's, else the family's", help=(
            "The stem the mask keeps (Vocals, Instrumental, no_echo, ...; any case); in a chain, the first model's."))
    ] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Folder for the stems.")] = Path("."),
    name_template: Annotated[
        str, typer.Option("--name-template", metavar="TEMPLATE", help="Output path below --output-dir; fields "
                          + " ".join("{" + f + "}" for f in TEMPLATE_FIELDS) + "; {stem} is needed when several stems are written.")
    ] = DEFAULT_TEMPLATE,
    output_format: Annotated[OutputFormat, typer.Option("--output-format", help="wav / flac (lossless) or mp3 / ogg.")] = OutputFormat.wav,
    bit_depth: Annotated[
        BitDepth | None, typer.Option("--bit-depth", help="16 or 24-bit integer (clipped), or 32-bit float (wav only); "
                                      "wav and flac only.", show_default="16")
    ] = None,
    sample_rate: Annotated[
        int | None, typer.Option("--sample-rate", help="Resample the stems (Hz, 8000–384000), e.g. 16000 for speech "
                                 "recognition (mp3: 8000–48000 MPEG rates; ogg: up to 192000).",
                                 show_default="the model's, 44100")
    ] = None,
    mono: Annotated[bool, typer.Option("--mono", help="Write mono stems (mean of the two channels).")] = False,
    stems: Annotated[
        str | None, typer.Option("--stems", metavar="LABEL[,LABEL]", help="Comma-separated stem labels to write, e.g. vocals.", show_default="all")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also take the files in subfolders of folder inputs.")] = False,
    from_list: Annotated[
        str | None, typer.Option("--from-list", metavar="FILE", help="File with one input path per line ('-': stdin).", show_default=False)
    ] = None,
    mirror_tree: Annotated[
        bool, typer.Option("--mirror-tree", help="Keep each input's folder layout (below the folder given) under --output-dir.")
    ] = False,
    stream: Annotated[
        int | None, typer.Option("--stream", min=0, help="Audio stream of video / multi-stream files.", show_default="the first")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", metavar="FILE", help="JSONL record of the run; re-running with it resumes.", show_default=False)
    ] = None,
    device: Annotated[Device, typer.Option(help="Where the network runs.")] = Device.auto,
    precision: Annotated[
        Precision, typer.Option(help="The network's arithmetic: fp32 is strict (TF32 off) and matches the original; "
                                "tf32 (CUDA), fp16 (CUDA, MPS) and bf16 are faster and less exact (README: --precision).")
    ] = Precision.fp32,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Windows per network call.", show_default="1 on CPU, 4 on GPU")
    ] = None,
    segment_threshold: Annotated[
        float | None, typer.Option("--segment-threshold", min=0, help="Inputs longer than this (seconds) are separated in "
                                   "segments, in memory that does not grow with their length ('inf': never; same result).",
                                   show_default="decided by the device's memory: an input whose arrays fit is separated whole")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace stems that already exist (default: skip those inputs).")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download: a registry name must already be cached.")] = False,
    ray: Annotated[
        str | None, typer.Option("--ray", metavar="[ADDRESS]", help="Run the batch on a Ray cluster (pip install \"uvrsep\\[ray]\"): "
                                 "auto (the cluster this machine joined with `ray start`), HOST:PORT, or no value / local (a Ray "
                                 "instance on this machine for the run). Inputs and --output-dir must be at the same paths on "
                                 "every node.", show_default=False)
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option("--ray-workers", min=1, help="Model-holding Ray workers.",
                                 show_default="one per GPU of the cluster, else one per 2 CPUs")
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option("--gpus-per-worker", min=0, help="GPUs each Ray worker reserves; fractions share a GPU.",
                                   show_default="1 where the cluster has GPUs, else 0")
    ] = None,
) -> None:
    """Write a vocal and an instrumental stem (or the model's two stems) for each input.

    Inputs: any format soundfile reads, plus anything ffmpeg decodes (mp3, m4a, opus, mp4, mkv,
    ...). Mono is duplicated to stereo; more than two channels are down-mixed to stereo as ffmpeg
    does. Stems are at the model's rate (44.1 kHz) unless --sample-rate is given. Existing outputs
    are never replaced without --overwrite. Inputs too long for the device's memory (or longer
    than --segment-threshold) are read, separated and written segment by segment (same result,
    bounded memory). Everything is checked before the model is loaded (or downloaded). Exit
    code 1 if any input failed.

    With --ray the same batch runs on a Ray cluster (README, "Many machines"): same checks,
    outputs, manifest and summary; workers load the model once each and write the stems.
    """
    from .batch import BatchProgress, Manifest, OutputPlan, check_output_dir, collect_inputs, find_conflicts, plan_batch
    from .semantics import Settings

    members = model or [None]
    models = [*members, *(then or [])]
    # Every separation setting, once: the model(s) are built from these here or on each Ray worker.
    settings = Settings(
        semantics=semantics.value, aggressiveness=aggressiveness, tta=tta, postprocess=postprocess,
        postprocess_threshold=postprocess_threshold, window_size=window_size, high_end=high_end,
        primary_stem=primary_stem,
    )
    options = dict(params=params, device=device.value, precision=precision.value, settings=settings,
                   batch_size=batch_size, offline=offline, stream=stream, segment_threshold=segment_threshold,
                   ensemble=len(members))
    try:
        options.update(_ensemble_options(len(members), ensemble_algorithm, ensemble_weights, primary_stem))
        if ray is None and (ray_workers is not None or gpus_per_worker is not None):
            raise ConfigError("--ray-workers and --gpus-per-worker are for --ray")
        if ray is not None:
            from .rayconnect import check_address, require_ray

            require_ray(check_address(ray))  # before Ray is imported: its mode depends on the address
        if params is not None:
            load_band_layout(params)
        items, problems = collect_inputs(inputs or [], recursive=recursive, from_list=from_list)
        if not items and not problems:
            _error("no input given (files, folders, globs or --from-list)")
            raise typer.Exit(2)
        # Everything that can be checked without the model, before it is loaded (or downloaded).
        check_output_dir(output_dir)
        journal = Manifest(manifest, run=_run_record(members, then or [], options))
        # A bad setting is a usage error, found here before any model is loaded.
        labels = _final_labels(models, offline, settings.resolve().primary_stem, ensemble=len(members))
        wanted = _parse_stems(stems, labels)
        plan = OutputPlan(
            output_dir=output_dir, template=name_template, fmt=output_format.value,
            bit_depth=None if bit_depth is None else bit_depth.value,
            stems=wanted, sample_rate=sample_rate, mono=mono, mirror_tree=mirror_tree, overwrite=overwrite,
            model=model_field(members, then or []),
        )
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None
    for warning in journal.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    protected = {path: what for path, what in ((manifest, "the manifest (--manifest)"),
                                               (from_list, "the list of inputs (--from-list)"))
                 if path is not None and path != "-"}
    conflicts = find_conflicts(items, plan, wanted, {Path(p): what for p, what in protected.items()})
    for line in conflicts.overwrites[:20]:
        _error(f"refused: {line}")
    for line in conflicts.shared[:20]:
        _error(f"output conflict: {line}")
    if conflicts:
        _error(f"nothing was done: {conflicts.advice()}")
        raise typer.Exit(2)
    for spec, reason in problems:
        _error(f"{spec}: {reason}")
    work = plan_batch(items, plan, labels, journal)

    progress = BatchProgress(work.audio_seconds, len(work.jobs))

    def on_result(result) -> None:
        if result.status == "failed":
            progress.write(f"error: {printable(result.error)}")
        elif result.status == "skipped":
            progress.write(printable(f"skipped {result.input}: {result.error or 'outputs exist'}"
                                     + (" (--overwrite replaces)" if "exist" in (result.error or "outputs exist") else "")))
        else:
            progress.write(printable(f"{result.input} -> {', '.join(result.outputs)}"))
        for warning in result.warnings:
            progress.write(f"warning: {printable(warning)}")

    from .batch import run_batch

    report = None
    try:
        if ray is None:
            separator = _load_separators(models, work.jobs, progress=progress, **options)
            report = run_batch(separator, work, plan, manifest=journal, on_result=on_result, progress=progress)
        else:
            from .cluster import RayExecutor

            with RayExecutor(models, options, plan, address=ray, workers=ray_workers, gpus_per_worker=gpus_per_worker,
                             on_note=lambda note: progress.write(f"note: {note}")) as execute:
                report = run_batch(None, work, plan, manifest=journal, on_result=on_result, progress=progress,
                                   execute=execute)
    except UvrsepError as exc:
        progress.close()
        _error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        progress.close()
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        files = "the file being written was removed" if ray is None else "files being written were removed"
        again = "re-run with the same --manifest to go on" if manifest is not None else "re-run to go on (finished inputs are skipped)"
        typer.echo(f"{what}: {files}; {again}", err=True)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    progress.close()
    report.wall_seconds = progress.elapsed  # the summary's time is the last progress line's
    if journal.write_error:
        _error(journal.write_error)
    failed = report.count("failed") + len(problems)
    typer.echo(f"done: {report.summary()}" + (f" ({len(problems)} input(s) matched nothing)" if problems else ""), err=True)
    if failed or journal.write_error:
        raise typer.Exit(1)


def _ensemble_options(n_members: int, algorithm, weights: list[str] | None, primary_stem: str | None) -> dict:
    """``ensemble_algorithm`` and ``ensemble_weights`` for the models, checked (one-line
    :class:`ConfigError`: --ensemble-* with one model, --primary-stem with several, bad values)."""
    from .ensemble import check_ensemble, parse_weights

    values = None if weights is None else parse_weights(weights)
    if n_members == 1:
        if algorithm is not None or values is not None:
            raise ConfigError("--ensemble-algorithm and --ensemble-weights are for an ensemble: give --model two or more times")
        return dict(ensemble_algorithm=None, ensemble_weights=None)
    name, values = check_ensemble(n_members, None if algorithm is None else algorithm.value, values, primary_stem)
    return dict(ensemble_algorithm=name, ensemble_weights=list(values))


def _run_record(members: list[str | None], then: list[str], options: dict) -> dict:
    """What every manifest record of the run says made its outputs: ``model`` (as ``{model}``
    says it) and, for an ensemble, ``ensemble``: its algorithm and weights."""
    record: dict = {"model": model_field(members, then)}
    if len(members) > 1:
        record["ensemble"] = {"algorithm": options["ensemble_algorithm"], "weights": options["ensemble_weights"]}
    return record


def _final_labels(models: list[str | None], offline: bool, primary_stem: str | None = None, ensemble: int = 1) -> tuple[str, ...]:
    """The stems the model (or ensemble, or chain) will write, known without loading or
    downloading it (``primary_stem``, as ``--params``, is the first model's). Members of an
    ensemble whose stems do not match are refused here."""
    from .chain import chain_labels
    from .ensemble import ensemble_labels
    from .separator import model_stems

    pairs = [model_stems(m, offline=offline, primary_stem=primary_stem if k == 0 else None) for k, m in enumerate(models)]
    if ensemble > 1:
        pairs[:ensemble] = [ensemble_labels(pairs[:ensemble], [model_name(m) for m in models[:ensemble]])]
    return pairs[0] if len(pairs) == 1 else chain_labels(pairs)


def _load_separators(models: list[str | None], jobs, *, progress, **options):
    """Load (downloading on first use, with a size bar and one-line notices) the model, or the
    chain of models, once there is work."""
    from .chain import load_models

    if not jobs:
        return _NoWork()
    separator = load_models(models, on_notice=_notice, download_progress=True, **options)
    for note in separator.notes:
        progress.write(f"note: {note}")
    return separator


class _NoWork:
    """Stands for the model when every input was decided beforehand: nothing is loaded."""

    labels: tuple[str, ...] = ()

    def separate_batch(self, paths, **_):
        return iter(())


def _parse_stems(value: str | None, available: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return tuple(available)
    wanted = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in wanted if v not in available]
    if unknown or not wanted:
        raise ConfigError(f"--stems {value!r}: this model writes {', '.join(available)}")
    return wanted


@app.command("eval")
def eval_command(
    folder: Annotated[Path, typer.Argument(help="Folder of items, each with mixture, vocals and accompaniment files.")],
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model(s) to score (path or registry name); repeatable.")
    ] = None,
    params: Annotated[str | None, typer.Option(help="Band config for the model(s).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report prefix: writes PREFIX.csv and PREFIX.json.")] = Path("eval_report"),
    device: Annotated[Device, typer.Option(help="Where the network runs.")] = Device.auto,
    offline: Annotated[bool, typer.Option("--offline", help="Never download: registry names must already be cached.")] = False,
) -> None:
    """Per-item and median SDR / SI-SDR of both stems, next to the mixture and the oracle IRM."""
    from .evaluation import STEMS, baselines, evaluate, load_items, separator_system, write_reports
    from .separator import Separator

    try:
        items = load_items(folder)
        systems = {}
        for m in model or []:
            sep = Separator(m, params=params, device=device.value, offline=offline)
            if {sep.primary, sep.secondary} != {"vocals", "instrumental"}:
                raise ConfigError(f"{m}: its stems are {sep.primary}/{sep.secondary}, not vocals/instrumental")
            systems[Path(m).name.removesuffix(".pth")] = separator_system(sep)
        systems.update(baselines())
        results = evaluate(items, systems)
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    keys = [f"{s}_{m}" for s in STEMS for m in ("sdr", "si_sdr")]
    fmt = lambda v: "     -" if v is None else f"{v:6.2f}"  # noqa: E731
    typer.echo(f"{'system':16} {'item':28} " + " ".join(f"{k:>18}" for k in keys))
    for scores in results:
        for item, row in scores.rows.items():
            typer.echo(f"{scores.system:16} {item:28} " + " ".join(f"{fmt(row[k]):>18}" for k in keys))
    for scores in results:
        typer.echo(f"{scores.system:16} {'MEDIAN':28} " + " ".join(f"{fmt(scores.median(k)):>18}" for k in keys))
    csv_path, json_path = write_reports(results, output)
    typer.echo(f"wrote {csv_path} and {json_path}", err=True)


@app.command("prepare-data")
def prepare_data(
    out: Annotated[Path, typer.Argument(help="Folder for the packed training set.")],
    shared_data: Annotated[
        Path, typer.Option(help="Folder of isolated vocals: manifest.csv and vocals/ (e.g. the project's ../shared/data).",
                           show_default=False)
    ],
    split: Annotated[str, typer.Option(help="Split of the vocal manifest to pack (train / valid).")] = "train",
    music: Annotated[list[Path] | None, typer.Option(help="Folder(s) of instrumental music; repeatable.")] = None,
    speech: Annotated[
        list[Path] | None, typer.Option(help="Folder(s) of extra speech; repeatable ('DIR:HZ' marks band-limited audio).")
    ] = None,
    max_mb: Annotated[float, typer.Option(help="Size budget of the packed set (MB).")] = 50.0,
    codec: Annotated[str, typer.Option(help="opus (~11x more audio per MB) or float16 (memory-mapped).")] = "opus",
    seed: Annotated[int, typer.Option()] = 0,
    hold_out: Annotated[
        float, typer.Option(help="Fraction of music files held out for validation (the first files of a seeded order).")
    ] = 0.1,
) -> None:
    """Decode, resample and pack vocals and music into a compact training set."""
    from .training.data import Source, prepare_dataset, sources_from_manifest, split_music

    sources = sources_from_manifest(shared_data, split)
    for folder in speech or []:
        name, _, hz = str(folder).partition(":")
        files = tuple(sorted(str(p) for p in Path(name).rglob("*") if p.suffix.lower() in {".wav", ".ogg", ".flac", ".mp3", ".opus"}))
        sources.append(Source(f"speech:{Path(name).name}", "vocals", files, 1.0, float(hz) if hz else None))
    for folder in music or []:
        train_files, held = split_music(folder, hold_out, seed)
        chosen = held if split == "valid" else train_files
        sources.append(Source(f"music:{folder.name}", "music", tuple(chosen)))
    index = prepare_dataset(sources, out, max_mb=max_mb, seed=seed, codec=codec)
    typer.echo(f"packed {index['vocals_seconds'] / 60:.1f} min of vocals and {index['music_seconds'] / 60:.1f} min of music "
               f"from {len(index['segments'])} files into {out}")


@app.command("train")
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
    val_dir: Annotated[Path | None, typer.Option(help="Evaluation items for periodic validation SDR.", show_default=False)] = None,
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

    from .separator import resolve_device
    from .training import TrainConfig, train

    try:
        device = str(resolve_device(device))
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    cfg = TrainConfig(
        data=str(data), out=str(out), family=family, width=width, branches=branches, levels=levels, params=params,
        steps=steps,
        batch_size=batch_size, lr=lr, crop_frames=crop_frames, val_dir=str(val_dir) if val_dir else None,
        val_every=val_every, checkpoint_every=checkpoint_every, time_budget_s=time_budget, device=device,
        workers=workers, seed=seed, resume=resume,
    )
    bar = tqdm(total=steps, unit="step")

    def on_log(record):
        bar.n = record["step"]
        bar.set_postfix({k: v for k, v in record.items() if k in ("loss", "val_vocals_sdr")})
        if "val_vocals_sdr" in record:
            bar.write(json_line(record))

    with bar:
        last = train(cfg, on_log=on_log)
    typer.echo(json_line(last))


def json_line(record: dict) -> str:
    import json

    return json.dumps(record)


@app.command("params")
def params_list() -> None:
    """List the shipped band configurations (for --params): bands, rates, FFT sizes, models."""
    from .hub import home_dir
    from .registry import load_registry

    registry = load_registry(home_dir())
    users: dict[str, list[str]] = {}
    for spec in registry.models:
        if spec.params:
            users.setdefault(spec.params, []).append(spec.name)
    uvr: dict[str, int] = {}
    for entry in registry.uvr_hashes.values():
        uvr[entry.get("params", "")] = uvr.get(entry.get("params", ""), 0) + 1
    typer.echo(f"{'name':28} {'bands':>5}  {'rates (Hz)':34} {'n_fft':24} models")
    for name in list_band_layouts():
        layout = load_band_layout(name)
        rates = "/".join(str(b.sample_rate) for b in layout.bands)
        ffts = "/".join(str(b.n_fft) for b in layout.bands)
        models = ", ".join(users.get(name, []))
        if uvr.get(name):
            models += (", " if models else "") + f"{uvr[name]} file(s) in UVR's hash table"
        typer.echo(f"{name:28} {len(layout.bands):>5}  {rates:34} {ffts:24} {models or '-'}")


@app.command()
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


models_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Known models, the download cache and your own weights.")
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


def _notice(message: str) -> None:
    """Print a one-line notice (download started, retry, file discarded) on stderr, above any
    progress bar: the ``on_notice`` hook of :func:`uvrsep.downloads.download` / :func:`uvrsep.resolve.resolve_model`."""
    from tqdm import tqdm

    tqdm.write(f"note: {message}", file=sys.stderr)


def _band_config(spec, registry) -> str:
    """The band config a model will be separated with, and where it comes from when the
    registry entry does not name it (the same order as :class:`uvrsep.Separator`)."""
    from .hub import cached_path

    if spec.params:
        return spec.params
    path = cached_path(spec)
    if spec.source != "user":  # shipped entries that leave it to UVR's hash table
        entry = registry.identify_by_uvr_hash(path) if path.is_file() else None
        if entry is not None:
            return f"{entry['params']} (UVR's hash table)"
        if not path.is_file():
            return "from UVR's hash table (on download)"
    from .model import default_params
    from .network import Architecture

    try:
        arch = Architecture(family=spec.family or "aspp", width=spec.width or 0, bins=672 if spec.family == "vr51" else None)
        return f"{default_params(arch)} (family default)"
    except ConfigError:
        return "family default (by the net's size)"


@models_app.command("list")
def models_list() -> None:
    """List the registry: name, source, network, band config, stems, and whether the file is cached."""
    from .hub import cached_path, models_dir

    registry = _registry()
    rows = [("NAME", "SOURCE", "NET", "BAND CONFIG", "STEMS (MASKED/RESIDUAL)", "CACHED")]
    for spec in registry.models:
        name = spec.name + (" *" if spec.name == registry.default else "")
        net = f"{spec.family or '?'}-{spec.width or '?'}"
        cached = "yes" if cached_path(spec).is_file() else "no"
        rows.append((name, spec.source, net, _band_config(spec, registry), "/".join(spec.stems), cached))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo("* the default model, used when no --model is given; NET: network family-width")
    typer.echo(f"CACHED yes: the weight file is in {models_dir()}; no: it is downloaded on first use "
               "(or by `uvrsep models download NAME`)")


@models_app.command("info")
def models_info(name: str) -> None:
    """Everything known about a model, and where its file is (or would be) cached."""
    from .hub import UNVERIFIED, cached_path, human_size, reference_digest

    registry = _registry()
    spec = _spec_or_exit(name)
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
        ("architecture", f"{spec.family or 'detected from the weights'}" + (f", width {spec.width}" if spec.width else "")),
        ("band config", _band_config(spec, registry)),
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
    from .downloads import download

    failed = 0
    for name in names:
        try:
            path = download(_registry().get(name), on_notice=_notice)
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
def models_verify(names: Annotated[list[str] | None, typer.Argument(help="Models to check.", show_default="all cached")] = None) -> None:
    """Re-hash cached files against their pinned sha256 (the registry's, or the one recorded on
    import). Files downloaded without a published checksum are unverified: for them only a change
    since the download is detected. Exit status 1 when a file mismatches or changed."""
    from .hub import cached_path, verify

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
    name: Annotated[str | None, typer.Option(help="Registry name, a plain file name.", show_default="the file name without .pth")] = None,
    params: Annotated[str | None, typer.Option(help="Band config to record for it.")] = None,
    primary: Annotated[
        str | None, typer.Option(help="Primary (masked) stem, UVR's spelling or uvrsep's, any case: 'Vocals', 'no_echo'.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Copy your own weight file into the cache and register it under a name.

    The file is checked first (a loadable VR net with finite float weights). The band config is
    recorded: --params, else UVR's hash table, else the family's default.
    """
    from .config import load_band_layout
    from .hub import home_dir, import_file
    from .network import detect_architecture, read_state_dict
    from .model import default_params, default_primary
    from .registry import ModelSpec, add_user_model, check_file_name, parse_stem_label

    try:
        name = check_file_name(name if name is not None else file.name.removesuffix(".pth"), "--name", home_dir())
        arch = detect_architecture(read_state_dict(file), file)
        registry = _registry()
        entry = registry.identify_by_uvr_hash(file) or {}
        if params is not None:
            how = "given on import"
        elif entry.get("params"):
            params, how = entry["params"], "from UVR's hash table"
        else:
            params, how = default_params(arch), "the family default"
        load_band_layout(params)
        primary = parse_stem_label(primary) if primary is not None else entry.get("primary")
        spec = ModelSpec(
            name=name, file=f"{name}.pth", source="user", family=arch.family, width=arch.width,
            params=params, primary=primary or default_primary(arch, file),
            note=f"imported from {file}; band config: {how}",
        )
        path = import_file(file, spec, overwrite=overwrite)
        add_user_model(home_dir(), spec)
    except UvrsepError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"imported {file} as {name}: {arch.label}, band config {params} ({how}), "
               f"stems {'/'.join(spec.stems)} -> {path}")
