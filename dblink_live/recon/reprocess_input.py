"""Inputs of ``dblink-live reprocess``: the localizations of a recording (localizing what was
never localized first) or of a table, and the grid a table without a camera frame is
reconstructed on (its data's bounding box, and the area that holds data for the density).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dblink_live.config import LocalizerConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localizations import Localizations
from dblink_live.recon.inference import Progress

__all__ = ["DEFAULT_FRAME_INTERVAL_S", "data_grid", "occupied_area_um2"]

log = logging.getLogger(__name__)
_TABLE_SUFFIXES = {".csv", ".h5", ".hdf5", ".txt"}
#: Frame interval (s) assumed for a table that does not state it (with a warning).
DEFAULT_FRAME_INTERVAL_S = 0.01


#: Margin (nm) kept around a table's localizations on the reconstruction grid.
TABLE_MARGIN_NM = 1000.0
#: Side (nm) of the tiles that decide which area holds data.
OCCUPANCY_TILE_NM = 1000.0


def data_grid(
    locs: Localizations, bin_nm: float, margin_nm: float = TABLE_MARGIN_NM
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The grid of a table without a camera frame: its bounding box plus ``margin_nm``.

    Returns ``(origin_nm, fov_nm)``, both (x, y); the origin is a whole number of bins, so a
    table shifted by a whole number of bins reconstructs identically, shifted.
    """
    if len(locs) == 0:
        raise DblinkError("no localizations to place a grid on")
    x0 = math.floor((float(locs.x_nm.min()) - margin_nm) / bin_nm) * bin_nm
    y0 = math.floor((float(locs.y_nm.min()) - margin_nm) / bin_nm) * bin_nm
    x1 = float(locs.x_nm.max()) + margin_nm
    y1 = float(locs.y_nm.max()) + margin_nm
    return (x0, y0), (x1 - x0, y1 - y0)


def occupied_area_um2(
    locs: Localizations, fov_nm: tuple[float, float], tile_nm: float = OCCUPANCY_TILE_NM
) -> float:
    """Area (um^2) of the ``tile_nm`` tiles of ``[0, fov)`` that hold data.

    A tile holds data when it has at least a tenth of the median count of the non-empty tiles
    (and 2), so a few scattered background localizations do not make an empty margin count.
    Coordinates are relative to the grid origin.
    """
    nx = max(1, math.ceil(fov_nm[0] / tile_nm))
    ny = max(1, math.ceil(fov_nm[1] / tile_nm))
    full = fov_nm[0] * fov_nm[1] / 1e6
    if len(locs) == 0:
        return full
    ix = np.clip((locs.x_nm // tile_nm).astype(np.int64), 0, nx - 1)
    iy = np.clip((locs.y_nm // tile_nm).astype(np.int64), 0, ny - 1)
    counts = np.bincount(iy * nx + ix, minlength=nx * ny)
    nonzero = counts[counts > 0]
    held = counts >= max(2.0, 0.1 * float(np.median(nonzero)))
    if not held.any():
        return full
    return min(full, float(held.sum()) * (tile_nm / 1e3) ** 2)


def _open_localizations(
    input_path: Path,
    pixel_size_nm: float | None,
    localizer: LocalizerConfig | None,
    device: str,
    progress: Progress | None,
) -> tuple[
    Localizations,
    tuple[float, float] | None,
    int,
    float | None,
    Recording | None,
    list[tuple[int, int]],
]:
    """(localizations, camera field (x, y nm) or None for a table, frames, frame interval (s)
    or None when unknown, the recording, frame ranges still without localization input)."""
    if input_path.suffix.lower() in _TABLE_SUFFIXES:
        from dblink_live.io.tables import read_localizations

        locs = read_localizations(input_path, pixel_size_nm=pixel_size_nm)
        if len(locs) == 0:
            raise DblinkError(f"{input_path} holds no localizations")
        return locs, None, locs.n_frames, None, None, []
    rec = Recording.open(input_path)
    if rec.n_localizations == 0:
        if rec.n_frames == 0:
            raise DblinkError(f"{input_path} has neither frames nor localizations")
        log.info("%s has no localizations yet: localizing first", input_path)
        from dblink_live.localize.run import localize

        localize(input_path, config=localizer, device=device, progress=progress)
        rec = Recording.open(input_path)
    locs = rec.read_localizations()
    missing = rec.unlocalized_frames() if rec.n_frames else []
    if missing:
        # never reconstruct from frames nobody localized (dropped live, or a killed run)
        from dblink_live.localize.run import localize_missing

        n_missing = sum(b - a for a, b in missing)
        log.warning(
            "%s: %d of %d frames were never localized (dropped by the live path or not reached):"
            " localizing them first",
            input_path.name,
            n_missing,
            rec.n_frames,
        )
        extra, done = localize_missing(rec, missing, localizer, device, progress)
        try:
            writable = Recording.open(input_path, mode="r+")
            writable.append_localizations(extra)
            for a, b in done:
                writable.mark_localized(a, b)
        except (OSError, DblinkError) as exc:  # read-only input: use them without storing
            log.warning("%s: could not store them (%s); used for this run only", input_path, exc)
        locs = Localizations.concatenate([locs, extra])
        locs.n_frames = rec.n_frames
        missing = _subtract(missing, done)
    if rec.n_frames == 0:  # made from a table: no camera field, the data decide the grid
        n = max(locs.n_frames, int(rec.meta.get("table_frames") or 0))
        return locs, None, n, rec.frame_interval_s, rec, []
    h, w = rec.frame_shape
    fov = (w * rec.pixel_size_nm, h * rec.pixel_size_nm)
    return locs, fov, rec.n_frames, rec.frame_interval_s, rec, list(missing or [])


def _subtract(
    ranges: Sequence[tuple[int, int]], done: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of ``ranges`` not covered by ``done`` (both ``[a, b)`` frame ranges)."""
    out = []
    for a, b in ranges:
        at = a
        for c, d in sorted(done):
            if d <= at or c >= b:
                continue
            if c > at:
                out.append((at, c))
            at = max(at, d)
        if at < b:
            out.append((at, b))
    return out


def _table_metadata_warning(
    path: Path, locs: Localizations, pixel_size_nm: float | None, interval_s: float | None
) -> str | None:
    """One line naming what a table does not say and what was assumed for it."""
    missing = []
    if interval_s is None:
        missing.append(
            f"the frame interval ({DEFAULT_FRAME_INTERVAL_S * 1e3:g} ms assumed for the time "
            "axis; give --frame-interval-s)"
        )
    if pixel_size_nm is None and locs.pixel_size_nm == Localizations.empty().pixel_size_nm:
        missing.append(
            f"the camera pixel size ({locs.pixel_size_nm:g} nm assumed; it only sizes the drawn "
            "field; give --pixel-size-nm)"
        )
    if not missing:
        return None
    return f"{path.name} does not state " + " nor ".join(missing)
