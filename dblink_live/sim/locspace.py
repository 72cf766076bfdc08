"""Fast localization-space simulation: what a localizer would report, without any camera.

For reconstruction training thousands of sequences are needed; imaging and localizing each frame
would be far too slow on a CPU. Here every lit emitter of a :class:`~dblink_live.sim.scene.Scene`
becomes a localization directly:

* detected with probability ``eta / (1 + (N50 / N)^2)`` for ``N`` photons in that frame;
* displaced by Gaussian noise with the Mortensen et al. (2010) precision
  ``sigma^2 = F^2 (s_a^2 / N)(16/9 + 8 pi s_a^2 b / (N a^2))`` where ``s_a^2 = s^2 + a^2 / 12``
  (PSF sigma ``s``, pixel ``a``, background ``b`` photons/pixel, all after QE; ``F^2 = 2`` for an
  EMCCD, 1 for sCMOS);
* plus uniformly placed false positives.

Repeated blinks of one molecule come for free from the blinking model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dblink_live.config import EMCCDCameraConfig, RunConfig
from dblink_live.localizations import EmitterTable, Localizations
from dblink_live.sim.scene import Scene

__all__ = ["LocalizationSequence", "localization_precision_nm", "simulate_localizations"]


@dataclass(eq=False)
class LocalizationSequence:
    """A simulated localization movie with ground truth on the reconstruction grid.

    Attributes
    ----------
    localizations : Localizations
        What a localizer would report (true and false positives).
    emitters : EmitterTable
        True lit emitters in the field of view.
    is_true : (N,) bool
        Which localizations come from a real emitter (the rest are false positives).
    map_times_s : (T',) float64
    gt_skeleton : (T', Y', X') uint8
    gt_structure : (T', Y', X') float32
    """

    localizations: Localizations
    emitters: EmitterTable
    is_true: np.ndarray
    map_times_s: np.ndarray
    gt_skeleton: np.ndarray
    gt_structure: np.ndarray


def localization_precision_nm(
    photons: np.ndarray,
    background_photons: float,
    psf_sigma_nm: float,
    pixel_size_nm: float,
    excess_noise_factor_sq: float = 2.0,
) -> np.ndarray:
    """Lateral precision (1 sigma, nm) after Mortensen et al. 2010 (detected photons)."""
    n = np.maximum(np.asarray(photons, float), 1.0)
    sa2 = psf_sigma_nm**2 + pixel_size_nm**2 / 12.0
    var = (sa2 / n) * (16.0 / 9.0 + 8.0 * np.pi * sa2 * background_photons / (n * pixel_size_nm**2))
    return np.sqrt(excess_noise_factor_sq * var)


def simulate_localizations(
    config: RunConfig, n_frames: int | None = None, seed: int | None = None, with_gt: bool = True
) -> LocalizationSequence:
    """Simulate localizations (and ground truth) of one field, fully vectorized.

    Parameters
    ----------
    config
        Run config; the camera section sets field of view, pixel size, QE and background.
    n_frames, seed
        Override ``simulation.n_frames`` / ``simulation.seed``.
    with_gt
        Render ground-truth maps (skip for pure localization statistics).
    """
    sim = config.simulation
    scene = Scene(sim, n_frames=n_frames, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence([scene.seed, 0x10C]))
    em = scene.emitters(0, scene.n_frames, fov_only=True)
    cam, ls = sim.camera, sim.localization_space
    qe = cam.qe
    det_photons = em.photons * qe
    bg = cam.background_photons * qe
    p_detect = ls.max_detection_efficiency / (
        1.0 + (ls.detection_photons_50 / np.maximum(det_photons, 1e-9)) ** 2
    )
    hit = rng.random(len(em)) < p_detect
    f2 = 2.0 if isinstance(cam, EMCCDCameraConfig) else 1.0
    sigma = (
        localization_precision_nm(
            det_photons[hit], bg, sim.optics.psf_sigma_nm, cam.pixel_size_nm, f2
        )
        * ls.precision_scale
    )
    x = em.x_nm[hit] + sigma * rng.standard_normal(len(sigma))
    y = em.y_nm[hit] + sigma * rng.standard_normal(len(sigma))
    photons_est = det_photons[hit] * (1 + sigma / 1000 * rng.standard_normal(len(sigma)))

    n_fp = rng.poisson(ls.false_positives_per_um2 * scene.fov_area_um2 * scene.n_frames)
    fp_photons = ls.detection_photons_50 * (1 + np.abs(rng.standard_normal(n_fp)))
    fp_sigma = localization_precision_nm(
        fp_photons, bg, sim.optics.psf_sigma_nm, cam.pixel_size_nm, f2
    )
    locs = Localizations(
        frame=np.concatenate([em.frame[hit], rng.integers(0, scene.n_frames, n_fp)]),
        x_nm=np.concatenate([x, rng.uniform(0, scene.fov_nm[0], n_fp)]),
        y_nm=np.concatenate([y, rng.uniform(0, scene.fov_nm[1], n_fp)]),
        photons=np.concatenate([photons_est, fp_photons]),
        background=np.full(len(sigma) + n_fp, bg),
        uncertainty_nm=np.concatenate([sigma, fp_sigma]),
        score=np.concatenate([p_detect[hit], np.full(n_fp, 0.5)]),
        pixel_size_nm=cam.pixel_size_nm,
        n_frames=scene.n_frames,
    )
    is_true = np.concatenate([np.ones(len(sigma), bool), np.zeros(n_fp, bool)])
    inside = scene.in_fov(locs.x_nm, locs.y_nm)
    order = np.argsort(locs.frame[inside], kind="stable")
    locs = locs.select(np.flatnonzero(inside)[order])
    is_true = is_true[inside][order]
    if with_gt:
        times, skel, struct = scene.ground_truth_maps(config.grid)
    else:
        times = np.zeros(0)
        skel = np.zeros((0, 0, 0), np.uint8)
        struct = np.zeros((0, 0, 0), np.float32)
    return LocalizationSequence(locs, em, is_true, times, skel, struct)
