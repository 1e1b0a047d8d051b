"""Per-clip measures of a separation: what a dataset builder needs to decide which clips to keep.

Inputs: the input wave ``x`` and the stems ``s``, float32 ``[channels, samples]`` (numpy or
torch), all at one sample rate ``sr`` and of one length ``N``; ``C`` is a signal's channel count
(the input and the stems may differ). One of the stems may be the voice stem ``v`` (``None``:
no voice stem; its measures are then ``None``). A batch measures the input as the network heard
it and every stem as separated, before the writer converts them (:func:`uvrsep.writer.write_stems`).
Levels are in dB relative to full scale (±1.0).

Frames: consecutive, non-overlapping blocks of ``L = max(1, round(2048 · sr / 44100))`` samples
(46.4 ms at any rate); the last frame holds the ``N mod L`` samples left over, if any, so every
sample lies in exactly one frame and energies summed over frames are the signal's energy.
A frame's power is ``p[k] = Σ x² / (C · L_k)`` over its channels and its ``L_k`` samples.

Measures (the keys of :func:`measure_clip`'s result):

- ``duration_s = N / sr``.
- ``input``, and per stem ``stems[name]``:
  ``peak_dbfs = 20·log10(max |x|)``; ``rms_dbfs = 10·log10(Σ x² / (C·N))`` (a full-scale sine
  reads −3.01 dBFS); ``clipped`` = the number of samples (each channel's counted) with
  ``|x| > 1``: the ones an integer file clips at full scale (a 32-bit float file keeps them).
  Levels are floored at :data:`LEVEL_FLOOR_DBFS` (−160 dBFS; exact silence reads −160). The
  peak is of the float samples, before the writer clips them, so it can exceed 0 dBFS.
- ``clipped``: the stems' ``clipped`` summed.
- ``voice_share = E_v / Σ_s E_s`` with ``E = Σ x²`` over all channels and samples: the voice
  stem's share of the stems' energy, 0 to 1 (0 when every stem is silent).
- ``voice_active``: the fraction of the duration (``Σ L_k / N`` over active frames) in which
  the voice stem is active. Frame ``k`` is active when ``p_v[k] ≥ max(P99 · 10^(−R/10), F)``:
  ``P99`` is the 99th percentile of the voice stem's frame powers (linear interpolation between
  the sorted values: index ``0.99 · (K − 1)`` of ``K`` frames), a level of its loudest frames
  that one stray click does not set; ``R`` = :data:`ACTIVE_RANGE_DB` (20 dB: close to ITU-T
  P.56's 15.9 dB margin below the active speech level, which lies a few dB below the loudest
  frames); ``F`` = :data:`FLOOR_DBFS` (−60 dBFS as a frame RMS, so a quiet hiss alone is never
  voice).
- ``music_left_db``: the median, over the voice stem's inactive frames in which the input holds
  sound (``p_x[k] ≥ F``), of ``10·log10(p_v[k] / p_x[k])`` (floored at −160 dB): how loud the
  voice stem is, in its pauses, relative to the input at that moment. In the pauses of the voice,
  whatever the voice stem still holds is not voice: leaked music, noise, reverberation. −30 dB
  means the separation removed about 30 dB of it; 0 dB, that the voice stem keeps the input as
  it is. The median of frames (not a ratio of energies) lets a few frames that the activity
  rule misjudges (a breath, a reverberation tail, a fade) not move it. ``None`` (JSON ``null``)
  when there is no such frame: voice everywhere, or silence in all its pauses.

Limits: activity is judged by level alone. Music leaked at a level within ``R`` of the voice's
loudest frames counts as active voice (then ``voice_share`` is high and ``music_left_db`` is
measured only where the leak is quieter); a clean speech recording with audible background
noise that the model leaves in the voice stem reads a high ``music_left_db`` (the noise is left
in, though it is not music).

Cost: one pass over each signal in float32 blocks (minimum and maximum; the clipped samples
counted only when one is past full scale; frame energies), with float64 sums; its cost next to the separation is in docs/report.md
(scripts/bench_measures.py). :class:`ClipMeter` takes
the audio in blocks of any size (streamed stems of long inputs), the input possibly measured
beforehand by a :class:`SignalMeter`; :func:`measure_clip` is it for whole waves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: Version of the definitions above, written with the measures (``version``).
MEASURES_VERSION = 1
#: Frame length at 44.1 kHz (samples); scaled with the sample rate.
FRAME_AT_44K = 2048
#: A voice frame is active within this many dB of the voice stem's loudest frames (P99).
ACTIVE_RANGE_DB = 20.0
#: Percentile of the voice stem's frame powers that stands for its loudest frames.
REFERENCE_PERCENTILE = 99.0
#: Frames quieter than this (frame RMS, dBFS) are never active voice, nor measured as pauses.
FLOOR_DBFS = -60.0
#: Lowest level (and level ratio) reported, in dB: exact silence reads this.
LEVEL_FLOOR_DBFS = -160.0


def frame_length(sample_rate: int) -> int:
    """Samples per frame at ``sample_rate``: 2048 at 44.1 kHz, scaled with the rate."""
    return max(1, round(FRAME_AT_44K * sample_rate / 44100))


def _db(power: float) -> float:
    """``10·log10(power)``, floored at :data:`LEVEL_FLOOR_DBFS`, rounded to 0.01 dB."""
    return round(max(10 * math.log10(power), LEVEL_FLOOR_DBFS) if power > 0 else LEVEL_FLOOR_DBFS, 2)


def _as_array(wave: object, what: str) -> np.ndarray:
    if hasattr(wave, "detach") and hasattr(wave, "cpu"):  # a torch tensor
        wave = wave.detach().cpu().numpy()
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected [channels, samples], got shape {tuple(arr.shape)}")
    return arr


class SignalMeter:
    """Running peak, clipped count and frame energies of one signal at ``sample_rate``, fed in
    order in float32 ``[C, t]`` blocks of any size. What the measures need of the input: a
    separation measures its input while it holds it (a few numbers per frame are kept) and hands
    the meter on with the stems (:attr:`uvrsep.stems.Stems.input_meter`)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.frame = frame_length(self.sample_rate)
        self.channels = 0
        self.peak = 0.0
        self.clipped = 0
        self.samples = 0
        self.energies: list[np.ndarray] = []  # float64 [frames] per block
        self._rest = np.zeros((0, 0), np.float32)  # samples of an unfinished frame [C, < L]

    def add(self, block: object) -> None:
        """Take the next samples, float32 ``[C, t]`` (numpy or torch)."""
        block = _as_array(block, "signal")
        if block.shape[1] == 0:
            return
        if self.samples == 0:
            self.channels = block.shape[0]
            self._rest = np.zeros((self.channels, 0), np.float32)
        elif block.shape[0] != self.channels:
            raise ValueError(f"a block with {block.shape[0]} channels after blocks with {self.channels}")
        low, high = float(block.min()), float(block.max())
        self.peak = max(self.peak, high, -low)
        if high > 1.0 or low < -1.0:  # counted only where there is something to count
            self.clipped += int(np.count_nonzero(np.abs(block) > 1.0))
        self.samples += block.shape[1]
        if self._rest.shape[1]:
            block = np.concatenate([self._rest, block], axis=1)
        whole = block.shape[1] // self.frame * self.frame
        if whole:
            frames = block[:, :whole].reshape(self.channels, -1, self.frame)
            self.energies.append(np.einsum("cfl,cfl->f", frames, frames).astype(np.float64))
        self._rest = block[:, whole:].copy()

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(energy, samples) per frame, float64 ``[K]`` each; the leftover samples last."""
        energies = list(self.energies)
        lengths = [np.full(sum(e.size for e in energies), self.frame, np.float64)]
        if self._rest.shape[1]:
            rest = self._rest.astype(np.float64)
            energies.append(np.array([np.sum(rest * rest)]))
            lengths.append(np.array([float(self._rest.shape[1])]))
        energy = np.concatenate(energies) if energies else np.zeros(0)
        return energy, np.concatenate(lengths)

    def levels(self, energy: float) -> dict:
        power = energy / (self.channels * self.samples) if self.samples else 0.0
        return {"peak_dbfs": _db(self.peak * self.peak), "rms_dbfs": _db(power), "clipped": self.clipped}


class ClipMeter:
    """Measures of one clip, fed block by block (see the module's docstring for the definitions).

    ``meter.add(input_block, {stem: block})`` with float32 ``[channels, t]`` blocks in order (any
    ``t``, the same for the input and every stem), then ``meter.result()`` once. When the input
    was measured beforehand (``input_meter``: a :class:`SignalMeter` fed all of its ``N``
    samples, as a separation does), feed the stems alone with :meth:`add_stems`. ``voice`` is
    ``None`` when no stem holds the voice: then the voice's measures are ``None``.
    """

    def __init__(
        self, sample_rate: int, stems: Sequence[str], voice: str | None, input_meter: SignalMeter | None = None
    ):
        if voice is not None and voice not in stems:
            raise ValueError(f"voice stem {voice!r} is not one of the stems {list(stems)}")
        if input_meter is not None and input_meter.sample_rate != int(sample_rate):
            raise ValueError(
                f"the input was measured at {input_meter.sample_rate} Hz, the stems are at {sample_rate} Hz"
            )
        self.sample_rate = int(sample_rate)
        self.voice = voice
        self.measured_input = input_meter is not None
        self.input = input_meter if input_meter is not None else SignalMeter(self.sample_rate)
        self.stems = {name: SignalMeter(self.sample_rate) for name in stems}

    def _check_names(self, stem_blocks: Mapping[str, object]) -> None:
        if set(stem_blocks) != set(self.stems):
            raise ValueError(f"blocks of stems {sorted(stem_blocks)}, expected {sorted(self.stems)}")

    def add(self, input_block: object, stem_blocks: Mapping[str, object]) -> None:
        """Take the next ``t`` samples of the input and of every stem."""
        if self.measured_input:
            raise ValueError("the input was measured beforehand: feed the stems with add_stems")
        self._check_names(stem_blocks)
        x = _as_array(input_block, "input")
        blocks = {name: _as_array(wave, f"stem {name!r}") for name, wave in stem_blocks.items()}
        lengths = {b.shape[1] for b in blocks.values()} | {x.shape[1]}
        if len(lengths) > 1:
            raise ValueError(f"the input and the stems differ in length: {sorted(lengths)} samples")
        self.input.add(x)
        for name, block in blocks.items():
            self.stems[name].add(block)

    def add_stems(self, stem_blocks: Mapping[str, object]) -> None:
        """Take the next samples of every stem, the input having been measured beforehand. Each
        stem is measured over the input's ``N`` samples, as the writer writes it: samples past
        ``N`` are left out, and a stem that ends early is taken to go on with zeros."""
        if not self.measured_input:
            raise ValueError("add_stems is for an input measured beforehand (input_meter); use add")
        self._check_names(stem_blocks)
        for name, wave in stem_blocks.items():
            signal = self.stems[name]
            signal.add(_as_array(wave, f"stem {name!r}")[:, : max(0, self.input.samples - signal.samples)])

    def result(self) -> dict:
        """The measures as a JSON-able dict (see the module docstring)."""
        n = self.input.samples
        if self.measured_input:
            for signal in self.stems.values():  # ended early: zeros, as the writer pads it
                if signal.samples < n:
                    signal.add(np.zeros((signal.channels or self.input.channels, n - signal.samples), np.float32))
        x_energy, lengths = self.input.finish()
        stem_energy = {name: signal.finish()[0] for name, signal in self.stems.items()}
        totals = {name: float(e.sum()) for name, e in stem_energy.items()}
        p_x = x_energy / (max(self.input.channels, 1) * lengths) if lengths.size else lengths
        voice: dict = {"voice_share": None, "voice_active": None, "music_left_db": None}
        if self.voice is not None:
            all_energy = sum(totals.values())
            signal = self.stems[self.voice]
            p_v = stem_energy[self.voice] / (max(signal.channels, 1) * lengths) if lengths.size else lengths
            active = active_frames(p_v)
            voice = {
                "voice_share": round(totals[self.voice] / all_energy, 4) if all_energy > 0 else 0.0,
                "voice_active": round(float(lengths[active].sum()) / n, 4) if n else 0.0,
                "music_left_db": music_left_db(p_v, p_x, active),
            }
        return {
            "version": MEASURES_VERSION,
            "duration_s": round(n / self.sample_rate, 3),
            "voice_stem": self.voice,
            "input": self.input.levels(float(x_energy.sum())),
            "stems": {name: signal.levels(totals[name]) for name, signal in self.stems.items()},
            "clipped": sum(signal.clipped for signal in self.stems.values()),
            **voice,
        }


def active_frames(p_v: np.ndarray) -> np.ndarray:
    """bool ``[K]``: the voice stem's active frames, from its frame powers ``p_v`` ``[K]``."""
    if p_v.size == 0:
        return np.zeros(0, bool)
    reference = float(np.percentile(p_v, REFERENCE_PERCENTILE))
    threshold = max(reference * 10 ** (-ACTIVE_RANGE_DB / 10), 10 ** (FLOOR_DBFS / 10))
    return p_v >= threshold


def music_left_db(p_v: np.ndarray, p_x: np.ndarray, active: np.ndarray) -> float | None:
    """Median of ``10·log10(p_v / p_x)`` over the inactive frames where the input holds sound."""
    pauses = ~active & (p_x >= 10 ** (FLOOR_DBFS / 10))
    if not pauses.any():
        return None
    ratio = np.maximum(p_v[pauses] / p_x[pauses], 10 ** (LEVEL_FLOOR_DBFS / 10))
    return round(float(np.median(10 * np.log10(ratio))), 2)


def measure_clip(input_wave: object, stems: Mapping[str, object], voice: str | None, sample_rate: int) -> dict:
    """The measures of one clip: ``input_wave`` and ``stems`` (``{name: wave}``) as written, float32
    ``[channels, samples]`` (numpy or torch) at ``sample_rate``, all of one length; ``voice``
    names the voice stem. Returns the JSON-able dict the module docstring defines."""
    meter = ClipMeter(sample_rate, list(stems), voice)
    meter.add(input_wave, stems)
    return meter.result()
