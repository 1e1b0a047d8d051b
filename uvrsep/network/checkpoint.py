"""Reading official UVR / RVC VR weight files into :class:`CascadedASPPNet`.

Official files are plain ``torch.save(state_dict)`` pickles (float32 from UVR, float16 from RVC).
They are read with ``torch.load(..., weights_only=True)``: no code in a weight file runs. The
architecture is worked out from the tensors' keys and shapes, never from the file size, and the
state dict must then match the net key for key and shape for shape.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import IncompatibleCheckpointError
from .cascaded_aspp import AsppNetConfig, CascadedASPPNet

_FIRST_CONV = "stg1_low_band_net.enc1.conv1.conv.0.weight"
#: Dilations of the 7-branch ASPP (``layers_537238KB``: conv6 and conv7 reuse the last rate).
SEVEN_BRANCH_DILATIONS = (4, 8, 16, 16, 16)
MAX_LISTED = 6


@dataclass(frozen=True)
class LoadedWeights:
    """A net built and filled from a weight file."""

    net: CascadedASPPNet
    path: Path
    file_dtype: torch.dtype
    n_tensors: int


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weight file safely; raise :class:`IncompatibleCheckpointError` naming the file."""
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
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleCheckpointError(f"{path}: not a readable PyTorch weight file ({reason})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IncompatibleCheckpointError(f"{path}: does not hold a state dict of tensors")
    return obj


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """One line saying what a state dict looks like (family, widths, dtype, tensor count)."""
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values() if v.is_floating_point()})
    base = f"{len(state)} tensors, {'/'.join(dtypes) or 'no float'}"
    lstm = [k for k in state if "lstm_dec2.lstm.weight_ih_l0" in k]
    if lstm:
        nout = state["out.weight"].shape[1] if "out.weight" in state else "?"
        bins = 2 * state[lstm[-1]].shape[1]
        return f"a VR 5.1 net (CascadedNet with LSTM decoder, nout {nout}, bins {bins}); {base}"
    if _FIRST_CONV in state:
        ch = state[_FIRST_CONV].shape[0]
        branches = 7 if any(".aspp.conv7." in k for k in state) else 5
        level = ", 5 levels" if any(".enc5." in k for k in state) else ""
        return f"a cascaded ASPP net (width {ch}, {branches}-branch ASPP{level}); {base}"
    prefixes = sorted({k.split(".")[0] for k in state})
    shown = ", ".join(prefixes[:MAX_LISTED]) + (" ..." if len(prefixes) > MAX_LISTED else "")
    return f"not a VR net (top-level keys: {shown}); {base}"


def _config_for(state: dict[str, torch.Tensor], bins: int, path: Path) -> AsppNetConfig:
    if _FIRST_CONV not in state or any("lstm_dec2" in k for k in state) or any(".enc5." in k for k in state):
        raise IncompatibleCheckpointError(
            f"{path}: not a supported cascaded ASPP (HP-family) weight file: it looks like "
            f"{describe_state_dict(state)}"
        )
    channels = int(state[_FIRST_CONV].shape[0])
    dilations = SEVEN_BRANCH_DILATIONS if any(".aspp.conv7." in k for k in state) else (4, 8, 16)
    return AsppNetConfig(bins=bins, channels=channels, dilations=dilations)


def _check_match(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
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
        f"{path}: weights do not fit a {net.config.channels}-wide cascaded ASPP net "
        f"({'; '.join(parts)}); the file looks like {describe_state_dict(state)}"
    )


def load_network(path: str | Path, bins: int, device: str | torch.device = "cpu") -> LoadedWeights:
    """Build the net a weight file describes, load it (cast to float32) and put it in eval mode."""
    path = Path(path)
    state = read_state_dict(path)
    try:
        net = CascadedASPPNet(_config_for(state, bins, path))
    except ValueError as exc:
        raise IncompatibleCheckpointError(f"{path}: {exc}") from None
    _check_match(net, state, path)
    first = next(v for v in state.values() if v.is_floating_point())
    net.load_state_dict(state, strict=True)
    net.float().eval().to(device)
    return LoadedWeights(net=net, path=path, file_dtype=first.dtype, n_tensors=len(state))
