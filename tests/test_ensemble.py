"""Ensembles (uvrsep.ensemble): audio-separator 0.47.1's 11 algorithms, weights, lengths, and the
streamed combiner's equality with the whole-signal one in bounded memory.

The goldens (tests/fixtures/ensemble/, README there) are audio-separator's ``Ensembler`` outputs
on the members' stems of random HP-layout nets under both semantics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import music_like
from uvrsep import ensemble as ens
from uvrsep.errors import ConfigError, cli_messages
from uvrsep.evaluation import sdr

GOLDENS = Path(__file__).parent / "fixtures" / "ensemble" / "goldens.npz"


class Goldens:
    """The members' stems and audio-separator's outputs, rebuilt as float32 ``[2, L]``."""

    def __init__(self, path: Path):
        self.npz = np.load(path)
        self.meta = json.loads(str(self.npz["meta"]))

    def runs(self):
        """``(key, members, algorithm, weights)`` of every stored output."""
        for key in self.meta["kinds"]:
            case, stem, alg, weighting = key.split("/")
            spec = self.meta["cases"][case]
            yield key, self.members(case, stem), alg, spec["weights"] if weighting == "weighted" else None

    def members(self, case: str, stem: str) -> list[np.ndarray]:
        spec = self.meta["cases"][case]
        full = self.npz[f"inputs/{spec['source']}/{stem}"].astype(np.float32)
        if spec.get("negate"):
            return [full[0], -full[0]]
        lengths = spec["lengths"] or [full.shape[2]] * full.shape[0]
        return [full[i, :, :n] for i, n in enumerate(lengths)]

    def output(self, key: str) -> np.ndarray:
        kind, length = self.meta["kinds"][key], self.meta["lengths"][key]
        if kind.startswith("same:"):
            return self.output(kind.removeprefix("same:"))[:, :length]
        stored = self.npz[f"out/{key}"]
        if kind == "float16":
            return stored.astype(np.float32)
        case, stem = key.split("/")[:2]
        members = self.members(case, stem)
        padded = np.stack([np.pad(m, ((0, 0), (0, length - m.shape[1]))) for m in members])
        return np.take_along_axis(padded, stored[None].astype(np.int64), 0)[0]


@pytest.fixture(scope="module")
def goldens() -> Goldens:
    return Goldens(GOLDENS)


def members_like(seconds: float, n: int = 3, lengths: list[int] | None = None) -> list[torch.Tensor]:
    """``n`` different float32 ``[2, T]`` stems (filtered, delayed, scaled music), optionally cut."""
    base = music_like(seconds + 0.01, seed=5)
    out = []
    for i in range(n):
        x = np.roll(base, 37 * i, axis=1) * (0.5 + 0.3 * i)
        x = x + (0.2 * i) * np.roll(x, 1, axis=1) + 0.01 * np.random.default_rng(i).standard_normal(x.shape)
        out.append(torch.from_numpy(x[:, : int(seconds * 44100)].astype(np.float32)))
    if lengths:
        out = [x[:, :n] for x, n in zip(out, lengths, strict=True)]
    return out


def quick(*algorithms: str) -> list:
    """Every algorithm; those not named are marked slow (the quick loop runs one of each kind)."""
    return [a if a in algorithms else pytest.param(a, marks=pytest.mark.slow) for a in ens.ALGORITHMS]


def channel_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return min(sdr(ref[c], est[c]) for c in range(ref.shape[0]))


# --- audio-separator's numbers -------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ens.ALGORITHMS)
def test_equals_audio_separator(goldens, algorithm):
    """Every case (both semantics, both stems, odd and even counts, unequal lengths, ties) and
    weighting: >= 60 dB per stem and channel against audio-separator's Ensembler. Outputs have
    the longest member's length; uvr_max_spec / uvr_min_spec's golden stops at 1024·⌊T/1024⌋
    (see the module's docstring) and the samples it has are compared."""
    worst, checked = np.inf, 0
    for key, members, alg, weights in goldens.runs():
        if alg != algorithm:
            continue
        ours = ens.ensemble([torch.from_numpy(m) for m in members], alg, weights)
        ref = goldens.output(key)
        assert ours.dtype == torch.float32 and ours.shape[1] == max(m.shape[1] for m in members), key
        if alg.startswith("uvr_"):
            assert ref.shape[1] == ours.shape[1] // ens.HOP * ens.HOP, key
        else:
            assert ref.shape == tuple(ours.shape), key
        worst = min(worst, channel_sdr(ref, ours[:, : ref.shape[1]].numpy()))
        checked += 1
    assert checked >= 6  # both semantics × both stems, weighted, ragged (and ties where stored)
    print(f"{algorithm}: lowest SDR {worst:.1f} dB over {checked} outputs")
    assert worst >= 60, f"{algorithm}: {worst:.1f} dB"


def test_goldens_cover_both_semantics_and_stems(goldens):
    cases = goldens.meta["cases"]
    assert {cases[c]["semantics"] for c in ("rvc", "uvr")} == {"rvc", "uvr"}
    stems = {k.split("/")[1] for k in goldens.meta["kinds"] if k.startswith(("rvc/", "uvr/"))}
    assert stems == {"instrumental", "vocals"}


def test_one_member_is_itself():
    """With one model every algorithm returns its stem unchanged (as audio-separator does)."""
    x = members_like(0.2, 1)[0]
    for algorithm in ens.ALGORITHMS:
        assert torch.equal(ens.ensemble([x], algorithm), x), algorithm
        assert torch.equal(ens.ensemble([x], algorithm, [3.0]), x), algorithm


# --- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ens.WEIGHTED)
def test_weights_are_shares_of_the_mean(algorithm):
    xs = members_like(0.3)
    base = ens.ensemble(xs, algorithm, [2.0, 1.0, 0.5]).numpy()
    assert channel_sdr(base, ens.ensemble(xs, algorithm, [4.0, 2.0, 1.0]).numpy()) > 120  # only ratios count
    alone = ens.ensemble(xs, algorithm, [0.0, 1.0, 0.0]).numpy()
    assert channel_sdr(xs[1].numpy(), alone) > 120  # a 0 leaves a member out
    expected = (2 * xs[0] + xs[1] + 0.5 * xs[2]).numpy() / 3.5
    assert channel_sdr(expected, base) > 120
    assert channel_sdr(ens.ensemble(xs, algorithm).numpy(), (sum(xs) / 3).numpy()) > 120


@pytest.mark.parametrize("algorithm", [a for a in ens.ALGORITHMS if a not in ens.WEIGHTED])
def test_other_algorithms_ignore_weights_with_a_note(algorithm):
    xs = members_like(0.2)
    assert torch.equal(ens.ensemble(xs, algorithm, [5, 1, 0]), ens.ensemble(xs, algorithm))
    assert ens.EnsembleStream(3, algorithm, [5, 1, 0]).notes == [ens.weights_note(algorithm, (5, 1, 0))]
    assert algorithm in ens.weights_note(algorithm, (5, 1, 0))
    assert ens.EnsembleStream(3, algorithm, [2, 2, 2]).notes == []
    assert ens.EnsembleStream(3, "avg_wave", [5, 1, 0]).notes == []


@pytest.mark.parametrize(
    "weights, words",
    [
        ([1.0], "1 weight for 3 models"),
        ([1, 2, 3, 4], "4 weights for 3 models"),
        ([], "0 weights for 3 models"),
        ([1, -0.5, 1], "-0.5 is negative"),
        ([1, float("nan"), 1], "nan is not a finite"),
        ([1, float("inf"), 1], "inf is not a finite"),
        ([0, 0, 0], "all weights are 0"),
        ([0.0, -0.0, 0], "all weights are 0"),
        (["1", 1, 1], "'1' is not a number"),
        ([True, 1, 1], "True is not a number"),
        ("1 1 1", "expected numbers"),
        (3, "expected numbers"),
    ],
)
def test_bad_weights_are_one_line_errors(weights, words):
    with pytest.raises(ConfigError) as info:
        ens.EnsembleStream(3, "avg_fft", weights)
    message = str(info.value)
    assert words in message and "\n" not in message and message.startswith("ensemble_weights: ")
    with cli_messages(), pytest.raises(ConfigError, match="^--ensemble-weights: "):
        ens.check_weights(weights, 3)


def test_weights_of_any_numeric_kind():
    assert ens.check_weights(np.array([1, 2], dtype=np.float32), 2) == (1.0, 2.0)
    assert ens.check_weights((0, 3), 2) == (0.0, 3.0)
    assert ens.check_weights(None, 4) == (1.0,) * 4


@pytest.mark.parametrize("name", ["avg", "", None, 3, "max spec", "uvr_max", "avg_wave2"])
def test_bad_algorithm_names_are_one_line_errors(name):
    with pytest.raises(ConfigError) as info:
        ens.EnsembleStream(2, name)
    message = str(info.value)
    assert "\n" not in message and "unknown algorithm" in message and "uvr_max_spec" in message
    with cli_messages(), pytest.raises(ConfigError, match="^--ensemble-algorithm: "):
        ens.check_algorithm(name)


def test_algorithm_names_ignore_case_and_blanks():
    assert ens.check_algorithm(" Max_FFT ") == "max_fft"
    assert ens.DEFAULT_ALGORITHM == "avg_wave" and ens.EnsembleStream(2).algorithm == "avg_wave"


# --- shapes and mismatches ------------------------------------------------------------------


def test_mismatched_members_are_refused():
    a = torch.zeros(2, 100)
    with pytest.raises(ConfigError, match="channels"):
        ens.ensemble([a, torch.zeros(1, 100)])
    with pytest.raises(ConfigError, match="matched by name"):
        ens.EnsembleStream(2).push([{"vocals": a, "instrumental": a}, {"vocals": a, "echo": a}])
    with pytest.raises(ConfigError, match="of 2 models got stems of 3"):
        ens.EnsembleStream(2).push([{"vocals": a}] * 3)
    with pytest.raises(ConfigError, match=r"\[channels, samples\]"):
        ens.ensemble([torch.zeros(100), torch.zeros(100)])
    with pytest.raises(ConfigError, match="at least one"):
        ens.ensemble([])


def test_ensemble_wav_takes_each_channel_whole_from_the_quietest_member():
    """audio-separator's ensemble_wav splits the [C, T] array along the channels: channel c
    is the whole channel c of the member with the smallest mean |x| there (first on a tie)."""
    loud, quiet = members_like(0.1, 2)
    a = torch.stack([loud[0], quiet[1] * 0.1])  # quiet right channel
    b = torch.stack([quiet[0] * 0.1, loud[1]])  # quiet left channel
    c = torch.stack([quiet[0] * 0.1, quiet[1] * 0.1])  # ties with both
    assert torch.equal(ens.ensemble([a, b], "ensemble_wav"), torch.stack([b[0], a[1]]))
    assert torch.equal(ens.ensemble([a, b, c], "ensemble_wav"), torch.stack([b[0], a[1]]))
    assert torch.equal(ens.ensemble([c, a, b], "ensemble_wav"), c)


def test_stream_order_of_events():
    """A member may start late or end early (``{}``): padded as a whole-signal ensemble is;
    pushing after finish is an error."""
    xs = members_like(0.1, 2)
    stream = ens.EnsembleStream(2, "max_fft")
    parts = [stream.push([{}, {"v": xs[1][:, :1500]}])["v"]]
    parts.append(stream.push([{"v": xs[0][:, :3000]}, {"v": xs[1][:, 1500:]}])["v"])
    parts.append(stream.push([{"v": xs[0][:, 3000:3500]}, {}])["v"])
    parts += [b["v"] for b in stream.finish()]
    whole = ens.ensemble([xs[0][:, :3500], xs[1]], "max_fft")
    assert channel_sdr(whole.numpy(), torch.cat(parts, dim=1).numpy()) >= 90
    with pytest.raises(RuntimeError, match="after finish"):
        stream.push([{"v": xs[0]}, {"v": xs[1]}])
    assert list(ens.EnsembleStream(2).finish()) == []


@pytest.mark.parametrize("algorithm", ens.ALGORITHMS)
def test_unequal_lengths_are_padded_to_the_longest(algorithm):
    xs = members_like(0.1, 3)
    cut = [xs[0][:, :3000], xs[1], xs[2][:, :1234]]
    padded = [torch.nn.functional.pad(x, (0, xs[1].shape[1] - x.shape[1])) for x in cut]
    out = ens.ensemble(cut, algorithm)
    assert out.shape == xs[1].shape
    assert torch.equal(out, ens.ensemble(padded, algorithm))


def test_arrays_and_mono_and_many_channels():
    """Arrays work as tensors do; channels are combined independently, whatever their number
    (batched FFTs may round differently: >= 130 dB)."""
    xs = [x.numpy() for x in members_like(0.1, 2)]
    for algorithm in ens.ALGORITHMS:
        stereo = ens.ensemble(xs, algorithm)
        assert torch.equal(stereo, ens.ensemble([torch.from_numpy(x) for x in xs], algorithm))
        mono = ens.ensemble([x[:1] for x in xs], algorithm)
        assert mono.shape == (1, stereo.shape[1]) and sdr(stereo[0], mono[0]) > 130, algorithm
        four = ens.ensemble([np.concatenate([x, x[::-1]]) for x in xs], algorithm)
        assert channel_sdr(stereo.numpy(), four[:2].numpy()) > 130, algorithm
        assert channel_sdr(stereo.flip(0).numpy(), four[2:].numpy()) > 130, algorithm


# --- streaming ------------------------------------------------------------------------------


def stream_blocks(members: list[torch.Tensor], sizes, stems=("vocals", "instrumental")) -> list[list[dict]]:
    """Each member cut into blocks of ``sizes(member, k)`` samples, as ``{stem: [2, t]}``
    (the second stem is the first negated and halved)."""
    out = []
    for i, x in enumerate(members):
        blocks, at, k = [], 0, 0
        while at < x.shape[1]:
            t = x[:, at : at + sizes(i, k)]
            blocks.append({stems[0]: t, stems[1]: -0.5 * t})
            at, k = at + t.shape[1], k + 1
        out.append(blocks)
    return out


def streamed(members, algorithm, sizes, weights=None) -> tuple[dict[str, torch.Tensor], int]:
    out: dict[str, list[torch.Tensor]] = {}
    n_blocks = 0
    for block in ens.ensemble_blocks(stream_blocks(members, sizes), algorithm, weights):
        lengths = {w.shape[1] for w in block.values()}
        assert len(lengths) == 1 and lengths != {0}  # the stems of a block are aligned, none empty
        n_blocks += 1
        for name, wave in block.items():
            out.setdefault(name, []).append(wave)
    return {name: torch.cat(parts, dim=1) for name, parts in out.items()}, n_blocks


@pytest.mark.parametrize("algorithm", quick("min_wave", "median_fft", "ensemble_wav"))
def test_streamed_equals_whole_at_any_block_length(algorithm):
    """Blocks of 1000, 1024, 1025, 2049 and 4097 samples, and different random sizes for each
    member (not aligned), members of unequal length: >= 90 dB against the whole-signal
    ensemble, per stem and channel, and the same length."""
    members = members_like(0.25, 3, lengths=[11025, 10000, 10999])
    weights = [1.0, 0.3, 2.0]
    whole = ens.ensemble(members, algorithm, weights).numpy()
    rng = np.random.default_rng(0)
    schedules = [lambda i, k, n=n: n for n in (1000, 1024, 1025, 2049, 4097)]
    schedules.append(lambda i, k: int(rng.integers(1, 3000)))
    for sizes in schedules:
        got, _ = streamed(members, algorithm, sizes, weights)
        assert got["vocals"].shape == whole.shape
        assert channel_sdr(whole, got["vocals"].numpy()) >= 90, algorithm
        assert channel_sdr(-0.5 * whole, got["instrumental"].numpy()) >= 90, algorithm


@pytest.mark.parametrize("algorithm", quick("median_wave", "max_fft", "ensemble_wav"))
def test_streamed_in_tiny_blocks(algorithm):
    """Blocks of 1, 3 and 7 samples (and mixed 1–5 for each member) on a short signal."""
    members = members_like(0.06, 2, lengths=[2646, 2500])
    whole = ens.ensemble(members, algorithm).numpy()
    rng = np.random.default_rng(1)
    for sizes in (lambda i, k: 1, lambda i, k: 3, lambda i, k: 7, lambda i, k: int(rng.integers(1, 6))):
        got, n_blocks = streamed(members, algorithm, sizes)
        assert channel_sdr(whole, got["vocals"].numpy()) >= 90, algorithm
        if algorithm in ens.WAVE_ALGORITHMS:  # emitted as they come
            assert n_blocks > 100
        elif algorithm in ens.SPECTRAL_ALGORITHMS:  # when frame 1 is complete (2048 samples), then the rest
            assert n_blocks == 2


@pytest.mark.parametrize("algorithm", quick("avg_fft", "min_wave"))
def test_streamed_short_inputs(algorithm):
    """Inputs shorter than a hop, than a frame, and exactly one or two hops long."""
    for n in (1, 5, 1023, 1024, 2047, 2048, 2049):
        members = [x[:, :n] for x in members_like(0.05, 2)]
        whole = ens.ensemble(members, algorithm)
        assert whole.shape == (2, n)
        got, _ = streamed(members, algorithm, lambda i, k: 300)
        assert channel_sdr(whole.numpy(), got["vocals"].numpy()) >= 90, (algorithm, n)


def test_spectral_reconstruction_is_exact_where_nothing_is_chosen():
    """avg_fft of identical members is the member itself (librosa's framing and window-sum
    normalisation, edges and tail included): a check of the STFT pair on its own."""
    x = members_like(0.1, 1)[0][:, :4000]
    assert channel_sdr(x.numpy(), ens.ensemble([x, x], "avg_fft").numpy()) > 120


class Generated:
    """A long member stream made block by block (never held whole): music-like blocks."""

    def __init__(self, seconds: float, block: int, seed: int):
        self.n, self.block, self.seed = int(seconds * 44100), block, seed

    def __iter__(self):
        for k, at in enumerate(range(0, self.n, self.block)):
            t = torch.from_numpy(music_like(self.block / 44100, seed=self.seed * 100000 + k))[:, : self.n - at]
            yield {"vocals": t, "instrumental": 0.5 * t}


@pytest.mark.parametrize(
    "algorithm", ["avg_wave", pytest.param("max_fft", marks=pytest.mark.slow)]
)  # not ensemble_wav: it holds all (its spool)
def test_members_of_different_block_lengths_are_read_as_needed(algorithm):
    """Models that segment a long input differently give blocks of different lengths:
    ensemble_blocks reads a member only when it is the furthest behind, so no member's samples
    run ahead of the combined output by more than about one block (plus the STFT's context),
    for 1 s as for 3 s of input (read in step, the member of longest blocks would run ahead by
    a growing share of the input)."""
    sizes = (999, 4410, 10000)
    leads = {}
    for seconds in (1, 3):
        read = [0] * len(sizes)

        def counted(i: int, seconds: int, read: list[int]):
            for block in Generated(seconds, sizes[i], seed=i):
                read[i] += block["vocals"].shape[1]
                yield block

        emitted, lead = 0, 0
        for out in ens.ensemble_blocks([counted(i, seconds, read) for i in range(len(sizes))], algorithm):
            emitted += out["vocals"].shape[1]
            lead = max(lead, max(read) - emitted)
        assert emitted == seconds * 44100
        leads[seconds] = lead
    assert max(leads.values()) <= max(sizes) + ens.N_FFT + ens.HOP, leads


@pytest.mark.parametrize("algorithm", quick("max_fft", "ensemble_wav"))
def test_streamed_memory_is_bounded(algorithm):
    """Between pushes the combiner holds O(context) (the queues are empty when the members come
    in step), for 1 s as for 5 s of input; ensemble_wav's spool holds at most its limit in
    memory (a small one here: beyond it, a temporary file)."""
    block, members, stems, channels, spool = 4410, 3, 2, 2, 64 << 10
    peaks = {}
    for seconds in (1, 5):
        stream = ens.EnsembleStream(members, algorithm, spool_bytes=spool)
        sources = [iter(Generated(seconds, block, seed=i)) for i in range(members)]
        peak, total = 0, 0
        for blocks in zip(*sources, strict=True):
            total += sum(w.shape[1] for w in stream.push(list(blocks)).values()) // stems
            peak = max(peak, stream.held_bytes)
        for out in stream.finish():
            total += next(iter(out.values())).shape[1]
            peak = max(peak, stream.held_bytes)
        assert total == seconds * 44100
        peaks[seconds] = peak
    # between pushes: < N_FFT samples of each member and one hop of overlap-add, per stem
    bound = stems * channels * 4 * (members * ens.N_FFT + ens.HOP)
    if algorithm == "ensemble_wav":
        bound = stems * members * spool  # in memory; the rest went to a temporary file
    assert max(peaks.values()) <= bound, (peaks, bound)
    assert bound < stems * members * channels * 4 * 44100 / 2  # well below even 1 s of input


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["avg_fft", "ensemble_wav"])
def test_streamed_equals_whole_on_a_minute(algorithm):
    """60 s in blocks of 44,100 samples (ensemble_wav spilled to a file) equals the whole."""
    members = [Generated(60, 44100, seed=i) for i in range(2)]
    whole = ens.ensemble([torch.cat([b["vocals"] for b in m], dim=1) for m in members], algorithm)
    got = torch.cat([b["vocals"] for b in ens.ensemble_blocks(members, algorithm, spool_bytes=1 << 20)], dim=1)
    assert channel_sdr(whole.numpy(), got.numpy()) >= 90


PEAK_RSS = """
import resource, sys, torch
from tests.test_ensemble import Generated
from uvrsep.ensemble import ensemble_blocks
torch.set_num_threads(1)
members = [Generated(float(sys.argv[1]), 44100, seed=i) for i in range(2)]
n = sum(b["vocals"].shape[1] for b in ensemble_blocks(members, sys.argv[2], spool_bytes=8 << 20))
assert n == int(float(sys.argv[1]) * 44100), n
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["avg_fft", "ensemble_wav"])
def test_process_memory_is_flat_in_the_length(algorithm):
    """Measured from outside: the peak memory of a process streaming 5 minutes (two members, two
    stems) exceeds that of 20 s by far less than the 5 minutes' stems (424 MB in float32)."""
    import subprocess
    import sys

    pytest.importorskip("resource")  # POSIX only
    root = Path(__file__).resolve().parents[1]

    def peak_kib(seconds: float) -> int:
        run = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(seconds), algorithm],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(run.stdout.split()[-1])

    short, long = peak_kib(20), peak_kib(300)
    assert long - short < 40 * 1024, (short, long)  # KiB


@pytest.mark.gpu
@pytest.mark.parametrize("algorithm", ens.ALGORITHMS)
def test_cuda_equals_cpu(algorithm):
    """On CUDA the result stays there and equals the CPU's (>= 90 dB)."""
    xs = members_like(0.3, 3, lengths=[13230, 12000, 13000])
    cpu = ens.ensemble(xs, algorithm, [1, 2, 3]).numpy()
    gpu = ens.ensemble([x.cuda() for x in xs], algorithm, [1, 2, 3])
    assert gpu.is_cuda
    assert channel_sdr(cpu, gpu.cpu().numpy()) >= 90
