"""SMLM-2016 localization metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from dblink_live.metrics import efficiency, match_localizations, score_localizations


def _score(gt, pr, **kw):
    gt, pr = np.asarray(gt, float).reshape(-1, 3), np.asarray(pr, float).reshape(-1, 3)
    return score_localizations(gt[:, 0], gt[:, 1], gt[:, 2], pr[:, 0], pr[:, 1], pr[:, 2], **kw)


def test_perfect_and_empty() -> None:
    s = _score([[0, 10, 10], [1, 50, 50]], [[0, 10, 10], [1, 50, 50]])
    assert (s.tp, s.fp, s.fn, s.jaccard, s.rmse_lateral_nm, s.efficiency) == (2, 0, 0, 1, 0, 100)
    s = _score([[0, 10, 10]], np.zeros((0, 3)))
    assert (s.tp, s.fp, s.fn, s.jaccard, s.recall) == (0, 0, 1, 0, 0)


def test_nearest_prediction_wins_and_the_other_is_a_false_positive() -> None:
    s = _score([[0, 0, 0]], [[0, 20, 0], [0, 0, 10]])
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.jaccard == pytest.approx(0.5)
    assert s.rmse_lateral_nm == pytest.approx(10)
    assert (s.bias_x_nm, s.bias_y_nm) == (0, 10)
    assert s.precision == 0.5 and s.recall == 1.0


def test_frames_are_matched_separately_and_tolerance_is_inclusive() -> None:
    s = _score([[0, 0, 0]], [[1, 0, 0]])
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)
    assert _score([[0, 0, 0]], [[0, 250, 0]]).tp == 1
    assert _score([[0, 0, 0]], [[0, 250.01, 0]]).tp == 0
    assert _score([[0, 0, 0]], [[0, 30, 0]], tolerance_nm=25).tp == 0


def test_greedy_and_hungarian_differ_as_expected() -> None:
    # A=0, B=100; P1=60, P2=160; tol 100. Greedy takes B-P1 (40) first and strands A and P2.
    gt = [[0, 0, 0], [0, 100, 0]]
    pr = [[0, 60, 0], [0, 160, 0]]
    greedy = _score(gt, pr, tolerance_nm=100)
    hung = _score(gt, pr, tolerance_nm=100, method="hungarian")
    assert (greedy.tp, greedy.fp, greedy.fn) == (1, 1, 1)
    assert (hung.tp, hung.fp, hung.fn) == (2, 0, 0)
    assert hung.rmse_lateral_nm == pytest.approx(60)


def test_efficiency_formula() -> None:
    assert efficiency(0.8, 30.0) == pytest.approx(100 - np.sqrt(20**2 + 30**2))
    assert efficiency(1.0, 0.0) == 100.0


def test_matching_scales_to_many_frames() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    f = rng.integers(0, 1000, n)
    x, y = rng.uniform(0, 10_000, n), rng.uniform(0, 10_000, n)
    gi, pi = match_localizations(f, x, y, f, x + rng.normal(0, 10, n), y + rng.normal(0, 10, n))
    assert len(gi) > 0.99 * n
    assert np.mean(gi == pi) > 0.98
