"""A check without ground truth, for recordings of static (or drifting) samples.

A static sample does not move, so the accumulated localizations of the whole recording are a
reference a microscopist trusts: the classic SMLM image. DBlink's paper validated its real data
this way (hallucination relative to ThunderSTORM's static image). For every reconstructed map:

1. drift: the recording is cut into ``segments`` blocks of frames, each rendered on the grid
   and cross-correlated (FFT, parabolic sub-bin peak) with the whole accumulation (three
   passes, each against the accumulation corrected by the last); the reference is the
   accumulation of the drift-corrected localizations, shifted to every map's drift
   (interpolated between block centres);
2. the reference structure is the accumulation, smoothed by a Gaussian of ``smooth_nm``,
   thresholded like the reconstructions (per-map min-max, 100/255) -- the same definition the
   evaluation uses against simulated ground truth;
3. *hallucination*: the fraction of reconstructed structure pixels farther than one bin from
   the reference structure; *recall*: the fraction of reference structure pixels within one
   bin of reconstructed structure; plus the hallucination rate per confidence quartile.

The reference is only as good as the sample is static: on a moving sample the numbers mean
nothing, and a recording too short to accumulate the structure gives a poor reference (the
report gives the localizations per um^2 it holds).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter
from scipy.ndimage import shift as nd_shift

from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localizations import Localizations, count_maps
from dblink_live.metrics import binarize
from dblink_live.recon.evaluate import confidence_quartiles

__all__ = ["estimate_drift", "evaluate_static"]

log = logging.getLogger(__name__)


def _render(locs: Localizations, bin_nm: float, shape: tuple[int, int]) -> np.ndarray:
    return count_maps(locs, bin_nm, shape, max(locs.n_frames, 1), 1, 0)[0]


def _peak_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dy, dx) in bins that best aligns ``b`` onto ``a`` (cross-correlation peak)."""
    fa, fb = np.fft.rfft2(a - a.mean()), np.fft.rfft2(b - b.mean())
    cc = np.fft.irfft2(fa * np.conj(fb), s=a.shape)
    cc = np.fft.fftshift(cc)
    iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
    out = []
    for i, n, line in ((iy, cc.shape[0], cc[:, ix]), (ix, cc.shape[1], cc[iy, :])):
        off = 0.0
        if 0 < i < n - 1:
            lo, mid, hi = line[i - 1], line[i], line[i + 1]
            den = lo - 2 * mid + hi
            off = 0.5 * (lo - hi) / den if den != 0 else 0.0
        out.append(i + off - n // 2)
    return float(out[0]), float(out[1])


def _undrifted(locs: Localizations, centres: np.ndarray, drift: np.ndarray) -> Localizations:
    """Localizations with the drift at their frame (interpolated) taken out."""
    dy = np.interp(locs.frame, centres, drift[:, 0])
    dx = np.interp(locs.frame, centres, drift[:, 1])
    return replace(locs, x_nm=locs.x_nm - dx, y_nm=locs.y_nm - dy)


def estimate_drift(
    locs: Localizations,
    bin_nm: float,
    shape: tuple[int, int],
    segments: int = 10,
    passes: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Drift (dy, dx in nm) of ``segments`` blocks of frames against the whole accumulation.

    Returns (block centre frames (S,), drift (S, 2) nm, median 0). Blurred renders (1 bin)
    make the correlation robust to sparse blocks; each pass correlates against the
    accumulation corrected by the previous pass's drift, which sharpens it.
    """
    centres, drift = _drift_pass(locs, locs, bin_nm, shape, segments)
    for _ in range(passes - 1):
        ref = _undrifted(locs, centres, drift)
        centres, drift = _drift_pass(locs, ref, bin_nm, shape, segments)
    return centres, drift


def _drift_pass(
    locs: Localizations,
    reference: Localizations,
    bin_nm: float,
    shape: tuple[int, int],
    segments: int,
) -> tuple[np.ndarray, np.ndarray]:
    n = max(locs.n_frames, 1)
    edges = np.linspace(0, n, segments + 1).astype(int)
    whole = gaussian_filter(_render(reference, bin_nm, shape), 1.0)
    centres, drift = [], []
    for a, b in itertools.pairwise(edges):
        part = locs.in_frames(int(a), int(b))
        if len(part) < 10:
            continue
        part.n_frames = n
        img = gaussian_filter(_render(part, bin_nm, shape), 1.0)
        dy, dx = _peak_shift(whole, img)
        centres.append((a + b) / 2)
        drift.append((-dy * bin_nm, -dx * bin_nm))  # the block sits this far from the whole
    if not centres:
        return np.array([n / 2]), np.zeros((1, 2))
    d = np.array(drift)
    return np.array(centres), d - np.median(d, axis=0)


def evaluate_static(
    path: str | Path, segments: int = 10, smooth_nm: float = 40.0, output: Path | None = None
) -> dict[str, Any]:
    """Score a reprocessed recording of a static sample against its own accumulation.

    Raises
    ------
    DblinkError
        if the recording has no reconstruction or no localizations.
    """
    rec = Recording.open(path)
    got = rec.read_image("reconstruction")
    if got is None:
        raise DblinkError(f"{path} has no reconstruction: run `dblink-live reprocess` first")
    recon, attrs = got
    conf_got = rec.read_image("confidence")
    locs = rec.read_localizations()
    if len(locs) == 0:
        raise DblinkError(f"{path} holds no localizations")
    ox, oy = attrs.get("origin_nm") or (0.0, 0.0)
    locs = replace(locs, x_nm=locs.x_nm - ox, y_nm=locs.y_nm - oy)
    locs.n_frames = max(locs.n_frames, rec.n_frames, int(rec.meta.get("table_frames") or 0))
    bin_nm, w = float(attrs["bin_nm"]), int(attrs["window_frames"])
    stride = int(attrs.get("stride_frames", w))
    shape = recon.shape[1:]
    centres, drift = estimate_drift(locs, bin_nm, shape, segments)
    fixed = _undrifted(locs, centres, drift)
    whole = gaussian_filter(_render(fixed, bin_nm, shape), smooth_nm / bin_nm)
    times = (np.arange(len(recon)) * stride + w / 2).astype(float)
    dy = np.interp(times, centres, drift[:, 0]) / bin_nm
    dx = np.interp(times, centres, drift[:, 1]) / bin_nm
    reference = np.stack(
        [nd_shift(whole, (y, x), order=1, mode="constant") for y, x in zip(dy, dx, strict=True)]
    )
    ref_bin = binarize(reference)
    pred = binarize(recon)
    near_ref = binary_dilation(ref_bin, structure=np.ones((1, 3, 3), bool))
    near_pred = binary_dilation(pred, structure=np.ones((1, 3, 3), bool))
    n_pred, n_ref = int(pred.sum()), int(ref_bin.sum())
    report: dict[str, Any] = {
        "recording": str(path),
        "maps": len(recon),
        "window_frames": w,
        "stride_frames": stride,
        "localizations": len(locs),
        "localizations_per_um2": len(locs) / (shape[0] * shape[1] * (bin_nm / 1e3) ** 2),
        "drift_nm_max": float(np.abs(drift).max()),
        "hallucination": float((pred & ~near_ref).sum() / max(n_pred, 1)),
        "false_positive_rate": float((pred & ~near_ref).sum() / max((~near_ref).sum(), 1)),
        "recall": float((ref_bin & near_pred).sum() / max(n_ref, 1)),
        "structure_pixels": {"reconstruction": n_pred, "reference": n_ref},
    }
    if conf_got is not None and n_pred:
        m = min(len(pred), len(conf_got[0]))  # a killed run may hold one map less of it
        report["confidence"] = confidence_quartiles(pred[:m], conf_got[0][:m], ref_bin[:m])
    if output is not None:
        import json

        Path(output).write_text(json.dumps(report, indent=2))
    return report
