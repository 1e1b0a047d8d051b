"""``uvrsep separate``: the batch (inputs, output plan, manifest, progress) over one model or a
chain, on this machine or on a Ray cluster (:mod:`uvrsep.batch`, :mod:`uvrsep.cluster`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError, Terminated, UvrsepError, printable
from ..naming import DEFAULT_TEMPLATE, TEMPLATE_FIELDS
from .common import Device, error, fail, notice


class OutputFormat(str, Enum):
    wav = "wav"
    flac = "flac"
    mp3 = "mp3"
    ogg = "ogg"


class BitDepth(str, Enum):
    pcm16 = "16"
    pcm24 = "24"
    float32 = "32f"


class SemanticsChoice(str, Enum):
    """``--semantics``: the names of :data:`uvrsep.semantics.SEMANTICS`."""

    rvc = "rvc"
    uvr = "uvr"


class Precision(str, Enum):
    fp32 = "fp32"
    tf32 = "tf32"
    fp16 = "fp16"
    bf16 = "bf16"


# -- the options (typer reads them from these annotations) -------------------------------------

Inputs = Annotated[
    list[str] | None,
    typer.Argument(help="Audio or video files, folders, or globs ('clips/**/*.wav').", show_default=False,
                   metavar="INPUT..."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="NAME|PATH", help="Weight file (.pth) or registry name (see `uvrsep models list`); "
                 "downloaded on first use.", show_default="HP2_all_vocals"),
]
ThenOpt = Annotated[
    list[str] | None,
    typer.Option("--then", metavar="NAME|PATH", help="Then run this model on the previous one's voice stem (repeatable), e.g. "
                 "--then VR-DeEchoDeReverb: writes instrumental, vocals_no_reverb, vocals_reverb.",
                 show_default=False),
]
ParamsOpt = Annotated[
    str | None,
    typer.Option(metavar="NAME|PATH", help="Band config name or .json path (see `uvrsep params`); in a chain, the first model's.",
                 show_default="the registry's, else 4band_v2 / 4band_v3 by family"),
]
# -- separation settings (uvrsep.semantics.Settings) --
SemanticsOpt = Annotated[
    SemanticsChoice,
    typer.Option(help="What the settings mean: rvc (RVC's AudioPre) or uvr (UVR5 GUI / python-audio-separator)."),
]
AggressivenessOpt = Annotated[
    float | None, typer.Option(min=-100, max=100, show_default="10 with rvc, 5 with uvr", help=(
        "rvc: 0–100, applied per window; uvr: UVR's aggression, −100–100, applied once to the whole "
        "mask (inverted for vocal-type primary stems). Higher pushes more of the other stem out of "
        "the primary one."))
]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Second pass shifted by half a window, averaged (2x slower).")]
PostprocessOpt = Annotated[
    bool, typer.Option("--postprocess", help="rvc: give quiet runs of the residual back to the masked stem (mask_silence); "
                       "uvr: UVR's merge_artifacts (long confident runs of the mask become 1).")
]
PostprocessThresholdOpt = Annotated[
    float, typer.Option("--postprocess-threshold", min=0, help="Threshold of --postprocess (uvr: 0.1–0.3 as in UVR).")
]
WindowSizeOpt = Annotated[
    int, typer.Option("--window-size", help=(
        "Frames per network window (UVR offers 320 / 512 / 1024): above twice the net's context, a multiple of 16, "
        "at most 2048."))
]
HighEndOpt = Annotated[
    str | None, typer.Option("--high-end", show_default="mirroring with rvc, none with uvr",
                             help="rvc: mirroring, mirroring2 or none; uvr: mirroring or none (none is audio-separator's default).")
]
PrimaryStemOpt = Annotated[
    str | None, typer.Option("--primary-stem", show_default="the registry's, else the family's", help=(
        "The stem the mask keeps (Vocals, Instrumental, no_echo, ...; any case); in a chain, the first model's."))
]
# -- outputs (uvrsep.batch.OutputPlan) --
OutputDirOpt = Annotated[Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Folder for the stems.")]
NameTemplateOpt = Annotated[
    str, typer.Option("--name-template", metavar="TEMPLATE", help="Output path below --output-dir; fields "
                      + " ".join("{" + f + "}" for f in TEMPLATE_FIELDS) + "; {stem} is needed when several stems are written.")
]
OutputFormatOpt = Annotated[OutputFormat, typer.Option("--output-format", help="wav / flac (lossless) or mp3 / ogg.")]
BitDepthOpt = Annotated[
    BitDepth | None, typer.Option("--bit-depth", help="16 or 24-bit integer (clipped), or 32-bit float (wav only); "
                                  "wav and flac only.", show_default="16")
]
SampleRateOpt = Annotated[
    int | None, typer.Option("--sample-rate", help="Resample the stems (Hz, 8000–384000), e.g. 16000 for speech "
                             "recognition (mp3: 8000–48000 MPEG rates; ogg: up to 192000).",
                             show_default="the model's, 44100")
]
MonoOpt = Annotated[bool, typer.Option("--mono", help="Write mono stems (mean of the two channels).")]
StemsOpt = Annotated[
    str | None, typer.Option("--stems", metavar="LABEL[,LABEL]", help="Comma-separated stem labels to write, e.g. vocals.",
                             show_default="all")
]
# -- inputs and the run --
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Also take the files in subfolders of folder inputs.")]
FromListOpt = Annotated[
    str | None, typer.Option("--from-list", metavar="FILE", help="File with one input path per line ('-': stdin).",
                             show_default=False)
]
MirrorTreeOpt = Annotated[
    bool, typer.Option("--mirror-tree", help="Keep each input's folder layout (below the folder given) under --output-dir.")
]
StreamOpt = Annotated[
    int | None, typer.Option("--stream", min=0, help="Audio stream of video / multi-stream files.", show_default="the first")
]
ManifestOpt = Annotated[
    Path | None, typer.Option("--manifest", metavar="FILE", help="JSONL record of the run; re-running with it resumes.",
                              show_default=False)
]
DeviceOpt = Annotated[Device, typer.Option(help="Where the network runs.")]
PrecisionOpt = Annotated[
    Precision, typer.Option(help="The network's arithmetic: fp32 is strict (TF32 off) and matches the original; "
                            "tf32 (CUDA), fp16 (CUDA, MPS) and bf16 are faster and less exact (README: --precision).")
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Windows per network call.", show_default="1 on CPU, 4 on GPU")
]
SegmentThresholdOpt = Annotated[
    float | None, typer.Option("--segment-threshold", min=0, help="Inputs longer than this (seconds) are separated in "
                               "segments, in memory that does not grow with their length ('inf': never; same result).",
                               show_default="decided by the device's memory: an input whose arrays fit is separated whole")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace stems that already exist (default: skip those inputs).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never download: a registry name must already be cached.")]
RayOpt = Annotated[
    str | None, typer.Option("--ray", metavar="[ADDRESS]", help="Run the batch on a Ray cluster (pip install \"uvrsep\\[ray]\"): "
                             "auto (the cluster this machine joined with `ray start`), HOST:PORT, or no value / local (a Ray "
                             "instance on this machine for the run). Inputs and --output-dir must be at the same paths on "
                             "every node.", show_default=False)
]
RayWorkersOpt = Annotated[
    int | None, typer.Option("--ray-workers", min=1, help="Model-holding Ray workers.",
                             show_default="one per GPU of the cluster, else one per 2 CPUs")
]
GpusPerWorkerOpt = Annotated[
    float | None, typer.Option("--gpus-per-worker", min=0, help="GPUs each Ray worker reserves; fractions share a GPU.",
                               show_default="1 where the cluster has GPUs, else 0")
]


def separate(
    inputs: Inputs = None,
    model: ModelOpt = None,
    then: ThenOpt = None,
    params: ParamsOpt = None,
    semantics: SemanticsOpt = SemanticsChoice.rvc,
    aggressiveness: AggressivenessOpt = None,
    tta: TtaOpt = False,
    postprocess: PostprocessOpt = False,
    postprocess_threshold: PostprocessThresholdOpt = 0.2,
    window_size: WindowSizeOpt = 512,
    high_end: HighEndOpt = None,
    primary_stem: PrimaryStemOpt = None,
    output_dir: OutputDirOpt = Path("."),
    name_template: NameTemplateOpt = DEFAULT_TEMPLATE,
    output_format: OutputFormatOpt = OutputFormat.wav,
    bit_depth: BitDepthOpt = None,
    sample_rate: SampleRateOpt = None,
    mono: MonoOpt = False,
    stems: StemsOpt = None,
    recursive: RecursiveOpt = False,
    from_list: FromListOpt = None,
    mirror_tree: MirrorTreeOpt = False,
    stream: StreamOpt = None,
    manifest: ManifestOpt = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.fp32,
    batch_size: BatchSizeOpt = None,
    segment_threshold: SegmentThresholdOpt = None,
    overwrite: OverwriteOpt = False,
    offline: OfflineOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    gpus_per_worker: GpusPerWorkerOpt = None,
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
    from ..batch import BatchProgress, Manifest, OutputPlan, check_output_dir, collect_inputs, plan_batch, select_stems
    from ..chain import final_labels
    from ..config import load_band_layout
    from ..model import model_name
    from ..semantics import Settings

    models = [model, *(then or [])]
    # Every separation setting, once: the model(s) are built from these here or on each Ray worker.
    settings = Settings(
        semantics=semantics.value, aggressiveness=aggressiveness, tta=tta, postprocess=postprocess,
        postprocess_threshold=postprocess_threshold, window_size=window_size, high_end=high_end,
        primary_stem=primary_stem,
    )
    options = dict(params=params, device=device.value, precision=precision.value, settings=settings,
                   batch_size=batch_size, offline=offline, stream=stream, segment_threshold=segment_threshold)
    try:  # everything that can be checked without the model, before it is loaded (or downloaded)
        _check_ray(ray, ray_workers, gpus_per_worker)
        if ray is None:  # with --ray, the workers' devices count (checked by the cluster plan)
            from ..device import resolve_device

            resolve_device(device.value)
        if params is not None:
            load_band_layout(params)
        items, problems = collect_inputs(inputs or [], recursive=recursive, from_list=from_list)
        if not items and not problems:
            error("no input given (files, folders, globs or --from-list)")
            raise typer.Exit(2)
        check_output_dir(output_dir)
        journal = Manifest(manifest)
        labels = final_labels(models, offline=offline, primary_stem=settings.resolve().primary_stem)
        wanted = select_stems(stems, labels)
        plan = OutputPlan(
            output_dir=output_dir, template=name_template, fmt=output_format.value,
            bit_depth=None if bit_depth is None else bit_depth.value,
            stems=wanted, sample_rate=sample_rate, mono=mono, mirror_tree=mirror_tree, overwrite=overwrite,
            model="+".join(model_name(m) for m in models),
        )
    except UvrsepError as exc:
        raise fail(exc, 2 if isinstance(exc, ConfigError) else 1) from None
    for warning in journal.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    _refuse_conflicts(items, plan, wanted, manifest=manifest, from_list=from_list)
    for spec, reason in problems:
        error(f"{spec}: {reason}")
    work = plan_batch(items, plan, labels, journal)
    progress = BatchProgress(work.audio_seconds, len(work.jobs))
    try:
        report = _run(models, options, work, plan, journal, progress, ray=ray, ray_workers=ray_workers,
                      gpus_per_worker=gpus_per_worker)
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
        error(journal.write_error)
    failed = report.count("failed") + len(problems)
    typer.echo(f"done: {report.summary()}" + (f" ({len(problems)} input(s) matched nothing)" if problems else ""), err=True)
    if failed or journal.write_error:
        raise typer.Exit(1)


def _check_ray(ray: str | None, ray_workers: int | None, gpus_per_worker: float | None) -> None:
    """The --ray flags make sense together, and Ray is there, before it is imported."""
    if ray is None and (ray_workers is not None or gpus_per_worker is not None):
        raise ConfigError("--ray-workers and --gpus-per-worker are for --ray")
    if ray is not None:
        from ..rayconnect import check_address, require_ray

        require_ray(check_address(ray))  # before Ray is imported: its mode depends on the address


def _refuse_conflicts(items, plan, wanted, *, manifest: Path | None, from_list: str | None) -> None:
    """Stop (exit 2, nothing done) when outputs would replace an input, the manifest or the list
    of inputs, or when two inputs would write the same file."""
    from ..batch import find_conflicts

    protected = {Path(path): what for path, what in ((manifest, "the manifest (--manifest)"),
                                                     (from_list, "the list of inputs (--from-list)"))
                 if path is not None and path != "-"}
    conflicts = find_conflicts(items, plan, wanted, protected)
    for line in conflicts.overwrites[:20]:
        error(f"refused: {line}")
    for line in conflicts.shared[:20]:
        error(f"output conflict: {line}")
    if conflicts:
        error(f"nothing was done: {conflicts.advice()}")
        raise typer.Exit(2)


def _run(models, options, work, plan, journal, progress, *, ray, ray_workers, gpus_per_worker):
    """Run the planned batch here (the model loaded once there is work) or on a Ray cluster,
    printing each input's outcome above the progress bar; the :class:`~uvrsep.batch.BatchReport`."""
    from ..batch import run_batch

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

    try:
        if ray is None:
            separator = _load_models(models, progress, **options) if work.jobs else None
            return run_batch(separator, work, plan, manifest=journal, on_result=on_result, progress=progress)
        from ..cluster import RayExecutor

        with RayExecutor(models, options, plan, address=ray, workers=ray_workers, gpus_per_worker=gpus_per_worker,
                         on_note=lambda note: progress.write(f"note: {note}")) as execute:
            return run_batch(None, work, plan, manifest=journal, on_result=on_result, progress=progress,
                             execute=execute)
    except UvrsepError as exc:
        progress.close()
        raise fail(exc) from None


def _load_models(models: list[str | None], progress, **options):
    """Load (downloading on first use, with a size bar and one-line notices) the model, or the
    chain of models."""
    from ..chain import load_models

    separator = load_models(models, on_notice=notice, download_progress=True, **options)
    for note in separator.notes:
        progress.write(f"note: {note}")
    return separator
