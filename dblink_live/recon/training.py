"""Training of the ConvBiLSTM on simulated sequences generated on the fly.

Recipe (DBlink's, with the loss the reconstruction issue measured to work on thin structures):
Adam (betas 0.99, 0.999), ReduceLROnPlateau on the validation loss, early stopping, a fixed
validation set, resumable self-describing checkpoints. The loss is BCE with ``pos_weight``
against the thin ground-truth skeleton, ``temporal_weight`` x L1 between consecutive outputs,
``tv_weight`` x total variation, and ``confidence_weight`` x BCE of the confidence head against
"the thresholded output is right at this pixel" (:func:`confidence_target`: a predicted pixel is
right within 1 bin of the truth, so the confidence ranks hallucinations as they are scored).

Data (``recon_training.train_data`` / ``validation_data``): localization-space sequences (fast;
bulk training) or camera + localizer sequences (raw frames simulated and localized as in use;
validation and fine-tuning), see :mod:`dblink_live.recon.data`. The validation set is fixed by
``recon_training.seed``; in ``"both"`` the two kinds share their seeds (same scenes, same truth).

Fine-tuning: ``train_recon(..., init=WEIGHTS)`` starts from another checkpoint's (best) weights
with this config, a fresh optimizer and scheduler and the step count at 0; the init weights are
validated first and kept as the best weights until training beats them.

Multi-GPU / multi-process: launched with ``torchrun``, each process trains on its own simulated
data under DistributedDataParallel (NCCL on CUDA, gloo on CPU); rank 0 validates and writes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError
from dblink_live.localize import Localizer, make_localizer
from dblink_live.localize.base import resolve_device
from dblink_live.recon.checkpoint import (  # re-exported: where they were defined before
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_init_weights,
    make_checkpoint,
)
from dblink_live.recon.data import make_sequence
from dblink_live.recon.model import ConvBiLSTM
from dblink_live.training_loop import (
    Plateau,
    Validation,
    optimizer_step,
    resume_from,
    run_training,
    save_atomic,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "draw_sequences",
    "load_init_weights",
    "make_checkpoint",
    "recon_loss",
    "sample_batch",
    "train_recon",
    "validation_batches",
    "validation_draws",
    "validation_modes",
]

log = logging.getLogger(__name__)


Batch = tuple[torch.Tensor, torch.Tensor]


def draw_sequences(config: RunConfig, rng: np.random.Generator) -> list[tuple[int, int, float]]:
    """(scene seed, W, density per um^2) of each sequence of one batch (``batch_size`` of them),
    drawn with the training ranges of ``config.recon_training``."""
    t = config.recon_training
    params = []
    for _ in range(t.batch_size):
        w = int(rng.integers(t.window_frames[0], t.window_frames[1] + 1))
        density = float(rng.uniform(*t.density_per_um2))
        params.append((int(rng.integers(1 << 62)), w, density))
    return params


def _batch(
    config: RunConfig,
    params: list[tuple[int, int, float]],
    mode: str,
    localizer: Localizer | None,
) -> Batch:
    t = config.recon_training
    maps, gts = [], []
    for seed, w, density in params:
        m, g = make_sequence(
            mode, config, seed, t.tile_bins, t.sequence_maps, w, density, t.target, localizer
        )
        maps.append(m)
        gts.append(g)
    return torch.from_numpy(np.stack(maps))[:, :, None], torch.from_numpy(np.stack(gts))


def sample_batch(
    config: RunConfig,
    rng: np.random.Generator,
    mode: str = "locspace",
    localizer: Localizer | None = None,
) -> Batch:
    """One batch drawn with the training ranges (W, density) of ``config.recon_training``.

    Parameters
    ----------
    config
        Run config.
    rng
        Draws the sequences' seeds, windows and densities (the same draws in either mode).
    mode
        ``"locspace"`` or ``"camera"`` (see :mod:`dblink_live.recon.data`).
    localizer
        Camera mode: the localizer to use (built from ``config.localizer`` when None).

    Returns
    -------
    maps : (B, T, 1, Y, X) float32 normalized counts
    truth : (B, T, Y, X) float32 0/1
    """
    if mode == "camera" and localizer is None:
        localizer = make_localizer(config.localizer, "cpu")
    return _batch(config, draw_sequences(config, rng), mode, localizer)


def validation_modes(config: RunConfig) -> list[str]:
    """The kinds of validation data a config asks for, the one that drives training first."""
    v = config.recon_training.validation_data
    return ["camera", "locspace"] if v == "both" else [v]


def validation_batches(
    config: RunConfig, modes: list[str] | None = None, localizer: Localizer | None = None
) -> dict[str, list[Batch]]:
    """The fixed validation set of a config, per kind of data.

    The sequences of :func:`validation_draws`: every kind gets the same seeds, windows and
    densities, so the kinds share their scenes and ground truth. ``modes`` defaults to
    :func:`validation_modes`. Returns ``{mode: [(maps (B, T, 1, Y, X), truth (B, T, Y, X))]}``.
    """
    modes = modes if modes is not None else validation_modes(config)
    if "camera" in modes and localizer is None:
        localizer = make_localizer(config.localizer, "cpu")
    params = validation_draws(config)
    return {mode: [_batch(config, p, mode, localizer) for p in params] for mode in modes}


def validation_draws(config: RunConfig) -> list[list[tuple[int, int, float]]]:
    """(scene seed, W, density) of every validation sequence, batch by batch.

    ``max(1, validation_sequences // batch_size)`` batches drawn from ``recon_training.seed``
    (the same whatever the kind of data).
    """
    t = config.recon_training
    rng = np.random.default_rng([t.seed, 99])
    n_batches = max(1, t.validation_sequences // t.batch_size)
    return [draw_sequences(config, rng) for _ in range(n_batches)]


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


def _validate(
    model: ConvBiLSTM, val: dict[str, list[Batch]], config: RunConfig, dev: torch.device
) -> dict[str, float]:
    """Mean validation loss per kind of data."""
    model.eval()
    with torch.no_grad():
        return {
            mode: float(
                np.mean(
                    [recon_loss(model, m.to(dev), g.to(dev), config)[0].item() for m, g in batches]
                )
            )
            for mode, batches in val.items()
        }


def train_recon(
    config: RunConfig,
    output: str | Path,
    *,
    device: str = "auto",
    resume: str | Path | None = None,
    init: str | Path | None = None,
    threads: int | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Path:
    """Train, resume or fine-tune a ConvBiLSTM; returns the checkpoint path.

    Parameters
    ----------
    config
        Run config (``simulation``, ``grid``, ``localizer`` for camera-mode data,
        ``recon_model``, ``recon_training``).
    output
        Checkpoint written every ``checkpoint_every`` steps, at the end and on early stopping.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"`` (under torchrun: one GPU per process).
    resume
        Continue an interrupted run from its checkpoint (same config).
    init
        Fine-tune: start from this checkpoint's best weights (a shipped name or a ``.pt``) with
        a fresh optimizer and scheduler and the step count at 0. Its architecture must match
        ``config.recon_model``. Not together with ``resume``.
    threads
        CPU threads for torch.
    progress
        ``progress(step, steps, loss parts)`` after every step (rank 0).

    Raises
    ------
    DblinkError
        on ``init`` together with ``resume``, or an ``init`` checkpoint that cannot be used.
    """
    if init is not None and resume is not None:
        raise DblinkError(
            "give either --init (fine-tune from weights, new run) or --resume (continue a run)"
        )
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
    init_info: dict[str, Any] | None = None
    if init is not None:
        state, init_info = load_init_weights(init, config, dev)
        model.load_state_dict(state)
        log.info("fine-tuning from %s (step %d)", init_info["path"], init_info["step"])
    opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate, betas=(t.betas[0], t.betas[1]))
    plateau = Plateau(opt, t.plateau_patience, t.early_stopping_patience)
    step = 0
    best_state: dict | None = None
    init_metrics: dict[str, Any] = {}  # validation of the init weights (fine-tuning)
    output = Path(output)
    if resume is not None:
        ckpt = resume_from(resume, model, opt, dev)
        if ckpt.get("scheduler_state"):
            plateau.load_state_dict(ckpt["scheduler_state"])
        step = int(ckpt["step"])
        plateau.best = float(ckpt["metrics"].get("best_validation", math.inf))
        plateau.bad = int(ckpt["metrics"].get("epochs_without_improvement", 0))
        best_state = ckpt.get("best_model_state")
        init_info = ckpt.get("init")
        init_metrics = {k: v for k, v in ckpt["metrics"].items() if k.startswith("init_valid")}
        log.info("resumed from %s at step %d", resume, step)
    train_model: torch.nn.Module = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    modes = validation_modes(config)
    need_localizer = t.train_data == "camera" or (rank == 0 and "camera" in modes)
    localizer = make_localizer(config.localizer, str(dev)) if need_localizer else None
    val = validation_batches(config, modes, localizer) if rank == 0 else {}
    rng = np.random.default_rng([t.seed, rank, step])
    metrics: dict[str, Any] = {
        "best_validation": plateau.best,
        "epochs_without_improvement": plateau.bad,
    }
    if init is not None:
        v0 = torch.zeros(1, device=dev, dtype=torch.float64)
        if rank == 0:
            losses0 = _validate(model, val, config, dev)
            v0[0] = losses0[modes[0]]
            init_metrics = {
                "init_validation_loss": losses0[modes[0]],
                "init_validation_losses": losses0,
            }
            log.info("validation of the init weights: %s", losses0)
        if world > 1:
            dist.broadcast(v0, 0)
        plateau.best, plateau.bad = float(v0[0]), 0
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        metrics = {"best_validation": plateau.best, "epochs_without_improvement": 0, **init_metrics}
    losses: dict[str, float] = {}  # the last validation's losses per kind (rank 0)

    def train_step() -> dict[str, float]:
        train_model.train()
        maps, gt = sample_batch(config, rng, t.train_data, localizer)
        loss, parts = recon_loss(train_model, maps.to(dev), gt.to(dev), config)
        optimizer_step(loss, model, opt)
        return parts

    def validate(at: int) -> float:
        """Rank 0 validates; every rank gets its loss (the plateau must agree everywhere)."""
        nonlocal losses
        v = torch.zeros(1, device=dev, dtype=torch.float64)
        losses = {}
        if rank == 0:
            losses = _validate(model, val, config, dev)
            v[0] = losses[modes[0]]
        if world > 1:
            dist.broadcast(v, 0)
        return float(v[0])

    def on_validation(v: Validation) -> dict[str, Any]:
        nonlocal best_state
        if v.improved:
            best_state = {k: w.detach().cpu().clone() for k, w in model.state_dict().items()}
        lr = opt.param_groups[0]["lr"]
        if rank == 0:
            log.info(
                "step %d: validation %.4f %s (best %.4f, lr %.1e)",
                v.step,
                v.loss,
                losses,
                plateau.best,
                lr,
            )
        return {
            "validation_loss": v.loss,
            "validation_data": modes[0],
            "validation_losses": losses,
            "best_validation": plateau.best,
            "epochs_without_improvement": plateau.bad,
            "train": v.parts,
            "train_data": t.train_data,
            "lr": lr,
            "seconds": v.seconds,
            "early_stopped": v.stop,
            "world_size": world,
            **init_metrics,
        }

    def checkpoint(at: int, final: bool, metrics: dict[str, Any]) -> None:
        ckpt = make_checkpoint(
            model, config, at, opt, plateau.scheduler, metrics, best_state, init_info
        )
        save_atomic(ckpt, output)

    run_training(
        start_step=step,
        steps=t.steps,
        train_step=train_step,
        validate=validate,
        on_validation=on_validation,
        checkpoint=checkpoint,
        validate_every=t.validate_every,
        checkpoint_every=t.checkpoint_every,
        plateau=plateau,
        metrics=metrics,
        progress=progress,
        is_main=rank == 0,
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return output
