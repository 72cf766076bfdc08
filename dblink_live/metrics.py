"""Quality metrics.

Localization metrics follow the SMLM 2016 challenge (Sage et al., Nature Methods 2019): in every
frame, predictions are matched one-to-one to ground-truth emitters within a lateral tolerance
(default 250 nm); by default greedily by increasing distance over all candidate pairs (the
challenge's global nearest-neighbour matching), optionally by the Hungarian algorithm (minimum
total distance). From the matches: TP/FP/FN, Jaccard index, recall, precision, lateral RMSE and
the lateral efficiency ``E = 100 - sqrt((100 - JI%)^2 + alpha^2 RMSE^2)`` with
``alpha = 1 nm^-1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

__all__ = [
    "LocalizationScore",
    "ReconstructionScore",
    "binarize",
    "decorrelation_resolution",
    "frc_curve",
    "frc_resolution",
    "match_localizations",
    "score_localizations",
    "score_reconstruction",
    "temporal_consistency",
]


def _candidate_pairs(
    gt_frame: np.ndarray, gt_xy: np.ndarray, pr_frame: np.ndarray, pr_xy: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (gt, pred) index pairs of the same frame closer than ``tol``, with distances."""
    if len(gt_xy) == 0 or len(pr_xy) == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    # frames as a third coordinate far apart: one tree query covers all frames at once
    sep = 10.0 * tol + 1.0
    gt = np.column_stack([gt_xy, gt_frame * sep])
    pr = np.column_stack([pr_xy, pr_frame * sep])
    tree_g, tree_p = cKDTree(gt), cKDTree(pr)
    sparse = tree_g.sparse_distance_matrix(tree_p, tol, output_type="coo_matrix")
    gi, pi = sparse.row.astype(np.int64), sparse.col.astype(np.int64)
    d = np.hypot(*(gt_xy[gi] - pr_xy[pi]).T)
    ok = (gt_frame[gi] == pr_frame[pi]) & (d <= tol)
    return gi[ok], pi[ok], d[ok]


def match_localizations(
    gt_frame: np.ndarray,
    gt_x_nm: np.ndarray,
    gt_y_nm: np.ndarray,
    pred_frame: np.ndarray,
    pred_x_nm: np.ndarray,
    pred_y_nm: np.ndarray,
    tolerance_nm: float = 250.0,
    method: Literal["greedy", "hungarian"] = "greedy",
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches between ground truth and predictions of the same frame.

    Returns
    -------
    gt_idx, pred_idx : (M,) int64
        Indices of matched pairs, within ``tolerance_nm`` of each other.
    """
    gt_xy = np.column_stack([gt_x_nm, gt_y_nm]).astype(np.float64)
    pr_xy = np.column_stack([pred_x_nm, pred_y_nm]).astype(np.float64)
    gt_frame = np.asarray(gt_frame, np.int64)
    pred_frame = np.asarray(pred_frame, np.int64)
    gi, pi, d = _candidate_pairs(gt_frame, gt_xy, pred_frame, pr_xy, tolerance_nm)
    if len(gi) == 0:
        e = np.zeros(0, np.int64)
        return e, e
    if method == "greedy":
        order = np.lexsort((pi, gi, d))  # ties broken by index: deterministic
        used_g = np.zeros(len(gt_xy), bool)
        used_p = np.zeros(len(pr_xy), bool)
        out_g, out_p = [], []
        for g, p in zip(gi[order].tolist(), pi[order].tolist(), strict=True):
            if not used_g[g] and not used_p[p]:
                used_g[g] = used_p[p] = True
                out_g.append(g)
                out_p.append(p)
        return np.asarray(out_g, np.int64), np.asarray(out_p, np.int64)
    if method != "hungarian":
        raise ValueError(f"method must be 'greedy' or 'hungarian', got {method!r}")
    out_g, out_p = [], []
    for f in np.unique(gt_frame[gi]):
        sel = gt_frame[gi] == f
        g_u, g_inv = np.unique(gi[sel], return_inverse=True)
        p_u, p_inv = np.unique(pi[sel], return_inverse=True)
        cost = np.full((len(g_u), len(p_u)), 1e9)
        cost[g_inv, p_inv] = d[sel]
        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] <= tolerance_nm
        out_g.extend(g_u[rows[keep]].tolist())
        out_p.extend(p_u[cols[keep]].tolist())
    return np.asarray(out_g, np.int64), np.asarray(out_p, np.int64)


@dataclass(frozen=True)
class LocalizationScore:
    """SMLM-2016 style scores (JI, recall, precision as fractions in [0, 1])."""

    tolerance_nm: float
    method: str
    tp: int
    fp: int
    fn: int
    jaccard: float
    recall: float
    precision: float
    rmse_lateral_nm: float
    bias_x_nm: float
    bias_y_nm: float
    efficiency: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def efficiency(jaccard: float, rmse_nm: float, alpha_per_nm: float = 1.0) -> float:
    """SMLM-2016 lateral efficiency (percent) from JI (fraction) and lateral RMSE (nm)."""
    return float(100.0 - np.sqrt((100.0 - 100.0 * jaccard) ** 2 + (alpha_per_nm * rmse_nm) ** 2))


def score_localizations(
    gt_frame: np.ndarray,
    gt_x_nm: np.ndarray,
    gt_y_nm: np.ndarray,
    pred_frame: np.ndarray,
    pred_x_nm: np.ndarray,
    pred_y_nm: np.ndarray,
    tolerance_nm: float = 250.0,
    method: Literal["greedy", "hungarian"] = "greedy",
) -> LocalizationScore:
    """Match and score predictions against ground truth (see the module docstring)."""
    gi, pi = match_localizations(
        gt_frame, gt_x_nm, gt_y_nm, pred_frame, pred_x_nm, pred_y_nm, tolerance_nm, method
    )
    tp = len(gi)
    fp = len(pred_frame) - tp
    fn = len(gt_frame) - tp
    denom = tp + fp + fn
    ji = tp / denom if denom else 1.0
    if tp:
        dx = np.asarray(pred_x_nm, float)[pi] - np.asarray(gt_x_nm, float)[gi]
        dy = np.asarray(pred_y_nm, float)[pi] - np.asarray(gt_y_nm, float)[gi]
        rmse = float(np.sqrt(np.mean(dx**2 + dy**2)))
        bx, by = float(dx.mean()), float(dy.mean())
    else:
        rmse, bx, by = float("nan"), float("nan"), float("nan")
    return LocalizationScore(
        tolerance_nm=tolerance_nm,
        method=method,
        tp=tp,
        fp=fp,
        fn=fn,
        jaccard=ji,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        precision=tp / (tp + fp) if tp + fp else 1.0,
        rmse_lateral_nm=rmse,
        bias_x_nm=bx,
        bias_y_nm=by,
        efficiency=efficiency(ji, rmse if tp else 0.0),
    )


# ------------------------------------------------------------------------ reconstructions
def binarize(images: np.ndarray, threshold: float = 100.0 / 255.0) -> np.ndarray:
    """Per-frame min-max normalization then ``> threshold`` (the DBlink reference definition).

    images (T, Y, X) or (Y, X) -> bool of the same shape; a constant frame gives all False.
    """
    img = np.asarray(images, np.float64)
    axes = (-2, -1)
    lo = img.min(axis=axes, keepdims=True)
    hi = img.max(axis=axes, keepdims=True)
    norm = (img - lo) / np.where(hi > lo, hi - lo, np.inf)
    return norm > threshold


def _dilate(mask: np.ndarray, tolerance_bins: int) -> np.ndarray:
    if tolerance_bins <= 0:
        return mask
    from scipy.ndimage import binary_dilation

    structure = np.zeros((1, 3, 3), bool) if mask.ndim == 3 else np.zeros((3, 3), bool)
    structure[..., :, :] = True
    return binary_dilation(mask, structure=structure, iterations=tolerance_bins)


@dataclass(frozen=True)
class ReconstructionScore:
    """Pixel scores of binary reconstructions against binary ground truth, averaged per frame.

    ``recall``: fraction of true pixels with a predicted pixel within the tolerance;
    ``false_positive_rate``: predicted pixels farther than the tolerance from any true pixel,
    over the number of background (non-true) pixels (DBlink's "hallucination");
    ``precision``: predicted pixels within the tolerance of a true pixel, over predicted pixels;
    ``jaccard``: TP / (TP + FP + FN) with TP the matched predicted pixels.
    """

    tolerance_bins: int
    recall: float
    false_positive_rate: float
    precision: float
    jaccard: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def score_reconstruction(
    pred: np.ndarray, truth: np.ndarray, tolerance_bins: int = 0
) -> ReconstructionScore:
    """Score (T, Y, X) boolean predictions against (T, Y, X) boolean truth (see the class)."""
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    near_truth = _dilate(truth, tolerance_bins)
    near_pred = _dilate(pred, tolerance_bins)
    axes = (1, 2)
    tp = (pred & near_truth).sum(axes).astype(float)
    fp = (pred & ~near_truth).sum(axes).astype(float)
    fn = (truth & ~near_pred).sum(axes).astype(float)
    n_true = truth.sum(axes).astype(float)
    n_pred = pred.sum(axes).astype(float)
    background = (~truth).sum(axes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(n_true > 0, (n_true - fn) / n_true, np.nan)
        fpr = fp / np.maximum(background, 1)
        precision = np.where(n_pred > 0, tp / n_pred, np.nan)
        jac = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)

    def mean(v: np.ndarray) -> float:  # frames where a score is undefined are skipped
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else float("nan")

    return ReconstructionScore(
        tolerance_bins, mean(recall), float(np.mean(fpr)), mean(precision), mean(jac)
    )


def temporal_consistency(frames: np.ndarray) -> float:
    """Mean Pearson correlation between consecutive frames of a (T, Y, X) movie."""
    f = np.asarray(frames, np.float64).reshape(len(frames), -1)
    if len(f) < 2:
        return float("nan")
    a, b = f[:-1] - f[:-1].mean(1, keepdims=True), f[1:] - f[1:].mean(1, keepdims=True)
    num = (a * b).sum(1)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return float(np.nanmean(np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)))


def frc_curve(
    img1: np.ndarray, img2: np.ndarray, n_rings: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two (Y, X) images of the same object.

    Returns (spatial frequency in cycles per pixel (R,), FRC (R,)). The images are windowed
    (Tukey) to avoid edge artefacts.
    """
    from scipy.signal.windows import tukey

    a = np.asarray(img1, np.float64)
    b = np.asarray(img2, np.float64)
    if a.shape != b.shape:
        raise ValueError("FRC needs two images of the same shape")
    win = np.outer(tukey(a.shape[0], 0.25), tukey(a.shape[1], 0.25))
    fa = np.fft.fftshift(np.fft.fft2((a - a.mean()) * win))
    fb = np.fft.fftshift(np.fft.fft2((b - b.mean()) * win))
    ny, nx = a.shape
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot((yy - ny // 2) / ny, (xx - nx // 2) / nx)  # cycles per pixel
    n_rings = n_rings or min(ny, nx) // 2
    edges = np.linspace(0, 0.5, n_rings + 1)
    idx = np.digitize(r.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < n_rings)
    num = np.bincount(idx[ok], (fa * np.conj(fb)).real.ravel()[ok], n_rings)
    pa = np.bincount(idx[ok], (np.abs(fa) ** 2).ravel()[ok], n_rings)
    pb = np.bincount(idx[ok], (np.abs(fb) ** 2).ravel()[ok], n_rings)
    frc = num / np.sqrt(np.maximum(pa * pb, 1e-300))
    return 0.5 * (edges[:-1] + edges[1:]), frc


def frc_resolution(
    img1: np.ndarray, img2: np.ndarray, pixel_nm: float, threshold: float = 1.0 / 7.0
) -> float:
    """Resolution (nm) where the (lightly smoothed) FRC first drops below ``threshold``."""
    freq, frc = frc_curve(img1, img2)
    smooth = np.convolve(frc, np.ones(3) / 3, mode="same")
    below = np.flatnonzero(smooth[1:] < threshold)
    if len(below) == 0:
        return 2 * pixel_nm  # correlated up to Nyquist
    i = below[0] + 1
    f0, f1, v0, v1 = freq[i - 1], freq[i], smooth[i - 1], smooth[i]
    f = f0 + (v0 - threshold) * (f1 - f0) / (v0 - v1) if v0 != v1 else f1
    return float(pixel_nm / max(f, 1e-9))


def _decorrelation_curve(
    f: np.ndarray, fn: np.ndarray, r: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """d(rad) = sum Re(F conj(Fn M_rad)) / sqrt(sum |F|^2 sum |Fn M_rad|^2) over the unit disk,
    for the (possibly high-passed) transform ``F`` and the normalized transform ``Fn``."""
    inside = r <= 1
    order = np.argsort(r[inside], kind="stable")
    rs = r[inside][order]
    num = np.cumsum((f[inside] * np.conj(fn[inside])).real[order])
    pn = np.cumsum((np.abs(fn[inside]) ** 2)[order])
    pf = float((np.abs(f[inside]) ** 2).sum())
    k = np.searchsorted(rs, radii, side="right") - 1
    ok = k >= 0
    d = np.zeros(len(radii))
    kk = k[ok]
    den = np.sqrt(pf * pn[kk])
    d[ok] = np.where(den > 0, num[kk] / np.maximum(den, 1e-300), 0.0)
    return d


def _curve_peak(radii: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """(position, amplitude) of the highest maximum of d that the curve never exceeds at
    larger radii (a wiggle on a tail still rising towards Nyquist, where noise dominates, is
    not a peak; such a curve has none: (0, 0))."""
    best = (0.0, 0.0)
    after = np.maximum.accumulate(d[::-1])[::-1]  # max of d[i:] for each i
    for i in range(1, len(d) - 1):
        if d[i] >= d[i - 1] and d[i] > after[i + 1] and d[i] > best[1]:
            best = (float(radii[i]), float(d[i]))
    return best


def decorrelation_resolution(
    image: np.ndarray, pixel_nm: float, n_radii: int = 50, n_filters: int = 10
) -> float:
    """Image resolution (nm) by decorrelation analysis (Descloux, Grussmayer & Radenovic,
    Nature Methods 2019), from a single (Y, X) image.

    The image's Fourier transform ``F`` is correlated with its normalized transform ``F/|F|``
    low-pass filtered at radius r (1 = Nyquist): the curve d(r) peaks where signal gives way to
    noise. A strong low-frequency content pulls that peak down, so the curve is also computed
    for ``n_filters`` Gaussian high-passed copies of ``F`` (``1 - exp(-k^2 / 2 sigma^2)``,
    sigma from the whole band down to a few frequency pixels, geometrically), then once more
    with finer filters between the two around the best one; the resolution is ``2 pixel / r_max``
    with ``r_max`` the highest peak position over all curves (peaks of amplitude below 0.001
    ignored). ``n_filters=0`` gives the unfiltered estimate (the method without refinement).
    """
    from scipy.signal.windows import tukey

    img = np.asarray(image, np.float64)
    ny, nx = img.shape
    win = np.outer(tukey(ny, 0.25), tukey(nx, 0.25))
    f = np.fft.fftshift(np.fft.fft2((img - img.mean()) * win))
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot((yy - ny // 2) / (ny / 2), (xx - nx // 2) / (nx / 2))  # 1 = Nyquist
    fn = f / np.maximum(np.abs(f), 1e-300)
    radii = np.linspace(0.0, 1.0, n_radii + 1)[1:]
    peaks = [_curve_peak(radii, _decorrelation_curve(f, fn, r, radii))]
    if n_filters > 0:
        # sigma of the high-pass, in units of Nyquist: from the whole band to ~3 frequency pixels
        lo = 3.0 / min(ny, nx)
        sigmas = np.geomspace(1.0, lo, n_filters)

        def filtered_peak(sigma: float) -> tuple[float, float]:
            hp = f * (1.0 - np.exp(-(r**2) / (2.0 * sigma**2)))
            return _curve_peak(radii, _decorrelation_curve(hp, fn, r, radii))

        coarse = [filtered_peak(sg) for sg in sigmas]
        peaks += coarse
        valid = [i for i, (pos, amp) in enumerate(coarse) if amp >= 1e-3 and pos > 0]
        if valid:
            best = max(valid, key=lambda i: coarse[i][0])
            a, b = sigmas[max(best - 1, 0)], sigmas[min(best + 1, n_filters - 1)]
            peaks += [filtered_peak(sg) for sg in np.geomspace(a, b, n_filters)]
    positions = [pos for pos, amp in peaks if amp >= 1e-3 and pos > 0]
    if not positions:
        return float("nan")
    return float(2 * pixel_nm / max(positions))
