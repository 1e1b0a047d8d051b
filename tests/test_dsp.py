"""The torch DSP steps (uvrsep.dsp, run by uvrsep.bands) against their references: librosa /
resampy / scipy for resampling and STFT, and the original's numpy steps (tests/oracle.py) for
the band arithmetic.

Resampling and STFT / iSTFT must reach 100 dB SDR on random signals for every rate pair and FFT
size the shipped band configs use (and the input rates users have); the arithmetic steps match
to float rounding, or exactly.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from tests import oracle
from tests.conftest import music_like
from uvrsep import bands, dsp
from uvrsep.config import list_band_layouts, load_band_layout
from uvrsep.dsp import polyphase, resampling, resampy_filters
from uvrsep.evaluation import sdr
from uvrsep.semantics import UvrSemantics

LAYOUTS = [load_band_layout(name) for name in list_band_layouts()]
#: Sample rates of the files users separate (and an odd one): each is converted to the layout's rate.
INPUT_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44056, 44100, 48000, 88200, 96000, 192000)


def _pairs() -> tuple[list, list, list]:
    """(analysis, synthesis, input) rate pairs ``(orig, target, res_type)`` the configs need in torch."""
    analysis, synthesis, inputs = set(), set(), set()
    for layout in LAYOUTS:
        chain = layout.bands
        for i in range(len(chain) - 1):
            lo, hi = chain[i], chain[i + 1]
            if lo.sample_rate == hi.sample_rate:
                continue
            if lo.resample_type in resampling.TORCH_RESAMPLERS:
                analysis.add((hi.sample_rate, lo.sample_rate, lo.resample_type))
            if bands.synthesis_resampler(layout, i) in resampling.TORCH_RESAMPLERS:
                synthesis.add((lo.sample_rate, hi.sample_rate, bands.synthesis_resampler(layout, i)))
        if layout.top.resample_type in resampling.TORCH_RESAMPLERS:
            for rate in INPUT_RATES:
                if rate != layout.sample_rate:
                    inputs.add((rate, layout.sample_rate, layout.top.resample_type))
    for rate in INPUT_RATES:  # resampy's best filter too, for every input rate
        if rate != 44100:
            inputs.add((rate, 44100, "kaiser_best"))
    return sorted(analysis), sorted(synthesis), sorted(inputs)


ANALYSIS_PAIRS, SYNTHESIS_PAIRS, INPUT_PAIRS = _pairs()
FFT_SIZES = sorted({(b.n_fft, b.hop_length) for layout in LAYOUTS for b in layout.bands})


def noise(channels: int, n: int, dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((channels, n)).astype(dtype)


def check_resampler(x: np.ndarray, orig: int, target: int, res_type: str, floor: float = 100.0) -> None:
    ref = librosa.resample(x, orig_sr=orig, target_sr=target, res_type=res_type)
    out = dsp.resample(torch.from_numpy(x), orig, target, res_type)
    assert out.dtype == torch.from_numpy(ref).dtype
    assert tuple(out.shape) == ref.shape
    assert sdr(ref, out.numpy()) >= floor, f"{orig}->{target} {res_type}: {sdr(ref, out.numpy()):.1f} dB"


# -- resampling --------------------------------------------------------------------------------


def test_the_configs_need_these_pairs():
    # What the shipped configs make the analysis, the synthesis and the input conversion do
    # (guards the parametrisation below against a silent change of the configs' parsing).
    assert (44100, 14700, "polyphase") in ANALYSIS_PAIRS and (22050, 11025, "polyphase") in ANALYSIS_PAIRS
    assert (7350, 14700, "scipy") in SYNTHESIS_PAIRS and (22050, 44100, "scipy") in SYNTHESIS_PAIRS
    assert (48000, 44100, "kaiser_fast") in INPUT_PAIRS and (48000, 44100, "polyphase") in INPUT_PAIRS
    assert (44100, 32000, "kaiser_fast") in INPUT_PAIRS and (192000, 44100, "kaiser_best") in INPUT_PAIRS
    assert (960, 480) in FFT_SIZES and (640, 432) in FFT_SIZES and len(FFT_SIZES) > 15


@pytest.mark.parametrize("orig,target,res_type", ANALYSIS_PAIRS)
def test_analysis_resampling(orig, target, res_type):
    check_resampler(noise(2, orig + 37), orig, target, res_type)


@pytest.mark.parametrize("orig,target,res_type", SYNTHESIS_PAIRS)
def test_synthesis_resampling_float64(orig, target, res_type):
    check_resampler(noise(2, orig + 41, np.float64), orig, target, res_type, floor=250)


@pytest.mark.parametrize("orig,target,res_type", INPUT_PAIRS)
def test_input_resampling(orig, target, res_type):
    # Half a second holds several periods of every pair but 44056 (1 period = 0.25 s).
    check_resampler(noise(2, orig // 2 + 13), orig, target, res_type)


@pytest.mark.parametrize("res_type", ["kaiser_fast", "kaiser_best", "polyphase"])
def test_fir_resamplers_any_pair_dtype_and_length(res_type):
    for orig, target, n in [
        (44100, 22050, 1001),
        (22050, 44100, 999),
        (44100, 7350, 4410),
        (37800, 44100, 3000),
        (44100, 50000, 500),
    ]:
        check_resampler(noise(2, n, seed=n), orig, target, res_type)
    check_resampler(noise(1, 3001, np.float64), 48000, 44100, res_type, floor=250)
    mono = noise(1, 2000)[0]
    ref = librosa.resample(mono, orig_sr=16000, target_sr=44100, res_type=res_type)
    out = dsp.resample(torch.from_numpy(mono), 16000, 44100, res_type)
    assert out.shape == ref.shape and sdr(ref, out.numpy()) >= 100


def test_resampy_positions_rounded_across_an_integer():
    # At 33075 -> 32000 resampy's float64 positions of some phase-0 outputs fall just below an
    # integer, which shifts their taps: those outputs are recomputed (without that: ~90 dB).
    fix = resampy_filters._resampy_fixups("kaiser_fast", 33075, 32000, 200_000)
    assert fix.size > 0 and np.all(fix % 1280 == 0)
    x = noise(2, 33075 * 7)
    ref = librosa.resample(x, orig_sr=33075, target_sr=32000, res_type="kaiser_fast")
    out = dsp.resample(torch.from_numpy(x), 33075, 32000, "kaiser_fast").numpy()
    bad = fix[fix < ref.shape[1]]
    assert np.abs(ref[:, bad] - out[:, bad]).max() < 1e-5
    assert sdr(ref, out) >= 120


def test_resampy_too_short_input_is_refused_as_resampy_does():
    with pytest.raises(ValueError, match="too short"):
        dsp.resample(torch.zeros(2, 1), 48000, 44100, "kaiser_fast")


def test_resample_keeps_equal_rates_and_empty_input():
    x = torch.randn(2, 100)
    assert dsp.resample(x, 44100, 44100, "polyphase") is x
    empty = torch.zeros(2, 0)
    assert dsp.resample(empty, 44100, 22050, "kaiser_fast") is empty


@pytest.mark.parametrize(
    "res_type, orig, target",
    [
        ("sinc_fastest", 11025, 22050),
        ("sinc_fastest", 22050, 44100),
        ("sinc_best", 44100, 32000),
        ("sinc_medium", 48000, 44100),
        ("linear", 16000, 44100),
        ("zero_order_hold", 44100, 22050),
        ("soxr_hq", 48000, 44100),
        ("soxr_vhq", 22050, 16000),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_resamplers_are_librosa_exactly(res_type, orig, target, dtype):
    # libsamplerate and soxr stay on the CPU, called as librosa calls them (without importing it).
    x = noise(2, 5001, dtype)
    ref = librosa.resample(x, orig_sr=orig, target_sr=target, res_type=res_type)
    out = dsp.resample(torch.from_numpy(x), orig, target, res_type)
    assert out.dtype == torch.from_numpy(ref).dtype and np.array_equal(ref, out.numpy())


@pytest.mark.parametrize("n,num", [(1000, 3000), (1001, 2002), (1000, 333), (999, 500), (1024, 1024)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_resample_matches_scipy(n, num, dtype):
    x = noise(2, n, dtype)
    ref = scipy.signal.resample(x, num, axis=-1)
    out = dsp.fft_resample(torch.from_numpy(x), num)
    assert out.dtype == torch.from_numpy(ref).dtype and tuple(out.shape) == ref.shape
    assert sdr(ref, out.numpy()) >= (120 if dtype == np.float32 else 250)


def test_convolve_valid_matches_fftconvolve():
    x, taps = noise(2, 5000, np.float64), noise(1, 333, np.float64)[0]
    ref = scipy.signal.fftconvolve(x, taps[None], mode="valid", axes=1)
    out = dsp.convolve_valid(torch.from_numpy(x), torch.from_numpy(taps))
    assert tuple(out.shape) == ref.shape and sdr(ref, out.numpy()) >= 250


def test_polyphase_plan_splits_long_periods_into_groups():
    # 44056 -> 44100 has 11025 phases a period: grouped into short products, not one dense matrix.
    filt = resampy_filters.resampy_filter("kaiser_fast", 44056, 44100)
    plan = polyphase._plan(filt, torch.float32, torch.device("cpu"))
    assert len(plan.groups) > 10
    assert max(b.matrix.numel() for g in plan.groups for b in g.blocks) < 1 << 20


@pytest.mark.slow
@pytest.mark.parametrize(
    "orig,target,res_type",
    [
        (44100, 14700, "polyphase"),
        (48000, 44100, "kaiser_fast"),
        (33075, 32000, "kaiser_fast"),
        (96000, 44100, "kaiser_best"),
    ],
)
def test_resampling_of_long_signals(orig, target, res_type):
    # Three minutes: many row chunks, and float64 positions far from zero.
    check_resampler(noise(2, orig * 180 + 11), orig, target, res_type)


# -- STFT / iSTFT ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_fft,hop", FFT_SIZES)
def test_stft_and_istft_match_librosa(n_fft, hop):
    x = noise(2, 3 * n_fft + hop + 5, seed=n_fft + hop)
    ref = np.stack([librosa.stft(c, n_fft=n_fft, hop_length=hop) for c in x])
    out = dsp.stft(torch.from_numpy(x), n_fft, hop)
    assert out.dtype == torch.complex64 and tuple(out.shape) == ref.shape
    assert sdr(ref, out.numpy()) >= 100
    # An inconsistent spectrogram (not any signal's STFT), complex128 as the synthesis has it.
    spec = ref.astype(np.complex128) + 0.1 * noise(1, ref.size, np.float64).reshape(ref.shape)
    iref = np.stack([librosa.istft(c, hop_length=hop) for c in spec])
    iout = dsp.istft(torch.from_numpy(spec), n_fft, hop)
    assert iout.dtype == torch.float64 and tuple(iout.shape) == iref.shape
    assert sdr(iref, iout.numpy()) >= 100


def test_stft_of_short_signals_and_istft_of_any_layout():
    for n in (1, 100, 700):
        x = noise(1, n)[0]
        with pytest.warns(UserWarning):
            ref = librosa.stft(x, n_fft=1024, hop_length=256)
        assert sdr(ref, dsp.stft(torch.from_numpy(x), 1024, 256).numpy()) >= 100
    spec = np.stack([librosa.stft(c, n_fft=512, hop_length=128) for c in noise(2, 5000)]).astype(np.complex128)
    by_frame = torch.from_numpy(np.ascontiguousarray(spec.transpose(0, 2, 1))).transpose(1, 2)
    assert torch.equal(dsp.istft(torch.from_numpy(spec), 512, 128), dsp.istft(by_frame, 512, 128))
    assert dsp.istft(torch.from_numpy(spec[:, :, :1]), 512, 128).shape == (2, 0)


def test_istft_of_fewer_frames_than_pieces_per_window():
    # n_fft 512 / hop 128: four pieces per frame; 1..6 frames cover the short-input cases.
    for frames in range(1, 7):
        parts = noise(4, 257 * frames, np.float64, seed=frames).reshape(2, 2, 257, frames)
        spec = parts[0] + 1j * parts[1]
        ref = np.stack([librosa.istft(c, hop_length=128) for c in spec])
        out = dsp.istft(torch.from_numpy(spec), 512, 128).numpy()
        assert out.shape == ref.shape and (ref.size == 0 or sdr(ref, out) >= 100)


@pytest.mark.parametrize("threads", [1, 2])
def test_small_blocks_give_the_same_results(monkeypatch, threads):
    # Force many blocks (row chunks of the resampler, frame blocks of the iSTFT) with either
    # block budget; results stay the reference's.
    monkeypatch.setattr("uvrsep.dsp._blocks.CPU_SERIAL_BYTES", 1 << 16)
    monkeypatch.setattr("uvrsep.dsp._blocks.CPU_PARALLEL_BYTES", 1 << 16)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_resampler(noise(2, 20000), 44100, 14700, "polyphase")
        check_resampler(noise(2, 20000), 48000, 44100, "kaiser_fast")
        layout = load_band_layout("4band_v2")
        ref = oracle.analyze(band_limited(layout, 1.0), layout)
        wave = oracle.synthesize(ref.spec, layout, ref.high_end)
        out = bands.synthesize(torch.from_numpy(ref.spec), layout, torch.from_numpy(ref.high_end))
        assert sdr(wave, out.numpy()) >= 100
    finally:
        torch.set_num_threads(before)


# -- bands -------------------------------------------------------------------------------------


def band_limited(layout, seconds: float, seed: int = 0) -> np.ndarray:
    x = music_like(seconds, sr=layout.sample_rate, seed=seed)
    return x + 0.05 * noise(2, x.shape[1], seed=seed)


@pytest.mark.parametrize("mode", ["stereo", "mid_side", "mid_side_b2", "mid_side_c", "stereo_n", "reverse"])
def test_channel_transforms(mode):
    x = noise(2, 1000)
    assert np.array_equal(oracle.to_channels(x, mode), dsp.bands.to_channels(torch.from_numpy(x), mode).numpy())
    y = noise(2, 1000, np.float64)
    assert np.array_equal(oracle.from_channels(y, mode), dsp.bands.from_channels(torch.from_numpy(y), mode).numpy())


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_row_filters(dtype):
    rng = np.random.default_rng(3)
    spec = (rng.standard_normal((2, 200, 30)) + 1j * rng.standard_normal((2, 200, 30))).astype(dtype)
    for apply_np, apply_t, start, stop in [
        (oracle.apply_lowpass, dsp.bands.apply_lowpass, 37, 73),
        (oracle.apply_highpass, dsp.bands.apply_highpass, 93, 45),
        (oracle.apply_lowpass, dsp.bands.apply_lowpass, 150, 120),
    ]:
        ref = spec.copy()
        apply_np(ref, start, stop)
        out = torch.from_numpy(spec.copy())
        apply_t(out, start, stop)
        assert np.array_equal(ref, out.numpy())


#: The layouts as UVR semantics runs them for VR 5.1 nets (per-band channel modes, the ramp
#: pre-filter, sinc_fastest between bands); those whose pre-filter a ramp cannot run are left out.
UVR_LAYOUTS = [
    UvrSemantics.adapt_layout(layout, "vr51")
    for layout in LAYOUTS
    if layout.pre_filter is None or layout.pre_filter[0] <= layout.pre_filter[1]
]


@pytest.mark.parametrize(
    "layout", LAYOUTS + UVR_LAYOUTS, ids=lambda layout: layout.name + ("" if layout in LAYOUTS else "-uvr")
)
def test_analysis_and_synthesis_match_the_reference_steps(layout):
    x = band_limited(layout, 1.2)
    ref = oracle.analyze(x, layout, extra_frames=4)
    out = bands.analyze(torch.from_numpy(x), layout, extra_frames=4)
    assert out.spec.dtype == torch.complex64 and tuple(out.spec.shape) == ref.spec.shape
    assert (out.n_samples, out.n_frames) == (ref.n_samples, ref.n_frames)
    assert sdr(ref.spec, out.spec.numpy()) >= 100
    if ref.high_end is None:
        assert out.high_end is None
    else:
        assert sdr(ref.high_end, out.high_end.numpy()) >= 100
    # Combining the same band STFTs is exact arithmetic (the pre-filter's roundings included).
    specs, _ = oracle.band_spectra(x, layout)
    stop = min(s.shape[2] for s in specs)
    cout, _ = bands.combine([torch.from_numpy(s) for s in specs], layout, 2, stop)
    assert np.array_equal(oracle.combine(specs, layout, 2, stop)[0], cout.numpy())
    # Synthesis of a stem-like spectrogram (another phase, the mix's high end).
    stem = (ref.spec * np.exp(0.3j)).astype(np.complex64)
    wave = oracle.synthesize(stem, layout, ref.high_end)
    high = None if ref.high_end is None else torch.from_numpy(ref.high_end)
    out_wave = bands.synthesize(torch.from_numpy(stem), layout, high)
    assert out_wave.dtype == torch.float64 and tuple(out_wave.shape) == wave.shape
    assert sdr(wave, out_wave.numpy()) >= 100


@pytest.mark.parametrize("name", sorted(resampy_filters.RESAMPY_FILTERS))
def test_resampy_tables_are_computed_as_resampy_ships_them(name):
    # resampy's public get_filter reads its packaged tables; uvrsep computes them from the filters'
    # parameters (it reads no file of resampy's, nor needs it installed).
    resampy = pytest.importorskip("resampy")
    table, precision, _ = resampy.filters.get_filter(name)
    ours, per_zero = resampy_filters.resampy_table(name)
    assert per_zero == precision and ours.shape == table.shape
    assert np.abs(ours - table).max() < 1e-13
    assert sdr(table, ours) >= 250


# -- on a GPU ----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_blocks_on_cuda_equal_the_references():
    x = noise(2, 48000 + 7)
    ref = librosa.resample(x, orig_sr=48000, target_sr=44100, res_type="kaiser_fast")
    assert sdr(ref, dsp.resample(torch.from_numpy(x).cuda(), 48000, 44100, "kaiser_fast").cpu().numpy()) >= 100
    cuda = torch.device("cuda")
    for layout in (load_band_layout("4band_v2"), load_band_layout("4band_44100")):
        wave = band_limited(layout, 2.0)
        ref = oracle.analyze(wave, layout, extra_frames=4)
        out = bands.analyze(torch.from_numpy(wave).to(cuda), layout, extra_frames=4)
        assert sdr(ref.spec, out.spec.cpu().numpy()) >= 100
        stem = (ref.spec * np.exp(0.3j)).astype(np.complex64)
        y = oracle.synthesize(stem, layout, ref.high_end)
        high = None if ref.high_end is None else torch.from_numpy(ref.high_end).to(cuda)
        assert sdr(y, bands.synthesize(torch.from_numpy(stem).to(cuda), layout, high).cpu().numpy()) >= 100
