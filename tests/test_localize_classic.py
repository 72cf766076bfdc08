"""Classic localizer: CRLB-level accuracy on isolated emitters, photometry, no false alarms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dblink_live.config import (
    ClassicLocalizerConfig,
    EMCCDCameraConfig,
    OpticsConfig,
    SCMOSCameraConfig,
)
from dblink_live.errors import DblinkError
from dblink_live.localize import CameraCalibration, ClassicLocalizer
from dblink_live.metrics import match_localizations, score_localizations
from dblink_live.sim.camera import Camera, camera_metadata, render_expected_photons


def _grid_movie(camera_cfg, n_frames=60, photons=2000.0, sigma_nm=130.0, seed=0):
    """Isolated emitters on a 1 um grid with random sub-pixel positions."""
    rng = np.random.default_rng(seed)
    cam = Camera.from_config(camera_cfg, OpticsConfig(sigma_nm=sigma_nm), rng)
    g = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2)
    x = (g[:, 0] * 1000 + 1200 + rng.uniform(-60, 60, (n_frames, len(g)))).ravel()
    y = (g[:, 1] * 1000 + 1200 + rng.uniform(-60, 60, (n_frames, len(g)))).ravel()
    f = np.repeat(np.arange(n_frames), len(g))
    ph = np.full(len(f), photons)
    px = camera_cfg.pixel_size_nm
    sig = render_expected_photons(f, x, y, ph, n_frames, cam.shape, px, sigma_nm)
    raw = cam.expose(sig, [np.random.default_rng([seed, i]) for i in range(n_frames)])
    cal = CameraCalibration.from_camera(camera_metadata(camera_cfg, sigma_nm))
    return raw, cal, f, x, y, ph


def test_isolated_emitters_reach_the_reported_precision() -> None:
    cfg = EMCCDCameraConfig(width_px=64, height_px=64, pixel_size_nm=100, background_photons=20)
    raw, cal, f, x, y, _ = _grid_movie(cfg)
    locs = ClassicLocalizer(device="cpu").localize(raw, cal)
    s = score_localizations(f, x, y, locs.frame, locs.x_nm, locs.y_nm)
    assert s.jaccard == 1.0
    gi, pi = match_localizations(f, x, y, locs.frame, locs.x_nm, locs.y_nm)
    err_x = locs.x_nm[pi] - x[gi]
    # per-axis error matches the reported (Mortensen) precision, and there is no bias
    assert np.std(err_x) == pytest.approx(np.median(locs.uncertainty_nm[pi]), rel=0.2)
    assert abs(np.mean(err_x)) < 1.0
    assert np.median(locs.photons[pi]) == pytest.approx(2000, rel=0.05)
    assert np.median(locs.background[pi]) == pytest.approx(20, rel=0.1)
    assert np.median(locs.score) > 0.9


def test_scmos_and_free_sigma_fit() -> None:
    cfg = SCMOSCameraConfig(width_px=64, height_px=64, pixel_size_nm=110, background_photons=40)
    raw, cal, f, x, y, _ = _grid_movie(cfg, sigma_nm=150.0, photons=3000.0)
    loc = ClassicLocalizer(ClassicLocalizerConfig(fit_sigma=True), device="cpu")
    wrong = CameraCalibration(**{**vars(cal), "psf_sigma_nm": 110.0})  # start from a bad guess
    locs = loc.localize(raw, wrong)
    s = score_localizations(f, x, y, locs.frame, locs.x_nm, locs.y_nm)
    assert s.jaccard > 0.99
    assert s.rmse_lateral_nm < 15


def test_pure_background_gives_almost_no_detections() -> None:
    cfg = EMCCDCameraConfig(width_px=64, height_px=64, background_photons=50)
    cam = Camera.from_config(cfg, OpticsConfig(), np.random.default_rng(1))
    raw = cam.expose(np.zeros((50, 64, 64)), [np.random.default_rng(i) for i in range(50)])
    cal = CameraCalibration.from_camera(camera_metadata(cfg, 93.0))
    locs = ClassicLocalizer(device="cpu").localize(raw, cal)
    assert len(locs) / 50 < 0.2  # < 0.2 false detections per 64x64 frame


def test_blocks_give_the_same_result_with_frame_offsets() -> None:
    cfg = EMCCDCameraConfig(width_px=64, height_px=64, pixel_size_nm=100)
    raw, cal, *_ = _grid_movie(cfg, n_frames=20)
    loc = ClassicLocalizer(ClassicLocalizerConfig(batch_frames=7), device="cpu")
    whole = loc.localize(raw, cal)
    a, b = loc.localize(raw[:9], cal), loc.localize(raw[9:], cal, first_frame=9)
    assert len(whole) == len(a) + len(b)
    assert np.array_equal(np.sort(whole.frame), np.sort(np.r_[a.frame, b.frame]))
    assert whole.n_frames == 20 and b.n_frames == 20


def test_calibration_needs_a_pixel_size() -> None:
    with pytest.raises(DblinkError, match="pixel size"):
        CameraCalibration.from_camera({})
    cal = CameraCalibration.from_camera({"pixel_size_nm": 100, "em_gain": 1.0}, qe=0.8)
    assert cal.excess_noise_factor_sq == 1.0 and cal.qe == 0.8
    photons = cal.to_photons(np.full((1, 2, 2), 190, np.uint16))
    assert float(photons[0, 0, 0]) == pytest.approx((190 - 100) * 45 / 1.0 / 0.8)


def test_a_singular_fit_fails_only_its_own_candidate() -> None:
    """Three 7x7 photon windows from a simulated 512x512 recording whose LM normal equations
    are singular at sigma 0.58 px: torch.linalg.solve raised and killed a live run. Now each
    such candidate keeps its start values while the others in the batch are fitted as alone."""
    import torch

    from dblink_live.localize.classic import ClassicLocalizer

    bad = torch.tensor(np.load(Path(__file__).parent / "data" / "classic_singular_rois.npy"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-3:4, -3:4]
    spot = 500 * np.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) / (2 * 0.9**2)) / (2 * np.pi * 0.81)
    good = torch.tensor(rng.poisson(spot + 20).astype(np.float32))[None]
    loc = ClassicLocalizer(device="cpu")
    alone = loc._fit(good, 0.58)
    mixed = loc._fit(torch.cat([bad, good]), 0.58)
    for a, m in zip(alone, mixed, strict=True):
        np.testing.assert_allclose(m[-1:].numpy(), a.numpy(), rtol=1e-5, atol=1e-5)
        assert torch.isfinite(m).all()
