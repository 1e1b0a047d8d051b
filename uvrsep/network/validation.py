"""What the tensors of a weight file may be: dense, stored in the file, of a weight's float type
(BatchNorm's integer counters aside) and finite. :func:`check_tensors` runs on every state dict
read (:func:`uvrsep.network.checkpoint.read_checkpoint`), before anything looks at its values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import IncompatibleCheckpointError

#: Keys whose tensors are integer counters in every PyTorch state dict (BatchNorm).
_INTEGER_KEYS = ("num_batches_tracked",)
#: Float types a weight may have: UVR's files are float32, RVC's float16; bfloat16 and float64
#: load exactly as well (float8 and others do not: no official file has them).
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_COUNTER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, *WEIGHT_DTYPES)


def check_tensors(state: dict[str, torch.Tensor], path: str | Path = "<weights>") -> None:
    """Refuse weights that cannot be right, naming the first bad tensor and how many more there
    are: sparse or other non-dense layouts, meta tensors (no data), dtypes other than
    :data:`WEIGHT_DTYPES` (an int32 file would otherwise load, cast silently; float8 has no
    official use), tensors claiming more values than the file stores (:func:`_check_stored`), and
    NaN / infinite values (which would only show as NaN stems after a whole separation). Raises
    :class:`IncompatibleCheckpointError`. Each check reads only what the previous ones allowed."""
    _refuse_first(
        path,
        [k for k, v in state.items() if v.layout != torch.strided],
        lambda k: f"is a {_name(state[k].layout)} tensor",
        "weights must be dense tensors",
    )
    _refuse_first(
        path,
        [k for k, v in state.items() if v.device.type != "cpu"],
        lambda k: f"is a {state[k].device.type} tensor",
        "it holds no values",
    )
    allowed = {k: _COUNTER_DTYPES if k.endswith(_INTEGER_KEYS) else WEIGHT_DTYPES for k in state}
    _refuse_first(
        path,
        [k for k, v in state.items() if v.dtype not in allowed[k]],
        lambda k: f"is {_name(state[k].dtype)}",
        "weights must be floating point (float32, float16, bfloat16 or float64)",
    )
    _check_stored(state, path)
    bad = [(k, n) for k, v in state.items() if v.is_floating_point() and (n := _count_non_finite(v))]
    if bad:
        key, count = bad[0]
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise IncompatibleCheckpointError(
            f"{path}: tensor {key} holds {count} NaN or infinite value(s) of {state[key].numel()}{more}; "
            "the file is damaged"
        )


def _name(thing: torch.dtype | torch.layout) -> str:
    return str(thing).replace("torch.", "")


def _refuse_first(path, keys: list[str], what, why: str) -> None:
    """Raise ``"<path>: tensor <key> <what(key)> (and N more tensors); <why>"`` if ``keys``."""
    if keys:
        more = f" (and {len(keys) - 1} more tensors)" if len(keys) > 1 else ""
        raise IncompatibleCheckpointError(f"{path}: tensor {keys[0]} {what(keys[0])}{more}; {why}")


def _check_stored(state: dict[str, torch.Tensor], path) -> None:
    """Refuse tensors claiming more bytes than the file stores for them: views into one storage
    that overlap themselves or each other, such as a stride-0 expansion of one stored value into
    a huge shape. ``torch.save`` of a net never writes them, and counting, casting or loading
    their values would cost memory the file never held. The same view under two keys (tied
    weights, as UVR's conv6 / conv7) counts once."""
    held: dict[int, int] = {}
    claimed: dict[int, dict[tuple, tuple[str, int]]] = {}
    for key, tensor in state.items():
        storage = tensor.untyped_storage()
        held[storage.data_ptr()] = storage.nbytes()
        view = (tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        claimed.setdefault(storage.data_ptr(), {})[view] = (key, tensor.numel() * tensor.element_size())
    for ptr, views in claimed.items():
        total = sum(size for _, size in views.values())
        if total > held[ptr]:
            key, _ = max(views.values(), key=lambda item: item[1])
            raise IncompatibleCheckpointError(
                f"{path}: tensor {key} {tuple(state[key].shape)} repeats stored values: "
                f"{total} bytes claimed from {held[ptr]} stored; not a net's weights"
            )


def _count_non_finite(tensor: torch.Tensor) -> int:
    """NaN and infinite entries of a float tensor (counted in numpy: many times faster than
    torch's CPU kernels for float16, the dtype of RVC's files)."""
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    values = tensor.detach().cpu().numpy()
    return int(values.size - np.count_nonzero(np.isfinite(values)))
