"""A weight file and everything known about it: :func:`load_model`, and the rules for what its
file does not say.

A model's facts come, in this order, from the file's own metadata (a uvrsep checkpoint), its
registry entry, UVR's hash table of official files, and finally the original's defaults for
the network's family: :func:`default_params` (the band config) and :func:`default_primary` (the
stem the mask keeps, by RVC's file-name rules). The CLI (``separate``, ``models list / info /
import``), the API (:class:`uvrsep.Separator`) and :func:`model_stems` use these same rules.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import BandLayout, list_band_layouts, load_band_layout
from .errors import ConfigError, IncompatibleCheckpointError, UvrsepError
from .resolve import resolve_model
from .network import Architecture, LoadedWeights, detect_architecture, load_network
from .network.checkpoint import read_checkpoint
from .network.fusion import fuse_for_inference
from .registry import STEM_LABELS, load_registry, parse_stem_label


def default_primary(arch: Architecture, model_path: str | Path) -> str:
    """The primary stem (UVR's name) of weights nothing else describes, following RVC's rules.

    HP-family (ASPP) weights mask the instrumental, except RVC's HP3 (vocal-primary, by file
    name). VR 5.1 weights mask the dry signal: "No Echo", or "No Reverb" when the file name
    contains "DeReverb".
    """
    name = Path(model_path).name
    if arch.family == "vr51":
        return "No Reverb" if "DeReverb" in name else "No Echo"
    return "Vocals" if "HP3" in name else "Instrumental"


def default_params(arch: Architecture) -> str:
    """The original's band config for weights that do not say: 4band_v2 for ASPP nets (RVC's
    AudioPre), 4band_v3 for VR 5.1 nets with 672 bins (RVC's AudioPreDeEcho)."""
    if arch.family == "aspp":
        return "4band_v2"
    if arch.bins == 672:
        return "4band_v3"
    plausible = [name for name in list_band_layouts() if load_band_layout(name).bins == arch.bins]
    raise ConfigError(
        f"this {arch.label} does not say which band config it needs; pass --params "
        f"({', '.join(plausible) or 'no shipped config has ' + str(arch.bins) + ' bins'})"
    )


def known_facts(meta: dict, spec, uvr_entry: dict | None) -> tuple[str | None, str | None, str | None]:
    """(band config, primary stem, where they come from) that a weight file's own metadata (a
    uvrsep checkpoint), its registry entry or UVR's hash table state; ``None`` where none does."""
    if meta.get("params") or meta.get("primary"):
        return meta.get("params"), meta.get("primary"), None
    params = spec.params if spec is not None else None
    primary = spec.primary if spec is not None else None
    note = None
    if uvr_entry is not None:
        params = params or uvr_entry["params"]
        primary = primary or uvr_entry["primary"]
        note = f"UVR's model hash: {params}, primary stem {primary}"
    return params, primary, note


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a model before it is built (:func:`model_facts`).

    Attributes:
        stems: the (masked, residual) stem labels it writes.
        params: the band config its facts record (the file's metadata, its registry entry, UVR's
            hash table); ``None`` when none does (``params`` given by the caller, else the
            family's default, decides).
        read: whether a weight file was read (``False``: a registry entry not yet downloaded
            answered, and a band config UVR's hash table would give is not known yet).
    """

    stems: tuple[str, str]
    params: str | None
    read: bool


def model_facts(model: str | Path | None = None, *, offline: bool = False) -> ModelFacts:
    """The stems and recorded band config of ``model`` (a path, a registry name, ``None``: the
    registry's default model), worked out without downloading or building it: a path or a cached
    registry name is read; a registry name not cached yet answers from its entry."""
    from .hub import cached_path, default_model_name, home_dir

    registry = load_registry(home_dir())
    path = Path(model) if model is not None else None
    if path is not None and not path.is_file() and (path.suffix == ".pth" or os.sep in str(model)):
        raise UvrsepError(f"{path}: weight file not found")
    if path is None or not path.is_file():
        spec = registry.get(str(model) if model is not None else default_model_name())
        if not cached_path(spec).is_file():
            return ModelFacts(STEM_LABELS[spec.primary], spec.params, read=False)
        path = cached_path(spec)
    else:
        spec = registry.find(path.name)
    state, meta = read_checkpoint(path)
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    params, primary, _ = known_facts(meta, spec, entry)
    if primary is None:
        primary = default_primary(detect_architecture(state, path), path)
    return ModelFacts(STEM_LABELS[primary], params, read=True)


def model_stems(model: str | Path | None = None, *, offline: bool = False, primary_stem: str | None = None) -> tuple[str, str]:
    """The (masked, residual) stem labels ``model`` will write, worked out without downloading
    or building it (:func:`model_facts`). ``None`` is the registry's default model;
    ``primary_stem`` (any spelling) is the setting of that name, which decides. Lets a caller
    check its whole job (names, existing outputs, ``--stems``) before it loads a model."""
    if primary_stem is not None:
        return STEM_LABELS[parse_stem_label(primary_stem)]
    return model_facts(model, offline=offline).stems


@dataclass
class LoadedModel:
    """A loaded weight file: the net, ready for inference on its device, and its facts.

    Attributes:
        path: the weight file.
        spec: its registry entry (``None`` for a file the registry does not know).
        architecture: the net's family and size, detected from the weights.
        layout: the band config it is separated with (before the semantics adapt it).
        primary: the stem the mask keeps (UVR's spelling), known or by :func:`default_primary`.
        primary_is_default: ``primary`` comes from :func:`default_primary` (nothing said it).
        weights: the loaded weights (:class:`uvrsep.network.LoadedWeights`).
        net: the inference net (BatchNorm folded; on ``device``).
        notes: one-line notes on what was assumed (band config, identification).
    """

    path: Path
    spec: object
    architecture: Architecture
    layout: BandLayout
    primary: str
    primary_is_default: bool
    weights: LoadedWeights
    net: torch.nn.Module
    notes: list[str] = field(default_factory=list)

    @property
    def stems(self) -> tuple[str, str]:
        """The stem labels it writes: (masked, residual)."""
        return STEM_LABELS[self.primary]


def load_model(
    model: str | Path | None = None,
    *,
    params: str | Path | None = None,
    device: torch.device = torch.device("cpu"),
    offline: bool = False,
    progress: bool = False,
    on_notice: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Resolve ``model`` (a ``.pth`` file, a registry name, ``None``: the default model; a
    registry name not yet cached is downloaded unless ``offline``), read and check the weights,
    work out the band config (``params``, else the file's facts, else :func:`default_params`)
    and the primary stem, and build the inference net on ``device``.

    The net is fused for inference (BatchNorm folded); its decoders' memory-saving split
    convolution (``split_concat``) is used on the CPU only, where memory is the limit: on a GPU
    it would turn one convolution into several.
    """
    resolved = resolve_model(model, offline=offline, progress=progress, on_notice=on_notice)
    path, spec = resolved.path, resolved.spec
    state, meta = read_checkpoint(path)
    arch = detect_architecture(state, path)
    if spec is not None and ((spec.family and spec.family != arch.family) or (spec.width and spec.width != arch.width)):
        raise IncompatibleCheckpointError(
            f"{path}: registry entry {spec.name} is {spec.family} family, width {spec.width}, "
            f"but the file holds a {arch.label}"
        )
    notes = []
    known_params, known_primary, source = known_facts(meta, spec, resolved.uvr_entry)
    if source is not None:
        notes.append(f"identified {path.name} by {source}")
    params = params if params is not None else known_params
    if params is None:
        params = default_params(arch)
        notes.append(f"no band config given: using {params} (the original's default for a {arch.label})")
    layout = load_band_layout(params)
    weights = load_network(path, layout.bins, device, state=state)
    del state
    net = fuse_for_inference(weights.net, split_concat=device.type == "cpu")
    primary = known_primary or default_primary(arch, path)
    return LoadedModel(path, spec, arch, layout, primary, known_primary is None, weights, net, notes)
