"""Training of the CNN localizer on simulated frames generated on the fly.

Each sample is a short movie of three frames with uniformly placed fluorophores that blink
(continuous-time model of :mod:`dblink_live.sim.photophysics`, so an emitter on in frame t is
often on in t +- 1), imaged by an EMCCD or sCMOS camera model (:mod:`dblink_live.sim.camera`),
with pixel size, PSF width, density, brightness and background drawn per sample from the
training ranges. With ``input_norm: robust`` the input is each frame normalized by its own
background and noise (:mod:`dblink_live.localize.normalize`), exactly as at inference time, so
no calibration enters; with ``calibrated`` it is photons from the camera's *scalar*
calibration (baseline, e-/ADU, gain, QE).

Loss per pixel of the middle frame: binary cross-entropy for "an emitter centre lies here"
(emitters dimmer than ``min_photons``, or below ``min_snr`` -- photons over the frame noise and
the PSF's area -- are neither positives nor negatives, so the network is not taught that faint
emitters are noise nor made to guess at them), and at positive
pixels the Gaussian negative log-likelihood of the sub-pixel offsets with the predicted
uncertainties, a relative L1 on photons; plus a relative L2 on the background everywhere.
"""

from __future__ import annotations

import logging
import math
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
from dblink_live.localize.normalize import normalize_frames
from dblink_live.sim.camera import Camera, render_expected_photons
from dblink_live.sim.photophysics import blink_events
from dblink_live.training_loop import (
    Plateau,
    Validation,
    optimizer_step,
    resume_from,
    run_training,
    save_atomic,
)

__all__ = ["INPUT_SCALE", "TrainingBatch", "sample_batch", "train_localizer"]

log = logging.getLogger(__name__)

#: Photons per unit of network input (``input_norm`` "calibrated").
INPUT_SCALE = 100.0
#: Noise units per unit of network input (``input_norm`` "robust").
Z_SCALE = 10.0


class TrainingBatch(dict):
    """Tensors of one batch: ``x`` (B, 3, P, P) and per-pixel targets (B, P, P): ``p``,
    ``care`` (0 where the pixel holds only a too-dim emitter), ``dx``, ``dy`` (px),
    ``photons``, ``background``; plus ``emitters``: list of (x_px, y_px, photons) arrays of the
    middle frame, and ``pixel_size_nm`` (B,)."""


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if lo < hi else float(lo)


def _camera_config(
    cfg: LocalizerTrainingConfig, rng: np.random.Generator, common: dict[str, Any]
) -> EMCCDCameraConfig | SCMOSCameraConfig:
    """One camera drawn from the training ranges (gain, e-/ADU, read noise, offset)."""
    kind = cfg.cameras[int(rng.integers(len(cfg.cameras)))]
    baseline = rng.uniform(*cfg.baseline_adu)
    if kind == "emccd":
        em_gain = _log_uniform(rng, cfg.emccd_em_gain)
        e_per_adu = _log_uniform(rng, cfg.emccd_e_per_adu)
        # nobody runs an EMCCD whose background sits near saturation: where the draw would put
        # the brightest background above 20,000 ADU over the offset, lower the ADU per electron
        bg_peak = common["background_photons"] * (1 + common["background_variation"])
        e_per_adu = max(e_per_adu, bg_peak * em_gain / 20_000.0)
        return EMCCDCameraConfig(
            **common,
            em_gain=em_gain,
            e_per_adu=min(e_per_adu, 1000.0),
            read_noise_e=rng.uniform(*cfg.emccd_read_noise_e),
            baseline_adu=baseline,
            qe=rng.uniform(0.8, 0.95),
        )
    return SCMOSCameraConfig(
        **common,
        e_per_adu=_log_uniform(rng, cfg.scmos_e_per_adu),
        read_noise_e=rng.uniform(*cfg.scmos_read_noise_e),
        read_noise_spread=rng.uniform(0.1, 0.5),
        gain_spread=rng.uniform(0.0, 0.05),
        baseline_adu=baseline,
        offset_spread_adu=rng.uniform(0.0, 8.0),
        qe=rng.uniform(0.6, 0.95),
        camera_seed=int(rng.integers(1 << 30)),
    )


def _sample(cfg: LocalizerTrainingConfig, rng: np.random.Generator, p: int) -> dict[str, Any]:
    px = rng.uniform(*cfg.pixel_size_nm)
    sigma = rng.uniform(*cfg.psf_sigma_nm)
    bg = (
        _log_uniform(rng, cfg.background_photons)
        if cfg.background_photons[0] > 0
        else (rng.uniform(*cfg.background_photons))
    )
    common = {
        "width_px": p,
        "height_px": p,
        "pixel_size_nm": px,
        "background_photons": bg,
        "background_kind": (
            "smooth" if rng.random() < cfg.smooth_background_probability else "uniform"
        ),
        "background_variation": rng.uniform(*cfg.background_variation),
        "background_scale_nm": rng.uniform(1000.0, 5000.0),
    }
    cam_cfg = _camera_config(cfg, rng, common)
    camera = Camera.from_config(cam_cfg, OpticsConfig(sigma_nm=sigma), rng)
    em_gain = getattr(cam_cfg, "em_gain", 1.0)
    cal = CameraCalibration(px, cam_cfg.baseline_adu, cam_cfg.e_per_adu, em_gain, cam_cfg.qe, sigma)
    # density log-uniform over its range: low and high densities are both well represented
    density = _log_uniform(rng, cfg.density_per_um2)
    tau = rng.uniform(*cfg.on_time_frames)
    duty = 0.05
    margin = 3  # px: emitters just outside still shine in
    area_um2 = ((p + 2 * margin) * px / 1e3) ** 2
    lit_fraction = duty * (tau + 1) / tau
    oof = rng.uniform(*cfg.out_of_focus_fraction)
    n_labels = max(1, int(rng.poisson(density * area_um2 / lit_fraction / (1 - oof + 1e-9))))
    phot = PhotophysicsConfig(
        density_per_um2=None,
        duty_cycle=duty,
        on_time_frames=tau,
        bleach_probability=0.0,
        photons_mean=_log_uniform(rng, cfg.photons_mean),
        photons_cv=0.5,
    )
    ev = blink_events(phot, n_labels, 3, duty, rng)
    lx = rng.uniform(-margin, p + margin, n_labels) * px
    ly = rng.uniform(-margin, p + margin, n_labels) * px
    # per label: slight astigmatism (x wider than y or the reverse, by the label's axial
    # position) and, for a fraction of labels, strong defocus
    astig = rng.uniform(*cfg.astigmatism)
    u = rng.uniform(-1.0, 1.0, n_labels)
    defocus = np.where(rng.random(n_labels) < oof, rng.uniform(1.6, 3.5, n_labels), 1.0)
    sx_l = sigma * (1 + astig * u) * defocus
    sy_l = sigma * (1 - astig * u) * defocus
    x, y = lx[ev.emitter], ly[ev.emitter]
    signal = render_expected_photons(
        ev.frame, x, y, ev.photons, 3, (p, p), px, sx_l[ev.emitter], sy_l[ev.emitter]
    )
    raw = camera.expose(signal, [np.random.default_rng(rng.integers(1 << 62)) for _ in range(3)])
    mid = ev.frame == 1
    out: dict[str, Any] = {
        "ex": x[mid] / px - 0.5,
        "ey": y[mid] / px - 0.5,
        "eph": ev.photons[mid],
        "defocus": defocus[ev.emitter][mid],
        "px": px,
    }
    if cfg.input_norm == "robust":
        z, norm = normalize_frames(torch.from_numpy(raw.astype(np.float32)))
        noise_adu = float(norm.noise[1])
        ph_per_adu = cal.e_per_adu / cal.em_gain / cal.qe
        out["x"] = z.numpy() / Z_SCALE
        # targets in the network's units: photons per (frame noise x photons per ADU); the
        # background as its difference from the normalizer's map, in units of the noise
        out["photon_unit"] = noise_adu * ph_per_adu
        # matched-filter SNR of each emitter against the frame noise: photons in noise units
        # over the PSF's effective area, sqrt(4 pi) sigma_x sigma_y... (px)
        sx_px, sy_px = sx_l[ev.emitter][mid] / px, sy_l[ev.emitter][mid] / px
        out["snr"] = ev.photons[mid] / out["photon_unit"] / np.sqrt(4 * np.pi * sx_px * sy_px)
        bg_adu = cam_cfg.baseline_adu + camera.background / ph_per_adu
        out["bg"] = (bg_adu - norm.background[1].numpy()) / noise_adu
    else:
        out["x"] = cal.to_photons(raw).numpy() / INPUT_SCALE
        out["photon_unit"] = 1.0
        out["snr"] = np.full(int(mid.sum()), np.inf)
        out["bg"] = camera.background
    return out


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
    emitters, pxs, units = [], [], []
    for i in range(b):
        s = _sample(cfg, rng, p)
        x[i] = s["x"]
        bg[i] = s["bg"]
        pxs.append(s["px"])
        ex, ey, eph, dfc, snr = s["ex"], s["ey"], s["eph"], s["defocus"], s["snr"]
        col, row = np.floor(ex + 0.5).astype(int), np.floor(ey + 0.5).astype(int)
        inside = (col >= 0) & (col < p) & (row >= 0) & (row < p)
        ex, ey, eph, col, row = ex[inside], ey[inside], eph[inside], col[inside], row[inside]
        dfc, snr = dfc[inside], snr[inside]
        in_focus = dfc == 1.0
        emitters.append(np.column_stack([ex, ey, eph])[in_focus])
        # too dim, or moderately defocused: neither target nor negative; strongly defocused
        # blobs (> 2.2x the PSF) stay negatives, so the network learns to leave them out
        dim = (eph < cfg.min_photons) | (snr < cfg.min_snr) | ((dfc > 1.0) & (dfc <= 2.2))
        care[i, row[dim], col[dim]] = 0.0
        target_ok = ~dim & in_focus
        order = np.argsort(eph)  # brightest written last wins a shared pixel
        bright = order[target_ok[order]]
        r, c = row[bright], col[bright]
        target["p"][i, r, c] = 1.0
        care[i, r, c] = 1.0
        target["dx"][i, r, c] = ex[bright] - c
        target["dy"][i, r, c] = ey[bright] - r
        target["photons"][i, r, c] = eph[bright] / s["photon_unit"]
        units.append(s["photon_unit"])
    out = TrainingBatch({k: torch.from_numpy(v) for k, v in target.items()})
    out["x"] = torch.from_numpy(x)
    out["care"] = torch.from_numpy(care)
    out["background"] = torch.from_numpy(bg)
    out["emitters"] = emitters
    out["pixel_size_nm"] = torch.tensor(pxs)
    out["photon_unit"] = torch.tensor(units)
    out["robust"] = cfg.input_norm == "robust"
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
    bg_t = batch["background"].to(device)
    if batch.get("robust"):
        # photons in units of the frame noise (tens to thousands); the background as a signed
        # difference from the normalizer's map in noise units (around +-1)
        phot = ((out.photons[pos] - ph_t).abs() / (ph_t + 5.0)).sum() / n_pos
        bgl = F.smooth_l1_loss(out.background, bg_t, beta=1.0)
    else:
        phot = ((out.photons[pos] - ph_t).abs() / (ph_t + 100.0)).sum() / n_pos
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
    arch: dict[str, Any] = {"channels": cfg.channels, "in_frames": 3}
    if cfg.input_norm == "robust":
        arch.update(photon_scale=50.0, background_scale=1.0, input_norm="robust")
    input_scale = Z_SCALE if cfg.input_norm == "robust" else INPUT_SCALE
    model = LocalizerNet(**arch).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    # the plateau halves the learning rate (unless the linear decay has started); no early stop;
    # every validation at or below the best counts as the best
    plateau = Plateau(opt, lr_patience=3, stop_patience=None, min_delta=0.0)
    step = 0
    if resume is not None:
        ckpt = resume_from(resume, model, opt, dev)
        step = int(ckpt["step"])
        if ckpt.get("schedule_state"):
            plateau.load_state_dict(ckpt["schedule_state"])
        else:  # written before the schedule was saved: its best only
            plateau.best = float(ckpt.get("metrics", {}).get("best_validation", math.inf))
        log.info("resumed from %s at step %d", resume, step)
    val_rng = np.random.default_rng(cfg.seed + 10_000)
    val = [sample_batch(cfg, val_rng) for _ in range(cfg.validation_batches)]
    rng = np.random.default_rng([cfg.seed, step])

    def decayed_lr(at: int) -> float | None:
        """The linear decay's learning rate at step ``at`` (None before it starts)."""
        start = cfg.lr_decay_start
        if start is None or at < start or cfg.steps <= start:
            return None
        return cfg.learning_rate * (1.0 - 0.9 * (at - start) / (cfg.steps - start))

    def before_step(at: int) -> None:
        lr = decayed_lr(at)
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr

    def train_step() -> dict[str, float]:
        model.train()
        batch = sample_batch(cfg, rng)
        loss, parts = localizer_loss(model, batch, dev)
        optimizer_step(loss, model, opt)
        return parts

    def validate(at: int) -> float:
        model.eval()
        with torch.no_grad():
            return float(np.mean([localizer_loss(model, b, dev)[0].item() for b in val]))

    def on_validation(v: Validation) -> dict[str, Any]:
        lr = opt.param_groups[0]["lr"]
        log.info("step %d: validation loss %.4f (lr %.2e)", v.step, v.loss, lr)
        return {
            "validation_loss": v.loss,
            "best_validation": plateau.best,
            "train": v.parts,
            "lr": lr,
            "seconds": v.seconds,
        }

    def checkpoint(at: int, final: bool, metrics: dict[str, Any]) -> None:
        ckpt = make_checkpoint(
            model, arch, input_scale, cfg.model_dump(mode="json"), at, opt, metrics
        )
        ckpt["schedule_state"] = plateau.state_dict()  # a resumed run keeps its schedule
        save_atomic(ckpt, output)

    run_training(
        start_step=step,
        steps=cfg.steps,
        train_step=train_step,
        validate=validate,
        on_validation=on_validation,
        checkpoint=checkpoint,
        validate_every=cfg.validate_every,
        checkpoint_every=cfg.checkpoint_every,
        plateau=plateau,
        progress=progress,
        before_step=before_step,
        step_scheduler=lambda at: decayed_lr(at) is None,
    )
    return output
