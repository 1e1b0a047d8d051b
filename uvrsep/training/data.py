"""Training data: a compact packed set of sources, and mixtures made from it on the fly.

``prepare_dataset`` decodes vocal and music files, resamples them to 44.1 kHz, and packs them
(``vocals`` mono, ``music`` stereo; Ogg Opus, or float16 arrays) with an ``index.json`` of
segments (source, kind, weight, bandwidth). It keeps a size budget, so the set can travel to a
GPU machine and be read fast there (how much audio a budget holds: docs/performance.md).

``make_example`` draws one training mixture from a packed set: a vocal crop (speed/pitch
change, EQ, pan, gain) over a music crop at a vocal-to-music ratio between -10 and +15 dB,
band-limited where the vocal source is. Everything random comes from a generator seeded by
(seed, step, index), so an example depends only on those numbers: resuming is exact.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import scipy.signal
import soundfile as sf

from ..audio import read_audio

SAMPLE_RATE = 44100


@dataclass(frozen=True)
class Source:
    """A group of files of one kind ("vocals" or "music") with a sampling weight.

    ``bandwidth_hz`` marks band-limited recordings (e.g. 11 kHz game dialog: 5500): mixtures
    using them are low-passed there, targets included, so the model is not taught that such a
    voice has no highs.
    """

    name: str
    kind: str
    files: tuple[str, ...]
    weight: float = 1.0
    bandwidth_hz: float | None = None


@dataclass
class Segment:
    source: str
    kind: str
    file: str
    offset: int
    length: int
    weight: float
    bandwidth_hz: float | None


def sources_from_manifest(data_dir: Path, split: str, weights: dict[str, float] | None = None) -> list[Source]:
    """Vocal sources of ``../shared/data`` (its manifest.csv) for one split, grouped by source.

    Default weights balance the data: each group gets weight per file so that songs, the
    syllable banks and speech are drawn about equally often per group.
    """
    weights = weights or {}
    groups: dict[str, list[str]] = {}
    with open(data_dir / "manifest.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != split:
                continue
            group = f"{row['kind']}:{Path(row['path']).parent.name}"
            groups.setdefault(group, []).append(str(data_dir / row["path"]))
    return [Source(g, "vocals", tuple(sorted(f)), weights.get(g, 1.0)) for g, f in sorted(groups.items())]


def _load(path: str, channels: int) -> np.ndarray:
    wave, sr = read_audio(path)
    if sr != SAMPLE_RATE:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    if channels == 1:
        return wave.mean(axis=0, keepdims=True)
    return wave if wave.shape[0] == 2 else np.concatenate([wave, wave])


#: Bytes per second and channel each packing codec budgets: float16's exact size; for Opus a
#: bound above the mean its encoder reaches on voices (docs/performance.md).
CODEC_BYTES_PER_SECOND = {"float16": 2 * SAMPLE_RATE, "opus": 8_000}
OPUS_RATE = 48000


def prepare_dataset(
    sources: list[Source],
    out_dir: Path,
    *,
    max_mb: float = 50.0,
    seed: int = 0,
    max_seconds_per_file: float = 20.0,
    codec: str = "opus",
) -> dict:
    """Pack ``sources`` into ``out_dir`` within ``max_mb`` (files drawn in a seeded order, the
    budget split between vocals and music by the number of kinds present, at most
    ``max_seconds_per_file`` from each file, a seeded excerpt, so the budget covers many files).

    ``codec`` "opus" stores Ogg Opus (several times more audio per MB, see
    :data:`CODEC_BYTES_PER_SECOND`; decoded into RAM when the set is opened), "float16" raw arrays (memory-mapped, no decoding). Returns the index.
    """
    if codec not in CODEC_BYTES_PER_SECOND:
        raise ValueError(f"unknown codec {codec!r} (use {', '.join(CODEC_BYTES_PER_SECOND)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = sorted({s.kind for s in sources})
    # The budget in samples (per channel) of each kind, at 44.1 kHz.
    per_sample = CODEC_BYTES_PER_SECOND[codec] / SAMPLE_RATE
    budget = {k: max_mb * 2**20 / len(kinds) / per_sample for k in kinds}
    arrays: dict[str, list[np.ndarray]] = {"vocals": [], "music": []}
    used = {"vocals": 0, "music": 0}
    segments: list[Segment] = []
    # Interleave the groups so that a small budget still covers every source.
    queues = {s.name: list(rng.permutation(s.files)) for s in sources}
    by_name = {s.name: s for s in sources}
    while any(queues.values()):
        for name in sorted(queues):
            if not queues[name]:
                continue
            src = by_name[name]
            path = str(queues[name].pop())
            channels = 1 if src.kind == "vocals" else 2
            room = int((budget[src.kind] - used[src.kind] * channels) // channels)
            if room < SAMPLE_RATE:  # less than a second left for this kind
                queues[name] = []
                continue
            wave = _load(path, channels)
            cap = min(room, int(max_seconds_per_file * SAMPLE_RATE))
            if wave.shape[1] > cap:
                start = int(rng.integers(0, wave.shape[1] - cap))
                wave = wave[:, start : start + cap]
            peak = float(np.max(np.abs(wave))) if wave.size else 0.0
            if peak == 0:
                continue
            segments.append(
                Segment(src.name, src.kind, path, used[src.kind], wave.shape[1], src.weight, src.bandwidth_hz)
            )
            arrays[src.kind].append(wave.astype(np.float16))
            used[src.kind] += wave.shape[1]
    index = {"sample_rate": SAMPLE_RATE, "seed": seed, "codec": codec, "segments": [asdict(s) for s in segments]}
    for kind, channels in (("vocals", 1), ("music", 2)):
        data = np.concatenate(arrays[kind], axis=1) if arrays[kind] else np.zeros((channels, 0), np.float16)
        if codec == "opus" and data.shape[1]:
            at48 = librosa.resample(
                data.astype(np.float32), orig_sr=SAMPLE_RATE, target_sr=OPUS_RATE, res_type="soxr_hq"
            )
            sf.write(out_dir / f"{kind}.opus", at48.T, OPUS_RATE, format="OGG", subtype="OPUS")
        else:
            np.save(out_dir / f"{kind}.npy", data)
        index[f"{kind}_samples"] = data.shape[1]
        index[f"{kind}_seconds"] = data.shape[1] / SAMPLE_RATE
    (out_dir / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return index


class PackedSet:
    """A prepared set, memory-mapped."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        self.vocals = self._open("vocals", 1)
        self.music = self._open("music", 2)
        segs = [Segment(**s) for s in self.index["segments"]]
        self.by_kind = {k: [s for s in segs if s.kind == k] for k in ("vocals", "music")}
        for kind, items in self.by_kind.items():
            if not items:
                raise ValueError(f"{folder}: the packed set has no {kind}")
        self.probs = {}
        for kind, items in self.by_kind.items():
            # Weight per segment, divided among each source's segments so sources (not files) balance.
            counts: dict[str, int] = {}
            for s in items:
                counts[s.source] = counts.get(s.source, 0) + 1
            w = np.array([s.weight / counts[s.source] for s in items])
            self.probs[kind] = w / w.sum()

    def _open(self, kind: str, channels: int) -> np.ndarray:
        """``[C, N]`` samples of one kind: memory-mapped float16, or Opus decoded into RAM."""
        raw = self.folder / f"{kind}.npy"
        if raw.is_file():
            return np.load(raw, mmap_mode="r")
        encoded = self.folder / f"{kind}.opus"
        if not encoded.is_file():
            return np.zeros((channels, 0), np.float32)
        data, sr = sf.read(str(encoded), dtype="float32", always_2d=True)
        data = librosa.resample(data.T, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
        return librosa.util.fix_length(data, size=int(self.index[f"{kind}_samples"]), axis=-1)

    def crop(self, kind: str, rng: np.random.Generator, length: int) -> tuple[np.ndarray, Segment]:
        items = self.by_kind[kind]
        seg = items[rng.choice(len(items), p=self.probs[kind])]
        data = self.vocals if kind == "vocals" else self.music
        start = seg.offset + (rng.integers(0, seg.length - length) if seg.length > length else 0)
        piece = np.asarray(data[:, start : start + min(length, seg.length)], dtype=np.float32)
        if piece.shape[1] < length:
            piece = np.pad(piece, ((0, 0), (0, length - piece.shape[1])))
        return piece, seg


def _speed(wave: np.ndarray, factor: float, n: int) -> np.ndarray:
    """Play ``factor`` times faster (pitch up by the same ratio), then fit to ``n`` samples."""
    up, down = 100, round(100 * factor)
    if up != down:
        wave = scipy.signal.resample_poly(wave, up, down, axis=-1).astype(np.float32)
    return librosa.util.fix_length(wave, size=n, axis=-1)


def _eq(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random gentle tilt: a first-order shelf of ±6 dB around 1–4 kHz."""
    gain = 10 ** (rng.uniform(-6, 6) / 20)
    fc = rng.uniform(1000, 4000)
    b, a = scipy.signal.butter(1, fc, btype="high", fs=SAMPLE_RATE)
    high = scipy.signal.lfilter(b, a, wave, axis=-1)
    return (wave + (gain - 1) * high).astype(np.float32)


def _lowpass(wave: np.ndarray, cutoff: float) -> np.ndarray:
    sos = scipy.signal.butter(8, cutoff, fs=SAMPLE_RATE, output="sos")
    return scipy.signal.sosfiltfilt(sos, wave, axis=-1).astype(np.float32)


def make_example(data: PackedSet, seed: int, step: int, index: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """One training mixture and its accompaniment (both float32 ``[2, T]`` at 44.1 kHz)."""
    rng = np.random.default_rng([seed, step, index])
    n = int(seconds * SAMPLE_RATE)
    factor = rng.uniform(0.9, 1.1)
    voc, seg = data.crop("vocals", rng, math.ceil(n * factor) + 16)
    voc = _eq(_speed(voc, factor, n), rng)
    pan = rng.uniform(0.2, 0.8)
    voc = np.concatenate([voc * math.sqrt(1 - pan), voc * math.sqrt(pan)])
    mus, _ = data.crop("music", rng, n)
    if rng.random() < 0.5:
        mus = _eq(mus, rng)
    v_rms = float(np.sqrt(np.mean(voc**2))) + 1e-8
    m_rms = float(np.sqrt(np.mean(mus**2))) + 1e-8
    ratio_db = rng.uniform(-10, 15)
    voc *= (m_rms * 10 ** (ratio_db / 20)) / v_rms
    if rng.random() < 0.05:
        voc *= 0  # some crops without vocals: the mask must learn to keep everything
    if seg.bandwidth_hz:
        voc, mus = _lowpass(voc, seg.bandwidth_hz), _lowpass(mus, seg.bandwidth_hz)
    mix = voc + mus
    peak = float(np.max(np.abs(mix))) + 1e-8
    gain = rng.uniform(0.25, 0.95) / peak
    return (mix * gain).astype(np.float32), (mus * gain).astype(np.float32)


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"}


def speech_source(spec: str | Path) -> Source:
    """Every audio file below a folder of extra speech, as a vocal source; ``"DIR:HZ"`` marks
    band-limited recordings (``bandwidth_hz``; a drive letter, ``C:\\speech``, is part of the folder)."""
    name, _, hz = str(spec).rpartition(":")
    if not name or not hz.replace(".", "", 1).isdigit():
        name, hz = str(spec), ""
    files = tuple(sorted(str(p) for p in Path(name).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
    return Source(f"speech:{Path(name).name}", "vocals", files, 1.0, float(hz) if hz else None)


def music_source(folder: Path, split: str, hold_out: float, seed: int) -> Source:
    """A music folder's files of one split (``"valid"``: the held-out ones, see :func:`split_music`)."""
    train_files, held = split_music(folder, hold_out, seed)
    return Source(f"music:{Path(folder).name}", "music", tuple(held if split == "valid" else train_files))


def split_music(folder: Path, hold_out: float, seed: int) -> tuple[list[str], list[str]]:
    """(training files, held-out files) of a music folder: a seeded shuffle, the first
    ``hold_out`` fraction held out (for validation items), so the two never overlap."""
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    order = list(np.random.default_rng(seed).permutation(files)) if files else []
    n_held = round(len(order) * hold_out)
    return sorted(order[n_held:]), sorted(order[:n_held])
