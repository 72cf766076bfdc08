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


def test_reconstruction_scores_with_and_without_tolerance() -> None:
    from dblink_live.metrics import binarize, score_reconstruction

    truth = np.zeros((1, 20, 20), bool)
    truth[0, 10, 5:15] = True
    pred = np.zeros_like(truth)
    pred[0, 11, 5:15] = True  # one bin off
    exact = score_reconstruction(pred, truth, 0)
    assert exact.recall == 0 and exact.jaccard == 0
    assert exact.false_positive_rate == pytest.approx(10 / 390)
    tol = score_reconstruction(pred, truth, 1)
    assert (tol.recall, tol.precision, tol.jaccard, tol.false_positive_rate) == (1, 1, 1, 0)
    img = np.zeros((2, 4, 4))
    img[0, 0, 0] = 10
    img[0, 1, 1] = 3  # 0.3 of the max: below 100/255
    b = binarize(img)
    assert b[0, 0, 0] and not b[0, 1, 1] and not b[1].any()


def test_frc_and_decorrelation_track_blur() -> None:
    from scipy.ndimage import gaussian_filter

    from dblink_live.metrics import decorrelation_resolution, frc_resolution

    rng = np.random.default_rng(0)
    points = (rng.random((128, 128)) > 0.99).astype(float)
    res_frc, res_dec = [], []
    for sigma in (1, 2, 4):
        obj = gaussian_filter(points, sigma) * 100
        a = obj + rng.normal(0, 0.02, obj.shape)
        b = obj + rng.normal(0, 0.02, obj.shape)
        res_frc.append(frc_resolution(a, b, 10.0))
        res_dec.append(decorrelation_resolution(a, 10.0))
    assert res_frc[0] < res_frc[1] < res_frc[2]
    assert res_dec[0] < res_dec[1] < res_dec[2]


@pytest.mark.parametrize("slope", [1.0, 1.5])
@pytest.mark.parametrize("cutoff", [0.3, 0.5])
def test_decorrelation_finds_a_band_limit_under_strong_low_frequencies(
    slope: float, cutoff: float
) -> None:
    """An image whose spectrum falls as 1/k^slope and stops at ``cutoff`` x Nyquist, plus
    weak white noise: its resolution is 2 px / cutoff by construction. The high-pass refined
    decorrelation (Descloux et al. 2019) finds it; at the steeper slope the strong low
    frequencies leave the unfiltered curve without a usable peak."""
    from dblink_live.metrics import decorrelation_resolution

    rng = np.random.default_rng(0)
    n = 256
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot((yy - n // 2) / (n / 2), (xx - n // 2) / (n / 2))
    amp = np.where(r <= cutoff, 1 / np.maximum(r, 2 / n) ** slope, 0.0)
    spec = np.fft.fftshift(np.fft.fft2(rng.normal(size=(n, n)))) * amp
    img = np.fft.ifft2(np.fft.ifftshift(spec)).real / np.sqrt((amp**2).mean())
    img += rng.normal(0, 0.05, img.shape)
    truth = 2 * 10.0 / cutoff  # 10 nm pixels
    refined = decorrelation_resolution(img, 10.0)
    assert refined == pytest.approx(truth, rel=0.1)
    if slope >= 1.5:  # steep enough that the unfiltered curve has no usable peak
        plain = decorrelation_resolution(img, 10.0, n_filters=0)
        assert plain != pytest.approx(truth, rel=0.25)


def test_temporal_consistency() -> None:
    from dblink_live.metrics import temporal_consistency

    rng = np.random.default_rng(1)
    still = np.repeat(rng.random((1, 16, 16)), 5, 0)
    assert temporal_consistency(still) == pytest.approx(1.0)
    assert abs(temporal_consistency(rng.random((5, 16, 16)))) < 0.2
