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

__all__ = ["LocalizationScore", "match_localizations", "score_localizations"]


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
