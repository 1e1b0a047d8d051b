"""The options of ``uvrsep separate``: their choices and their typer declarations (typer reads
each option from its annotation), kept apart from the command's logic in :mod:`.separate`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..ensemble.rules import ALGORITHMS, DEFAULT_ALGORITHM
from ..naming import TEMPLATE_FIELDS
from .common import Device


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


#: ``--ensemble-algorithm``: the names of :data:`uvrsep.ensemble.ALGORITHMS` (built from them, so
#: the two cannot differ; mypy lists an Enum's members only from a literal).
EnsembleAlgorithm = Enum("EnsembleAlgorithm", {name: name for name in ALGORITHMS}, type=str)  # type: ignore[misc]


class Precision(str, Enum):
    fp32 = "fp32"
    tf32 = "tf32"
    fp16 = "fp16"
    bf16 = "bf16"


# -- the options ------------------------------------------------------------------------------

Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        help="Audio or video files, folders, or globs ('clips/**/*.wav').", show_default=False, metavar="INPUT..."
    ),
]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|PATH",
        help="Weight file (.pth) or registry name (see `uvrsep models list`); downloaded on first use. "
        "Repeat for an ensemble (-m A -m B): each model separates the input, their stems are combined "
        "label by label (docs/ensembles.md).",
        show_default="HP2_all_vocals",
    ),
]
EnsembleAlgorithmOpt = Annotated[
    EnsembleAlgorithm | None,
    typer.Option(
        "--ensemble-algorithm",
        metavar="NAME",
        help="How an ensemble's stems are combined (audio-separator's names, docs/ensembles.md): "
        + ", ".join(ALGORITHMS)
        + ".",
        show_default=DEFAULT_ALGORITHM,
    ),
]
EnsembleWeightsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ensemble-weights",
        metavar="W[,W...]",
        help="One weight per --model, in order (comma-separated or repeated); used by avg_wave and avg_fft.",
        show_default="equal",
    ),
]
ThenOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--then",
        metavar="NAME|PATH",
        help="Then run this model on the previous one's (or the ensemble's) voice stem (repeatable), e.g. "
        "--then VR-DeEchoDeReverb: writes instrumental, vocals_no_reverb, vocals_reverb.",
        show_default=False,
    ),
]
ParamsOpt = Annotated[
    str | None,
    typer.Option(
        metavar="NAME|PATH",
        help="Band config name or .json path (see `uvrsep params`); in a chain, the first model's; "
        "in an ensemble, that of each model that records none.",
        show_default="the registry's, else 4band_v2 / 4band_v3 by family",
    ),
]
# -- separation settings (uvrsep.semantics.Settings) --
SemanticsOpt = Annotated[
    SemanticsChoice,
    typer.Option(help="What the settings mean: rvc (RVC's AudioPre) or uvr (UVR5 GUI / python-audio-separator)."),
]
AggressivenessOpt = Annotated[
    float | None,
    typer.Option(
        min=-100,
        max=100,
        show_default="10 with rvc, 5 with uvr",
        help=(
            "rvc: 0–100, applied per window; uvr: UVR's aggression, −100–100, applied once to the whole "
            "mask (inverted for vocal-type primary stems). Higher pushes more of the other stem out of "
            "the primary one."
        ),
    ),
]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Second pass shifted by half a window, averaged (2x slower).")]
PostprocessOpt = Annotated[
    bool,
    typer.Option(
        "--postprocess",
        help="rvc: give quiet runs of the residual back to the masked stem (mask_silence); "
        "uvr: UVR's merge_artifacts (long confident runs of the mask become 1).",
    ),
]
PostprocessThresholdOpt = Annotated[
    float, typer.Option("--postprocess-threshold", min=0, help="Threshold of --postprocess (uvr: 0.1–0.3 as in UVR).")
]
WindowSizeOpt = Annotated[
    int,
    typer.Option(
        "--window-size",
        help=(
            "Frames per network window (UVR offers 320 / 512 / 1024): above twice the net's context, a multiple of 16, "
            "at most 2048."
        ),
    ),
]
HighEndOpt = Annotated[
    str | None,
    typer.Option(
        "--high-end",
        show_default="mirroring with rvc, none with uvr",
        help="rvc: mirroring, mirroring2 or none; uvr: mirroring or none (none is audio-separator's default).",
    ),
]
PrimaryStemOpt = Annotated[
    str | None,
    typer.Option(
        "--primary-stem",
        show_default="the registry's, else the family's",
        help=("The stem the mask keeps (Vocals, Instrumental, no_echo, ...; any case); in a chain, the first model's."),
    ),
]
# -- outputs (uvrsep.batch.OutputPlan) --
OutputDirOpt = Annotated[Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Folder for the stems.")]
NameTemplateOpt = Annotated[
    str,
    typer.Option(
        "--name-template",
        metavar="TEMPLATE",
        help="Output path below --output-dir; fields "
        + " ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        + "; {stem} is needed when several stems are written.",
    ),
]
OutputFormatOpt = Annotated[OutputFormat, typer.Option("--output-format", help="wav / flac (lossless) or mp3 / ogg.")]
BitDepthOpt = Annotated[
    BitDepth | None,
    typer.Option(
        "--bit-depth",
        help="16 or 24-bit integer (clipped), or 32-bit float (wav only); wav and flac only.",
        show_default="16",
    ),
]
SampleRateOpt = Annotated[
    int | None,
    typer.Option(
        "--sample-rate",
        help="Resample the stems (Hz, 8000–384000), e.g. 16000 for speech "
        "recognition (mp3: 8000–48000 MPEG rates; ogg: up to 192000).",
        show_default="the model's, 44100",
    ),
]
MonoOpt = Annotated[bool, typer.Option("--mono", help="Write mono stems (mean of the two channels).")]
StemsOpt = Annotated[
    str | None,
    typer.Option(
        "--stems",
        metavar="LABEL[,LABEL]",
        help="Comma-separated stem labels to write, e.g. vocals.",
        show_default="all",
    ),
]
# -- inputs and the run --
RecursiveOpt = Annotated[
    bool, typer.Option("--recursive", "-r", help="Also take the files in subfolders of folder inputs.")
]
FromListOpt = Annotated[
    str | None,
    typer.Option(
        "--from-list", metavar="FILE", help="File with one input path per line ('-': stdin).", show_default=False
    ),
]
MirrorTreeOpt = Annotated[
    bool,
    typer.Option("--mirror-tree", help="Keep each input's folder layout (below the folder given) under --output-dir."),
]
StreamOpt = Annotated[
    int | None,
    typer.Option("--stream", min=0, help="Audio stream of video / multi-stream files.", show_default="the first"),
]
ManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest", metavar="FILE", help="JSONL record of the run; re-running with it resumes.", show_default=False
    ),
]
DeviceOpt = Annotated[Device, typer.Option(help="Where the network runs.")]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        help="The network's arithmetic: fp32 is strict (TF32 off) and matches the original; "
        "tf32 (CUDA), fp16 (CUDA, MPS) and bf16 are faster and less exact (README: --precision)."
    ),
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Windows per network call.", show_default="1 on CPU, 4 on GPU")
]
SegmentThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--segment-threshold",
        min=0,
        help="Inputs longer than this (seconds) are separated in "
        "segments, in memory that does not grow with their length ('inf': never; same result).",
        show_default="decided by the device's memory: an input whose arrays fit is separated whole",
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace stems that already exist (default: skip those inputs).")
]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never download: a registry name must already be cached.")]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        help='Run the batch on a Ray cluster (pip install "uvrsep\\[ray]"): '
        "auto (the cluster this machine joined with `ray start`), HOST:PORT, or no value / local (a Ray "
        "instance on this machine for the run). Inputs and --output-dir must be at the same paths on "
        "every node.",
        show_default=False,
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        min=1,
        help="Model-holding Ray workers.",
        show_default="one per GPU of the cluster, else one per 2 CPUs",
    ),
]
GpusPerWorkerOpt = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-worker",
        min=0,
        help="GPUs each Ray worker reserves; fractions share a GPU.",
        show_default="1 where the cluster has GPUs, else 0",
    ),
]
