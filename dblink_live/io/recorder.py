"""Recorder: the ring consumer that appends every frame to the recording.

It reads its own *lossless* ring cursor in blocks and appends them (data first, then the
counter), so a killed process leaves a readable recording up to the last block. When the disk
is slower than the camera for a while, the ring copies the frames the recorder has not written
yet aside in memory before overwriting them (``backlog``), so the recorder never loses a frame
and the acquisition never waits; ``lost_frames`` is kept as a check and stays 0.
"""

from __future__ import annotations

import logging
import threading

from dblink_live.io.recording import Recording
from dblink_live.io.ring import FrameRing

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    """Background thread: ``ring`` -> ``recording.append_frames`` in blocks of ``block_frames``."""

    def __init__(self, ring: FrameRing, recording: Recording, block_frames: int = 32):
        self.ring = ring
        self.recording = recording
        self.block_frames = int(block_frames)
        self.cursor = ring.cursor("recorder", start=ring.frames_put, lossless=True)
        self.frames_written = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    @property
    def lost_frames(self) -> int:
        return self.cursor.lost_frames

    @property
    def backlog(self) -> int:
        """Frames waiting in memory because the recorder fell behind the ring."""
        return self.cursor.backlog

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while True:
                batch = self.cursor.get(max_frames=self.block_frames, timeout=0.1)
                if batch is None:
                    if self.ring.closed and self.cursor.available() <= 0:
                        return
                    continue
                if batch.lost:
                    log.error("recorder lost frames %s (ring too small?)", batch.lost)
                if len(batch.frames):
                    self.recording.append_frames(batch.frames)
                    self.frames_written += len(batch.frames)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout: float | None = None) -> int:
        """Wait until the ring is closed and drained; returns frames written."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.frames_written
