import math

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import PARITY, SR, music_like
from tests.helpers import predict_magnitudes
from uvrsep import Separator
from uvrsep.audio import write_audio
from uvrsep.errors import (
    AudioReadError,
    AudioWriteError,
    ConfigError,
    EmptyAudioError,
    IncompatibleCheckpointError,
    UnsupportedFormatError,
)


@pytest.fixture(scope="module")
def separator(tiny_weights):
    return Separator(tiny_weights, device="cpu")


def test_half_second_input_keeps_its_length(separator, short_wav):
    stems = separator.separate(short_wav)
    assert set(stems.names) == {"instrumental", "vocals"}
    assert stems.primary == "instrumental"
    for wave in stems.waves.values():
        assert wave.shape == (2, int(0.5 * SR))
        assert wave.dtype == np.float32 and np.isfinite(wave).all()
    # The two stems add back up to the (band-limited) mix.
    mix = sf.read(short_wav, dtype="float32")[0].T
    residual = mix - stems["instrumental"] - stems["vocals"]
    rms = lambda a: np.sqrt(np.mean(a**2))
    assert rms(residual) < 0.05 * rms(mix)
    # The last partial hop, which the original drops, is reconstructed as well as the rest.
    tail = slice(480 * (mix.shape[1] // 480), None)
    assert rms(residual[:, tail]) < 0.08 * rms(mix[:, tail])


def test_default_params_notice(separator):
    assert any("4band_v2" in note for note in separator.notes)


@pytest.mark.slow
@pytest.mark.parametrize("n_samples", [1, 100, 479, 480, 481, 5000])
def test_very_short_inputs(separator, n_samples):
    wave = music_like(1.0)[:, :n_samples]
    if n_samples == 1:  # [2, 1] reads as 2 samples of mono (the smaller axis holds the channels)
        wave = wave[0]
    stems = separator.separate(wave, SR)
    for wave in stems.waves.values():
        assert wave.shape == (2, n_samples) and np.isfinite(wave).all()


@pytest.mark.parametrize("semantics", ["rvc", "uvr"])
@pytest.mark.parametrize("postprocess", [False, True])
def test_digital_silence_gives_silence(tiny_weights, semantics, postprocess):
    sep = Separator(tiny_weights, device="cpu", semantics=semantics, postprocess=postprocess, tta=postprocess)
    stems = sep.separate(np.zeros((2, SR // 2), dtype=np.float32), SR)
    for wave in stems.waves.values():
        assert np.isfinite(wave).all() and not wave.any()


@pytest.mark.parametrize("semantics, threshold", [("rvc", 0.2), pytest.param("uvr", 5.0, marks=pytest.mark.slow)])
def test_postprocess_without_any_quiet_frame(tiny_weights, semantics, threshold):
    # RVC's mask_silence raises IndexError when no frame is quiet, UVR's merge_artifacts prints
    # the same error and leaves the mask alone; uvrsep must do neither.
    loud = np.random.default_rng(3).uniform(-1, 1, (2, SR // 2)).astype(np.float32)
    plain = Separator(tiny_weights, device="cpu", semantics=semantics).separate(loud, SR)
    post = Separator(tiny_weights, device="cpu", semantics=semantics, postprocess=True, postprocess_threshold=threshold)
    stems = post.separate(loud, SR)
    for name in stems.names:
        assert np.isfinite(stems[name]).all()
    if semantics == "uvr":  # no frame's mask is above 5: nothing to merge
        np.testing.assert_array_equal(stems[name], plain[name])


@pytest.mark.slow
def test_mono_48k_input_becomes_stereo_44k(separator, tmp_path):
    path = tmp_path / "mono48.wav"
    sf.write(path, music_like(0.5, sr=48000, channels=1)[0], 48000, subtype="PCM_16")
    stems = separator.separate(path)
    assert stems.sample_rate == 44100
    assert stems["vocals"].shape == (2, 22050)
    total = stems["vocals"] + stems["instrumental"]  # the mix, duplicated to both channels
    np.testing.assert_allclose(total[0], total[1], atol=2e-3)


@pytest.mark.slow
def test_batched_and_single_window_inference_agree(tiny_weights):
    single = Separator(tiny_weights, device="cpu", batch_size=1)
    batched = Separator(tiny_weights, device="cpu", batch_size=3)
    rng = np.random.default_rng(0)
    mag = rng.random((2, 673, 700), dtype=np.float32)  # 3 windows
    a = predict_magnitudes(single, mag)
    b = predict_magnitudes(batched, mag)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_tta_and_aggressiveness_change_the_result(tiny_weights):
    mag = np.random.default_rng(1).random((2, 673, 300), dtype=np.float32)
    base = predict_magnitudes(Separator(tiny_weights, device="cpu", aggressiveness=0), mag)
    aggr = predict_magnitudes(Separator(tiny_weights, device="cpu", aggressiveness=30), mag)
    assert np.all(aggr <= base + 1e-7) and not np.allclose(aggr, base)  # mask**(1+v) <= mask
    # TTA only differs where the shifted windows see other context: use a long input.
    mag = np.random.default_rng(1).random((2, 673, 800), dtype=np.float32)
    base = predict_magnitudes(Separator(tiny_weights, device="cpu"), mag)
    tta = predict_magnitudes(Separator(tiny_weights, device="cpu", tta=True), mag)
    assert not np.allclose(tta, base, rtol=1e-4, atol=1e-5)


def test_hp3_file_name_is_vocal_primary(tiny_weights, tmp_path):
    hp3 = tmp_path / "my_HP3_finetune.pth"  # no registry entry: RVC's file-name rule applies
    hp3.write_bytes(tiny_weights.read_bytes())
    sep = Separator(hp3, device="cpu")
    assert (sep.primary, sep.secondary) == ("vocals", "instrumental")


def test_registry_file_name_with_other_weights_is_refused(tiny_weights, tmp_path):
    fake = tmp_path / "HP3_all_vocals.pth"  # the registry says: a 32-wide ASPP net
    fake.write_bytes(tiny_weights.read_bytes())
    with pytest.raises(IncompatibleCheckpointError, match="registry entry HP3_all_vocals is aspp family, width 32"):
        Separator(fake, device="cpu")


def test_write_clips_instead_of_wrapping(tmp_path):
    wave = np.array([[1.0, 1.2, -1.5, 0.5]], dtype=np.float32).repeat(2, axis=0)
    path = write_audio(tmp_path / "loud.wav", wave, SR)
    data, _ = sf.read(path, dtype="int16")
    assert data[:, 0].tolist() == [32767, 32767, -32768, 16384]
    with pytest.raises(AudioWriteError, match="already exists"):
        write_audio(path, wave, SR)
    write_audio(path, wave * 0, SR, overwrite=True)
    assert not sf.read(path)[0].any()
    assert [p.name for p in tmp_path.iterdir()] == ["loud.wav"]  # no temporary file left


def test_bad_inputs_are_clear_errors(separator, tmp_path):
    with pytest.raises(AudioReadError, match="nothere.wav: no such file"):
        separator.separate(tmp_path / "nothere.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 20)
    with pytest.raises(AudioReadError, match="junk.wav: cannot decode audio"):
        separator.separate(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2)), SR)
    with pytest.raises(EmptyAudioError, match="empty.wav: holds no audio"):
        separator.separate(empty)
    with pytest.raises(ConfigError, match="sample_rate"):
        separator.separate(np.zeros((2, 10), dtype=np.float32))


def test_bad_settings(tiny_weights):
    with pytest.raises(ConfigError, match="unknown band config"):
        Separator(tiny_weights, params="5band_nope", device="cpu")
    with pytest.raises(ConfigError, match="aggressiveness"):
        Separator(tiny_weights, aggressiveness=150, device="cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        Separator(tiny_weights, device="tpu")


def test_decoding_without_ffmpeg_falls_back(separator, tmp_path, monkeypatch):
    import shutil as sh

    monkeypatch.setattr(sh, "which", lambda name: None)  # as on a machine without ffmpeg
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 20)
    with pytest.raises(UnsupportedFormatError, match="junk.wav: cannot decode audio"):
        separator.separate(junk)
    eight = tmp_path / "eight.wav"
    sf.write(eight, np.repeat(music_like(0.2, channels=1).T, 8, axis=1) * 0.1, SR)
    stems = separator.separate(eight)  # >2 channels, no ffmpeg: the first two are kept
    assert stems["vocals"].shape == (2, int(0.2 * SR))


def test_out_of_memory_is_a_clear_error(tiny_weights, monkeypatch):
    from uvrsep.errors import OutOfMemoryError

    sep = Separator(tiny_weights, device="cpu", batch_size=4)

    class Boom(torch.nn.Module):
        context = sep.net.context

        def forward(self, batch):
            raise torch.OutOfMemoryError("CUDA out of memory")

    sep.net = Boom()
    with pytest.raises(OutOfMemoryError, match="ran out of memory on cpu with 4 window.*; try batch_size=1 "):
        sep.separate_array(music_like(0.3), SR)
    from uvrsep.errors import cli_messages

    with cli_messages(), pytest.raises(OutOfMemoryError, match="; try --batch-size 1 "):  # the command line's flag
        sep.separate_array(music_like(0.3), SR)


@pytest.mark.slow
def test_array_layouts_soundfile_and_channels_first_agree(separator):
    """sf.read gives [samples, channels]; it used to come back as (2, 2) stems."""
    wave = music_like(0.3)
    ours = separator.separate_array(wave, SR)
    theirs = separator.separate_array(np.ascontiguousarray(wave.T), SR)
    for name in ours.names:
        assert theirs[name].shape == ours[name].shape == (2, wave.shape[1])
        np.testing.assert_array_equal(theirs[name], ours[name])
    mono_column = separator.separate_array(wave[:1].T, SR)  # [samples, 1]: used to raise a resampler error
    np.testing.assert_array_equal(mono_column["vocals"], separator.separate_array(wave[0], SR)["vocals"])


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (10, 20), (20, 10), (2, 3, 100)])
def test_ambiguous_array_shapes_are_refused_naming_the_shape(separator, shape):
    with pytest.raises(ConfigError, match=r"shape \(" + ", ".join(map(str, shape)) + r"\).*\[channels, samples\]"):
        separator.separate_array(np.zeros(shape, dtype=np.float32), SR)


def test_torch_device_objects_are_accepted(tiny_weights):
    sep = Separator(tiny_weights, device=torch.device("cpu"))
    assert sep.device == torch.device("cpu")


@pytest.mark.slow
def test_streamed_api_takes_short_inputs(separator, tmp_path):
    """separate_streamed is documented for any length; a 2.3 s clip is one segment."""
    path = tmp_path / "short.wav"
    sf.write(path, music_like(2.3).T, SR, subtype="FLOAT")
    streamed = separator.separate_streamed(path).collect()
    whole = separator.separate(path)
    for name in whole.names:
        np.testing.assert_array_equal(streamed[name], whole[name])


@pytest.mark.parametrize("n_samples", [1, 2, 3, 4, 5])
def test_a_few_samples_at_192k_are_separated(separator, tmp_path, n_samples):
    path = tmp_path / "tiny192.wav"
    sf.write(path, np.full((n_samples, 2), 0.1, dtype=np.float32), 192000, subtype="FLOAT")
    stems = separator.separate(path)
    expected = int(np.ceil(n_samples * SR / 192000))
    for wave in stems.waves.values():
        assert wave.shape == (2, expected) and np.isfinite(wave).all()


@pytest.mark.slow
def test_huge_but_finite_samples(separator, tmp_path):
    """Uniform ±3e38 floats overflowed librosa's STFT and killed the batch; now a clear refusal.
    Large values that the float32 analysis holds are separated."""
    rng = np.random.default_rng(0)
    huge = tmp_path / "huge.wav"
    sf.write(huge, rng.uniform(-3e38, 3e38, (SR // 4, 2)).astype(np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioReadError, match=r"huge\.wav: samples reach 3.*too large"):
        separator.separate(huge)
    loud = separator.separate_array(music_like(0.3) * np.float32(1e20), SR)
    assert all(np.isfinite(w).all() and np.abs(w).max() > 1e18 for w in loud.waves.values())


def test_precision_bf16_runs_everywhere(tiny_weights):
    """bf16 runs the network in bfloat16 on the CPU too, and everything around it in float32."""
    wave = music_like(1.0, seed=5)
    strict = Separator(tiny_weights, device="cpu")
    low = Separator(tiny_weights, device="cpu", precision="bf16")
    assert strict.precision == "fp32" and low.precision == "bf16"
    assert next(low.net.parameters()).dtype == torch.bfloat16
    a, b = strict.separate(wave, SR), low.separate(wave, SR)
    for name in a.waves:
        assert b.waves[name].dtype == np.float32 and b.waves[name].shape == a.waves[name].shape
        assert np.isfinite(b.waves[name]).all()
        assert not np.array_equal(a.waves[name], b.waves[name])  # it did run in another precision


@pytest.mark.slow
@pytest.mark.skipif(not PARITY.is_dir(), reason="the parity fixtures ($UVRSEP_SHARED or ../shared) are not present")
def test_precision_bf16_stays_near_fp32_on_realistic_weights():
    """On the parity fixture's 32-wide weights (realistic statistics; the tests' tiny random net
    is too ill-conditioned for 8-bit mantissas) bf16 stays within 20 dB of fp32: measured 25-29
    dB against the golden outputs on the whole fixture (docs/performance.md, "Precision")."""
    from uvrsep.evaluation import sdr

    wave, sr = sf.read(str(PARITY / "fixture24.wav"), dtype="float32", frames=6 * 44100, always_2d=True)
    a = Separator(PARITY / "random_hp_fp16.pth", device="cpu").separate(wave.T, sr)
    b = Separator(PARITY / "random_hp_fp16.pth", device="cpu", precision="bf16").separate(wave.T, sr)
    for name in a.waves:
        assert min(sdr(a.waves[name][c], b.waves[name][c]) for c in range(2)) >= 20, name


@pytest.mark.parametrize("precision", ["tf32", "fp16"])
def test_precision_that_the_cpu_lacks_runs_fp32_with_a_note(tiny_weights, precision):
    sep = Separator(tiny_weights, device="cpu", precision=precision)
    assert sep.precision == "fp32" and next(sep.net.parameters()).dtype == torch.float32
    assert any(precision in note and "fp32" in note for note in sep.notes)
    with pytest.raises(ConfigError, match="precision 'fp64'"):
        Separator(tiny_weights, device="cpu", precision="fp64")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision, floor", [("tf32", 45), ("fp16", 45), ("bf16", 30)])
def test_precision_on_cuda(tiny_weights, precision, floor):
    from uvrsep.evaluation import sdr

    wave = music_like(3.0, seed=5)
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    a = Separator(tiny_weights, device="cuda").separate(wave, SR)
    sep = Separator(tiny_weights, device="cuda", precision=precision)
    assert sep.precision == precision
    b = sep.separate(wave, SR)
    # Set for the network stages only, restored after.
    assert (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    ) == flags
    for name in a.waves:
        assert min(sdr(a.waves[name][c], b.waves[name][c]) for c in range(2)) >= floor


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("semantics", ["rvc", "uvr"])
def test_the_pipeline_on_cuda_equals_the_cpu(tiny_weights, tmp_path, semantics):
    """Everything from the analysis to the synthesis on the GPU (fp32): the CPU's stems, whole
    file and in segments, with TTA and post-processing."""
    from uvrsep.evaluation import sdr

    wave = music_like(12.0, seed=7)
    path = tmp_path / "clip.wav"
    sf.write(path, wave.T, SR, subtype="FLOAT")
    opts = dict(semantics=semantics, tta=True, postprocess=True, high_end="mirroring")
    cpu = Separator(tiny_weights, device="cpu", segment_threshold=math.inf, **opts).separate(path)
    gpu = Separator(tiny_weights, device="cuda", segment_threshold=math.inf, segment_windows=1, **opts)
    assert gpu.dsp.type == "cuda"
    whole = gpu.separate(path)
    gpu.segment_threshold = 0.0
    streamed = gpu.separate_streamed(path).collect()
    for name in cpu.waves:
        assert min(sdr(cpu.waves[name][c], whole.waves[name][c]) for c in range(2)) >= 90
        assert min(sdr(whole.waves[name][c], streamed.waves[name][c]) for c in range(2)) >= 90
