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
import time
from collections.abc import Callable

import numpy as np

from dblink_live.io.recording import Recording
from dblink_live.io.ring import FrameRing

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    """Background thread: ``ring`` -> ``recording.append_frames``.

    Frames are appended in blocks of ``block_frames`` (default: the recording's chunk length,
    so appends write whole chunks) or whatever has arrived every ``flush_s`` seconds, whichever
    comes first.

    A write that fails (a full disk, a file-size limit, a lost network share) stops the
    recorder at once: ``on_error(exc)`` is called from its thread (the pipeline then stops the
    run), and :meth:`join` raises it. What was written before stays readable.
    """

    def __init__(
        self,
        ring: FrameRing,
        recording: Recording,
        block_frames: int | None = None,
        flush_s: float = 0.5,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        self.ring = ring
        self.recording = recording
        self.block_frames = int(block_frames or recording.raw.chunks[0])
        self.flush_s = float(flush_s)
        self.cursor = ring.cursor("recorder", start=ring.frames_put, lossless=True)
        self.frames_written = 0
        self.error: BaseException | None = None
        self._on_error = on_error
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
        pending: list = []
        n_pending = 0
        last = time.monotonic()

        def write() -> None:
            nonlocal n_pending, last
            if pending:
                self.recording.append_frames(np.concatenate(pending))
                self.frames_written += n_pending
            pending.clear()
            n_pending = 0
            last = time.monotonic()

        try:
            while True:
                batch = self.cursor.get(max_frames=self.block_frames - n_pending, timeout=0.1)
                if batch is None:
                    if self.ring.closed and self.cursor.available() <= 0:
                        write()
                        return
                elif len(batch.frames):
                    pending.append(batch.frames)
                    n_pending += len(batch.frames)
                # whole chunks (no read-modify-write), and at least every flush_s
                if n_pending >= self.block_frames or time.monotonic() - last >= self.flush_s:
                    write()
        except BaseException as exc:  # surfaced by join()
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)

    def join(self, timeout: float | None = None) -> int:
        """Wait until the ring is closed and drained; returns frames written."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.frames_written
