"""Manifests, clips and stems for the report's tests (small and 10,000-clip reports)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from uvrsep.report import measure_clip

SR = 16000


def clip_and_stems(seconds: float, leak: float, voice_gain: float, seed: int, over: float = 0.0, on: float = 0.5):
    """(input, {stem: wave}) float32 [2, T]: a voice on in the first ``on`` of it, noise music;
    the voice stem keeps ``leak`` of the music; its first ``over`` is pushed over full scale."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    voice = voice_gain * np.sin(2 * np.pi * 300 * t) * (t < on * seconds)
    music = 0.1 * rng.standard_normal(n)
    x = np.stack([voice + music, voice + 0.9 * music])
    v = np.stack([voice + leak * music, voice + leak * 0.9 * music])
    v[0, : int(over * n)] *= 4.0  # push the start over full scale (clipped when written as integers)
    return x.astype(np.float32), {"instrumental": (x - v).astype(np.float32), "vocals": v.astype(np.float32)}


#: name → (leak, voice gain, share of the start pushed over full scale, share with voice) and the
#: flags each must raise: one clip of each kind.
KINDS = {
    "clean": ((0.01, 0.5, 0.0, 0.5), []),  # music left −40 dB
    "leaky": ((0.3, 0.5, 0.0, 0.5), ["music left"]),  # music left −10 dB
    "whisper": ((0.01, 0.01, 0.0, 0.5), ["little voice"]),  # voice share 0.3 %
    "brief": ((0.01, 0.5, 0.0, 0.05), ["voice rarely active"]),  # voice in 5 % of the clip
    "loud": ((0.01, 0.5, 0.1, 0.5), ["clipped"]),  # vocals over full scale
}


def write_small_report_inputs(root: Path) -> Path:
    """Clips, stems (16-bit WAV, 1 s each) and a manifest under ``root``, paths in it relative
    to ``root``: the four kinds above, a failed input, a record from a run without measures, a
    re-run (last record wins) and an unreadable line. Returns the manifest."""
    (root / "clips").mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    lines = []
    for seed, (name, (shape, _)) in enumerate(KINDS.items()):
        x, stems = clip_and_stems(1.0, *shape[:2], seed, *shape[2:])
        sf.write(root / "clips" / f"{name}.wav", x.T, SR, subtype="PCM_16")
        outputs = []
        for stem, wave in stems.items():
            out = f"out/{name}_{stem}.wav"
            sf.write(root / out, np.clip(wave, -1, 1).T, SR, subtype="PCM_16")
            outputs.append(out)
        record = {
            "input": f"clips/{name}.wav",
            "status": "ok",
            "outputs": outputs,
            "duration_s": 1.0,
            "seconds": 0.2,
            "error": "",
            "warnings": [],
            "measures": measure_clip(x, stems, "vocals", SR),
        }
        if name == "clean":  # an earlier failed attempt of the same input: the last record wins
            lines.append(
                json.dumps({**record, "status": "failed", "outputs": [], "measures": None, "error": "interrupted"})
            )
        lines.append(json.dumps(record))
    sf.write(root / "clips" / "old.wav", np.zeros((SR, 2), np.float32), SR)
    lines.append(
        json.dumps(
            {
                "input": "clips/old.wav",
                "status": "ok",
                "outputs": ["out/old_instrumental.wav", "out/old_vocals.wav"],
                "duration_s": 1.0,
                "seconds": 0.1,
                "error": "",
            }
        )
    )
    lines.append("{not json")
    lines.append(
        json.dumps(
            {
                "input": "clips/broken.wav",
                "status": "failed",
                "outputs": [],
                "error": "clips/broken.wav: cannot decode audio",
            }
        )
    )
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def write_big_manifest(root: Path, count: int, seed: int = 0) -> Path:
    """A manifest of ``count`` clips with varied measures. Every clip's files are links to one
    clip and its stems (the audio is real, its pictures are made once)."""
    x, stems = clip_and_stems(1.0, 0.05, 0.5, seed=9)
    base = measure_clip(x, stems, "vocals", SR)
    (root / "media").mkdir(parents=True, exist_ok=True)
    sf.write(root / "media" / "in.wav", x.T, SR, subtype="PCM_16")
    for stem, wave in stems.items():
        sf.write(root / "media" / f"{stem}.wav", np.clip(wave, -1, 1).T, SR, subtype="PCM_16")
    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    with open(root / "big.jsonl", "w", encoding="utf-8") as fh:
        for k in range(count):
            name = f"speaker{k % 97:02d}/clip{k:05d}"
            (root / "clips" / name).parent.mkdir(exist_ok=True)
            os.symlink(root / "media" / "in.wav", root / "clips" / f"{name}.wav")
            outputs = []
            for stem in stems:
                out = root / "out" / f"{name}_{stem}.wav"
                out.parent.mkdir(exist_ok=True)
                os.symlink(root / "media" / f"{stem}.wav", out)
                outputs.append(str(out.relative_to(root)))
            m = json.loads(json.dumps(base))
            m["voice_share"] = round(float(rng.beta(3, 2)), 4)
            m["voice_active"] = round(float(rng.beta(4, 2)), 4)
            m["music_left_db"] = round(float(rng.normal(-32, 7)), 2)
            m["clipped"] = int(rng.integers(1, 500)) if rng.random() < 0.05 else 0
            fh.write(
                json.dumps(
                    {
                        "input": f"clips/{name}.wav",
                        "status": "ok",
                        "outputs": outputs,
                        "duration_s": 1.0,
                        "seconds": 0.2,
                        "error": "",
                        "warnings": [],
                        "measures": m,
                    }
                )
                + "\n"
            )
    return root / "big.jsonl"


def run_real_batch(root: Path, weights: Path) -> Path:
    """A real batch under ``root`` (the current folder of the run, so the manifest's paths are
    relative to it), made by the ``uvrsep separate`` command with a tiny random net: two short
    44.1 kHz clips; the first one's earlier attempt failed (the file was not audio then), so the
    manifest holds a resumed run (its last record wins). Stems are 32-bit float (the measures'
    samples exactly). Returns the manifest."""
    from typer.testing import CliRunner

    from uvrsep.cli import app

    from .conftest import SR as RATE
    from .conftest import music_like

    (root / "clips").mkdir(parents=True, exist_ok=True)
    args = [
        "separate",
        "clips",
        "-m",
        str(weights),
        "-o",
        "out",
        "--device",
        "cpu",
        "--bit-depth",
        "32f",
        "--manifest",
        "manifest.jsonl",
    ]
    here = os.getcwd()
    os.chdir(root)
    try:
        Path("clips/a.wav").write_bytes(b"not audio at all" * 100)
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 1 and "0 processed, 0 skipped, 1 failed" in first.output, first.output
        sf.write("clips/a.wav", music_like(0.5, seed=1).T, RATE, subtype="PCM_16")
        quiet = music_like(0.4, seed=2)
        quiet[:, : quiet.shape[1] // 2] *= 0.001  # music, then nearly nothing: the voice is rarely active
        sf.write("clips/b.wav", quiet.T, RATE, subtype="PCM_16")
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0 and "2 processed, 0 skipped, 0 failed" in second.output, second.output
    finally:
        os.chdir(here)
    return root / "manifest.jsonl"
