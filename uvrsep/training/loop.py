"""The training loop: on-the-fly mixtures, the model's own band analysis, masked-magnitude loss.

Checkpoints are self-describing (architecture, band config, primary stem, weights, optimizer,
scheduler, step, RNG state) and load through the same code as official weights. Training is
deterministic: an example depends only on (seed, step, index), and the torch RNG state is saved,
so a stopped and resumed run gives the same weights as an uninterrupted one (on the same device).
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import bands
from ..config import load_band_layout
from ..network import Architecture
from ..network.checkpoint import ASPP_DILATIONS
from .data import SAMPLE_RATE, PackedSet, make_example

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "uvrsep-checkpoint/1"


@dataclass
class TrainConfig:
    """Everything a run needs; saved in every checkpoint."""

    data: str
    out: str
    family: str = "aspp"
    width: int = 16
    branches: int = 5
    levels: int = 4
    nout_lstm: int = 128
    params: str = "4band_v2"
    primary: str = "Instrumental"
    steps: int = 1000
    batch_size: int = 4
    lr: float = 5e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    crop_frames: int = 256
    seed: int = 0
    val_dir: str | None = None
    val_every: int = 200
    val_items: int | None = None
    checkpoint_every: int = 100
    time_budget_s: float | None = None
    device: str = "cpu"
    workers: int = 0
    amp: bool = True
    resume: bool = True
    extra: dict = field(default_factory=dict)

    def architecture(self, bins: int) -> Architecture:
        if self.family == "vr51":
            return Architecture("vr51", self.width, nout_lstm=self.nout_lstm, bins=bins)
        return Architecture("aspp", self.width, dilations=ASPP_DILATIONS[self.branches], levels=self.levels)


def _features(layout, mix: np.ndarray, target: np.ndarray, frames: int, rng: np.random.Generator):
    """Normalised magnitudes of mix and target, ``[2, bins + 1, frames]`` (random crop)."""
    x = bands.analyze(torch.from_numpy(np.ascontiguousarray(mix)), layout).spec.abs().numpy()
    y = bands.analyze(torch.from_numpy(np.ascontiguousarray(target)), layout).spec.abs().numpy()
    start = int(rng.integers(0, x.shape[2] - frames + 1)) if x.shape[2] > frames else 0
    x, y = x[:, :, start : start + frames], y[:, :, start : start + frames]
    if x.shape[2] < frames:
        pad = ((0, 0), (0, 0), (0, frames - x.shape[2]))
        x, y = np.pad(x, pad), np.pad(y, pad)
    scale = float(x.max()) or 1.0
    return x / scale, y / scale


def make_batch(cfg: TrainConfig, data: PackedSet, layout, step: int, pool=None) -> tuple[torch.Tensor, torch.Tensor]:
    seconds = (cfg.crop_frames + 8) * layout.top.hop_length / SAMPLE_RATE

    def one(i: int):
        mix, acc = make_example(data, cfg.seed, step, i, seconds)
        target = acc if cfg.primary == "Instrumental" else mix - acc
        return _features(layout, mix, target, cfg.crop_frames, np.random.default_rng([cfg.seed, step, i, 1]))

    pairs = list(pool.map(one, range(cfg.batch_size))) if pool else [one(i) for i in range(cfg.batch_size)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).float()
    y = torch.from_numpy(np.stack([p[1] for p in pairs])).float()
    return x, y


def loss_fn(net, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 on the masked magnitude, 0.8 for the final mask and 0.2 shared by the aux heads."""
    masks = net.forward_with_aux(x)
    main = F.l1_loss(masks[0] * x, y)
    aux = sum(F.l1_loss(m * x, y) for m in masks[1:]) / (len(masks) - 1)
    return 0.8 * main + 0.2 * aux


def train_step(net, opt, scaler, x: torch.Tensor, y: torch.Tensor, use_amp: bool) -> torch.Tensor:
    """One optimiser step on the batch ``x`` → ``y`` (fp16 autocast when ``use_amp``, gradients
    clipped to norm 5); returns the loss. The step :func:`train` runs and the candidates'
    benchmark times."""
    net.train()
    with torch.autocast(x.device.type, enabled=use_amp, dtype=torch.float16):
        loss = loss_fn(net, x, y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    scaler.step(opt)
    scaler.update()
    return loss


def _schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def save_checkpoint(
    path: Path, cfg: TrainConfig, arch: Architecture, net, opt=None, sched=None, step=0, history=None
) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "architecture": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(arch).items()},
        "params": cfg.params,
        "primary": cfg.primary,
        "state_dict": {k: v.detach().to("cpu") for k, v in net.state_dict().items()},
        "step": step,
        "config": asdict(cfg),
        "history": history or [],
    }
    if opt is not None:
        payload["optimizer"] = opt.state_dict()
        payload["scheduler"] = sched.state_dict()
        payload["torch_rng"] = torch.get_rng_state()
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    tmp.replace(path)


def export_model(checkpoint: Path, out: Path, *, half: bool = True) -> Path:
    """A compact inference file from a training checkpoint (fp16 weights + metadata)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    payload = {k: ckpt[k] for k in ("format", "architecture", "params", "primary", "step")}
    payload["state_dict"] = state
    tmp = out.with_name(out.name + ".part")
    torch.save(payload, tmp)
    tmp.replace(out)
    return out


#: How ``compact_checkpoint`` stores the optimizer moments: exactly, rounded to bfloat16, or not at all.
MOMENTS = ("fp32", "bf16", "drop")


def compact_checkpoint(checkpoint: Path, out: Path, *, moments: str = "bf16") -> Path:
    """A smaller copy of a training checkpoint for transport, still resumable by ``train``.

    The weights stay fp32. AdamW's two moments per weight are twice the weights' size; "bf16"
    rounds them (half the bytes; ``train`` loads them back as fp32, so the resumed run is close
    to, not bit-identical with, an uninterrupted one), "drop" leaves them out (the optimizer
    restarts its moments and bias correction at the saved step; the schedule and step go on).
    Sizes of a width-16 net's files: docs/performance.md.
    """
    if moments not in MOMENTS:
        raise ValueError(f"moments must be one of {', '.join(MOMENTS)}, not {moments!r}")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "optimizer" not in ckpt:
        raise ValueError(f"{checkpoint}: not a resumable training checkpoint (no optimizer state)")
    opt = ckpt["optimizer"]
    if moments == "drop":
        opt["state"] = {}
    elif moments == "bf16":
        opt["state"] = {
            k: {n: (t.to(torch.bfloat16) if n.startswith("exp_avg") else t) for n, t in st.items()}
            for k, st in opt["state"].items()
        }
    ckpt["transport"] = {"moments": moments}
    tmp = out.with_name(out.name + ".part")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return out


def validate(checkpoint: Path, cfg: TrainConfig) -> dict[str, float | None]:
    """Median SDR of both stems on the validation items, through the full inference path."""
    from ..evaluation import evaluate, load_items, separator_system
    from ..separator import Separator

    if cfg.val_dir is None:
        raise ValueError("validate needs cfg.val_dir")
    items = load_items(cfg.val_dir)
    if cfg.val_items is not None and len(items) > cfg.val_items:  # an even spread over the kinds
        items = [items[round(i * (len(items) - 1) / max(1, cfg.val_items - 1))] for i in range(cfg.val_items)]
    sep = Separator(checkpoint, params=cfg.params, device=cfg.device)
    scores = evaluate(items, {"model": separator_system(sep)})[0]
    result = {k: scores.median(k) for k in ("vocals_sdr", "accompaniment_sdr")}
    # Per kind of item, for sets named like scripts/build_valset.py does ("singing_03", "dialog_01").
    kinds: dict[str, list[str]] = {}
    for name in scores.rows:
        if "_" in name:
            kinds.setdefault(name.rsplit("_", 1)[0], []).append(name)
    for kind, names in sorted(kinds.items()):
        result[f"{kind}_vocals_sdr"] = scores.median("vocals_sdr", names)
    return result


def train(cfg: TrainConfig, on_log=None, stop_after: int | None = None) -> dict:
    """Run (or resume) training; returns the last log record.

    ``stop_after`` ends this invocation after that many steps (the schedule still spans
    ``cfg.steps``), as an interruption would; a later call resumes from ``last.pth``.
    SIGTERM (e.g. from ``timeout``) ends it the same way at the next step boundary, with
    ``last.pth`` saved, when ``train`` runs in the main thread.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    layout = load_band_layout(cfg.params)
    arch = cfg.architecture(layout.bins)
    net = arch.build(layout.bins).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    step, history = 0, []
    last = out / "last.pth"
    if cfg.resume and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        net.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, history = int(ckpt["step"]), list(ckpt.get("history", []))
        log.info("resumed from %s at step %d", last, step)
    data = PackedSet(Path(cfg.data))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    pool = ThreadPoolExecutor(cfg.workers) if cfg.workers > 0 else None
    log_path = out / "train_log.jsonl"
    started = time.perf_counter()
    val_seconds = 0.0  # duration of the last validation pass
    record: dict = {"step": step}
    terminated: list[int] = []
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        first_step = step
        while step < cfg.steps:
            if stop_after is not None and step - first_step >= stop_after:
                break
            if terminated:
                log.info("SIGTERM: stopping at step %d", step)
                break
            if cfg.time_budget_s is not None and time.perf_counter() - started > cfg.time_budget_s:
                log.info("time budget reached at step %d", step)
                break
            x, y = make_batch(cfg, data, layout, step, pool)
            x, y = x.to(device), y.to(device)
            loss = train_step(net, opt, scaler, x, y, use_amp)
            sched.step()
            step += 1
            record = {
                "step": step,
                "loss": round(float(loss.detach()), 6),
                "lr": sched.get_last_lr()[0],
                "seconds": round(time.perf_counter() - started, 2),
            }
            due = cfg.val_dir and (step % cfg.val_every == 0 or step == cfg.steps)
            if (
                due
                and cfg.time_budget_s is not None
                and (time.perf_counter() - started + val_seconds > cfg.time_budget_s)
            ):
                # A validation pass as long as the last one would end past the budget: skip it
                # (the caller evaluates the final model anyway), so the budget holds.
                log.info("step %d: validation skipped, it would overrun the time budget", step)
                due = False
            if due:
                net.eval()
                val_started = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    probe = Path(tmp) / "probe.pth"
                    save_checkpoint(probe, cfg, arch, net, step=step)
                    record.update({f"val_{k}": v for k, v in validate(probe, cfg).items()})
                val_seconds = time.perf_counter() - val_started
            history.append(record)
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            if on_log is not None:
                on_log(record)
            if step % cfg.checkpoint_every == 0:
                save_checkpoint(last, cfg, arch, net, opt, sched, step, history)
    finally:
        if pool is not None:
            pool.shutdown()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    save_checkpoint(last, cfg, arch, net, opt, sched, step, history)
    return record
