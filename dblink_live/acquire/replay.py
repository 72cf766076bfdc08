"""Replay a recording as a live source: at its recorded rate, ``speed`` x faster, or unpaced."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from dblink_live.acquire.base import FrameSink, SourceTruth
from dblink_live.acquire.ground_truth import copied_truth
from dblink_live.config import GridConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording

__all__ = ["ReplaySource"]


class ReplaySource:
    """Frames of a recording, in order, paced by its frame interval.

    Parameters
    ----------
    path
        A recording (``*.zarr``).
    speed
        Playback speed factor (2 = twice the recorded rate); ``0`` means as fast as possible.
    block_frames
        Frames read from disk at once.
    """

    def __init__(self, path: str | Path, speed: float = 1.0, block_frames: int = 64):
        self.recording = Recording.open(path)
        if self.recording.n_frames == 0:
            what = (
                f"it holds {self.recording.n_localizations:,} localizations (made from a table?):"
                " use `dblink-live reprocess` for those"
                if self.recording.n_localizations
                else "it is empty"
            )
            raise DblinkError(f"{path} has no raw frames to replay; {what}")
        self.frame_shape = self.recording.frame_shape
        self.pixel_size_nm = self.recording.pixel_size_nm
        self.frame_interval_s = self.recording.frame_interval_s
        self.camera: dict[str, Any] = {**self.recording.camera, "pixel_size_nm": self.pixel_size_nm}
        self.speed = float(speed)
        self.block_frames = int(block_frames)

    @property
    def arrival_interval_s(self) -> float | None:
        """Seconds between frames as they are sent (None: unpaced, as fast as taken)."""
        return self.frame_interval_s / self.speed if self.speed > 0 else None

    @property
    def n_frames(self) -> int:
        return self.recording.n_frames

    def ground_truth(
        self, grid: GridConfig, region_nm: tuple[float, float, float, float] | None = None
    ) -> SourceTruth | None:
        """The truth stored in a replayed simulation, at ``grid``'s bin size and window
        (None for a recording that has none); its maps are copied as stored (whole field or
        region), ``region_nm`` is not needed."""
        copied = copied_truth(self.recording, grid.bin_nm, grid.window_frames)
        if copied is None:
            return None
        meta = {"simulated": True, "replayed_from": str(self.recording.path)}
        return SourceTruth(copied, maps_during_run=True, metadata=meta)

    def run(self, sink: FrameSink, stop: threading.Event) -> int:
        """Push every frame into ``sink`` with metadata ``{"frame": i, "source": "replay"}``."""
        interval = self.frame_interval_s / self.speed if self.speed > 0 else 0.0
        t0: float | None = None  # the clock starts with the first frame sent
        done = 0
        for start in range(0, self.n_frames, self.block_frames):
            block = self.recording.read_frames(start, start + self.block_frames)
            for k, frame in enumerate(block):
                if stop.is_set():
                    return done
                i = start + k
                if t0 is None:
                    t0 = time.perf_counter() - i * interval
                elif interval:
                    delay = t0 + i * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                sink(frame, {"frame": i, "source": "replay"})
                done += 1
        return done
