"""Whole movies: reproducible, chunk-independent, photometrically consistent; loc-space mode."""

from __future__ import annotations

import numpy as np
import pytest

from dblink_live.config import RunConfig
from dblink_live.localizations import count_maps
from dblink_live.sim import MovieSimulator, simulate_localizations, simulate_movie
from dblink_live.sim.locspace import localization_precision_nm


def _cfg(**sim) -> RunConfig:
    return RunConfig().updated(simulation={"camera": {"width_px": 32, "height_px": 32}, **sim})


def test_movie_outputs_and_reproducibility() -> None:
    cfg = _cfg()
    a = simulate_movie(cfg, n_frames=40, seed=3)
    b = simulate_movie(cfg, n_frames=40, seed=3)
    c = simulate_movie(cfg, n_frames=40, seed=4)
    assert a.raw.shape == (40, 32, 32) and a.raw.dtype == np.uint16
    assert np.array_equal(a.raw, b.raw)
    assert not np.array_equal(a.raw, c.raw)
    assert a.gt_skeleton.shape == (4, 128, 128) and a.gt_skeleton.dtype == np.uint8
    assert a.gt_structure.shape == (4, 128, 128) and a.gt_structure.dtype == np.float32
    assert a.gt_structure.min() >= 0 and a.gt_structure.max() <= 1
    assert np.allclose(a.map_times_s, (np.arange(4) * 10 + 5) * 0.01)
    em = a.emitters
    assert em.frame.min() >= 0 and em.frame.max() < 40
    assert (em.x_nm >= 0).all() and (em.x_nm < 32 * 160).all()


def test_frames_do_not_depend_on_chunking() -> None:
    sim = MovieSimulator(_cfg(), n_frames=30, seed=1)
    whole, em_whole = sim.frames(0, 30)
    parts = [sim.frames(s, min(s + 7, 30)) for s in range(0, 30, 7)]
    assert np.array_equal(whole, np.concatenate([p[0] for p in parts]))
    assert sum(len(p[1]) for p in parts) == len(em_whole)


def test_photons_in_the_image_match_the_ground_truth() -> None:
    """ADU converted back to photons, minus background, equals the true photons (EMCCD)."""
    cfg = _cfg(camera={"width_px": 64, "height_px": 64, "background_photons": 20.0}, margin_nm=0)
    movie = simulate_movie(cfg, n_frames=60, seed=2)
    cam = cfg.simulation.camera
    photons = (movie.raw.astype(float) - cam.baseline_adu) * cam.e_per_adu / cam.em_gain / cam.qe
    signal = photons.sum() - 20.0 * movie.raw.size
    truth = movie.emitters.photons.sum()
    # PSF tails of emitters near the border fall outside the image (~1-3 %)
    assert signal == pytest.approx(truth, rel=0.05)


def test_gt_structure_is_width_true() -> None:
    """Mitochondria: covered area / skeleton length is the tubule width."""
    cfg = _cfg(
        structure={
            "kind": "mitochondria",
            "width_nm": [400, 400],
            "fission_probability": 0,
            "fusion_probability": 0,
        },
        camera={"width_px": 96, "height_px": 96},
    )
    sim = MovieSimulator(cfg, n_frames=10, seed=5)
    _, skel, struct = sim.ground_truth_maps()
    bin_nm = cfg.grid.bin_nm
    area = struct[0].sum() * bin_nm**2
    length = sim.scene.geometry.object_lengths_nm().sum()  # all tubules (some leave the field)
    assert area > 0
    # inside the field, area ~ width * length (+ end caps); skeleton bins ~ length / bin
    visible_length = skel[0].sum() * bin_nm
    assert visible_length <= length * 1.3
    assert area / visible_length == pytest.approx(400, rel=0.25)


def test_localization_precision_formula() -> None:
    # Mortensen: N=1000, no background, s=100, a=100, F^2=1 -> sqrt((s^2 + a^2/12) / N * 16/9)
    expected = np.sqrt((100**2 + 100**2 / 12) / 1000 * 16 / 9)
    assert localization_precision_nm(np.array([1000.0]), 0.0, 100.0, 100.0, 1.0)[
        0
    ] == pytest.approx(expected)
    # EMCCD doubles the variance; background makes it worse
    emccd = localization_precision_nm(np.array([1000.0]), 0.0, 100.0, 100.0, 2.0)[0]
    assert emccd == pytest.approx(expected * np.sqrt(2))
    assert localization_precision_nm(np.array([1000.0]), 50.0, 100.0, 100.0, 2.0)[0] > emccd


def test_localization_space_statistics() -> None:
    cfg = _cfg(
        camera={"width_px": 128, "height_px": 128},
        localization_space={"false_positives_per_um2": 0.01, "detection_photons_50": 300.0},
    )
    seq = simulate_localizations(cfg, n_frames=100, seed=0, with_gt=False)
    locs, em = seq.localizations, seq.emitters
    assert locs.frame.min() >= 0 and locs.frame.max() < 100
    assert np.all(np.diff(locs.frame) >= 0)
    # false positives at the configured rate
    fov_um2 = (128 * 0.16) ** 2
    n_fp = np.count_nonzero(~seq.is_true)
    assert n_fp / 100 / fov_um2 == pytest.approx(0.01, rel=0.15)
    # detected fraction follows the detection law
    det = em.photons * cfg.simulation.camera.qe
    p = 0.95 / (1 + (300.0 / det) ** 2)
    assert np.count_nonzero(seq.is_true) == pytest.approx(p.sum(), rel=0.05)
    # errors are consistent with the reported uncertainties (precision from photons)
    assert np.median(locs.uncertainty_nm[seq.is_true]) < 20


def test_localization_space_errors_match_reported_uncertainty() -> None:
    cfg = _cfg(
        localization_space={
            "false_positives_per_um2": 0.0,
            "max_detection_efficiency": 1.0,
            "detection_photons_50": 0.0,
        },
        photophysics={"bleach_probability": 0.0},
    )
    seq = simulate_localizations(cfg, n_frames=50, seed=1, with_gt=False)
    em = seq.emitters
    # match each localization to the nearest true emitter of its frame
    z = []
    for f in range(50):
        lf = seq.localizations.in_frames(f, f + 1)
        ef = em.frame == f
        if not len(lf) or not ef.any():
            continue
        d = np.hypot(lf.x_nm[:, None] - em.x_nm[ef][None], lf.y_nm[:, None] - em.y_nm[ef][None])
        j = d.argmin(1)
        z.append((lf.x_nm - em.x_nm[ef][j]) / lf.uncertainty_nm)
    z = np.concatenate(z)
    assert np.std(z) == pytest.approx(1.0, rel=0.1)


def test_localization_space_sequence_with_ground_truth_and_maps() -> None:
    cfg = _cfg(camera={"width_px": 16, "height_px": 16})
    seq = simulate_localizations(cfg, n_frames=160, seed=2)
    assert seq.gt_skeleton.shape == (16, 64, 64)
    maps = count_maps(seq.localizations, 40.0, (64, 64), 10)
    assert maps.shape == (16, 64, 64)
    assert maps.sum() == len(seq.localizations)
    if seq.gt_skeleton.any():  # true localizations fall on or next to the skeleton
        near = maps * (seq.gt_structure > 0)
        assert near.sum() >= 0.5 * maps.sum()
