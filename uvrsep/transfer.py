"""Every copy between the host's memory and a device that the pipeline makes.

From the analysis to the synthesis a separation keeps its arrays on one device (the DSP device,
:func:`uvrsep.device.dsp_device`); numpy arrays cross to it and back only here: the decoded
input, the steps that run on the CPU (libsamplerate, soxr), the per-frame post-processing
statistics and the stems handed to the caller. ``tests/test_device.py`` counts these calls
while separating inputs of different lengths: a small constant per stem and segment, none per
network window. On the CPU both functions make views, not copies.
"""

from __future__ import annotations

import numpy as np
import torch


def to_device(x: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``x`` as a tensor on ``device`` (a view of a numpy array on the CPU where its layout
    allows; a tensor already there is returned as it is)."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if not x.flags.writeable or any(s < 0 for s in x.strides):
        x = np.array(x)
    return torch.from_numpy(x).to(device)


def to_host(t: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array in the host's memory (a view of it when it is on the CPU)."""
    return t.detach().cpu().numpy()
