"""Input maps for the ConvBiLSTM, their normalization, and simulated training sequences.

Normalization: counts are divided by ``NORM_FACTOR`` times the count a bin would hold if the
localizations were spread evenly, ``W x rate x bin area`` (rate: localizations per frame per
um^2 over the field of view). Counts grow linearly with the window W and with the blinking
density, and so does that expectation, so the normalized input keeps its scale when either
changes (the reference code fed raw counts and only worked at W = 10). Offline the rate is
measured over the whole recording; a streaming caller passes the rate measured so far. In
training the rate is the configured density times the detected fraction of the sequence (a
small tile's own count would be far too noisy).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dblink_live.config import RunConfig
from dblink_live.localizations import Localizations, count_maps
from dblink_live.sim.locspace import simulate_localizations

__all__ = [
    "NORM_FACTOR",
    "count_maps_torch",
    "map_scale",
    "normalize_maps",
    "training_sequence",
]

#: A bin holding NORM_FACTOR x the even-spread expectation gets the value 1.
NORM_FACTOR = 100.0


def map_scale(rate_per_um2_frame: float, window_frames: int, bin_nm: float) -> float:
    """The scalar :func:`normalize_maps` divides by (see the module docstring).

    Parameters
    ----------
    rate_per_um2_frame
        Localizations per frame per um^2 of the field of view.
    window_frames, bin_nm
        Map window W and bin size.
    """
    expected = max(rate_per_um2_frame, 1e-3) * window_frames * (bin_nm / 1e3) ** 2
    return NORM_FACTOR * expected


def normalize_maps(counts: np.ndarray | torch.Tensor, scale: float) -> torch.Tensor:
    """(T, Y, X) counts -> float32 tensor (T, Y, X) / scale."""
    return (
        torch.as_tensor(
            np.asarray(counts) if not torch.is_tensor(counts) else counts, dtype=torch.float32
        )
        / scale
    )


def training_sequence(
    config: RunConfig,
    seed: int,
    tile_bins: int,
    n_maps: int,
    window_frames: int,
    density_per_um2: float,
    target: str = "skeleton",
) -> tuple[np.ndarray, np.ndarray]:
    """One simulated training sequence in localization space.

    Returns
    -------
    maps : (n_maps, tile, tile) float32 normalized counts
    truth : (n_maps, tile, tile) float32 0/1: the thin skeleton, or the structure covering more
        than half of a bin (``target="structure"``)
    """
    bin_nm = config.grid.bin_nm
    px = config.simulation.camera.pixel_size_nm
    size_px = math.ceil(tile_bins * bin_nm / px)
    cfg = config.updated(
        simulation={
            "camera": {"width_px": size_px, "height_px": size_px},
            "photophysics": {"density_per_um2": density_per_um2, "duty_cycle": None},
        },
        grid={"window_frames": window_frames},
    )
    seq = simulate_localizations(cfg, n_frames=n_maps * window_frames, seed=seed)
    counts = count_maps(seq.localizations, bin_nm, (tile_bins, tile_bins), window_frames, n_maps)
    if target == "structure":
        truth = (seq.gt_structure[:, :tile_bins, :tile_bins] > 0.5).astype(np.float32)
    else:
        truth = seq.gt_skeleton[:, :tile_bins, :tile_bins].astype(np.float32)
    n_true = int(seq.is_true.sum())
    detected = n_true / len(seq.emitters) if len(seq.emitters) >= 20 else 0.9
    ls = cfg.simulation.localization_space
    rate = density_per_um2 * detected + ls.false_positives_per_um2
    return (counts / map_scale(rate, window_frames, bin_nm)).astype(np.float32), truth


def localization_maps(
    locs: Localizations,
    bin_nm: float,
    shape_yx: tuple[int, int],
    window_frames: int,
    first_frame: int = 0,
    n_maps: int | None = None,
) -> np.ndarray:
    """Count maps (T', Y', X') of a table (thin wrapper of ``count_maps`` for this stage)."""
    return count_maps(locs, bin_nm, shape_yx, window_frames, n_maps, first_frame)


def count_maps_torch(
    locs: Localizations,
    bin_nm: float,
    shape_yx: tuple[int, int],
    window_frames: int,
    n_maps: int,
    first_frame: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """:func:`~dblink_live.localizations.count_maps` on a torch device (the GPU when present).

    Returns (n_maps, Y', X') float32 counts on ``device``; identical to the numpy version.
    """
    ny, nx = shape_yx
    dev = torch.device(device)
    f = torch.as_tensor(locs.frame, device=dev)
    x = torch.as_tensor(locs.x_nm, device=dev, dtype=torch.float64)
    y = torch.as_tensor(locs.y_nm, device=dev, dtype=torch.float64)
    k = torch.div(f - first_frame, window_frames, rounding_mode="floor")
    ix = torch.floor(x / bin_nm).long()
    iy = torch.floor(y / bin_nm).long()
    ok = (k >= 0) & (k < n_maps) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flat = (k[ok] * ny + iy[ok]) * nx + ix[ok]
    counts = torch.bincount(flat, minlength=n_maps * ny * nx)
    return counts.view(n_maps, ny, nx).to(torch.float32)
