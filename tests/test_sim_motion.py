"""Motion: ground truth follows the configured drift/rotation; labels ride on the structure."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from dblink_live.config import RunConfig
from dblink_live.sim.motion import anchor_positions
from dblink_live.sim.scene import Scene
from dblink_live.sim.structures import sample_centerline

STILL = {
    "drift_speed_nm_per_s": [0, 0],
    "rotation_deg_per_s": [0, 0],
    "drift_modulation": 0.0,
}


def _scene(motion: dict, structure: dict | None = None, seed: int = 0, frames: int = 400) -> Scene:
    cfg = RunConfig().updated(
        simulation={"seed": seed, "motion": {**STILL, **motion}, "structure": structure or {}}
    )
    return Scene(cfg.simulation, n_frames=frames)


def _shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dy, dx) in bins that moves image a onto b, by phase correlation."""
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    r = fb * np.conj(fa)
    corr = np.fft.ifft2(r / np.maximum(np.abs(r), 1e-12)).real
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), float)
    size = np.array(corr.shape)
    return np.where(peak > size / 2, peak - size, peak)


def test_ground_truth_drifts_at_the_configured_velocity() -> None:
    scene = _scene({"drift_speed_nm_per_s": [300, 300]})
    grid = RunConfig().grid
    t0, t1 = 0.5, 3.5
    skel0, _ = scene.ground_truth(t0, grid)
    skel1, _ = scene.ground_truth(t1, grid)
    dy, dx = _shift(skel0.astype(float), skel1.astype(float))
    v = scene.motion.drift_velocity_nm_per_s
    assert np.hypot(*v) == pytest.approx(300)
    expected = v * (t1 - t0) / grid.bin_nm  # (vx, vy) in bins
    assert dx == pytest.approx(expected[0], abs=1.0)
    assert dy == pytest.approx(expected[1], abs=1.0)
    # the skeleton is as long at both times (no interpolation blur, no loss)
    assert abs(int(skel1.sum()) - int(skel0.sum())) < 0.15 * skel0.sum()


def test_modulated_drift_has_the_closed_form_displacement() -> None:
    scene = _scene({"drift_speed_nm_per_s": [200, 200], "drift_modulation": 0.8})
    m = scene.motion
    t = np.linspace(0, 10, 2001)
    speed = np.hypot(*np.gradient(m.drift_nm(t), t, axis=0).T)
    expected = 200 * (1 + 0.8 * np.sin(m.drift_omega_rad_per_s * t + m.drift_phase_rad))
    assert np.allclose(speed[5:-5], expected[5:-5], rtol=1e-3)


def test_rotation_about_the_field_centre() -> None:
    scene = _scene({"rotation_deg_per_s": [10, 10]})
    samples = sample_centerline(scene.geometry, 200.0)
    x0, y0 = anchor_positions(scene.geometry, scene.motion, samples, 0.0)
    x1, y1 = anchor_positions(scene.geometry, scene.motion, samples, 3.0)
    c = scene.motion.center_nm
    a0 = np.arctan2(y0 - c[1], x0 - c[0])
    a1 = np.arctan2(y1 - c[1], x1 - c[0])
    turn = np.rad2deg(np.angle(np.exp(1j * (a1 - a0))))
    assert np.abs(turn).mean() == pytest.approx(30, abs=1e-6)
    assert np.allclose(np.hypot(x0 - c[0], y0 - c[1]), np.hypot(x1 - c[0], y1 - c[1]))


def test_emitters_sit_on_the_ground_truth_of_their_time() -> None:
    """Every lit label of a map's frames lies on that map's width-true ground truth."""
    scene = _scene({"drift_speed_nm_per_s": [150, 150], "rotation_deg_per_s": [3, 3]}, frames=100)
    grid = RunConfig().grid
    _, skel, _ = scene.ground_truth_maps(grid, first=5, n_maps=1)
    em = scene.emitters(50, 60)
    dist_bins = distance_transform_edt(skel[0] == 0)
    ix = np.floor(em.x_nm / grid.bin_nm).astype(int)
    iy = np.floor(em.y_nm / grid.bin_nm).astype(int)
    # within half the width + one bin diagonal + motion during the window (< 2 nm here)
    assert len(em) > 100
    assert np.percentile(dist_bins[iy, ix], 99) <= 1.5


def test_mitochondria_move_wobble_and_split() -> None:
    structure = {
        "kind": "mitochondria",
        "fission_probability": 1.0,
        "fusion_probability": 0.0,
        "separation_speed_nm_per_s": [400, 400],
    }
    motion = {"object_speed_nm_per_s": [100, 100], "wobble_amplitude_nm": [50, 50]}
    scene = _scene(motion, structure, frames=1000)  # 10 s
    g = scene.geometry
    halves = np.flatnonzero(g.event_sign == 1)
    assert len(halves) >= 2
    a, b = halves[0], halves[1]
    assert g.object_group[a] == g.object_group[b]
    # the split point: last vertex of half a == first vertex of half b at t=0
    va = np.flatnonzero(g.vertex_object == a)[-1]
    vb = np.flatnonzero(g.vertex_object == b)[0]
    s = g.segment_start
    from dblink_live.sim.structures import Anchors

    seg_a = np.flatnonzero(s == va - 1)[0]
    seg_b = np.flatnonzero(s == vb)[0]
    ends = Anchors(np.array([seg_a, seg_b]), np.array([1.0, 0.0]), np.zeros(2))
    t_event = g.event_time_s[a]
    before = anchor_positions(g, scene.motion, ends, t_event - 0.5)
    after = anchor_positions(g, scene.motion, ends, t_event + 2.0)
    gap_before = np.hypot(before[0][0] - before[0][1], before[1][0] - before[1][1])
    gap_after = np.hypot(after[0][0] - after[0][1], after[1][0] - after[1][1])
    # joined: same rigid motion, continuous wobble phase (the normals of the two end segments
    # differ by the turn at the split vertex, a few nm at most)
    assert gap_before < 5.0
    assert gap_after == pytest.approx(400 * 2.0, abs=2 * 50 + 1)
