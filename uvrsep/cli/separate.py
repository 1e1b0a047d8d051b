"""``uvrsep separate``: the batch (inputs, output plan, manifest, progress) over one model, an
ensemble or a chain, on this machine or on a Ray cluster (:mod:`uvrsep.batch`, :mod:`uvrsep.cluster`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError, Terminated, UvrsepError, printable
from ..naming import DEFAULT_TEMPLATE, model_field
from .common import Device, error, fail, notice
from .options import (
    AggressivenessOpt,
    BatchSizeOpt,
    BitDepthOpt,
    DeviceOpt,
    EnsembleAlgorithmOpt,
    EnsembleWeightsOpt,
    FromListOpt,
    GpusPerWorkerOpt,
    HighEndOpt,
    Inputs,
    ManifestOpt,
    MirrorTreeOpt,
    ModelOpt,
    MonoOpt,
    NameTemplateOpt,
    OfflineOpt,
    OutputDirOpt,
    OutputFormat,
    OutputFormatOpt,
    OverwriteOpt,
    ParamsOpt,
    PostprocessOpt,
    PostprocessThresholdOpt,
    Precision,
    PrecisionOpt,
    PrimaryStemOpt,
    RayOpt,
    RayWorkersOpt,
    RecursiveOpt,
    SampleRateOpt,
    SegmentThresholdOpt,
    SemanticsChoice,
    SemanticsOpt,
    StemsOpt,
    StreamOpt,
    ThenOpt,
    TtaOpt,
    WindowSizeOpt,
)


def separate(
    inputs: Inputs = None,
    model: ModelOpt = None,
    ensemble_algorithm: EnsembleAlgorithmOpt = None,
    ensemble_weights: EnsembleWeightsOpt = None,
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
    from ..batch import Manifest, OutputPlan, check_output_dir, collect_inputs, select_stems
    from ..chain import final_labels
    from ..config import load_band_layout
    from ..semantics import Settings

    members: list[str | None] = [*model] if model else [None]
    models = [*members, *(then or [])]
    # Every separation setting, once: the model(s) are built from these here or on each Ray worker.
    settings = Settings(
        semantics=semantics.value,
        aggressiveness=aggressiveness,
        tta=tta,
        postprocess=postprocess,
        postprocess_threshold=postprocess_threshold,
        window_size=window_size,
        high_end=high_end,
        primary_stem=primary_stem,
    )
    options = dict(
        params=params,
        device=device.value,
        precision=precision.value,
        settings=settings,
        batch_size=batch_size,
        offline=offline,
        stream=stream,
        segment_threshold=segment_threshold,
        ensemble=len(members),
    )
    try:  # everything that can be checked without the model, before it is loaded (or downloaded)
        options.update(_ensemble_options(len(members), ensemble_algorithm, ensemble_weights, primary_stem))
        _check_where(device.value, ray, ray_workers, gpus_per_worker)
        if params is not None:
            load_band_layout(params, given_as="params")
        items, problems = collect_inputs(inputs or [], recursive=recursive, from_list=from_list)
        if not items and not problems:
            error("no input given (files, folders, globs or --from-list)")
            raise typer.Exit(2)
        check_output_dir(output_dir)
        journal = Manifest(manifest, run=_run_record(members, then or [], options))
        labels = final_labels(
            models, offline=offline, primary_stem=settings.resolve().primary_stem, ensemble=len(members)
        )
        wanted = select_stems(stems, labels)
        plan = OutputPlan(
            output_dir=output_dir,
            template=name_template,
            fmt=output_format.value,
            bit_depth=None if bit_depth is None else bit_depth.value,
            stems=wanted,
            sample_rate=sample_rate,
            mono=mono,
            mirror_tree=mirror_tree,
            overwrite=overwrite,
            model=model_field(members, then or []),
        )
    except UvrsepError as exc:
        raise fail(exc, 2 if isinstance(exc, ConfigError) else 1) from None
    for warning in journal.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    _refuse_conflicts(items, plan, wanted, manifest=manifest, from_list=from_list)
    where = dict(manifest=manifest, ray=ray, ray_workers=ray_workers, gpus_per_worker=gpus_per_worker)
    _execute(models, options, items, labels, plan, journal, problems, **where)


def _ensemble_options(n_members: int, algorithm, weights: list[str] | None, primary_stem: str | None) -> dict:
    """``ensemble_algorithm`` and ``ensemble_weights`` for the models, checked (one-line
    :class:`ConfigError`: --ensemble-* with one model, --primary-stem with several, bad values)."""
    from ..ensemble.rules import check_ensemble, parse_weights

    values = None if weights is None else parse_weights(weights)
    if n_members == 1:
        if algorithm is not None or values is not None:
            raise ConfigError(
                "--ensemble-algorithm and --ensemble-weights are for an ensemble: give --model two or more times"
            )
        return dict(ensemble_algorithm=None, ensemble_weights=None)
    name, checked = check_ensemble(n_members, None if algorithm is None else algorithm.value, values, primary_stem)
    return dict(ensemble_algorithm=name, ensemble_weights=list(checked))


def _run_record(members: list[str | None], then: list[str], options: dict) -> dict:
    """What every manifest record of the run says made its outputs: ``model`` (as ``{model}``
    says it) and, for an ensemble, ``ensemble``: its algorithm and weights."""
    record: dict = {"model": model_field(members, then)}
    if len(members) > 1:
        record["ensemble"] = {"algorithm": options["ensemble_algorithm"], "weights": options["ensemble_weights"]}
    return record


def _execute(
    models, options, items, labels, plan, journal, problems, *, manifest, ray, ray_workers, gpus_per_worker
) -> None:
    """Decide each input's fate (:func:`~uvrsep.batch.plan_batch`) and run the batch with a
    progress bar; an interruption or the summary ends it (exit code 1 when an input failed or
    matched nothing, 130 / 143 when interrupted / terminated)."""
    from ..batch import BatchProgress, plan_batch

    for spec, reason in problems:
        error(f"{spec}: {reason}")
    work = plan_batch(items, plan, labels, journal)
    progress = BatchProgress(work.audio_seconds, len(work.jobs))
    try:
        report = _run(
            models,
            options,
            work,
            plan,
            journal,
            progress,
            ray=ray,
            ray_workers=ray_workers,
            gpus_per_worker=gpus_per_worker,
        )
    except KeyboardInterrupt as exc:
        progress.close()
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        files = "the file being written was removed" if ray is None else "files being written were removed"
        again = (
            "re-run with the same --manifest to go on"
            if manifest is not None
            else "re-run to go on (finished inputs are skipped)"
        )
        typer.echo(f"{what}: {files}; {again}", err=True)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    progress.close()
    report.wall_seconds = progress.elapsed  # the summary's time is the last progress line's
    if journal.write_error:
        error(journal.write_error)
    failed = report.count("failed") + len(problems)
    typer.echo(
        f"done: {report.summary()}" + (f" ({len(problems)} input(s) matched nothing)" if problems else ""), err=True
    )
    if failed or journal.write_error:
        raise typer.Exit(1)


def _check_where(device: str, ray: str | None, ray_workers: int | None, gpus_per_worker: float | None) -> None:
    """The device is there (with --ray, the workers' devices count: the cluster plan checks them);
    the --ray flags make sense together, and Ray is there, before it is imported."""
    if ray is None:
        from ..device import resolve_device

        resolve_device(device)
    if ray is None and (ray_workers is not None or gpus_per_worker is not None):
        raise ConfigError("--ray-workers and --gpus-per-worker are for --ray")
    if ray is not None:
        from ..rayconnect import check_address, require_ray

        require_ray(check_address(ray))  # before Ray is imported: its mode depends on the address


def _refuse_conflicts(items, plan, wanted, *, manifest: Path | None, from_list: str | None) -> None:
    """Stop (exit 2, nothing done) when outputs would replace an input, the manifest or the list
    of inputs, or when two inputs would write the same file."""
    from ..batch import find_conflicts

    protected = {
        Path(path): what
        for path, what in ((manifest, "the manifest (--manifest)"), (from_list, "the list of inputs (--from-list)"))
        if path is not None and path != "-"
    }
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
            progress.write(
                printable(
                    f"skipped {result.input}: {result.error or 'outputs exist'}"
                    + (" (--overwrite replaces)" if "exist" in (result.error or "outputs exist") else "")
                )
            )
        else:
            progress.write(printable(f"{result.input} -> {', '.join(result.outputs)}"))
        for warning in result.warnings:
            progress.write(f"warning: {printable(warning)}")

    try:
        if ray is None:
            separator = _load_models(models, progress, **options) if work.jobs else None
            return run_batch(separator, work, plan, manifest=journal, on_result=on_result, progress=progress)
        from ..cluster import RayExecutor

        with RayExecutor(
            models,
            options,
            plan,
            address=ray,
            workers=ray_workers,
            gpus_per_worker=gpus_per_worker,
            on_note=lambda note: progress.write(f"note: {note}"),
        ) as execute:
            return run_batch(
                None, work, plan, manifest=journal, on_result=on_result, progress=progress, execute=execute
            )
    except UvrsepError as exc:
        progress.close(failed=True)
        raise fail(exc) from None


def _load_models(models: list[str | None], progress, **options):
    """Load (downloading on first use, with a size bar and one-line notices) the model, or the
    ensemble, or the chain of models."""
    from ..chain import load_models

    separator = load_models(models, on_notice=notice, download_progress=True, **options)
    for note in separator.notes:
        progress.write(f"note: {note}")
    return separator
