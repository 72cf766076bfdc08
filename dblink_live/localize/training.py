"""Training of the CNN localizer on simulated frames generated on the fly.

Each sample is a short movie of three frames with uniformly placed fluorophores that blink
(continuous-time model of :mod:`dblink_live.sim.photophysics`, so an emitter on in frame t is
often on in t +- 1), imaged by an EMCCD or sCMOS camera model (:mod:`dblink_live.sim.camera`),
with pixel size, PSF width, density, brightness and background drawn per sample from the
training ranges. The input is converted to photons with the *scalar* calibration a user knows
(baseline, e-/ADU, gain, QE), exactly as at inference time.

Loss per pixel of the middle frame: binary cross-entropy for "an emitter centre lies here"
(emitters dimmer than ``min_photons`` are neither positives nor negatives), and at positive
pixels the Gaussian negative log-likelihood of the sub-pixel offsets with the predicted
uncertainties, a relative L1 on photons; plus a relative L2 on the background everywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dblink_live.config import (
    EMCCDCameraConfig,
    LocalizerTrainingConfig,
    OpticsConfig,
    PhotophysicsConfig,
    SCMOSCameraConfig,
)
from dblink_live.localize.base import CameraCalibration, resolve_device
from dblink_live.localize.cnn import LocalizerNet, make_checkpoint
from dblink_live.sim.camera import Camera, render_expected_photons
from dblink_live.sim.photophysics import blink_events

__all__ = ["INPUT_SCALE", "TrainingBatch", "sample_batch", "train_localizer"]

log = logging.getLogger(__name__)

#: Photons per unit of network input.
INPUT_SCALE = 100.0


class TrainingBatch(dict):
    """Tensors of one batch: ``x`` (B, 3, P, P) and per-pixel targets (B, P, P): ``p``,
    ``care`` (0 where the pixel holds only a too-dim emitter), ``dx``, ``dy`` (px),
    ``photons``, ``background``; plus ``emitters``: list of (x_px, y_px, photons) arrays of the
    middle frame, and ``pixel_size_nm`` (B,)."""


def _sample(cfg: LocalizerTrainingConfig, rng: np.random.Generator, p: int) -> dict[str, Any]:
    px = rng.uniform(*cfg.pixel_size_nm)
    sigma = rng.uniform(*cfg.psf_sigma_nm)
    kind = cfg.cameras[int(rng.integers(len(cfg.cameras)))]
    bg = rng.uniform(*cfg.background_photons)
    common = {
        "width_px": p,
        "height_px": p,
        "pixel_size_nm": px,
        "background_photons": bg,
        "background_kind": "smooth" if rng.random() < 0.3 else "uniform",
        "background_variation": rng.uniform(0, 0.5),
        "background_scale_nm": 2000.0,
    }
    if kind == "emccd":
        cam_cfg = EMCCDCameraConfig(**common, em_gain=rng.uniform(100, 300))
    else:
        cam_cfg = SCMOSCameraConfig(**common, camera_seed=int(rng.integers(1 << 30)))
    camera = Camera.from_config(cam_cfg, OpticsConfig(sigma_nm=sigma), rng)
    cal = CameraCalibration(
        px,
        cam_cfg.baseline_adu,
        cam_cfg.e_per_adu,
        getattr(cam_cfg, "em_gain", 1.0),
        cam_cfg.qe,
        sigma,
    )
    # density log-uniform over its range: low and high densities are both well represented
    lo, hi = cfg.density_per_um2
    density = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    tau = rng.uniform(*cfg.on_time_frames)
    duty = 0.05
    margin = 3  # px: emitters just outside still shine in
    area_um2 = ((p + 2 * margin) * px / 1e3) ** 2
    lit_fraction = duty * (tau + 1) / tau
    n_labels = max(1, int(rng.poisson(density * area_um2 / lit_fraction)))
    phot = PhotophysicsConfig(
        density_per_um2=None,
        duty_cycle=duty,
        on_time_frames=tau,
        bleach_probability=0.0,
        photons_mean=rng.uniform(*cfg.photons_mean),
        photons_cv=0.5,
    )
    ev = blink_events(phot, n_labels, 3, duty, rng)
    lx = rng.uniform(-margin, p + margin, n_labels) * px
    ly = rng.uniform(-margin, p + margin, n_labels) * px
    x, y = lx[ev.emitter], ly[ev.emitter]
    signal = render_expected_photons(ev.frame, x, y, ev.photons, 3, (p, p), px, sigma)
    raw = camera.expose(signal, [np.random.default_rng(rng.integers(1 << 62)) for _ in range(3)])
    photons = cal.to_photons(raw).numpy() / INPUT_SCALE
    mid = ev.frame == 1
    return {
        "x": photons,
        "ex": x[mid] / px - 0.5,
        "ey": y[mid] / px - 0.5,
        "eph": ev.photons[mid],
        "bg": camera.background,
        "px": px,
    }


def sample_batch(
    cfg: LocalizerTrainingConfig,
    rng: np.random.Generator,
    batch: int | None = None,
    patch_px: int | None = None,
) -> TrainingBatch:
    """Simulate one training batch (see the module docstring)."""
    b = batch or cfg.batch_size
    p = patch_px or cfg.patch_px
    x = np.zeros((b, 3, p, p), np.float32)
    target = {k: np.zeros((b, p, p), np.float32) for k in ("p", "dx", "dy", "photons")}
    care = np.ones((b, p, p), np.float32)
    bg = np.zeros((b, p, p), np.float32)
    emitters, pxs = [], []
    for i in range(b):
        s = _sample(cfg, rng, p)
        x[i] = s["x"]
        bg[i] = s["bg"]
        pxs.append(s["px"])
        ex, ey, eph = s["ex"], s["ey"], s["eph"]
        col, row = np.floor(ex + 0.5).astype(int), np.floor(ey + 0.5).astype(int)
        inside = (col >= 0) & (col < p) & (row >= 0) & (row < p)
        ex, ey, eph, col, row = ex[inside], ey[inside], eph[inside], col[inside], row[inside]
        emitters.append(np.column_stack([ex, ey, eph]))
        dim = eph < cfg.min_photons
        care[i, row[dim], col[dim]] = 0.0
        order = np.argsort(eph)  # brightest written last wins a shared pixel
        bright = order[~dim[order]]
        r, c = row[bright], col[bright]
        target["p"][i, r, c] = 1.0
        care[i, r, c] = 1.0
        target["dx"][i, r, c] = ex[bright] - c
        target["dy"][i, r, c] = ey[bright] - r
        target["photons"][i, r, c] = eph[bright]
    out = TrainingBatch({k: torch.from_numpy(v) for k, v in target.items()})
    out["x"] = torch.from_numpy(x)
    out["care"] = torch.from_numpy(care)
    out["background"] = torch.from_numpy(bg)
    out["emitters"] = emitters
    out["pixel_size_nm"] = torch.tensor(pxs)
    return out


def localizer_loss(
    model: LocalizerNet, batch: TrainingBatch, device: torch.device
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (see the module docstring)."""
    out = model(batch["x"].to(device))
    p = batch["p"].to(device)
    care = batch["care"].to(device)
    det = (
        F.binary_cross_entropy_with_logits(out.logit, p, reduction="none") * care
    ).sum() / care.sum()
    pos = p > 0
    n_pos = pos.sum().clamp_min(1)
    dx_t, dy_t = batch["dx"].to(device)[pos], batch["dy"].to(device)[pos]
    sx, sy = out.sigma_x[pos], out.sigma_y[pos]
    nll = (
        0.5 * ((out.dx[pos] - dx_t) / sx) ** 2
        + torch.log(sx)
        + 0.5 * ((out.dy[pos] - dy_t) / sy) ** 2
        + torch.log(sy)
    ).sum() / n_pos
    ph_t = batch["photons"].to(device)[pos]
    phot = ((out.photons[pos] - ph_t).abs() / (ph_t + 100.0)).sum() / n_pos
    bg_t = batch["background"].to(device)
    bgl = (((out.background - bg_t) / (bg_t + 10.0)) ** 2).mean()
    total = det + 0.5 * nll + 0.5 * phot + bgl
    return total, {
        "detection": det.item(),
        "offset_nll": nll.item(),
        "photons": phot.item(),
        "background": bgl.item(),
        "total": total.item(),
    }


def train_localizer(
    cfg: LocalizerTrainingConfig,
    output: str | Path,
    *,
    device: str = "auto",
    resume: str | Path | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    threads: int | None = None,
) -> Path:
    """Train (or resume) the CNN localizer and write a self-describing checkpoint.

    The checkpoint at ``output`` is rewritten every ``checkpoint_every`` steps with the
    optimizer state, so an interrupted run resumes with ``resume=output``. Validation uses a
    fixed set of simulated batches (seeded) and logs its loss.

    Returns
    -------
    Path of the checkpoint written.
    """
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    output = Path(output)
    torch.manual_seed(cfg.seed)
    arch = {"channels": cfg.channels, "in_frames": 3}
    model = LocalizerNet(**arch).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
    step = 0
    best = math.inf
    if resume is not None:
        ckpt = torch.load(resume, map_location=dev, weights_only=False)
        model.load_state_dict(ckpt["model_state"])
        if ckpt.get("optimizer_state"):
            opt.load_state_dict(ckpt["optimizer_state"])
        step = int(ckpt["step"])
        best = float(ckpt.get("metrics", {}).get("best_validation", math.inf))
        log.info("resumed from %s at step %d", resume, step)
    val_rng = np.random.default_rng(cfg.seed + 10_000)
    val = [sample_batch(cfg, val_rng) for _ in range(cfg.validation_batches)]
    rng = np.random.default_rng([cfg.seed, step])
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    while step < cfg.steps:
        model.train()
        batch = sample_batch(cfg, rng)
        loss, parts = localizer_loss(model, batch, dev)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if progress is not None:
            progress(step, cfg.steps, parts)
        last = step == cfg.steps
        if step % cfg.validate_every == 0 or last:
            model.eval()
            with torch.no_grad():
                v = float(np.mean([localizer_loss(model, b, dev)[0].item() for b in val]))
            sched.step(v)
            best = min(best, v)
            metrics = {
                "validation_loss": v,
                "best_validation": best,
                "train": parts,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            log.info("step %d: validation loss %.4f (lr %.2e)", step, v, opt.param_groups[0]["lr"])
        if step % cfg.checkpoint_every == 0 or last:
            ckpt = make_checkpoint(
                model, arch, INPUT_SCALE, cfg.model_dump(mode="json"), step, opt, metrics
            )
            tmp = output.with_suffix(".tmp")
            torch.save(ckpt, tmp)
            tmp.replace(output)
    return output
