"""Reading official UVR / RVC VR weight files into :class:`CascadedASPPNet` or :class:`CascadedNet`.

Official files are plain ``torch.save(state_dict)`` pickles (float32 from UVR, float16 from RVC).
They are read with ``torch.load(..., weights_only=True)``: no code in a weight file runs. Every
tensor must be floating point (BatchNorm's integer ``num_batches_tracked`` counters aside) and
finite, so a damaged file is refused when it is read, naming the tensor, instead of failing later
in the synthesis. The architecture is worked out from the tensors' keys and shapes, never from the
file size, and the state dict must then match the net key for key and shape for shape.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import IncompatibleCheckpointError
from .cascaded_aspp import AsppNetConfig, CascadedASPPNet
from .cascaded_lstm import CascadedNet, LstmNetConfig

_FIRST_CONV = "stg1_low_band_net.enc1.conv1.conv.0.weight"
#: ASPP dilations by branch count: 5 (most nets), 6 (UVR's 129605), 7 (33966 / 537238, where
#: conv6 and conv7 reuse the last rate as two separate modules, as RVC has them).
ASPP_DILATIONS = {5: (4, 8, 16), 6: (4, 8, 16, 16), 7: (4, 8, 16, 16, 16)}
MAX_LISTED = 6


@dataclass(frozen=True)
class LoadedWeights:
    """A net built and filled from a weight file."""

    net: torch.nn.Module
    path: Path
    file_dtype: torch.dtype
    n_tensors: int
    architecture: Architecture


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
        raise IncompatibleCheckpointError(
            f"{path}: is a Git LFS pointer, not the weights (download the real file)"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of raw-pickle (legacy) files; the file is
            # either read or refused below, so its text is noise on the user's terminal.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle means the same thing: not a weight file
        text = str(exc).strip()
        refused = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)  # torch's advice around it is noise
        if refused:
            reason = f"the safe loader refused it: {refused.group(1).strip()}"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise IncompatibleCheckpointError(f"{path}: not a readable PyTorch weight file ({reason})") from None
    meta = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        meta = {k: v for k, v in obj.items() if k in ("format", "params", "primary", "architecture", "step")}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IncompatibleCheckpointError(f"{path}: does not hold a state dict of tensors")
    check_tensors(obj, path)
    return obj, meta


#: Keys whose tensors are integer counters in every PyTorch state dict (BatchNorm).
_INTEGER_KEYS = ("num_batches_tracked",)


def check_tensors(state: dict[str, torch.Tensor], path: str | Path = "<weights>") -> None:
    """Refuse weights that cannot be right: a non-float tensor where a weight belongs (an int32
    file would otherwise load, cast silently) or NaN / infinite values (which would only show as
    NaN stems after a whole separation). Raises :class:`IncompatibleCheckpointError` naming the
    first bad tensor and how many more there are."""
    not_float = [k for k, v in state.items() if not v.is_floating_point() and not k.endswith(_INTEGER_KEYS)]
    if not_float:
        key = not_float[0]
        more = f" (and {len(not_float) - 1} more tensors)" if len(not_float) > 1 else ""
        raise IncompatibleCheckpointError(
            f"{path}: tensor {key} is {str(state[key].dtype).replace('torch.', '')}{more}; weights must be floating point"
        )
    bad = [(k, n) for k, v in state.items() if v.is_floating_point() and (n := _count_non_finite(v))]
    if bad:
        key, count = bad[0]
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise IncompatibleCheckpointError(
            f"{path}: tensor {key} holds {count} NaN or infinite value(s) of {state[key].numel()}{more}; "
            "the file is damaged"
        )


def _count_non_finite(tensor: torch.Tensor) -> int:
    """NaN and infinite entries of a float tensor (counted in numpy: many times faster than
    torch's CPU kernels for float16, the dtype of RVC's files)."""
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    values = tensor.detach().cpu().numpy()
    return int(values.size - np.count_nonzero(np.isfinite(values)))


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

    def build(self, bins: int) -> torch.nn.Module:
        """The network for this architecture over ``bins`` frequency rows."""
        if self.family == "vr51":
            return CascadedNet(LstmNetConfig(bins=bins, nout=self.width, nout_lstm=self.nout_lstm))
        return CascadedASPPNet(
            AsppNetConfig(bins=bins, channels=self.width, dilations=self.dilations, levels=self.levels)
        )

    @property
    def label(self) -> str:
        if self.family == "vr51":
            return f"VR 5.1 net (nout {self.width}, nout_lstm {self.nout_lstm}, bins {self.bins})"
        five = ", 5 levels" if self.levels == 5 else ""
        return f"cascaded ASPP net (width {self.width}, {2 + len(self.dilations)}-branch ASPP{five})"


def _identify(state: dict[str, torch.Tensor]) -> Architecture | None:
    """The architecture a state dict's keys and shapes describe, or None."""
    lstm_key = "stg3_full_band_net.lstm_dec2.lstm.weight_ih_l0"
    if lstm_key in state and "out.weight" in state:
        hidden = state.get("stg3_full_band_net.lstm_dec2.lstm.weight_hh_l0")
        return Architecture(
            family="vr51",
            width=int(state["out.weight"].shape[1]),
            nout_lstm=2 * int(hidden.shape[1]) if hidden is not None else 128,
            bins=2 * int(state[lstm_key].shape[1]),
        )
    if _FIRST_CONV in state:
        branches = 5 + sum(any(f".aspp.conv{i}." in k for k in state) for i in (6, 7))
        levels = 5 if any(".enc5." in k for k in state) else 4
        return Architecture(
            family="aspp", width=int(state[_FIRST_CONV].shape[0]),
            dilations=ASPP_DILATIONS[branches], levels=levels,
        )
    return None


def detect_architecture(state: dict[str, torch.Tensor], path: str | Path = "<weights>") -> Architecture:
    """Identify the network family and widths of a state dict (never from the file size)."""
    arch = _identify(state)
    if arch is None:
        raise IncompatibleCheckpointError(
            f"{path}: not a supported VR weight file (cascaded ASPP or VR 5.1): it looks like "
            f"{describe_state_dict(state)}"
        )
    return arch


def _check_match(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: Architecture) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (net wants {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
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
    dict against that net key for key and shape for shape. Returns the architecture; raises
    :class:`IncompatibleCheckpointError` with a one-line reason.

    No band config is needed: VR 5.1 weights pin their bin count, and ASPP weights do not depend
    on it, so any count the net accepts does for them.
    """
    path = Path(path)
    state = read_state_dict(path)
    arch = detect_architecture(state, path)
    if (family and family != arch.family) or (width and width != arch.width):
        named = f"{family or 'any'} family" + (f", width {width}" if width else "")
        raise IncompatibleCheckpointError(f"{path}: holds a {arch.label}, not the {named} net expected")
    bins = arch.bins or 2 ** (arch.levels + 1) * 21  # 672 for 4 levels; any multiple of 2 ** (levels + 1) builds
    try:
        net = arch.build(bins)
    except ValueError as exc:
        raise IncompatibleCheckpointError(f"{path}: {exc}") from None
    _check_match(net, state, path, arch)
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
    reading the file again.
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
        net = arch.build(bins)
    except ValueError as exc:
        raise IncompatibleCheckpointError(f"{path}: {exc}") from None
    _check_match(net, state, path, arch)
    first = next(v for v in state.values() if v.is_floating_point())
    net.load_state_dict(state, strict=True)
    net.float().eval().to(device)
    return LoadedWeights(net=net, path=path, file_dtype=first.dtype, n_tensors=len(state), architecture=arch)
