"""Blinking statistics: exponential on-times, density, bleaching, photons per frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dblink_live.config import PhotophysicsConfig, RunConfig
from dblink_live.sim.photophysics import blink_events
from dblink_live.sim.scene import Scene


def _runs(ev) -> tuple[np.ndarray, np.ndarray]:
    """Group consecutive lit frames of one emitter into blinks: (emitter, summed on-time)."""
    order = np.lexsort((ev.frame, ev.emitter))
    e, f, frac = ev.emitter[order], ev.frame[order], ev.on_fraction[order]
    new = np.r_[True, (e[1:] != e[:-1]) | (f[1:] != f[:-1] + 1)]
    run = np.cumsum(new) - 1
    return e[new], np.bincount(run, weights=frac)


def test_on_times_are_exponential_with_the_configured_mean() -> None:
    cfg = PhotophysicsConfig(
        density_per_um2=None, on_time_frames=2.5, bleach_probability=0.0, duty_cycle=0.002
    )
    ev = blink_events(cfg, 20_000, 2_000, 0.002, np.random.default_rng(0))
    _, on_time = _runs(ev)
    # drop blinks cut by the movie edges
    assert len(on_time) > 5_000
    assert on_time.mean() == pytest.approx(2.5, rel=0.05)
    ks = stats.kstest(on_time, stats.expon(scale=2.5).cdf)
    assert ks.pvalue > 1e-3, ks


def test_duty_cycle_sets_the_lit_fraction() -> None:
    d, tau = 0.01, 2.0
    cfg = PhotophysicsConfig(
        density_per_um2=None, on_time_frames=tau, bleach_probability=0.0, duty_cycle=d
    )
    n, t = 5_000, 1_000
    ev = blink_events(cfg, n, t, d, np.random.default_rng(1))
    on_time = ev.on_fraction.sum() / (n * t)
    assert on_time == pytest.approx(d, rel=0.05)
    lit = len(ev) / (n * t)  # frames touched: tau + 1 per blink
    assert lit == pytest.approx(d * (tau + 1) / tau, rel=0.05)


def test_bleaching_limits_the_number_of_blinks() -> None:
    cfg = PhotophysicsConfig(
        density_per_um2=None, on_time_frames=1.0, bleach_probability=0.25, duty_cycle=0.05
    )
    ev = blink_events(cfg, 5_000, 200_000, 0.05, np.random.default_rng(2))
    emitters, _ = _runs(ev)
    blinks = np.bincount(emitters, minlength=5_000)
    # every molecule bleaches long before the end: blinks per molecule ~ geometric, mean 1/p
    assert blinks.mean() == pytest.approx(4.0, rel=0.08)
    once = PhotophysicsConfig(
        density_per_um2=None, on_time_frames=1.0, bleach_probability=1.0, duty_cycle=0.05
    )
    emitters, _ = _runs(blink_events(once, 5_000, 50_000, 0.05, np.random.default_rng(3)))
    assert np.bincount(emitters).max() == 1


def test_photons_per_full_frame_are_lognormal_with_mean_and_cv() -> None:
    cfg = PhotophysicsConfig(
        density_per_um2=None,
        on_time_frames=5.0,
        bleach_probability=0.0,
        duty_cycle=0.05,
        photons_mean=2000,
        photons_cv=0.4,
    )
    ev = blink_events(cfg, 5_000, 500, 0.05, np.random.default_rng(4))
    full = ev.photons[ev.on_fraction > 0.999999]
    assert full.mean() == pytest.approx(2000, rel=0.03)
    assert full.std() / full.mean() == pytest.approx(0.4, rel=0.08)
    partial = ev.on_fraction < 0.999
    assert partial.any() and ev.photons[partial].mean() < 0.75 * full.mean()


@pytest.mark.parametrize("kind", ["filaments", "mitochondria"])
@pytest.mark.parametrize("density", [0.2, 1.5])
def test_emitter_density_in_the_field_matches_the_target(kind: str, density: float) -> None:
    """Lit emitters per um^2 per frame seen by the camera, averaged over fields, are the target.

    Large fields (41 um) keep the field-to-field variation of the structure content small.
    """
    measured = []
    for seed in range(4):
        cfg = RunConfig().updated(
            simulation={
                "seed": seed,
                "structure": {"kind": kind},
                "camera": {"width_px": 256, "height_px": 256},
                "photophysics": {"density_per_um2": density, "bleach_probability": 0.0},
            }
        )
        scene = Scene(cfg.simulation, n_frames=40)
        assert not scene.duty_capped
        measured.append(len(scene.emitters(0, 40)) / 40 / scene.fov_area_um2)
    assert np.mean(measured) == pytest.approx(density, rel=0.1)
