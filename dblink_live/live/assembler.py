"""MapAssembler: blocks of localized frames (and ranges of lost frames) -> W-frame count maps.

The live localizer hands over its results in blocks of consecutive frames, in order, with the
frame ranges it had to skip before each block (overwritten in the ring, or skipped to keep the
latency budget). The assembler bins each block's localizations into the count maps of the
W-frame windows it touches and, once every frame of a window is either localized or known to
be lost, hands that window over as a :class:`WindowMap`: its counts (unscaled), how many of its
W frames were localized, and when its last frame arrived. It holds no thread and no lock; the
pipeline's reconstruction thread owns it (``tests/test_assembler.py`` tests it alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dblink_live.localizations import Localizations, count_maps

__all__ = ["LocalizedBlock", "MapAssembler", "WindowMap"]


@dataclass
class LocalizedBlock:
    """Localizations of frames ``[first, first + n)``, in order after the previous block.

    Attributes
    ----------
    first, n : int
        First frame number and number of frames localized (``n`` may be 0: a block that only
        reports lost frames).
    locs : Localizations
        Their localizations (``frame`` numbers in ``[first, first + n)``, positions in nm
        from the camera's corner).
    lost : list of (start, stop)
        Frame ranges skipped since the previous block (not localized, never will be).
    arrival_s : list of float
        ``time.monotonic()`` arrival time of each of the ``n`` frames.
    """

    first: int
    n: int
    locs: Localizations
    lost: list[tuple[int, int]] = field(default_factory=list)
    arrival_s: list[float] = field(default_factory=list)


@dataclass
class WindowMap:
    """One complete W-frame window.

    Attributes
    ----------
    index : int
        Map number k (frames ``[k W, (k + 1) W)``).
    counts : (Y, X) float32
        Localizations per bin, not rescaled for lost frames.
    valid_frames : int
        Frames of the window that were localized (0..W; 0: skipped or lost whole).
    arrival_s : float or None
        Arrival time of the window's last frame, when that frame was localized.
    """

    index: int
    counts: np.ndarray
    valid_frames: int
    arrival_s: float | None


class MapAssembler:
    """Turns :class:`LocalizedBlock` s into :class:`WindowMap` s (see the module docstring).

    Parameters
    ----------
    window_frames
        W, frames per map.
    grid_yx
        (Y, X) bins of a map.
    bin_nm
        Bin size (nm).
    origin_nm
        (x, y) of the grid's corner on the camera (nm): a reconstructed region's corner;
        localizations outside the grid are not counted.
    """

    def __init__(
        self,
        window_frames: int,
        grid_yx: tuple[int, int],
        bin_nm: float,
        origin_nm: tuple[float, float] = (0.0, 0.0),
    ):
        if window_frames < 1:
            raise ValueError("window_frames must be at least 1")
        self.window = int(window_frames)
        self.grid_yx = (int(grid_yx[0]), int(grid_yx[1]))
        self.bin_nm = float(bin_nm)
        self.origin_nm = (float(origin_nm[0]), float(origin_nm[1]))
        self._partial: dict[int, np.ndarray] = {}
        self._lost: dict[int, int] = {}
        self._arrival: dict[int, float] = {}
        self._covered = 0  # frames [0, covered) are localized or known lost
        self.next_map = 0  # the next window to hand over

    def _on_grid(self, locs: Localizations) -> Localizations:
        ox, oy = self.origin_nm
        if ox == 0.0 and oy == 0.0:
            return locs
        return replace(locs, x_nm=locs.x_nm - np.float32(ox), y_nm=locs.y_nm - np.float32(oy))

    def add(self, block: LocalizedBlock) -> list[WindowMap]:
        """Take one block; returns the windows it completes, oldest first (often none)."""
        w = self.window
        for a, b in block.lost:
            for k in range(a // w, (b - 1) // w + 1):
                self._lost[k] = self._lost.get(k, 0) + min(b, (k + 1) * w) - max(a, k * w)
        if block.n:
            k0, k1 = block.first // w, (block.first + block.n - 1) // w
            maps = count_maps(
                self._on_grid(block.locs), self.bin_nm, self.grid_yx, w, k1 - k0 + 1, k0 * w
            )
            for j, k in enumerate(range(k0, k1 + 1)):
                if k in self._partial:
                    self._partial[k] += maps[j]
                else:
                    self._partial[k] = maps[j].astype(np.float32)
            last = block.first + block.n
            for f, t in zip(range(block.first, last), block.arrival_s, strict=True):
                if (f + 1) % w == 0:
                    self._arrival[f // w] = t
        ends = [block.first + block.n, *(b for _, b in block.lost)]
        self._covered = max(self._covered, *ends)
        done = []
        while (self.next_map + 1) * w <= self._covered:
            done.append(self._finish(self.next_map))
            self.next_map += 1
        return done

    def _finish(self, k: int) -> WindowMap:
        counts = self._partial.pop(k, None)
        if counts is None:
            counts = np.zeros(self.grid_yx, np.float32)
        valid = max(0, self.window - self._lost.pop(k, 0))
        return WindowMap(k, counts, valid, self._arrival.pop(k, None))
