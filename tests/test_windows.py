import numpy as np
import pytest
import torch

from tests.helpers import run_windows
from uvrsep.errors import ConfigError
from uvrsep.windows import WindowPlan

WINDOW, CONTEXT = 512, 128


def centre(batch: torch.Tensor) -> torch.Tensor:
    """An identity 'net': the window's centre, as the real net's output is cropped."""
    return batch[:, :, :, CONTEXT:-CONTEXT]


@pytest.mark.parametrize("n_frames", [1, 255, 256, 257, 2206, 10 * 256 + 3])
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_identity_net_reproduces_input(n_frames, shifted, batch_size):
    mag = np.random.default_rng(n_frames).random((2, 5, n_frames), dtype=np.float32)
    plan = WindowPlan.for_frames(n_frames, WINDOW, CONTEXT, shifted=shifted)
    out = run_windows(torch.from_numpy(mag), plan, centre, batch_size=batch_size)
    np.testing.assert_array_equal(out.numpy(), mag)


def test_plan_matches_uvr_make_padding():
    plan = WindowPlan.for_frames(2206, WINDOW, CONTEXT)
    assert (plan.pad_left, plan.pad_right, plan.hop, plan.n_windows) == (128, 256 - 2206 % 256 + 128, 256, 9)
    tta = WindowPlan.for_frames(2206, WINDOW, CONTEXT, shifted=True)
    assert (tta.pad_left, tta.pad_right, tta.n_windows, tta.shift) == (256, plan.pad_right + 128, 10, 128)


def test_window_must_exceed_context():
    with pytest.raises(ConfigError, match="larger than twice the context"):
        WindowPlan.for_frames(100, 256, 128)


@pytest.mark.parametrize("shifted", [False, True])
def test_window_arithmetic_covers_any_range(shifted):
    """covering(lo, hi) gives exactly the windows whose outputs hold frames lo .. hi - 1, reads()
    the input frames they need, output_frame() where their outputs start."""
    n = 2206
    plan = WindowPlan.for_frames(n, WINDOW, CONTEXT, shifted=shifted)
    for lo, hi in [(0, 1), (0, n), (255, 257), (1000, 1900), (n - 3, n + 4), (2000, 2206)]:
        first, last = plan.covering(lo, hi)
        held = range(plan.output_frame(first), plan.output_frame(last))  # frames the windows output
        assert held.start <= lo and held.stop >= min(hi, n)
        assert plan.output_frame(first + 1) > lo and plan.output_frame(last - 1) < min(hi, n)  # no window to spare
        e0, e1 = plan.reads(first, last)
        assert e1 - e0 == (last - first - 1) * plan.hop + WINDOW
        assert e0 == plan.output_frame(first) - CONTEXT  # a window reads its context on each side
    assert plan.consecutive(3) == WindowPlan(3 * plan.hop, WINDOW, CONTEXT, 0, 0, 3)
