"""Test-only ways into the pipeline's stages (the package has no such entry points)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from uvrsep.inference import BlockInput
from uvrsep.windows import WindowPlan, run_windows_many


def run_windows(
    mag: torch.Tensor, plan: WindowPlan, predict: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = 1
) -> torch.Tensor:
    """:func:`run_windows_many` of one spectrogram ``[C, F, n_frames]``."""
    return run_windows_many([(mag, plan)], predict, batch_size=batch_size)[0]


def estimate(sep, mag: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """The network stage's estimate (RVC: masked magnitudes; UVR: the mask after aggression) for
    a whole input's mix magnitudes float32 ``[2, F, N]``, of which the first ``n_frames`` are the
    input's (normalised by their maximum and run through the network; later frames reuse the last
    frame's mask)."""
    n = mag.shape[2] if n_frames is None else n_frames
    mag_t = torch.from_numpy(np.ascontiguousarray(mag, dtype=np.float32))
    stage = sep.stage()
    block = BlockInput(mag_t, 0, 0, mag.shape[2], n, float(mag_t[:, :, :n].max()), stage.windows(0, mag.shape[2], n))
    return stage.estimate([block], None)[0].numpy()


def predict_magnitudes(sep, mag: np.ndarray) -> np.ndarray:
    """The masked stem's magnitudes for mix magnitudes ``[2, F, N]``, before post-processing."""
    est = torch.from_numpy(estimate(sep, mag))
    return sep.semantics.magnitudes(est, torch.from_numpy(np.ascontiguousarray(mag, dtype=np.float32))).numpy()
