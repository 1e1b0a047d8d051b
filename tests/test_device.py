"""The device policy, provable without a GPU: host/device copies counted, CUDA flags scoped to the
network stage, synchronised phase timers, CPU-only memory tricks, segment sizes from memory."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import SR, music_like
from uvrsep import Separator, device, inference, job, transfer
from uvrsep.config import load_band_layout
from uvrsep.network.layers import Decoder
from uvrsep.semantics import Settings


class StubNet(torch.nn.Module):
    """A cheap stand-in for the network: a mask that depends on each window's input."""

    context = 128
    frame_multiple = 16
    uses_aggressiveness = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = torch.nn.functional.avg_pool2d(x, (5, 9), stride=1, padding=(2, 4))
        return torch.sigmoid(8 * (smooth - smooth.mean(dim=(1, 2, 3), keepdim=True)))


def stub_separator(weights, **options) -> Separator:
    sep = Separator(weights, device="cpu", params="4band_v2", **options)
    sep.net, sep.channels_last = StubNet(), False
    return sep


@pytest.fixture(scope="module")
def stub(tiny_weights):
    """One stub separator for the module, set up anew by each call (loading weights takes a second)."""
    sep = stub_separator(tiny_weights)

    def setup(segment_threshold=None, segment_windows=None, **settings) -> Separator:
        sep.configure(Settings(**settings))
        sep.segment_threshold, sep.segment_windows = segment_threshold, segment_windows
        return sep

    return setup


# -- copies between host and device ------------------------------------------------------------

#: Tensor methods that copy to the host or wait for the device, counted beside the transfer helpers.
SYNCS = ("cpu", "numpy", "item", "tolist", "__float__")


@pytest.fixture
def crossings(monkeypatch):
    """Counts of every call of :mod:`uvrsep.transfer` (all the pipeline's host/device copies go
    through it) and of the tensor methods that read a value back to the host."""
    counts: Counter = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in ("to_device", "to_host"):
        monkeypatch.setattr(transfer, name, counted(name, getattr(transfer, name)))
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    windows = []
    real = inference.run_windows_many

    def counting_windows(items, predict, **kwargs):
        windows.append(sum(plan.n_windows for _, plan in items))
        return real(items, predict, **kwargs)

    monkeypatch.setattr(inference, "run_windows_many", counting_windows)
    return counts, windows


def separated_counts(sep, wave, crossings) -> tuple[Counter, int]:
    counts, windows = crossings
    counts.clear()
    windows.clear()
    sep.separate(wave, SR)
    return Counter(counts), sum(windows)


@pytest.mark.parametrize("semantics", ["rvc", "uvr"])
def test_copies_do_not_grow_with_the_windows_of_a_whole_input(stub, crossings, semantics):
    """A whole input and one 4x longer, with 4x the network windows: the same copies, a few per stem."""
    sep = stub(semantics=semantics, window_size=288, tta=True, segment_threshold=math.inf)
    n = SR + 123  # both lengths end on a partial hop (its synthesis is counted too)
    wave = music_like(5.0)
    sep.separate(wave[:, : n // 2], SR)  # caches (resampler taps, windows) filled
    short, short_windows = separated_counts(sep, wave[:, :n], crossings)
    long, long_windows = separated_counts(sep, wave[:, : 4 * n], crossings)
    assert long_windows >= 3.5 * short_windows > 0
    assert long == short, (short, long)
    assert long["to_device"] + long["to_host"] <= 10 * len(sep.labels) + 4
    assert long["cpu"] == long["to_host"] and long["item"] + long["tolist"] + long["__float__"] <= 1


# RVC's segments of a 5 s input take seconds: the whole file's FFT resampling wraps around it.
@pytest.mark.parametrize("semantics", [pytest.param("rvc", marks=pytest.mark.slow), "uvr"])
def test_copies_per_segment_do_not_depend_on_the_windows(stub, crossings, semantics):
    """The same 256-frame segments of 1 or 8 windows each (window 512 or 288): the same copies."""
    wave = music_like(5.0)  # 460 frames: two segments
    sep = stub(semantics=semantics, segment_threshold=0)
    sep.separate(wave[:, : SR // 2], SR)  # caches filled
    counts, windows = {}, {}
    for window, per_segment in ((512, 1), (288, 8)):
        sep.configure(window_size=window)
        sep.segment_windows = per_segment
        assert sep.segment_plan(wave.shape[1]).frames == 256
        counts[window], windows[window] = separated_counts(sep, wave, crossings)
    assert windows[288] >= 6 * windows[512]
    assert counts[288] == counts[512], counts
    copies = counts[512]["to_device"] + counts[512]["to_host"]
    assert copies <= 2 * (8 * len(sep.labels) + 4), counts  # two segments
    assert counts[512]["cpu"] == counts[512]["to_host"] and counts[512]["__float__"] <= 1


# -- the network's flags, threads and timers -----------------------------------------------------


def test_network_scope_sets_cuda_flags_for_the_stage_only():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark
    cuda = torch.device("cuda", 0)
    try:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = False, True, False
        with device.network_scope(cuda, "tf32"):
            assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (True, True, True)
        assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (False, True, False)
        with device.network_scope(cuda, "fp32"):
            assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (False, False, True)
        assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (False, True, False)
        with device.network_scope(torch.device("cpu"), "fp32"):  # nothing to set elsewhere
            assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (False, True, False)
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = before


def test_the_network_scope_is_entered_once_per_stage_not_per_window(stub, monkeypatch):
    entered = []
    real = inference.network_scope
    monkeypatch.setattr(
        inference, "network_scope", lambda dev, precision: entered.append(precision) or real(dev, precision)
    )
    sep = stub(window_size=288, tta=True)
    sep.separate(music_like(3.0), SR)
    assert sep.n_windows(300) > 10 and entered == ["fp32"]


def test_resolving_a_device_sets_no_global_flag(monkeypatch):
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert device.resolve_device("cuda") == torch.device("cuda", 0)
    assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == before


def test_phase_clock_waits_for_cuda_only(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: waited.append(dev))
    device.PhaseClock(torch.device("cpu"))()
    assert waited == []
    cuda = torch.device("cuda", 0)
    device.PhaseClock(cuda)()
    assert waited == [cuda]


def test_the_reader_converts_rates_on_the_cpu_whatever_the_dsp_device(tiny_weights, tmp_path):
    """Decoding and rate conversion (the batch's reader thread) never run on the DSP device; a
    device no work can run on proves it."""
    path = tmp_path / "48k.wav"
    sf.write(path, music_like(0.5, sr=48000).T, 48000, subtype="FLOAT")
    sep = Separator(tiny_weights, device="cpu")
    sep.dsp = torch.device("meta")
    wave = sep.load(path)
    assert isinstance(wave, np.ndarray) and wave.shape == (2, SR // 2)


def test_memory_tricks_and_layouts_per_device(tiny_weights, monkeypatch):
    """split_concat (several convolutions instead of one, to save memory) on the CPU only;
    channels-last on the CPU and for CUDA's tensor-core precisions."""
    from uvrsep import model as model_module

    real = model_module.load_network
    monkeypatch.setattr(
        model_module, "load_network", lambda path, bins, dev, state: real(path, bins, "cpu", state=state)
    )
    on_cuda = model_module.load_model(tiny_weights, device=torch.device("cuda", 0))
    on_cpu = model_module.load_model(tiny_weights, device=torch.device("cpu"))
    decoders = lambda m: [d for d in m.net.modules() if isinstance(d, Decoder)]
    assert decoders(on_cuda) and not any(d.split_concat for d in decoders(on_cuda))
    assert all(d.split_concat for d in decoders(on_cpu))
    cuda = torch.device("cuda", 0)
    assert [device.uses_channels_last(cuda, p) for p in device.PRECISIONS] == [False, True, True, True]
    assert all(device.uses_channels_last(torch.device("cpu"), p) for p in device.PRECISIONS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_window_loop_never_waits_for_the_gpu(tiny_weights):
    sep = Separator(tiny_weights, device="cuda", tta=True, window_size=320)
    mag = torch.rand(2, sep.layout.bins + 1, 2000, device=sep.dsp)
    stage = sep.stage()
    block = inference.BlockInput(mag, 0, 0, 2000, 2000, 1.0, stage.windows(0, 2000, 2000))
    stage.estimate([block], None)  # warm-up: cuDNN's algorithm search may wait
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        est = stage.estimate([block], None)[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert est.shape == (2, sep.layout.bins + 1, 2000) and est.device.type == "cuda"


# -- segment sizes from memory ------------------------------------------------------------------


def test_segment_plan_from_memory():
    layout = load_band_layout("4band_v2")
    minute = 60 * SR
    per_frame = job.bytes_per_frame(layout)
    # A 3-minute song goes whole with room for its arrays (a large card), in segments without.
    assert job.segment_plan(3 * minute, layout, 256, 40 << 30).frames is None
    small = job.segment_plan(3 * minute, layout, 256, 512 << 20)
    assert small.frames is not None and small.frames % 256 == 0 and small.frames * per_frame <= 256 << 20
    assert small.held == (512 << 20) - small.frames * per_frame
    # The user's threshold and window count decide where given; layouts that cannot be cut go whole.
    assert job.segment_plan(3 * minute, layout, 256, 40 << 30, threshold=60).frames == 5376  # ≤ 60 s each
    assert job.segment_plan(3 * minute, layout, 256, 1 << 20, threshold=math.inf).frames is None
    assert job.segment_plan(3 * minute, layout, 256, 40 << 30, threshold=0, windows=3).frames == 768
    assert job.segment_plan(3 * minute, load_band_layout("4band_44100_reverse"), 256, 1 << 20).frames is None


def test_cuda_budget_is_a_share_of_the_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (60 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev=None: 6 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev=None: 2 << 30)
    assert device.memory_budget(torch.device("cuda", 0)) == int(device.CUDA_SHARE * (64 << 30))
    assert device.memory_budget(torch.device("cpu")) == device.CPU_BUDGET_BYTES


def test_the_analysis_runs_once_when_its_blocks_fit(stub, monkeypatch):
    """Segments: each block is analysed once (for the normalisation's maximum, then kept for its
    segment); with nothing to keep them in, twice; with post-processing the network runs once
    over each window when the estimates fit."""
    from uvrsep import segments

    calls = Counter()
    real = segments.analyze_frames
    monkeypatch.setattr(segments, "analyze_frames", lambda *a, **k: calls.update([a[3]]) or real(*a, **k))
    wave = music_like(3.0)  # 276 frames: segments of 128, 128 and 20 (and the extra ones)
    sep = stub(semantics="uvr", window_size=384, segment_threshold=0, segment_windows=1)  # UVR's segments are cheap
    plan = sep.segment_plan(wave.shape[1])
    for held, postprocess, expected in ((True, False, 1), (False, False, 2), (True, True, 1)):
        sep.configure(postprocess=postprocess)
        monkeypatch.setattr(
            sep, "segment_plan", lambda n, held=held: job.SegmentPlan(plan.frames, plan.held if held else 0)
        )
        windows = []
        calls.clear()
        sep.separate_many([(wave, SR)], on_window=windows.append)
        assert sorted(calls) == [0, 128, 256] and set(calls.values()) == {expected}, (held, postprocess, calls)
        assert sum(windows) == sep.n_windows(job.bands.frame_count(wave.shape[1], sep.layout))
