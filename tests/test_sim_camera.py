"""Image formation: PSF integral and width, EMCCD and sCMOS noise statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import erf

from dblink_live.config import EMCCDCameraConfig, OpticsConfig, SCMOSCameraConfig
from dblink_live.sim.camera import Camera, render_expected_photons


def test_psf_integrates_to_the_photons_and_is_centred() -> None:
    img = render_expected_photons(
        np.array([0]),
        np.array([1625.0]),
        np.array([1580.0]),
        np.array([1000.0]),
        1,
        (32, 32),
        100.0,
        130.0,
    )[0]
    assert img.sum() == pytest.approx(1000.0, rel=1e-6)
    yy, xx = np.mgrid[:32, :32]
    assert ((xx + 0.5) * 100 * img).sum() / img.sum() == pytest.approx(1625.0, abs=0.5)
    assert ((yy + 0.5) * 100 * img).sum() / img.sum() == pytest.approx(1580.0, abs=0.5)


def test_emitters_outside_and_at_the_border() -> None:
    x = np.array([-5000.0, -50.0, 3150.0])
    img = render_expected_photons(
        np.array([0, 0, 0]), x, np.full(3, 1600.0), np.full(3, 1000.0), 1, (32, 32), 100.0, 130.0
    )[0]
    assert (
        400 < img.sum() < 1100
    )  # half of each border emitter lands in the image, none of the far one


def _integrated_gaussian(xy, amp, x0, y0, sigma, bg):
    x, y = xy
    s = np.sqrt(2) * sigma
    gx = 0.5 * (erf((x + 0.5 - x0) / s) - erf((x - 0.5 - x0) / s))
    gy = 0.5 * (erf((y + 0.5 - y0) / s) - erf((y - 0.5 - y0) / s))
    return amp * gx * gy + bg


@pytest.mark.parametrize("camera_cls", [EMCCDCameraConfig, SCMOSCameraConfig])
def test_psf_width_fitted_from_noisy_frames_matches_the_optics(camera_cls) -> None:
    """Fit a pixel-integrated Gaussian to isolated emitters in noisy frames; sigma must agree."""
    rng = np.random.default_rng(0)
    cfg = camera_cls(width_px=15, height_px=15, pixel_size_nm=100.0, background_photons=10.0)
    optics = OpticsConfig(na=1.4, wavelength_nm=670.0)  # sigma = 0.21 * 670 / 1.4 = 100.5 nm
    cam = Camera.from_config(cfg, optics, rng)
    n = 60
    x = rng.uniform(650, 850, n)
    y = rng.uniform(650, 850, n)
    signal = render_expected_photons(
        np.arange(n), x, y, np.full(n, 5000.0), n, cam.shape, 100.0, optics.psf_sigma_nm
    )
    adu = cam.expose(signal, [np.random.default_rng(i) for i in range(n)]).astype(float)
    em_gain = getattr(cfg, "em_gain", 1.0)
    photons = (adu - cfg.baseline_adu) * cfg.e_per_adu / em_gain / cfg.qe
    yy, xx = np.mgrid[:15, :15]
    sigmas = []
    for i in range(n):
        p, _ = curve_fit(
            _integrated_gaussian,
            (xx.ravel(), yy.ravel()),
            photons[i].ravel(),
            p0=(4000, 7, 7, 1.2, 10),
        )
        sigmas.append(abs(p[3]) * 100)
        assert p[1] * 100 + 50 == pytest.approx(x[i], abs=25)
    assert np.median(sigmas) == pytest.approx(optics.psf_sigma_nm, rel=0.04)


def test_emccd_noise_mean_and_excess_variance() -> None:
    cfg = EMCCDCameraConfig(width_px=64, height_px=64, background_photons=20.0)
    cam = Camera.from_config(cfg, OpticsConfig(), np.random.default_rng(0))
    frames = cam.expose(np.zeros((20, 64, 64)), [np.random.default_rng(i) for i in range(20)])
    assert frames.dtype == np.uint16
    lam = 20.0 * cfg.qe
    adu = frames.astype(float)
    mean_expected = cfg.baseline_adu + lam * cfg.em_gain / cfg.e_per_adu
    assert adu.mean() == pytest.approx(mean_expected, rel=0.01)
    # EMCCD: variance = F^2 g^2 lambda + read^2 with excess noise factor F^2 = 2
    var_expected = (2 * cfg.em_gain**2 * lam + cfg.read_noise_e**2) / cfg.e_per_adu**2
    assert adu.var() == pytest.approx(var_expected, rel=0.05)


def test_scmos_noise_per_pixel_maps() -> None:
    cfg = SCMOSCameraConfig(
        width_px=32,
        height_px=32,
        background_photons=30.0,
        read_noise_e=2.0,
        read_noise_spread=0.0,
        gain_spread=0.0,
        offset_spread_adu=5.0,
    )
    cam = Camera.from_config(cfg, OpticsConfig(), np.random.default_rng(0))
    frames = cam.expose(np.zeros((400, 32, 32)), [np.random.default_rng(i) for i in range(400)])
    adu = frames.astype(float)
    # per-pixel offsets differ and are reproduced pixel by pixel
    expected_mean = cam.offset_map + 30 * cfg.qe / cfg.e_per_adu
    assert np.abs(adu.mean(0) - expected_mean).mean() < 1.0
    assert cam.offset_map.std() == pytest.approx(5.0, rel=0.15)
    var_expected = (30 * cfg.qe + 4.0) / cfg.e_per_adu**2  # Poisson (F^2 = 1) + read noise
    assert adu.var(0).mean() == pytest.approx(var_expected, rel=0.05)


def test_smooth_background_varies_but_keeps_its_mean() -> None:
    cfg = EMCCDCameraConfig(
        width_px=64,
        height_px=64,
        background_kind="smooth",
        background_variation=0.4,
        background_scale_nm=1500,
        background_photons=50,
    )
    cam = Camera.from_config(cfg, OpticsConfig(), np.random.default_rng(3))
    assert cam.background.mean() == pytest.approx(50, rel=0.01)
    assert cam.background.max() - cam.background.min() > 20
    assert cam.background.min() >= 50 * 0.6 - 1e-9
