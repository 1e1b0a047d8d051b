"""Where a separation runs and in what arithmetic: the device and precision policy.

- :func:`resolve_device`: ``auto`` / a name / a :class:`torch.device` → a checked device.
- :func:`dsp_device`: where everything around the network runs (the network's CUDA device, else
  the CPU).
- :data:`PRECISIONS`, :func:`effective_precision`, :func:`uses_channels_last`: the network's
  arithmetic and memory format on a device.
- :func:`network_scope`: the CUDA flags the network's arithmetic needs (TF32 on or off,
  ``cudnn.benchmark``), set for the duration of one network stage — a run over a block's
  windows, on the thread that runs the network — and restored after; never set per window,
  never left set. uvrsep's other thread (the batch's reader) decodes and converts rates on the
  CPU only, so no CUDA work of uvrsep runs under the network's flags. A lock keeps the network
  stages of separators on different threads of one process from interleaving their flags. fp16
  and bf16 cast the weights and each batch (no autocast, nothing global).
- :class:`PhaseClock`: timings that include the work queued on a CUDA device.
- :func:`memory_budget`: the bytes one input's arrays may take on the DSP device (free CUDA
  memory, or a fixed RAM budget on the CPU); :mod:`uvrsep.job` sizes segments from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import ConfigError, option

#: The network's arithmetic (``Separator(precision=...)``, ``--precision``).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
#: Precisions that cast the weights and each batch to a 16-bit float type.
LOW_PRECISION = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: On the CPU: the bytes one input's arrays may take (spectrograms, magnitudes, masks, stems and
#: their synthesis; the network's own working memory and the loaded model come on top). Inputs
#: whose arrays fit are processed whole, longer ones in segments (:mod:`uvrsep.job`).
CPU_BUDGET_BYTES = 512 << 20
#: On CUDA: the share of the free device memory (measured when an input starts, after the model
#: is loaded) that its arrays may take; the rest is left to the network's windows and the
#: allocator's slack.
CUDA_SHARE = 0.5

_NETWORK_FLAGS = threading.Lock()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; others (a name such as ``cuda:1`` or a
    :class:`torch.device`) are checked for availability. Sets no global state."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r} (use auto, cpu, cuda or mps)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"{option('device', value=device)}: no CUDA GPU is available to this process "
            f"(use {option('device', value='auto')} or {option('device', value='cpu')})"
        )
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(
            f"{option('device', value=device)}: MPS (Apple-silicon GPU) is not available on this machine "
            f"(use {option('device', value='auto')} or {option('device', value='cpu')})"
        )
    if device == "cuda":  # the index its tensors report, so that devices compare equal
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device)


def dsp_device(device: torch.device) -> torch.device:
    """Where the DSP of a network on ``device`` runs: on CUDA, there; otherwise on the CPU (MPS
    has no float64, which the synthesis needs)."""
    return device if device.type == "cuda" else torch.device("cpu")


def effective_precision(precision: str, device: torch.device) -> str:
    """What ``precision`` becomes on ``device``: TF32 exists on CUDA only, fp16 runs on CUDA and
    MPS only (on the CPU few machines have fast fp16 kernels); elsewhere ``fp32``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision == "tf32" and device.type != "cuda":
        return "fp32"
    if precision == "fp16" and device.type not in ("cuda", "mps"):
        return "fp32"
    return precision


def uses_channels_last(device: torch.device, precision: str) -> bool:
    """Whether the network runs in channels-last memory format: on the CPU (oneDNN's convolutions,
    faster there: docs/performance.md) and on CUDA for the tensor-core precisions (tf32, fp16, bf16:
    cuDNN's tensor-core convolutions take NHWC without transposing); strict fp32 on CUDA keeps
    the default layout."""
    if device.type == "cpu":
        return True
    return device.type == "cuda" and precision in ("tf32", "fp16", "bf16")


@contextmanager
def network_scope(device: torch.device, precision: str) -> Iterator[None]:
    """The flags the network needs on ``device``, for the duration of one network stage.

    On CUDA: TF32 for convolutions and matmuls on for ``tf32`` and off otherwise (PyTorch's
    default TF32 convolutions alone cost ~10 dB of parity), and ``cudnn.benchmark`` on (the
    windows all have one shape, so the fastest algorithm is found once). The previous values
    come back on exit. Elsewhere nothing is set.
    """
    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    with _NETWORK_FLAGS:
        saved = matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark
        matmul.allow_tf32 = cudnn.allow_tf32 = precision == "tf32"
        cudnn.benchmark = True
        try:
            yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved


class PhaseClock:
    """Wall-clock readings for phase timings on ``device``.

    CUDA kernels run asynchronously, so an unsynchronised clock would charge the network's time
    to whichever later phase waits for it; on CUDA each reading first waits for the device
    (once per phase boundary, never per window).
    """

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def memory_budget(device: torch.device) -> int:
    """Bytes one input's arrays may take on ``device`` (see :data:`CPU_BUDGET_BYTES` and
    :data:`CUDA_SHARE`): on CUDA, that share of the memory free now (the driver's free memory plus
    what PyTorch's allocator holds unused)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(CUDA_SHARE * (free + unused))
    return CPU_BUDGET_BYTES
