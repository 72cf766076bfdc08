"""Structures: counts without truncation, Shariff-style walks, mitochondria geometry, labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dblink_live.config import CountConfig, FilamentsConfig, MitochondriaConfig
from dblink_live.sim.structures import (
    draw_count,
    expected_label_density_per_um2,
    generate_structure,
    place_labels,
)

AREA = (0.0, 0.0, 10_000.0, 10_000.0)  # (10 um)^2: counts are per (10 um)^2


def test_poisson_count_matches_the_law_without_truncation() -> None:
    rng = np.random.default_rng(1)
    cfg = CountConfig(distribution="poisson", mean=12)
    counts = np.array([draw_count(cfg, 100.0, rng) for _ in range(4000)])
    assert counts.mean() == pytest.approx(12, rel=0.03)
    assert counts.var() == pytest.approx(12, rel=0.1)
    # the upper tail is there: P(N >= 20 | 12) = 2.1%, the reference code's cut-off would hide it
    assert (counts >= 20).mean() == pytest.approx(stats.poisson(12).sf(19), abs=0.006)
    assert counts.max() >= 22


def test_structure_density_is_uniform_up_to_the_edges() -> None:
    """Walks start wherever they could reach the area from: no thinning near its edges."""
    rng = np.random.default_rng(7)
    cfg = FilamentsConfig(count=CountConfig(distribution="poisson", mean=8), bundle_probability=0)
    area = (0.0, 0.0, 20_000.0, 20_000.0)
    inner, outer, n = 0.0, 0.0, 80
    for _ in range(n):
        geom = generate_structure(cfg, area, 1.0, rng)
        labels = place_labels(cfg, geom, rng)
        s, d, _ = geom.segment_vectors()
        p = geom.vertices_nm[s[labels.segment]] + labels.u[:, None] * d[labels.segment]
        x, y = p[:, 0], p[:, 1]
        ring = (x < 4000) | (x > 16000) | (y < 4000) | (y > 16000)
        in_area = (x >= 0) & (x <= 20_000) & (y >= 0) & (y <= 20_000)
        inner += np.count_nonzero(in_area & ~ring) / 144.0  # per um^2
        outer += np.count_nonzero(in_area & ring) / 256.0
    assert outer == pytest.approx(inner, rel=0.1)
    expected = n * expected_label_density_per_um2(cfg)
    assert inner == pytest.approx(expected, rel=0.15)


def test_uniform_count_covers_its_range_and_scales_with_area() -> None:
    rng = np.random.default_rng(2)
    cfg = CountConfig(distribution="uniform", low=2, high=6)
    counts = np.array([draw_count(cfg, 100.0, rng) for _ in range(2000)])
    assert set(np.unique(counts)) == {2, 3, 4, 5, 6}
    quad = np.array([draw_count(cfg, 400.0, rng) for _ in range(2000)])
    assert quad.mean() == pytest.approx(4 * counts.mean(), rel=0.05)


def test_filament_walk_steps_turns_and_length() -> None:
    rng = np.random.default_rng(3)
    cfg = FilamentsConfig(
        count=CountConfig(distribution="fixed", mean=50),
        smoothing_iterations=0,
        bundle_probability=0,
        length_um=(4, 6),
    )
    geom = generate_structure(cfg, AREA, 1.0, rng)
    assert geom.n_objects > 50  # walks from outside the area that reach into it are kept too
    lengths = geom.object_lengths_nm()
    assert lengths.min() >= 4000 - 1e-6 and lengths.max() <= 6000 + 1e-6
    s, d, seg_len = geom.segment_vectors()
    last = np.r_[geom.vertex_object[s][1:] != geom.vertex_object[s][:-1], True]
    inner = seg_len[~last]  # the last step of each walk is cut to the drawn length
    assert inner.min() >= 500 - 1e-6 and inner.max() <= 750 + 1e-6
    heading = np.arctan2(d[:, 1], d[:, 0])
    same = geom.vertex_object[s][1:] == geom.vertex_object[s][:-1]
    turn = np.rad2deg(np.angle(np.exp(1j * (heading[1:] - heading[:-1]))))[same]
    assert np.abs(turn).max() <= 32 + 1e-6
    assert np.abs(turn).mean() == pytest.approx(16, rel=0.15)  # uniform in [-32, 32]
    starts = geom.vertices_nm[np.r_[0, np.flatnonzero(np.diff(geom.vertex_object)) + 1]]
    assert starts.min() >= -6000 and starts.max() <= 16_000  # area grown by the longest walk


def test_bundles_are_parallel_copies() -> None:
    rng = np.random.default_rng(4)
    cfg = FilamentsConfig(
        count=CountConfig(distribution="fixed", mean=10),
        bundle_probability=1,
        bundle_size=(2, 2),
        bundle_spacing_nm=(80, 80),
    )
    geom = generate_structure(cfg, AREA, 1.0, rng)
    assert geom.n_objects % 2 == 0
    a = geom.vertices_nm[geom.vertex_object == 0]
    b = geom.vertices_nm[geom.vertex_object == 1]
    assert np.median(np.hypot(*(a - b).T)) == pytest.approx(80, rel=0.05)


def test_mitochondria_widths_lengths_and_fission_halves() -> None:
    rng = np.random.default_rng(5)
    cfg = MitochondriaConfig(
        count=CountConfig(distribution="fixed", mean=200),
        fission_probability=0.5,
        fusion_probability=0.0,
    )
    geom = generate_structure(cfg, AREA, 10.0, rng)
    w = geom.object_width_nm
    assert w.min() >= 250 and w.max() <= 700
    groups, per_group = np.unique(geom.object_group, return_counts=True)
    assert len(groups) > 200
    split = per_group == 2
    assert split.mean() == pytest.approx(0.5, abs=0.1)
    lengths = np.bincount(geom.object_group, weights=geom.object_lengths_nm())
    assert lengths.min() >= 500 * 0.9 and lengths.max() <= 5000 + 1e-6  # Chaikin shortens corners
    halves = np.flatnonzero(np.isin(geom.object_group, groups[split]))
    assert np.all(geom.event_sign[halves] == 1)
    assert np.all((geom.event_time_s[halves] >= 2.0) & (geom.event_time_s[halves] <= 8.0))
    # the two halves move in opposite directions
    g0 = halves[:2]
    assert np.dot(geom.separation_dir[g0[0]], geom.separation_dir[g0[1]]) == pytest.approx(-1)


def test_label_density_along_filaments_and_on_membranes() -> None:
    rng = np.random.default_rng(6)
    cfg = FilamentsConfig(
        count=CountConfig(distribution="fixed", mean=20),
        labels_per_um=100,
        width_nm=30,
        bundle_probability=0,
    )
    geom = generate_structure(cfg, AREA, 1.0, rng)
    labels = place_labels(cfg, geom, rng)
    assert len(labels) == pytest.approx(100 * geom.object_lengths_nm().sum() / 1e3, rel=0.05)
    assert np.abs(labels.offset_nm).max() <= 15
    mcfg = MitochondriaConfig(count=CountConfig(distribution="fixed", mean=20), labels_per_um2=300)
    mgeom = generate_structure(mcfg, AREA, 1.0, rng)
    mlabels = place_labels(mcfg, mgeom, rng)
    s, _, seg_len = mgeom.segment_vectors()
    surface = (np.pi * mgeom.object_width_nm[mgeom.vertex_object[s]] * seg_len).sum() / 1e6
    assert len(mlabels) == pytest.approx(300 * surface, rel=0.05)
    # projected cylinder surface: offsets pile up at the edges (arcsine law)
    half = mgeom.object_width_nm[mgeom.vertex_object[s[mlabels.segment]]] / 2
    rel = np.abs(mlabels.offset_nm) / half
    assert (rel > 0.9).mean() > 2 * (rel < 0.1).mean()
