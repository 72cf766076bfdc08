"""LatestResults: what a display reads of a live run, updated by its threads.

The reconstruction thread adds each map's counts (the localization render sums the last few)
and each output; the newest camera frame is read from the ring whenever a display asks, so the
raw panel follows the camera whatever the localizer's backlog. Every method is thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import replace

import numpy as np

from dblink_live.io.ring import FrameRing
from dblink_live.pipeline_types import LiveResults

__all__ = ["LatestResults"]


class LatestResults:
    """The newest frame, maps, reconstruction and confidence of a run.

    Parameters
    ----------
    history_maps
        Count maps kept for renders (at most this many are summed).
    """

    def __init__(self, history_maps: int = 100):
        self._lock = threading.Lock()
        self.history: deque[np.ndarray] = deque(maxlen=max(1, int(history_maps)))
        self._results = LiveResults()
        self.window = 1

    def set_geometry(
        self, pixel_size_nm: float, bin_nm: float, window: int, origin_nm: tuple[float, float]
    ) -> None:
        """The camera pixel and map bin (nm), W, and the reconstructed region's corner (nm)."""
        self.window = int(window)
        with self._lock:
            self._results = replace(
                self._results,
                pixel_size_nm=pixel_size_nm,
                bin_nm=bin_nm,
                window_frames=window,
                origin_nm=origin_nm,
            )

    def add_map(self, counts: np.ndarray) -> None:
        """One more localized map's counts (Y, X), scaled to a full window."""
        with self._lock:
            self.history.append(counts)

    def add_output(self, index: int, rec: np.ndarray, conf: np.ndarray | None) -> None:
        """Output ``index``: reconstruction and confidence (Y, X), or no confidence."""
        with self._lock:
            self._results = replace(
                self._results,
                version=self._results.version + 1,
                output_index=index,
                reconstruction=rec,
                confidence=conf,
                output_first_frame=index * self.window,
            )

    def latest(self, ring: FrameRing | None, render_maps: int = 10) -> LiveResults:
        """The newest frame of ``ring``, the render (sum of the last ``render_maps`` maps), the
        newest reconstruction and confidence; ``version`` grows whenever any of them changes."""
        with self._lock:
            res = self._results
            hist = list(self.history)[-max(1, int(render_maps)) :]
        render = np.stack(hist).sum(axis=0, dtype=np.float32) if hist else None
        newest = ring.newest() if ring is not None else None
        if newest is not None and newest[0] > res.frame_index:
            n, frame = newest
            with self._lock:
                self._results = res = replace(
                    self._results, version=self._results.version + 1, frame_index=n, raw=frame
                )
        return replace(res, render=render, render_maps=len(hist))
