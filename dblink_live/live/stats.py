"""Counters of a live run, shared by its threads: rates, frames, maps, skips and latencies.

One object, one lock for the scalars and one for the sequences that the status reads while
another thread appends; every method is safe from any thread. The pipeline's stages update it,
:meth:`dblink_live.pipeline.Pipeline.status` and the summary read it.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

__all__ = ["LiveCounters", "Rate"]


class Rate:
    """Events per second over the last ``span_s`` seconds (one writer, any number of readers)."""

    def __init__(self, span_s: float = 2.0):
        self.span_s = span_s
        self._marks: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int) -> None:
        """Count ``n`` events now."""
        now = time.monotonic()
        with self._lock:
            self.total += n
            self._marks.append((now, self.total))
            while len(self._marks) > 2 and now - self._marks[0][0] > self.span_s:
                self._marks.popleft()

    def rate(self) -> float:
        """Events per second over the span (0 when nothing came within it)."""
        with self._lock:
            if len(self._marks) < 2:
                return 0.0
            (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        if time.monotonic() - t1 > self.span_s:  # nothing recent
            return 0.0
        return (n1 - n0) / max(t1 - t0, 1e-9)


class LiveCounters:
    """What a live run has done so far (see the module docstring).

    Attributes
    ----------
    frames_localized, dropped_frames : int
        Frames the localizer handled, and frames the live path did not localize (lost in the
        ring or skipped to keep the latency budget; the recording has them all).
    skipped_maps : list of int
        Maps skipped whole to keep within the latency budget.
    maps_in, outputs, last_output_end : int
        Maps assembled, reconstructions delivered, first frame after the newest output's
        window.
    busy_s : dict
        Seconds of work per worker (``localizer``, ``reconstruction``).
    """

    def __init__(self, latency_history: int = 20000, recent_blocks: int = 64):
        self.in_rate, self.loc_rate, self.map_rate = Rate(), Rate(), Rate()
        self.frames_localized = 0
        self.dropped_frames = 0
        self.skipped_maps: list[int] = []
        self.maps_in = 0
        self.outputs = 0
        self.last_output_end = 0
        self.busy_s = {"localizer": 0.0, "reconstruction": 0.0}
        self._lock = threading.Lock()
        self._recent: deque[tuple[int, int]] = deque(maxlen=recent_blocks)  # (frames, locs)
        self._latencies: deque[float] = deque(maxlen=latency_history)

    def localized(self, frames: int, localizations: int) -> None:
        """A block of ``frames`` frames gave ``localizations`` localizations."""
        self.frames_localized += frames
        self.loc_rate.add(frames)
        with self._lock:
            self._recent.append((frames, localizations))

    def dropped(self, frames: int, whole_map: int | None = None) -> None:
        """``frames`` frames not localized; ``whole_map``: the index of a map skipped whole."""
        self.dropped_frames += frames
        if whole_map is not None:
            self.skipped_maps.append(whole_map)

    def map_in(self) -> None:
        """One more map assembled (reconstructed or not)."""
        with self._lock:
            self.maps_in += 1

    def output(self, index: int, window: int, latency_s: float | None) -> None:
        """Reconstruction ``index`` delivered ``latency_s`` after its last frame arrived."""
        self.map_rate.add(1)
        with self._lock:
            self.outputs += 1
            self.last_output_end = (index + 1) * window
            if latency_s is not None:
                self._latencies.append(latency_s)

    def outputs_so_far(self) -> tuple[int, int, int]:
        """(outputs, maps_in, last_output_end), read together."""
        with self._lock:
            return self.outputs, self.maps_in, self.last_output_end

    def latency_count(self) -> int:
        """How many outputs have a measured latency."""
        with self._lock:
            return len(self._latencies)

    def latencies(self) -> np.ndarray:
        """Seconds from the arrival of each output's last frame to its reconstruction, (n,)."""
        with self._lock:
            return np.array(self._latencies, dtype=np.float64)

    def locs_per_frame(self) -> float:
        """Localizations per frame over the recent blocks (0 before any)."""
        with self._lock:
            recent = list(self._recent)
        frames = sum(f for f, _ in recent)
        return sum(n for _, n in recent) / frames if frames else 0.0
