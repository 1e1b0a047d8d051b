"""Reading official UVR / RVC VR weight files into :class:`CascadedASPPNet` or :class:`CascadedNet`.

Official files are plain ``torch.save(state_dict)`` pickles (float32 from UVR, float16 from RVC).
They are read with ``torch.load(..., weights_only=True)``: no code in a weight file runs. Every
tensor must be dense, stored in the file (no view claiming more values than the file holds),
float32 / float16 / bfloat16 / float64 (BatchNorm's integer ``num_batches_tracked`` counters
aside) and finite (:mod:`.validation`), so a damaged file is refused when it is read, naming the
tensor, instead of failing later in the synthesis. The metadata of a uvrsep checkpoint
(``params``, ``primary``) is checked when read too. The architecture is worked out from the
tensors' keys and shapes, never from the file size; its sizes must lie within what the families
plausibly take (:data:`LIMITS`) and the state dict must match that net key for key and shape for
shape, compared against the net built on the meta device (nothing allocated) before any real net
is built: a small file declaring a huge net costs no memory.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from ..config import list_band_layouts
from ..errors import ConfigError, IncompatibleCheckpointError
from ..registry import parse_stem_label
from .cascaded_aspp import AsppNetConfig, CascadedASPPNet
from .cascaded_lstm import CascadedNet, LstmNetConfig
from .validation import check_tensors

#: The two VR-architecture nets: the v5 HP family and VR 5.1.
VRNet = CascadedASPPNet | CascadedNet

_FIRST_CONV = "stg1_low_band_net.enc1.conv1.conv.0.weight"
_LSTM_IH = "stg3_full_band_net.lstm_dec2.lstm.weight_ih_l0"
_LSTM_HH = "stg3_full_band_net.lstm_dec2.lstm.weight_hh_l0"
#: Where each size of an :class:`Architecture` is read: (family, field) → (key, dimension,
#: factor): the size is ``factor * state[key].shape[dimension]``.
SIZE_SOURCES = {
    ("aspp", "width"): (_FIRST_CONV, 0, 1),
    ("vr51", "width"): ("out.weight", 1, 1),
    ("vr51", "nout_lstm"): (_LSTM_HH, 1, 2),
    ("vr51", "bins"): (_LSTM_IH, 1, 2),
}
#: The sizes uvrsep accepts: (family, field) → (least, most, multiple of, the official nets').
#: The official nets are ASPP width 16 / 32 / 64 and VR 5.1 nout 16 / 32 / 48 / 64 with
#: nout_lstm 128 over 512 to 1024 bins (the shipped band configs reach 1280); the ceilings leave
#: a margin of 2x (widths), 4x (nout_lstm, bins) above them, so a file declaring a larger net is
#: refused from its shapes alone. Floors and steps are what the classes need to build a net that
#: runs (VR 5.1 splits nout and nout_lstm in quarters).
LIMITS = {
    ("aspp", "width"): (2, 128, 1, "16, 32 or 64"),
    ("vr51", "width"): (4, 128, 4, "16, 32, 48 or 64"),
    ("vr51", "nout_lstm"): (4, 512, 4, "128"),
    ("vr51", "bins"): (32, 4096, 32, "512 to 1024"),
}
#: ASPP dilations by branch count: 5 (most nets), 6 (UVR's 129605), 7 (33966 / 537238, where
#: conv6 and conv7 reuse the last rate as two separate modules, as RVC has them).
ASPP_DILATIONS = {5: (4, 8, 16), 6: (4, 8, 16, 16), 7: (4, 8, 16, 16, 16)}
MAX_LISTED = 6


@dataclass(frozen=True)
class LoadedWeights:
    """A net built and filled from a weight file."""

    net: VRNet
    path: Path
    file_dtype: torch.dtype
    n_tensors: int
    architecture: Architecture


#: Lines of torch's load errors that are advice about torch.load itself (turning the safe loader
#: off, its documentation), never repeated to a user: uvrsep only ever loads weights.
_TORCH_ADVICE = re.compile(
    r"weights_only|weights only load failed|trusted source|documentation|file an issue|"
    r"safe_globals|allowlist|if you trust",
    re.IGNORECASE,
)


def _load_failure(exc: Exception) -> str:
    """One line saying why ``torch.load`` (safe mode) could not read a file, without torch's
    advice to turn the safe loader off or to allow-list what the file holds."""
    text = str(exc).strip()
    refused = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _TORCH_ADVICE.search(ln)]
    detail = refused.group(1).strip() if refused else (lines[0] if lines else "")
    detail = " ".join(part for part in re.split(r"(?<=\.)\s+", detail) if not _TORCH_ADVICE.search(part))
    if re.search(r"\bglobal\b", detail, re.IGNORECASE):  # a reference to a class or function: code
        return (
            "it holds Python objects besides tensors, which could run code if loaded; uvrsep loads weights "
            f"only and refuses it ({detail.rstrip('.')})"
        )
    return detail.rstrip(".") or type(exc).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weight file safely; raise :class:`IncompatibleCheckpointError` naming the file."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a weight file: its state dict, plus the metadata of a uvrsep checkpoint (``params``,
    ``primary``, ``architecture``, ...; empty for the plain state dicts of official files)."""
    path = Path(path)
    if not path.is_file():
        raise IncompatibleCheckpointError(f"{path}: weight file not found")
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise IncompatibleCheckpointError(f"{path}: is a Git LFS pointer, not the weights (download the real file)")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of raw-pickle (legacy) files; the file is
            # either read or refused below, so its text is noise on the user's terminal.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle means the same thing: not a weight file
        raise IncompatibleCheckpointError(
            f"{path}: not a readable PyTorch weight file ({_load_failure(exc)})"
        ) from None
    meta = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        meta = {k: v for k, v in obj.items() if k in ("format", "params", "primary", "architecture", "step")}
        obj = obj["state_dict"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise IncompatibleCheckpointError(f"{path}: does not hold a state dict of tensors")
    check_tensors(obj, path)
    return obj, _checked_meta(meta, path)


def _checked_meta(meta: dict, path: Path) -> dict:
    """A uvrsep checkpoint's metadata with ``params`` and ``primary`` proven usable: ``params`` a
    shipped band config's name or a ``.json`` path (looked for when used: it may be relative),
    ``primary`` a stem UVR names, in any spelling, returned in UVR's (``no_echo`` → ``No Echo``).
    ``None`` means absent. Raises :class:`IncompatibleCheckpointError` naming the file and field."""
    params, primary = meta.get("params"), meta.get("primary")
    if params is not None:
        if not isinstance(params, str) or not params.strip() or not params.isprintable():
            raise IncompatibleCheckpointError(f"{path}: its 'params' field is {_shown(params)}, not a band config name")
        if Path(params).suffix.lower() == ".json":
            try:
                Path(params).is_file()
            except (OSError, ValueError) as exc:
                raise IncompatibleCheckpointError(
                    f"{path}: its 'params' field is not a usable path ({getattr(exc, 'strerror', None) or exc})"
                ) from None
        elif params not in list_band_layouts():
            raise IncompatibleCheckpointError(
                f"{path}: its 'params' field names no band config uvrsep has: {_shown(params)} "
                f"(known: {', '.join(list_band_layouts())})"
            )
    if primary is not None:
        try:
            if not isinstance(primary, str):
                raise ConfigError(f"{_shown(primary)} is not a stem name")
            primary = parse_stem_label(primary)
        except ConfigError as exc:
            raise IncompatibleCheckpointError(f"{path}: its 'primary' field: {exc}") from None
    return {**meta, "params": params, "primary": primary}


def _shown(value: object, limit: int = 60) -> str:
    """``value`` as a short one-line text for an error message: its repr, cut, with its type
    unless it is a string."""
    text = repr(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text if isinstance(value, str) else f"{text} ({type(value).__name__})"


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """One line saying what a state dict looks like (family, widths, dtype, tensor count)."""
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values() if v.is_floating_point()})
    base = f"{len(state)} tensors, {'/'.join(dtypes) or 'no float'}"
    arch = _identify(state)
    if arch is not None:
        return f"a {arch.label}; {base}"
    prefixes = sorted({k.split(".")[0] for k in state})
    shown = ", ".join(prefixes[:MAX_LISTED]) + (" ..." if len(prefixes) > MAX_LISTED else "")
    return f"not a VR net (top-level keys: {shown}); {base}"


@dataclass(frozen=True)
class Architecture:
    """What a state dict is, worked out from its keys and shapes alone.

    ``family`` is ``"aspp"`` (v5 HP family, :class:`CascadedASPPNet`; ``width`` = stage-1
    channels) or ``"vr51"`` (:class:`CascadedNet`; ``width`` = nout). ``bins`` is set where the
    weights pin it (VR 5.1: the LSTM input size).
    """

    family: str
    width: int
    dilations: tuple[int, ...] = (4, 8, 16)
    levels: int = 4
    nout_lstm: int = 128
    bins: int | None = None

    def build(self, bins: int) -> VRNet:
        """The network for this architecture over ``bins`` frequency rows."""
        if self.family == "vr51":
            return CascadedNet(LstmNetConfig(bins=bins, nout=self.width, nout_lstm=self.nout_lstm))
        return CascadedASPPNet(
            AsppNetConfig(bins=bins, channels=self.width, dilations=self.dilations, levels=self.levels)
        )

    @property
    def default_bins(self) -> int:
        """A bin count the net builds with when nothing else says (672 for 4 levels: any
        multiple of ``2 ** (levels + 1)`` builds; VR 5.1 weights pin theirs)."""
        return self.bins or 2 ** (self.levels + 1) * 21

    @property
    def label(self) -> str:
        if self.family == "vr51":
            return f"VR 5.1 net (nout {self.width}, nout_lstm {self.nout_lstm}, bins {self.bins})"
        five = ", 5 levels" if self.levels == 5 else ""
        return f"cascaded ASPP net (width {self.width}, {2 + len(self.dilations)}-branch ASPP{five})"


def _size(state: dict[str, torch.Tensor], family: str, field: str, default: int) -> int:
    """The size ``field`` that ``state`` gives a ``family`` net (:data:`SIZE_SOURCES`); ``default``
    where the key is absent, 0 where its tensor has too few dimensions (then refused as out of
    :data:`LIMITS`)."""
    key, dim, factor = SIZE_SOURCES[(family, field)]
    if key not in state:
        return default
    shape = state[key].shape
    return factor * int(shape[dim]) if len(shape) > dim else 0


def _identify(state: dict[str, torch.Tensor]) -> Architecture | None:
    """The architecture a state dict's keys and shapes describe, or None."""
    if _LSTM_IH in state and "out.weight" in state:
        return Architecture(
            family="vr51",
            width=_size(state, "vr51", "width", 0),
            nout_lstm=_size(state, "vr51", "nout_lstm", 128),
            bins=_size(state, "vr51", "bins", 0),
        )
    if _FIRST_CONV in state:
        branches = 5 + sum(any(f".aspp.conv{i}." in k for k in state) for i in (6, 7))
        levels = 5 if any(".enc5." in k for k in state) else 4
        return Architecture(
            family="aspp",
            width=_size(state, "aspp", "width", 0),
            dilations=ASPP_DILATIONS[branches],
            levels=levels,
        )
    return None


def detect_architecture(state: dict[str, torch.Tensor], path: str | Path = "<weights>") -> Architecture:
    """Identify the network family and sizes of a state dict (never from the file size) and prove
    the state dict is exactly that net's: sizes within :data:`LIMITS`, every key of the net
    present, no other key, every shape the net's. The net is built on the meta device for the
    comparison, so nothing is allocated: a small file declaring a huge net is refused at the cost
    of its own size. Raises :class:`IncompatibleCheckpointError` with a one-line reason."""
    arch = _identify(state)
    if arch is None:
        raise IncompatibleCheckpointError(
            f"{path}: not a supported VR weight file (cascaded ASPP or VR 5.1): it looks like "
            f"{describe_state_dict(state)}"
        )
    _check_limits(state, arch, path)
    try:
        expected = expected_shapes(arch)
    except ValueError as exc:
        raise IncompatibleCheckpointError(f"{path}: {exc}") from None
    _check_match(expected, state, path, arch)
    return arch


def _check_limits(state: dict[str, torch.Tensor], arch: Architecture, path) -> None:
    for (family, field), (least, most, step, official) in LIMITS.items():
        value = getattr(arch, field)
        if family != arch.family or (least <= value <= most and value % step == 0):
            continue
        key = SIZE_SOURCES[(family, field)][0]
        steps = f" in steps of {step}" if step > 1 else ""
        name = "a cascaded ASPP net" if family == "aspp" else "a VR 5.1 net"
        field = field if family == "aspp" else field.replace("width", "nout")  # VR 5.1's width is nout
        raise IncompatibleCheckpointError(
            f"{path}: tensor {key} {tuple(state[key].shape)} makes this {name} with {field} {value}; "
            f"uvrsep takes {least} to {most}{steps} (the official nets have {official})"
        )


@functools.lru_cache(maxsize=16)
def expected_shapes(arch: Architecture) -> Mapping[str, torch.Size]:
    """Every key of ``arch``'s state dict and its shape, from the net built on the meta device
    (no memory: safe for any size) over the weights' own bins (VR 5.1) or any count the net
    accepts (ASPP weights do not depend on it). ``ValueError`` if the net cannot be built.

    Kept per architecture (a weight file is matched when its facts are read and again when it
    is loaded, and building even a meta net costs a few hundred module constructions)."""
    with torch.device("meta"):
        net = arch.build(arch.default_bins)
    return MappingProxyType({key: value.shape for key, value in net.state_dict().items()})


def _check_match(expected: Mapping[str, torch.Size], state: dict[str, torch.Tensor], path, arch: Architecture) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (net wants {tuple(shape)})"
        for k, shape in expected.items()
        if k in state and state[k].shape != shape
    ]
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
            parts.append(f"{label}: {', '.join(items[:MAX_LISTED])}{more}")
    raise IncompatibleCheckpointError(
        f"{path}: weights do not fit a {arch.label} "
        f"({'; '.join(parts)}); the file looks like {describe_state_dict(state)}"
    )


def check_weight_file(path: str | Path, family: str | None = None, width: int | None = None) -> Architecture:
    """Prove that ``path`` is a loadable VR weight file (and, where given, of ``family`` and
    ``width``): read it safely, check its tensors, work out its architecture and match the state
    dict against that net key for key and shape for shape (:func:`detect_architecture`: no net is
    built). Returns the architecture; raises :class:`IncompatibleCheckpointError` with a one-line
    reason.

    No band config is needed: VR 5.1 weights pin their bin count, and ASPP weights do not depend
    on it.
    """
    path = Path(path)
    arch = detect_architecture(read_state_dict(path), path)
    if (family and family != arch.family) or (width and width != arch.width):
        named = f"{family or 'any'} family" + (f", width {width}" if width else "")
        raise IncompatibleCheckpointError(f"{path}: holds a {arch.label}, not the {named} net expected")
    return arch


def load_network(
    path: str | Path,
    bins: int | None = None,
    device: str | torch.device = "cpu",
    state: dict[str, torch.Tensor] | None = None,
) -> LoadedWeights:
    """Build the net a weight file describes, load it (cast to float32), put it in eval mode.

    ``bins`` is the band layout's bin count; it may be omitted for VR 5.1 weights, which pin it,
    and must agree with them. ``state`` (from :func:`read_checkpoint`, so already checked) skips
    reading the file again. The net is built only after :func:`detect_architecture` has matched
    the state dict against it.
    """
    path = Path(path)
    state = read_state_dict(path) if state is None else state
    arch = detect_architecture(state, path)
    if arch.bins is not None and bins is not None and bins != arch.bins:
        raise IncompatibleCheckpointError(
            f"{path}: this {arch.label} needs a band config with {arch.bins} bins, not {bins}"
        )
    bins = bins if bins is not None else arch.bins
    if bins is None:
        raise IncompatibleCheckpointError(f"{path}: a {arch.label} needs a band config to size it")
    try:
        with torch.device("meta"):  # no random initialisation: every tensor is loaded below
            net = arch.build(bins)
    except ValueError as exc:
        raise IncompatibleCheckpointError(f"{path}: {exc}") from None
    first = next(v for v in state.values() if v.is_floating_point())
    net = net.to_empty(device="cpu")
    net.load_state_dict(state, strict=True)
    net.float().eval().to(device)
    return LoadedWeights(net=net, path=path, file_dtype=first.dtype, n_tensors=len(state), architecture=arch)
