"""The one localization container passed between stages, and the ground-truth emitter table.

Positions are in nanometres in the camera frame: ``x_nm = (column + 0.5) * pixel_size_nm`` at
the centre of a pixel, so the image spans ``[0, width_px * pixel_size_nm)``. Frames are 0-based.
Readers and writers of foreign formats convert at the edge (see :mod:`dblink_live.io`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["EmitterTable", "Localizations", "count_maps"]

_FLOAT = np.float32


def _as(a: object, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=dtype).reshape(-1))


@dataclass(eq=False)
class Localizations:
    """A struct of equal-length 1-D arrays, one entry per localization.

    Attributes
    ----------
    frame : (N,) int64
        0-based raw frame index.
    x_nm, y_nm : (N,) float32
        Position in nm (see module docstring for the origin).
    photons : (N,) float32
        Estimated signal photons of the blink in that frame.
    background : (N,) float32
        Estimated background photons per camera pixel.
    uncertainty_nm : (N,) float32
        Lateral localization precision (1 sigma) in nm.
    score : (N,) float32
        Detection confidence in [0, 1].
    pixel_size_nm : float
        Camera pixel size the localizations came from.
    n_frames : int
        Number of raw frames the table covers (frames without localizations count too).
    """

    frame: np.ndarray
    x_nm: np.ndarray
    y_nm: np.ndarray
    photons: np.ndarray
    background: np.ndarray
    uncertainty_nm: np.ndarray
    score: np.ndarray
    pixel_size_nm: float = 100.0
    n_frames: int = 0

    COLUMNS = ("frame", "x_nm", "y_nm", "photons", "background", "uncertainty_nm", "score")

    def __post_init__(self) -> None:
        self.frame = _as(self.frame, np.int64)
        for name in self.COLUMNS[1:]:
            setattr(self, name, _as(getattr(self, name), _FLOAT))
        n = len(self.frame)
        bad = [c for c in self.COLUMNS if len(getattr(self, c)) != n]
        if bad:
            lengths = {c: len(getattr(self, c)) for c in self.COLUMNS}
            raise ValueError(f"Localizations columns differ in length: {lengths}")
        if n and self.frame.min() < 0:
            raise ValueError("Localizations.frame must be 0-based (found a negative frame)")
        if n:
            self.n_frames = max(int(self.n_frames), int(self.frame.max()) + 1)

    @classmethod
    def empty(cls, pixel_size_nm: float = 100.0, n_frames: int = 0) -> Localizations:
        """A table with no rows."""
        z = np.zeros(0)
        return cls(z, z, z, z, z, z, z, pixel_size_nm=pixel_size_nm, n_frames=n_frames)

    def __len__(self) -> int:
        return len(self.frame)

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a dict of arrays (no copies)."""
        return {c: getattr(self, c) for c in self.COLUMNS}

    def select(self, mask: np.ndarray) -> Localizations:
        """Rows where ``mask`` (bool (N,) or integer indices) selects; same pixel size/frames."""
        return Localizations(
            **{c: a[mask] for c, a in self.columns().items()},
            pixel_size_nm=self.pixel_size_nm,
            n_frames=self.n_frames,
        )

    def in_frames(self, start: int, stop: int) -> Localizations:
        """Rows with ``start <= frame < stop``."""
        return self.select((self.frame >= start) & (self.frame < stop))

    @classmethod
    def concatenate(cls, parts: list[Localizations]) -> Localizations:
        """Stack tables (same pixel size); ``n_frames`` is the largest of the parts."""
        if not parts:
            return cls.empty()
        px = {p.pixel_size_nm for p in parts}
        if len(px) > 1:
            raise ValueError(f"cannot concatenate localizations with pixel sizes {sorted(px)}")
        return cls(
            **{c: np.concatenate([getattr(p, c) for p in parts]) for c in cls.COLUMNS},
            pixel_size_nm=parts[0].pixel_size_nm,
            n_frames=max(p.n_frames for p in parts),
        )

    def density_per_um2(self, area_um2: float) -> float:
        """Mean localizations per um^2 per frame over ``n_frames``."""
        return len(self) / max(self.n_frames, 1) / area_um2


@dataclass(eq=False)
class EmitterTable:
    """Ground truth of a simulation: one row per emitter and frame in which it was on.

    Attributes
    ----------
    frame : (N,) int64
        0-based frame index.
    x_nm, y_nm : (N,) float32
        True position (nm) at the middle of that frame's exposure.
    photons : (N,) float32
        Photons emitted during that frame (partly-on frames get the on-fraction).
    emitter_id : (N,) int64
        Which fluorophore blinked (the same id repeats over its blinks).
    on_fraction : (N,) float32
        Fraction of the frame's exposure during which the emitter was on.
    """

    frame: np.ndarray
    x_nm: np.ndarray
    y_nm: np.ndarray
    photons: np.ndarray
    emitter_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    on_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0, _FLOAT))

    def __post_init__(self) -> None:
        self.frame = _as(self.frame, np.int64)
        n = len(self.frame)
        self.x_nm, self.y_nm, self.photons = (
            _as(self.x_nm, _FLOAT),
            _as(self.y_nm, _FLOAT),
            _as(self.photons, _FLOAT),
        )
        self.emitter_id = _as(self.emitter_id, np.int64) if len(self.emitter_id) else np.full(n, -1)
        self.on_fraction = (
            _as(self.on_fraction, _FLOAT) if len(self.on_fraction) else np.ones(n, _FLOAT)
        )
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"EmitterTable column {f.name} has the wrong length")

    def __len__(self) -> int:
        return len(self.frame)

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a dict of arrays."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def select(self, mask: np.ndarray) -> EmitterTable:
        """Rows where ``mask`` selects."""
        return EmitterTable(**{k: v[mask] for k, v in self.columns().items()})

    @classmethod
    def concatenate(cls, parts: list[EmitterTable]) -> EmitterTable:
        """Stack tables."""
        if not parts:
            z = np.zeros(0)
            return cls(z, z, z, z)
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )


def count_maps(
    locs: Localizations,
    bin_nm: float,
    shape_yx: tuple[int, int],
    window_frames: int,
    n_maps: int | None = None,
    first_frame: int = 0,
) -> np.ndarray:
    """Bin localizations into count maps, W frames per map (vectorized, CPU).

    Parameters
    ----------
    locs
        Localizations (nm).
    bin_nm
        Grid bin size; bin ``(i, j)`` covers ``[j, j + 1) * bin_nm`` in x, ``[i, i + 1)`` in y.
    shape_yx
        (Y', X') grid size in bins; localizations outside are dropped.
    window_frames
        W raw frames per map; map k holds frames ``first_frame + [k W, (k + 1) W)``.
    n_maps
        Number of maps (default: as many complete windows as ``locs.n_frames`` allows).

    Returns
    -------
    (n_maps, Y', X') float32 counts
    """
    ny, nx = shape_yx
    if n_maps is None:
        n_maps = max((locs.n_frames - first_frame) // window_frames, 0)
    k = (locs.frame - first_frame) // window_frames
    ix = np.floor(locs.x_nm / bin_nm).astype(np.int64)
    iy = np.floor(locs.y_nm / bin_nm).astype(np.int64)
    ok = (k >= 0) & (k < n_maps) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flat = (k[ok] * ny + iy[ok]) * nx + ix[ok]
    return np.bincount(flat, minlength=n_maps * ny * nx).reshape(n_maps, ny, nx).astype(np.float32)
