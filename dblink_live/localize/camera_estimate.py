"""Estimate a camera's offset and gain from the frames themselves (photon transfer).

Users rarely know their camera's e-/ADU exactly, and a bare TIFF says nothing about it. For a
shot-noise-limited camera the variance of a pixel grows linearly with its mean:

    ``var = s * (mean - offset) + read_var``,  ``s = F^2 x (ADU per photoelectron)``

with ``F^2`` = 2 for an EM-multiplying CCD (excess noise) and 1 for an sCMOS or CCD. Background
pixels over the field (and over time) span a range of means, because illumination is never
perfectly flat, so a straight-line fit of variance against mean gives ``s`` (its slope) and the
offset (where it meets zero, read noise neglected: it is a few ADU^2 against hundreds). This is
the classic photon-transfer curve (Janesick, *Photon Transfer*, SPIE 2007), measured on
background pixels instead of a flat-field series.

Points: with 8 frames or more, every pixel gives one (its median over time, half the clipped
variance of differences between consecutive frames: blinks and structure cancel or are
clipped); with fewer, every 8 x 8 block of every frame gives one (its median, half the clipped
variance of neighbour differences). Points are grouped into equal-count bins of the mean; the
bin medians are fitted, and the brightest bins (spots) are dropped as outliers.

When the means span too narrow a range to place the offset (a perfectly flat background), the
offset is taken from the user (``baseline_adu``) or assumed (100 ADU, the common factory
setting, or lower if the data go lower) and only the slope is estimated; the result says so.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dblink_live.errors import DblinkError

__all__ = ["CameraEstimate", "estimate_camera"]

log = logging.getLogger(__name__)

_MAD = 1.4826
_DEFAULT_BASELINE_ADU = 100.0
_DEFAULT_EM_GAIN = 300.0


@dataclass(frozen=True)
class CameraEstimate:
    """What :func:`estimate_camera` measured.

    Attributes
    ----------
    baseline_adu : float
        Camera offset (ADU).
    adu_per_electron : float
        Mean ADU per photoelectron (EM gain included), ``slope / F^2``.
    excess_noise_factor_sq : float
        ``F^2`` assumed: 2 (EMCCD) or 1 (sCMOS/CCD).
    camera : str
        "emccd" or "scmos", as given or as judged (see ``camera_judged``).
    camera_judged : str
        How the camera kind was decided: "given" or "assumed" (EMCCD: the photon-transfer
        line cannot tell the excess noise factor from the gain).
    offset_determined : bool
        False when the offset came from the user or the default, not from the data.
    slope : float
        Fitted variance per ADU of mean.
    mean_range_adu : (float, float)
        The range of background means fitted (10th to 90th percentile of the points).
    points : int
        Points (pixels or blocks) used.
    frames : int
        Frames read.
    """

    baseline_adu: float
    adu_per_electron: float
    excess_noise_factor_sq: float
    camera: str
    camera_judged: str
    offset_determined: bool
    slope: float
    mean_range_adu: tuple[float, float]
    points: int
    frames: int

    def calibration(self, em_gain: float | None = None, qe: float | None = None) -> dict[str, Any]:
        """Keyword arguments for :class:`~dblink_live.localize.base.CameraCalibration`.

        Only the ratio ``em_gain / e_per_adu`` (ADU per photoelectron) is measured; an EMCCD
        without a given EM gain is described with gain 300 and the matching e-/ADU.
        """
        gain = 1.0 if self.camera == "scmos" else float(em_gain or _DEFAULT_EM_GAIN)
        out: dict[str, Any] = {
            "baseline_adu": self.baseline_adu,
            "e_per_adu": gain / self.adu_per_electron,
            "em_gain": gain,
        }
        if qe is not None:
            out["qe"] = qe
        return out

    def summary(self) -> str:
        """One line a user can check against their camera's data sheet."""
        off = (
            f"offset {self.baseline_adu:.1f} ADU"
            if self.offset_determined
            else f"offset {self.baseline_adu:.1f} ADU (not measurable: background too flat; "
            "assumed, give --baseline-adu)"
        )
        kind = f"{self.camera} ({self.camera_judged})"
        return (
            f"camera estimated from {self.frames} frames ({self.points:,} points, background "
            f"{self.mean_range_adu[0]:.0f}-{self.mean_range_adu[1]:.0f} ADU): {off}, "
            f"{self.adu_per_electron:.3g} ADU per photoelectron "
            f"({1 / self.adu_per_electron:.3g} e-/ADU), {kind}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, stored in recordings under ``camera["estimated"]``."""
        d = asdict(self)
        d["mean_range_adu"] = list(self.mean_range_adu)
        return d


def _clipped_var(d: np.ndarray, axis: int) -> np.ndarray:
    """Variance of ``d`` along ``axis`` after dropping values beyond 4 robust sigmas."""
    med = np.median(d, axis=axis, keepdims=True)
    mad = _MAD * np.median(np.abs(d - med), axis=axis, keepdims=True)
    mad = np.maximum(mad, 0.5)
    keep = np.abs(d - med) <= 4 * mad
    n = keep.sum(axis=axis)
    mean = np.where(keep, d, 0).sum(axis=axis) / np.maximum(n, 1)
    var = (np.where(keep, d - np.expand_dims(mean, axis), 0) ** 2).sum(axis=axis) / np.maximum(
        n - 1, 1
    )
    # a 4-sigma clip of a Gaussian keeps 99.994 % and shrinks its variance by 0.1 %: no correction
    return var


def _points(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) points in ADU, temporal per pixel or spatial per block."""
    t, h, w = frames.shape
    if t >= 8:
        mean = np.median(frames, axis=0)
        var = _clipped_var(np.diff(frames, axis=0), axis=0) / 2.0
        # pixels a spot ever lit are left out: their variance holds blinking, not shot noise
        clean = frames.max(axis=0) - mean < 5.0 * np.sqrt(np.maximum(var, 1e-9))
        if clean.sum() >= 256:
            mean, var = mean[clean], var[clean]
        return mean.ravel(), var.ravel()
    b = 8
    hb, wb = h // b, w // b
    if hb < 1 or wb < 1:
        raise DblinkError(f"frames of {h}x{w} pixels are too small to estimate the camera")
    blocks = frames[:, : hb * b, : wb * b].reshape(t, hb, b, wb, b).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(t * hb * wb, b, b)
    mean = np.median(blocks.reshape(len(blocks), -1), axis=1)
    dx = (blocks[:, :, 1:] - blocks[:, :, :-1]).reshape(len(blocks), -1)
    dy = (blocks[:, 1:, :] - blocks[:, :-1, :]).reshape(len(blocks), -1)
    var = _clipped_var(np.concatenate([dx, dy], 1), axis=1) / 2.0
    # blocks holding a spot are left out (their differences hold its slopes)
    peak = blocks.reshape(len(blocks), -1).max(axis=1)
    clean = peak - mean < 5.0 * np.sqrt(np.maximum(var, 1e-9))
    if clean.sum() >= 64:
        mean, var = mean[clean], var[clean]
    return mean, var


def _binned(mean: np.ndarray, var: np.ndarray, n_bins: int = 24) -> tuple[np.ndarray, ...]:
    """Equal-count bins of the mean between its 1st and 97th percentiles: bin medians."""
    lo, hi = np.percentile(mean, [1, 97])
    sel = (mean >= lo) & (mean <= hi)
    m, v = mean[sel], var[sel]
    order = np.argsort(m)
    m, v = m[order], v[order]
    edges = np.linspace(0, len(m), n_bins + 1).astype(int)
    bm = np.array([np.median(m[a:b]) for a, b in itertools.pairwise(edges) if b > a])
    bv = np.array([np.median(v[a:b]) for a, b in itertools.pairwise(edges) if b > a])
    return bm, bv


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares line with up to three passes dropping > 3 robust-sigma outliers."""
    keep = np.ones(len(x), bool)
    a, s = 0.0, 0.0
    for _ in range(3):
        s, a = np.polyfit(x[keep], y[keep], 1)
        res = y - (a + s * x)
        scale = _MAD * np.median(np.abs(res[keep])) + 1e-9
        new = np.abs(res) <= 3 * scale
        if new.sum() < 4 or (new == keep).all():
            break
        keep = new
    return float(s), float(a), keep


def _jackknife_offset(x: np.ndarray, y: np.ndarray) -> float:
    """Jackknife standard error of the line's zero crossing ``-a / s``."""
    n = len(x)
    if n < 5:
        return float("inf")
    offs = []
    for i in range(n):
        k = np.arange(n) != i
        s, a = np.polyfit(x[k], y[k], 1)
        if s <= 0:
            return float("inf")
        offs.append(-a / s)
    o = np.asarray(offs)
    return float(np.sqrt((n - 1) / n * np.sum((o - o.mean()) ** 2)))


def estimate_camera(
    frames: np.ndarray,
    *,
    camera: str | None = None,
    em_gain: float | None = None,
    baseline_adu: float | None = None,
    max_frames: int = 200,
) -> CameraEstimate:
    """Estimate offset and ADU per photoelectron from raw frames (see the module docstring).

    Parameters
    ----------
    frames : (T, Y, X) or (Y, X) array of ADU
        Raw camera frames; up to ``max_frames`` spread evenly over them are read.
    camera : "emccd", "scmos" or None
        The kind, when known (decides the excess noise factor). Without it, ``em_gain`` > 1
        means EMCCD and 1 means sCMOS; else EMCCD is assumed (and said): an sCMOS taken for
        an EMCCD gets photon numbers twice too high, positions are unaffected.
    em_gain : float, optional
        The EM gain, when known (only used to name the kind; it is not measurable).
    baseline_adu : float, optional
        A known offset; used as is (the slope is then fitted through it).

    Raises
    ------
    DblinkError
        for frames too small or too flat (no noise) to measure.
    """
    a = np.asarray(frames)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] < 1:
        raise DblinkError(f"estimate_camera needs (T, Y, X) frames, got shape {a.shape}")
    if len(a) > max_frames:
        a = a[np.linspace(0, len(a) - 1, max_frames).astype(int)]
    a = a.astype(np.float64)
    mean, var = _points(a)
    ok = np.isfinite(mean) & np.isfinite(var) & (var > 0)
    mean, var = mean[ok], var[ok]
    if len(mean) < 16:
        raise DblinkError("too few usable pixels to estimate the camera (flat or tiny frames)")
    bm, bv = _binned(mean, var)
    p10, p90 = (float(v) for v in np.percentile(mean, [10, 90]))

    kind = camera
    judged = "given" if camera else ""
    if kind is None and em_gain is not None:
        kind, judged = ("emccd" if em_gain > 1 else "scmos"), "given"

    offset_determined = False
    slope = baseline = float("nan")
    if baseline_adu is None and len(bm) >= 6:
        s, a0, keep = _line(bm, bv)
        if s > 0:
            off = -a0 / s
            signal = float(np.median(mean)) - off
            se = _jackknife_offset(bm[keep], bv[keep])
            # measurable: a precise offset that lies below nearly all the data
            offset_determined = bool(
                signal > 0 and se < 0.1 * signal and 0 <= off < float(np.percentile(a, 5))
            )
            if offset_determined:
                slope, baseline = s, float(off)
    if not offset_determined:
        baseline = (
            float(baseline_adu)
            if baseline_adu is not None
            else min(_DEFAULT_BASELINE_ADU, float(np.percentile(a, 0.1)))
        )
        over = bm - baseline
        good = over > 0
        if not good.any():
            raise DblinkError(
                f"the frames lie below the offset {baseline:.0f} ADU: give the right --baseline-adu"
            )
        slope = float(np.median(bv[good] / over[good]))
    if not np.isfinite(slope) or slope <= 0:
        raise DblinkError("the frames show no shot noise to estimate the camera from")

    if kind is None:
        # the line fixes offset and read noise together, not each: the kind is not measurable
        kind, judged = "emccd", "assumed"
    f2 = 2.0 if kind == "emccd" else 1.0
    est = CameraEstimate(
        baseline_adu=float(baseline),
        adu_per_electron=float(slope / f2),
        excess_noise_factor_sq=f2,
        camera=kind,
        camera_judged=judged,
        offset_determined=offset_determined,
        slope=float(slope),
        mean_range_adu=(p10, p90),
        points=len(mean),
        frames=len(a),
    )
    log.debug("%s", est.summary())
    return est
