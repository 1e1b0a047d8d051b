"""Evaluation: SDR and SI-SDR of a model's stems against references, with two baselines.

An evaluation folder holds one folder per item with ``mixture``, ``vocals`` and
``accompaniment`` audio files (any extension soundfile reads; accompaniment = the instrumental
stem). Definitions (no BSS-eval projection):

- SDR = 10·log10(Σ s² / Σ (s − ŝ)²) over both channels and all samples of the item;
- SI-SDR: ŝ scaled by α = ⟨ŝ, s⟩ / ⟨s, s⟩ applied to the reference, i.e.
  10·log10(Σ (αs)² / Σ (αs − ŝ)²), over both channels flattened, no mean removal;
- a stem whose reference is silent (RMS below −60 dBFS) is left out of that stem's statistics.

Baselines on the same items: ``mixture`` (the mix as the estimate of every stem) and ``oracle``
(the ideal ratio mask sqrt(|V|² / (|V|² + |A|²)) on a 2048-point Hann STFT, hop 512, applied to
the mixture's complex STFT).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf

from .errors import ConfigError

STEMS = ("vocals", "accompaniment")
SILENT_RMS_DB = -60.0


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SDR in dB, 10·log10(Σ|s|² / Σ|s − ŝ|²), over all samples and channels of real or complex
    arrays of one shape, computed in float64 / complex128 (``inf`` for a perfect estimate; a
    silent reference counts as 1e-30 of energy). uvrsep's one SDR: the evaluation, the tests and
    the bench scripts use it."""
    reference, estimate = np.asarray(reference), np.asarray(estimate)
    dtype = np.complex128 if np.iscomplexobj(reference) or np.iscomplexobj(estimate) else np.float64
    ref = reference.astype(dtype).ravel()
    err = ref - estimate.astype(dtype).ravel()
    num, den = float(np.vdot(ref, ref).real), float(np.vdot(err, err).real)
    if den == 0:
        return math.inf
    return 10 * math.log10(max(num, 1e-30) / den)


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (channels flattened, no mean removal)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    est = np.asarray(estimate, dtype=np.float64).ravel()
    energy = float(np.dot(ref, ref))
    if energy == 0:
        return -math.inf
    target = (float(np.dot(est, ref)) / energy) * ref
    return sdr(target, est) if np.any(target) else -math.inf


def rms_db(x: np.ndarray) -> float:
    value = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20 * math.log10(value) if value > 0 else -math.inf


def oracle_irm(mixture: np.ndarray, vocals: np.ndarray, accompaniment: np.ndarray) -> dict[str, np.ndarray]:
    """Ideal-ratio-mask estimates of both stems, ``[C, T]`` each (2048-point Hann STFT, hop 512)."""
    n = mixture.shape[-1]
    kw: dict[str, Any] = dict(n_fft=2048, hop_length=512, window="hann")
    mix = librosa.stft(mixture.astype(np.float64), **kw)
    v2 = np.abs(librosa.stft(vocals.astype(np.float64), **kw)) ** 2
    a2 = np.abs(librosa.stft(accompaniment.astype(np.float64), **kw)) ** 2
    total = v2 + a2
    safe = np.where(total > 0, total, 1.0)
    mask_v = np.where(total > 0, np.sqrt(v2 / safe), 0.5)
    mask_a = np.where(total > 0, np.sqrt(a2 / safe), 0.5)
    return {
        "vocals": librosa.istft(mix * mask_v, length=n, **kw),
        "accompaniment": librosa.istft(mix * mask_a, length=n, **kw),
    }


@dataclass
class Item:
    """One evaluation item: name and float ``[2, T]`` arrays at ``sample_rate``."""

    name: str
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int


def _read(folder: Path, stem: str) -> tuple[np.ndarray, int]:
    matches = sorted(p for p in folder.iterdir() if p.stem == stem and p.is_file())
    if not matches:
        raise ConfigError(f"{folder}: no '{stem}' audio file")
    data, sr = sf.read(str(matches[0]), dtype="float32", always_2d=True)
    data = data.T
    if data.shape[0] == 1:
        data = np.concatenate([data, data])
    return data[:2], sr


def load_items(root: str | Path) -> list[Item]:
    """Every item folder below ``root`` (sorted), each with mixture / vocals / accompaniment."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise ConfigError(f"{root}: no item folders (each needs mixture, vocals and accompaniment files)")
    items = []
    for folder in folders:
        mix, sr = _read(folder, "mixture")
        voc, sr_v = _read(folder, "vocals")
        acc, sr_a = _read(folder, "accompaniment")
        if not sr == sr_v == sr_a or not mix.shape == voc.shape == acc.shape:
            raise ConfigError(f"{folder}: mixture, vocals and accompaniment differ in rate or length")
        items.append(Item(folder.name, mix, voc, acc, sr))
    return items


@dataclass
class Scores:
    """Per-item scores of one system: ``rows[item][f"{stem}_{metric}"]`` (None: silent reference)."""

    system: str
    rows: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def median(self, key: str, items: list[str] | None = None) -> float | None:
        values = [
            value
            for name, r in self.rows.items()
            if (value := r.get(key)) is not None and (items is None or name in items)
        ]
        return statistics.median(values) if values else None


def score_item(item: Item, estimates: dict[str, np.ndarray]) -> dict[str, float | None]:
    row: dict[str, float | None] = {}
    for stem in STEMS:
        ref = getattr(item, stem)
        silent = rms_db(ref) < SILENT_RMS_DB
        est = estimates[stem][:, : ref.shape[1]]
        if est.shape[1] < ref.shape[1]:
            est = np.pad(est, ((0, 0), (0, ref.shape[1] - est.shape[1])))
        row[f"{stem}_sdr"] = None if silent else sdr(ref, est)
        row[f"{stem}_si_sdr"] = None if silent else si_sdr(ref, est)
    return row


def evaluate(
    items: list[Item],
    systems: dict[str, Callable[[Item], dict[str, np.ndarray]]],
) -> list[Scores]:
    """Score each system (item → {"vocals": est, "accompaniment": est}) on every item."""
    results = []
    for name, estimate in systems.items():
        scores = Scores(name)
        for item in items:
            scores.rows[item.name] = score_item(item, estimate(item))
        results.append(scores)
    return results


def baselines() -> dict[str, Callable[[Item], dict[str, np.ndarray]]]:
    return {
        "mixture": lambda item: {"vocals": item.mixture, "accompaniment": item.mixture},
        "oracle_irm": lambda item: oracle_irm(item.mixture, item.vocals, item.accompaniment),
    }


def separator_system(separator, name: str = "the model") -> Callable[[Item], dict[str, np.ndarray]]:
    """A uvrsep :class:`Separator` as an evaluation system (stems resampled to the item's rate);
    a :class:`ConfigError` naming ``name`` when its stems are not vocals and instrumental."""
    if set(separator.labels) != {"vocals", "instrumental"}:
        raise ConfigError(f"{name}: its stems are {'/'.join(separator.labels)}, not vocals/instrumental")

    def run(item: Item) -> dict[str, np.ndarray]:
        stems = separator.separate_array(item.mixture, item.sample_rate)
        out = {}
        for label, key in (("vocals", "vocals"), ("instrumental", "accompaniment")):
            wave = stems[label]
            if stems.sample_rate != item.sample_rate:
                wave = librosa.resample(wave, orig_sr=stems.sample_rate, target_sr=item.sample_rate, res_type="soxr_hq")
            out[key] = wave
        return out

    return run


def write_reports(results: list[Scores], out_prefix: Path) -> tuple[Path, Path]:
    """``<prefix>.csv`` (one row per system and item) and ``<prefix>.json`` (rows + medians)."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    keys = [f"{s}_{m}" for s in STEMS for m in ("sdr", "si_sdr")]
    csv_path, json_path = out_prefix.with_suffix(".csv"), out_prefix.with_suffix(".json")
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["system", "item", *keys])
        for scores in results:
            for item, row in scores.rows.items():
                writer.writerow([scores.system, item, *("" if row[k] is None else f"{row[k]:.3f}" for k in keys)])
    payload = {s.system: {"items": s.rows, "median": {k: s.median(k) for k in keys}} for s in results}
    json_path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return csv_path, json_path
