"""Evidence from the localizations themselves, to temper the network's learned confidence.

The learned confidence is trained on simulated data; off that distribution (background
localizations, sparse real tables) it can stay high over structure the data do not support.
This module asks the data directly: does the neighbourhood of a structure pixel hold more
localizations, over the model's temporal context, than the background rate predicts?

For output map j (raw frames ``[j s, j s + W)``):

- ``n``: localizations within ``radius_nm`` (a square of side ``2 radius + 1 bin``) of the pixel,
  over the context frames ``[j s - K W, j s + W + K W)`` (K = ``context_maps``);
- ``mu``: what background alone would put there: the background rate (localizations per bin
  per frame, measured on the pixels the reconstruction calls background, away from
  structure) times the square's bins times the context frames;
- the evidence ``e = P(X < n)`` for ``X ~ Poisson(mu)``: near 1 when the pixel's neighbourhood
  holds clearly more than background, about 0.5 or less when background explains it, 0 when
  it holds nothing at all.

Structure pixels (the reconstruction above the evaluation threshold, per-map min-max
normalized) get ``confidence x e``; background pixels keep the learned confidence (no
localizations support "no structure here").
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, uniform_filter
from scipy.special import gammaincc

from dblink_live.localizations import Localizations, count_maps
from dblink_live.metrics import binarize

__all__ = [
    "EVIDENCE_CONTEXT_MAPS",
    "EVIDENCE_RADIUS_NM",
    "evidence",
    "evidence_from_counts",
    "temper_confidence",
]

#: Neighbourhood half-width (nm) in which localizations count as support.
EVIDENCE_RADIUS_NM = 200.0
#: Maps on each side of the output map whose frames count as its temporal context.
EVIDENCE_CONTEXT_MAPS = 2


def _context_counts(
    locs: Localizations,
    bin_nm: float,
    shape: tuple[int, int],
    starts: np.ndarray,
    window: int,
    context_frames: int,
    n_frames: int,
    step: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts per bin over each output's context, and the context's length in frames.

    Binned in blocks of ``step`` frames (the stride: every context starts and ends on one),
    so memory holds one map per block, not per frame."""
    lo = np.maximum(starts - context_frames, 0)
    hi = np.minimum(starts + window + context_frames, (n_frames // step) * step)
    hi = np.maximum(hi, lo)
    first, last = int(lo.min()), int(hi.max())
    blocks = max((last - first) // step, 0)
    per_block = count_maps(locs.in_frames(first, last), bin_nm, shape, step, blocks, first)
    cum = np.concatenate([np.zeros((1, *shape), np.float32), np.cumsum(per_block, axis=0)])
    counts = cum[(hi - first) // step] - cum[(lo - first) // step]
    return counts, (hi - lo).astype(np.float64)


def evidence(
    locs: Localizations,
    reconstruction: np.ndarray,
    bin_nm: float,
    first_output: int,
    stride: int,
    window: int,
    n_frames: int,
    radius_nm: float = EVIDENCE_RADIUS_NM,
    context_maps: int = EVIDENCE_CONTEXT_MAPS,
) -> np.ndarray:
    """Evidence ``e`` in [0, 1] for each pixel of a block of outputs (see the module docstring).

    Parameters
    ----------
    locs
        All localizations, in the grid's coordinates (nm from its corner).
    reconstruction : (n, Y', X')
        Outputs ``first_output .. first_output + n - 1``.
    bin_nm, stride, window
        Grid bin; output j covers raw frames ``[j stride, j stride + window)``.
    n_frames
        Raw frames of the recording (context is clipped to them).

    Returns
    -------
    (n, Y', X') float32
    """
    recon = np.asarray(reconstruction)
    n, ny, nx = recon.shape
    starts = (first_output + np.arange(n)) * stride
    counts, frames = _context_counts(
        locs, bin_nm, (ny, nx), starts, window, context_maps * window, n_frames, stride
    )
    return evidence_from_counts(counts, frames, recon, bin_nm, radius_nm)


def evidence_from_counts(
    counts: np.ndarray,
    frames: np.ndarray,
    reconstruction: np.ndarray,
    bin_nm: float,
    radius_nm: float = EVIDENCE_RADIUS_NM,
) -> np.ndarray:
    """Evidence from localization counts already summed over each output's context.

    Parameters
    ----------
    counts : (n, Y', X')
        Localizations per bin over each output's context frames.
    frames : (n,)
        Frames each context spans (localized frames).
    reconstruction : (n, Y', X')
        The outputs.

    Returns
    -------
    (n, Y', X') float32 evidence in [0, 1].
    """
    recon = np.asarray(reconstruction)
    counts = np.asarray(counts, np.float64)
    n, ny, nx = recon.shape
    side = 2 * max(0, round(radius_nm / bin_nm)) + 1
    # localizations in the side x side square around every bin (zero outside the grid)
    near = uniform_filter(counts, size=(1, side, side), mode="constant") * (side * side)
    structure = binarize(recon)
    # background rate from bins well away from structure (fall back to all bins)
    away = ~binary_dilation(structure, structure=np.ones((1, side, side), bool))
    rate = np.empty(n)
    for i in range(n):
        sel = away[i] if away[i].any() else np.ones((ny, nx), bool)
        rate[i] = counts[i][sel].mean() / max(float(frames[i]), 1.0)
    mu = rate[:, None, None] * (side * side) * np.asarray(frames, np.float64)[:, None, None]
    k = np.rint(near)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(k > 0, gammaincc(np.maximum(k, 1.0), mu), 0.0)  # P(X <= k - 1)
    e = np.where((k > 0) & (mu <= 0), 1.0, e)
    return np.clip(e, 0.0, 1.0).astype(np.float32)


def temper_confidence(
    confidence: np.ndarray, reconstruction: np.ndarray, evidence_map: np.ndarray
) -> np.ndarray:
    """Structure pixels: learned confidence x evidence; background pixels: unchanged."""
    structure = binarize(np.asarray(reconstruction))
    return np.where(structure, confidence * evidence_map, confidence).astype(np.float32)
