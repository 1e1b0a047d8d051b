"""A weight file and everything known about it: :func:`load_model`, and the rules for what its
file does not say.

A model's facts come, in this order, from the file's own metadata (a uvrsep checkpoint), its
registry entry, UVR's hash table of official files, and finally the original's defaults for
the network's family: :func:`default_params` (the band config) and :func:`default_primary` (the
stem the mask keeps, by RVC's file-name rules). The CLI (``separate``, ``models list / info /
import``), the API (:class:`uvrsep.Separator`), :func:`model_stems`, :func:`band_config_of` and
:func:`import_model` use these same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import BandLayout, list_band_layouts, load_band_layout
from .errors import ConfigError, IncompatibleCheckpointError, option
from .network import Architecture, LoadedWeights, VRNet, detect_architecture, load_network
from .network.checkpoint import read_checkpoint
from .network.fusion import fuse_for_inference
from .registry import STEM_LABELS
from .resolve import named_model, resolve_model, weight_file

if TYPE_CHECKING:
    from .registry import ModelSpec, Registry

#: The device :func:`load_model` builds the net on unless told otherwise.
CPU = torch.device("cpu")


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
        f"this {arch.label} does not say which band config it needs; give it with {option('params')} "
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


@dataclass
class WeightFacts:
    """What a weight file is, from its tensors and everything known about it (the module doc's
    order): ``params`` is ``None`` where nothing names the band config (then
    :func:`default_params`); ``primary`` is always set (:func:`default_primary` where nothing
    names it: ``primary_is_default``); ``source`` names the identification, if any."""

    architecture: Architecture
    params: str | None
    primary: str
    primary_is_default: bool
    source: str | None


def weight_facts(path: Path, state: dict, meta: dict, spec, uvr_entry: dict | None) -> WeightFacts:
    """The :class:`WeightFacts` of the weights ``state`` read from ``path`` (metadata ``meta``),
    with registry entry ``spec`` and UVR's table entry ``uvr_entry`` (either may be None). A
    registry entry whose family or width the file contradicts is an
    :class:`IncompatibleCheckpointError`."""
    arch = detect_architecture(state, path)
    if spec is not None and ((spec.family and spec.family != arch.family) or (spec.width and spec.width != arch.width)):
        raise IncompatibleCheckpointError(
            f"{path}: registry entry {spec.name} is {spec.family} family, width {spec.width}, "
            f"but the file holds a {arch.label}"
        )
    params, primary, source = known_facts(meta, spec, uvr_entry)
    return WeightFacts(arch, params, primary or default_primary(arch, path), primary is None, source)


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


def model_facts(
    model: str | Path | None = None, *, offline: bool = False, given_as: str | None = "model"
) -> ModelFacts:
    """The stems and recorded band config of ``model`` (a path, a registry name, ``None``: the
    registry's default model), worked out without downloading or building it: a path is read; a
    registry name that is not cached yet answers from its entry; a cached one must have its
    pinned sha256. Errors name the setting ``given_as`` (``model``; ``--model`` / ``--then`` on
    the command line)."""
    from .hub import home_dir
    from .registry import load_registry

    registry = load_registry(home_dir())
    path = weight_file(model, given_as) if model is not None else None
    spec: ModelSpec | None
    if path is not None:
        spec = registry.find(path.name)
    else:
        spec, path = named_model(model, registry, given_as=given_as)
        if path is None:
            return ModelFacts(STEM_LABELS[spec.primary], spec.params, read=False)
    state, meta = read_checkpoint(path)
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    facts = weight_facts(path, state, meta, spec, entry)
    return ModelFacts(STEM_LABELS[facts.primary], facts.params, read=True)


def model_stems(
    model: str | Path | None = None,
    *,
    offline: bool = False,
    primary_stem: str | None = None,
    given_as: str | None = "model",
) -> tuple[str, str]:
    """The (masked, residual) stem labels ``model`` will write, worked out without downloading
    or building it (:func:`model_facts`). ``None`` is the registry's default model;
    ``primary_stem`` (any spelling) is the setting of that name, which decides. Lets a caller
    check its whole job (names, existing outputs, ``--stems``) before it loads a model; errors
    name the setting ``given_as``."""
    from .registry import parse_stem_label

    if primary_stem is not None:
        return STEM_LABELS[parse_stem_label(primary_stem)]
    return model_facts(model, offline=offline, given_as=given_as).stems


def file_info(path: Path) -> list[tuple[str, str]]:
    """What ``uvrsep models info FILE`` prints for a weight file, as it does for a registry
    name: (field, value) rows of its architecture, band config and stems (each with where it
    comes from, by the rules :func:`load_model` follows), size and sha256."""
    from .hub import home_dir, human_size, sha256_file
    from .registry import load_registry

    registry = load_registry(home_dir())
    spec = registry.find(path.name)
    state, meta = read_checkpoint(path)
    entry = registry.identify_by_uvr_hash(path) if spec is None or spec.params is None else None
    facts = weight_facts(path, state, meta, spec, entry)
    del state
    told = (
        "the file's metadata"
        if meta.get("params") or meta.get("primary")
        else f"registry entry {spec.name}"
        if spec is not None and spec.params
        else "UVR's hash table"
    )
    if facts.params is not None:
        params = f"{facts.params} ({told})"
    else:
        try:
            params = f"{default_params(facts.architecture)} (family default)"
        except ConfigError as exc:
            params = f"not known: {exc}"
    masked, residual = STEM_LABELS[facts.primary]
    size = path.stat().st_size
    return [
        ("file", str(path)),
        ("registry", spec.name if spec is not None else "-"),
        ("architecture", facts.architecture.label),
        ("band config", params),
        (
            "stems",
            f"{masked} (masked), {residual} (residual)"
            + (f" (family default; {option('primary_stem')} sets it)" if facts.primary_is_default else f" ({told})"),
        ),
        ("size", f"{size} bytes ({human_size(size)})"),
        ("sha256", sha256_file(path)),
    ]


def band_config_of(spec: ModelSpec, registry: Registry) -> str:
    """The band config a registry entry will be separated with, and where it comes from when the
    entry does not name it, known without loading the file (the order of :func:`load_model`:
    the entry, UVR's hash table for shipped entries, the family's :func:`default_params`)."""
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
    try:
        arch = Architecture(
            family=spec.family or "aspp", width=spec.width or 0, bins=672 if spec.family == "vr51" else None
        )
        return f"{default_params(arch)} (family default)"
    except ConfigError:
        return "family default (by the net's size)"


@dataclass(frozen=True)
class ImportedModel:
    """What :func:`import_model` did: the registry entry, the cached file, the detected net and
    where the band config came from (``"given on import"``, UVR's hash table, the family default)."""

    spec: ModelSpec
    path: Path
    architecture: Architecture
    params_source: str


def import_model(
    file: Path,
    *,
    name: str | None = None,
    params: str | None = None,
    primary: str | None = None,
    overwrite: bool = False,
    home: Path | None = None,
) -> ImportedModel:
    """Check a user's weight file (a loadable VR net with finite float weights), copy it into the
    cache and register it under ``name`` (default: the file name without ``.pth``).

    Its facts are recorded in the order :func:`load_model` reads them: ``params`` / ``primary``
    given, else UVR's hash table, else the family's :func:`default_params` /
    :func:`default_primary`. Raises a :class:`UvrsepError` (nothing written) for a bad name, file
    or band config, or an existing entry without ``overwrite``.
    """
    from .hub import home_dir, import_file
    from .network import read_state_dict
    from .registry import ModelSpec, add_user_model, check_file_name, load_registry, parse_stem_label

    home = home if home is not None else home_dir()
    file = Path(file)
    name = check_file_name(name if name is not None else file.name.removesuffix(".pth"), option("name"), home)
    arch = detect_architecture(read_state_dict(file), file)
    entry = load_registry(home).identify_by_uvr_hash(file) or {}
    if params is not None:
        how = "given on import"
    elif entry.get("params"):
        params, how = entry["params"], "from UVR's hash table"
    else:
        params, how = default_params(arch), "the family default"
    load_band_layout(params, given_as="params")
    known_primary = parse_stem_label(primary) if primary is not None else entry.get("primary")
    spec = ModelSpec(
        name=name,
        file=f"{name}.pth",
        source="user",
        family=arch.family,
        width=arch.width,
        params=params,
        primary=known_primary or default_primary(arch, file),
        note=f"imported from {file}; band config: {how}",
    )
    path = import_file(file, spec, home, overwrite=overwrite)
    add_user_model(home, spec)
    return ImportedModel(spec, path, arch, how)


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
    net: VRNet
    notes: list[str] = field(default_factory=list)

    @property
    def stems(self) -> tuple[str, str]:
        """The stem labels it writes: (masked, residual)."""
        return STEM_LABELS[self.primary]


def load_model(
    model: str | Path | None = None,
    *,
    params: str | Path | None = None,
    device: torch.device = CPU,
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
    facts = weight_facts(path, state, meta, spec, resolved.uvr_entry)
    arch = facts.architecture
    notes = []
    if facts.source is not None:
        notes.append(f"identified {path.name} by {facts.source}")
    given = params is not None
    params = params if given else facts.params
    if params is None:
        params = default_params(arch)
        notes.append(f"no band config given: using {params} (the original's default for a {arch.label})")
    layout = load_band_layout(params, given_as="params" if given else None)
    weights = load_network(path, layout.bins, device, state=state)
    del state
    net = fuse_for_inference(weights.net, split_concat=device.type == "cpu")
    return LoadedModel(path, spec, arch, layout, facts.primary, facts.primary_is_default, weights, net, notes)
