"""Camera offset and gain estimated from the frames, against the simulator's known camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from dblink_live.config import load_config
from dblink_live.errors import DblinkError
from dblink_live.localize import estimate_camera
from dblink_live.sim import simulate_movie


def _movie(repo: Path, n: int, **camera):
    cfg = load_config(repo / "configs" / "filaments.yaml").updated(
        simulation={"camera": camera, "photophysics": {"density_per_um2": 0.2}}
    )
    return simulate_movie(cfg, n_frames=n, seed=5), cfg.simulation.camera


@pytest.mark.parametrize(
    "camera",
    [
        {"kind": "emccd", "background_kind": "smooth", "background_variation": 0.5},
        {
            "kind": "scmos",
            "background_kind": "smooth",
            "background_variation": 0.5,
            "e_per_adu": 0.5,
            "baseline_adu": 300.0,
            "background_photons": 80.0,
        },
    ],
    ids=["emccd", "scmos"],
)
def test_offset_and_gain_from_a_non_uniform_background(repo: Path, camera: dict) -> None:
    movie, cam = _movie(repo, 100, **camera)
    est = estimate_camera(movie.raw, camera=cam.kind)
    truth = getattr(cam, "em_gain", 1.0) / cam.e_per_adu  # ADU per photoelectron
    assert est.offset_determined
    assert est.baseline_adu == pytest.approx(cam.baseline_adu, abs=20)
    assert est.adu_per_electron == pytest.approx(truth, rel=0.1)
    cal = est.calibration()
    assert cal["em_gain"] / cal["e_per_adu"] == pytest.approx(est.adu_per_electron)
    assert "ADU per photoelectron" in est.summary()


def test_flat_background_gives_the_gain_through_a_given_or_assumed_offset(repo: Path) -> None:
    movie, cam = _movie(repo, 100, kind="emccd", background_kind="uniform")
    truth = cam.em_gain / cam.e_per_adu
    est = estimate_camera(movie.raw)
    assert not est.offset_determined and "not measurable" in est.summary()
    assert est.camera == "emccd" and est.camera_judged == "assumed"
    assert est.adu_per_electron == pytest.approx(truth, rel=0.1)  # the default offset is right
    given = estimate_camera(movie.raw, baseline_adu=100.0, em_gain=300.0)
    assert given.camera_judged == "given" and given.baseline_adu == 100.0
    assert given.adu_per_electron == pytest.approx(truth, rel=0.1)


def test_five_frames_are_enough_for_a_rough_gain(repo: Path) -> None:
    movie, cam = _movie(repo, 5, kind="emccd")
    est = estimate_camera(movie.raw, baseline_adu=cam.baseline_adu)
    assert est.frames == 5
    assert est.adu_per_electron == pytest.approx(cam.em_gain / cam.e_per_adu, rel=0.15)


def test_real_frames_give_a_plausible_estimate(shared_data: Path) -> None:
    frames = tifffile.imread(shared_data / "formats" / "images.tif")
    est = estimate_camera(frames)
    # 5 flat frames: the offset cannot be placed, the gain through the assumed offset can
    assert not est.offset_determined
    assert 0.05 < est.adu_per_electron < 50
    assert est.mean_range_adu[0] < np.median(frames) < est.mean_range_adu[1] + 1


def test_frames_without_noise_are_refused() -> None:
    with pytest.raises(DblinkError, match=r"shot noise|too few"):
        estimate_camera(np.full((10, 32, 32), 500, np.uint16))
    with pytest.raises(DblinkError, match="too small"):
        estimate_camera(np.full((2, 4, 4), 500, np.uint16))
