"""Training of the ConvBiLSTM on simulated localization sequences generated on the fly.

Recipe (DBlink's, with the loss the reconstruction issue measured to work on thin structures):
Adam (betas 0.99, 0.999), ReduceLROnPlateau on the validation loss, early stopping, a fixed
validation set, resumable self-describing checkpoints. The loss is BCE with ``pos_weight``
against the thin ground-truth skeleton, ``temporal_weight`` x L1 between consecutive outputs,
``tv_weight`` x total variation, and ``confidence_weight`` x BCE of the confidence head against
"the thresholded output is right at this pixel" (:func:`confidence_target`: a predicted pixel is
right within 1 bin of the truth, so the confidence ranks hallucinations as they are scored).

Multi-GPU / multi-process: launched with ``torchrun``, each process trains on its own simulated
data under DistributedDataParallel (NCCL on CUDA, gloo on CPU); rank 0 validates and writes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from dblink_live import __version__
from dblink_live.config import RunConfig
from dblink_live.localize.base import resolve_device
from dblink_live.recon.data import NORM_FACTOR, training_sequence
from dblink_live.recon.model import ConvBiLSTM

__all__ = ["CHECKPOINT_FORMAT", "recon_loss", "sample_batch", "train_recon"]

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "dblink-live-recon"
CHECKPOINT_VERSION = 1


def sample_batch(config: RunConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (B, T, 1, Y, X), skeleton (B, T, Y, X)) drawn with the training ranges."""
    t = config.recon_training
    maps, gts = [], []
    for _ in range(t.batch_size):
        w = int(rng.integers(t.window_frames[0], t.window_frames[1] + 1))
        density = float(rng.uniform(*t.density_per_um2))
        m, g = training_sequence(
            config, int(rng.integers(1 << 62)), t.tile_bins, t.sequence_maps, w, density, t.target
        )
        maps.append(m)
        gts.append(g)
    return torch.from_numpy(np.stack(maps))[:, :, None], torch.from_numpy(np.stack(gts))


def recon_loss(
    model: torch.nn.Module, maps: torch.Tensor, gt: torch.Tensor, config: RunConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (see the module docstring)."""
    t = config.recon_training
    logit, conf_logit = model(maps)
    p = torch.sigmoid(logit)
    if t.loss == "mse":
        bce = F.mse_loss(p, gt)
    else:
        pos_weight = torch.tensor(t.pos_weight, device=logit.device)
        bce = F.binary_cross_entropy_with_logits(logit, gt, pos_weight=pos_weight)
    temporal = (p[:, 1:] - p[:, :-1]).abs().mean() if p.shape[1] > 1 else p.new_zeros(())
    tv = (p[..., 1:, :] - p[..., :-1, :]).abs().mean() + (p[..., 1:] - p[..., :-1]).abs().mean()
    total = bce + t.temporal_weight * temporal + t.tv_weight * tv
    parts = {t.loss: bce.item(), "temporal": temporal.item(), "tv": tv.item()}
    if conf_logit is not None:
        right = confidence_target(p.detach(), gt)
        conf = F.binary_cross_entropy_with_logits(conf_logit, right)
        total = total + t.confidence_weight * conf
        parts["confidence"] = conf.item()
    parts["total"] = total.item()
    return total, parts


def confidence_target(p: torch.Tensor, gt: torch.Tensor, threshold: float = 0.4) -> torch.Tensor:
    """1 where the thresholded output is right, judged as the evaluation judges it.

    A predicted structure pixel is right when a true pixel lies within 1 bin (otherwise it is a
    hallucination); a predicted background pixel is right when it is not on the structure.
    ``threshold`` ~ 100/255, the evaluation's threshold on outputs whose maximum is ~1.
    """
    pred = p > threshold
    truth = gt > 0.5
    near = F.max_pool2d(truth.float().flatten(0, 1)[:, None], 3, stride=1, padding=1)
    near = near[:, 0].view_as(truth) > 0
    return torch.where(pred, near, ~truth).float()


def _distributed() -> tuple[int, int]:
    """(rank, world size), initializing the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if world > 1:
        return dist.get_rank(), world
    return 0, 1


def make_checkpoint(
    model: ConvBiLSTM,
    config: RunConfig,
    step: int,
    optimizer,
    scheduler,
    metrics: dict[str, Any],
    best_state: dict | None = None,
) -> dict[str, Any]:
    """Everything needed to rebuild the model, run it on the right grid, and resume."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "package_version": __version__,
        "architecture": config.recon_model.model_dump(mode="json"),
        "grid": {"bin_nm": config.grid.bin_nm, "window_frames": config.grid.window_frames},
        "normalization": {"kind": "mean_count", "factor": NORM_FACTOR},
        "structure": config.simulation.structure.kind,
        "target": config.recon_training.target,
        "config": config.to_dict(),
        "step": step,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # the weights with the best validation loss: what inference loads
        "best_model_state": best_state,
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "metrics": metrics,
    }


def train_recon(
    config: RunConfig,
    output: str | Path,
    *,
    device: str = "auto",
    resume: str | Path | None = None,
    threads: int | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Path:
    """Train (or resume) a ConvBiLSTM; returns the checkpoint path (rewritten regularly)."""
    rank, world = _distributed()
    if threads:
        torch.set_num_threads(threads)
    if world > 1 and torch.cuda.is_available():
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        dev = resolve_device(device)
    t = config.recon_training
    torch.manual_seed(t.seed)  # same initial weights on every rank
    model = ConvBiLSTM(**config.recon_model.model_dump()).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate, betas=tuple(t.betas))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=t.plateau_patience)
    step, best, bad = 0, math.inf, 0
    best_state: dict | None = None
    output = Path(output)
    if resume is not None:
        ckpt = torch.load(resume, map_location=dev, weights_only=False)
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer_state"])
        if ckpt.get("scheduler_state"):
            sched.load_state_dict(ckpt["scheduler_state"])
        step = int(ckpt["step"])
        best = float(ckpt["metrics"].get("best_validation", math.inf))
        bad = int(ckpt["metrics"].get("epochs_without_improvement", 0))
        best_state = ckpt.get("best_model_state")
        log.info("resumed from %s at step %d", resume, step)
    train_model: torch.nn.Module = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    val_rng = np.random.default_rng([t.seed, 99])
    n_val_batches = max(1, t.validation_sequences // t.batch_size)
    val = [sample_batch(config, val_rng) for _ in range(n_val_batches)] if rank == 0 else []
    rng = np.random.default_rng([t.seed, rank, step])
    metrics: dict[str, Any] = {"best_validation": best, "epochs_without_improvement": bad}
    t0 = time.perf_counter()
    stop = False
    while step < t.steps and not stop:
        train_model.train()
        maps, gt = sample_batch(config, rng)
        loss, parts = recon_loss(train_model, maps.to(dev), gt.to(dev), config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if progress is not None and rank == 0:
            progress(step, t.steps, parts)
        last = step == t.steps
        if step % t.validate_every == 0 or last:
            v = torch.zeros(1, device=dev)
            if rank == 0:
                model.eval()
                with torch.no_grad():
                    v[0] = float(
                        np.mean(
                            [
                                recon_loss(model, m.to(dev), g.to(dev), config)[0].item()
                                for m, g in val
                            ]
                        )
                    )
            if world > 1:
                dist.broadcast(v, 0)
            vloss = float(v[0])
            sched.step(vloss)
            if vloss < best - 1e-4:
                best, bad = vloss, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            stop = bad >= t.early_stopping_patience
            metrics = {
                "validation_loss": vloss,
                "best_validation": best,
                "epochs_without_improvement": bad,
                "train": parts,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "early_stopped": stop,
                "world_size": world,
            }
            if rank == 0:
                log.info(
                    "step %d: validation %.4f (best %.4f, lr %.1e)",
                    step,
                    vloss,
                    best,
                    opt.param_groups[0]["lr"],
                )
        if rank == 0 and (step % t.checkpoint_every == 0 or last or stop):
            ckpt = make_checkpoint(model, config, step, opt, sched, metrics, best_state)
            tmp = output.with_suffix(".tmp")
            torch.save(ckpt, tmp)
            tmp.replace(output)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return output
