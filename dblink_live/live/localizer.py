"""StreamingLocalizer: localizes consecutive frame batches as they arrive from the ring.

A localizer that reads a frame's neighbours (``takes_context``: the CNN reads t-1, t, t+1) is
given the frame before each batch and the frame after it. The frame after a batch is the first
of the next one, so the last frame of every batch is *held* until its successor arrives and is
localized with the next batch. When frames are lost (overwritten in the ring, or skipped to
keep the latency budget) the held frame's successor is gone: it is localized at once without
that context, and the context before the next batch is dropped. Each output is a
:class:`~dblink_live.live.assembler.LocalizedBlock` that carries the ranges lost before it, so
the map assembler knows every frame's fate. No thread, no queue: the pipeline's localizer
thread drives it (``tests/test_streaming_localizer.py`` tests it alone).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dblink_live.live.assembler import LocalizedBlock
from dblink_live.localizations import Localizations
from dblink_live.localize.base import CameraCalibration, Localizer

__all__ = ["StreamingLocalizer"]


class StreamingLocalizer:
    """Stream frames through ``localizer`` (see the module docstring).

    Parameters
    ----------
    localizer
        Any :class:`~dblink_live.localize.base.Localizer`.
    calibration
        Returns the camera calibration to use now (it may be refined during the run).
    on_frames
        Called with each (n, Y, X) stack just before it is localized (e.g. to measure the
        camera on the first frames).
    """

    def __init__(
        self,
        localizer: Localizer,
        calibration: Callable[[], CameraCalibration],
        on_frames: Callable[[np.ndarray], object] | None = None,
    ):
        self.localizer = localizer
        self._calibration = calibration
        self._on_frames = on_frames
        self._held: tuple[int, np.ndarray, float] | None = None  # (number, frame, arrival)
        self._before: np.ndarray | None = None  # (1, Y, X): the frame before the next batch
        self._lost: list[tuple[int, int]] = []  # lost since the last block handed out

    @property
    def holding(self) -> int | None:
        """Number of the frame held back for its successor (None: none held)."""
        return self._held[0] if self._held is not None else None

    def _emit(
        self, first: int, frames: np.ndarray, arrival: list[float], after: np.ndarray | None
    ) -> LocalizedBlock:
        cal = self._calibration()
        if len(frames):
            if self._on_frames is not None:
                self._on_frames(frames)
                cal = self._calibration()
            locs = self.localizer.localize(
                frames, cal, first, context_before=self._before, context_after=after
            )
            self._before = frames[-1:]
        else:
            locs = Localizations.empty(cal.pixel_size_nm, 0)
        block = LocalizedBlock(first, len(frames), locs, self._lost, arrival)
        self._lost = []
        return block

    def _release_held(self) -> list[LocalizedBlock]:
        if self._held is None:
            return []
        number, frame, arrival = self._held
        self._held = None
        return [self._emit(number, frame[None], [arrival], None)]

    def feed(self, first: int, frames: np.ndarray, arrival: list[float]) -> list[LocalizedBlock]:
        """Localize frames ``first, first + 1, ...`` ((n, Y, X), the next ones after what was
        fed or lost before; ``arrival``: their arrival times). Returns the blocks done.

        An empty batch (every frame overwritten while the ring copied it: the reader reports
        them lost) does nothing; the losses go with the next block."""
        if len(frames) == 0:
            return []
        if not self.localizer.takes_context:
            return [self._emit(first, frames, arrival, None)]
        if self._held is not None:
            number, frame, t = self._held
            frames = np.concatenate([frame[None], frames])
            arrival = [t, *arrival]
            first = number
        self._held = (first + len(frames) - 1, frames[-1], arrival[-1])
        return [self._emit(first, frames[:-1], arrival[:-1], frames[-1:])]

    def lose(self, ranges: list[tuple[int, int]]) -> list[LocalizedBlock]:
        """Frames ``[start, stop)`` of each range will never come. A held frame is localized
        now, without its successor; the ranges go with the next block."""
        out = self._release_held()
        self._before = None
        self._lost = [*self._lost, *ranges]
        return out

    def finish(
        self, next_frame: int, frame_shape: tuple[int, int], dtype: np.dtype
    ) -> list[LocalizedBlock]:
        """End of the stream: the held frame, and an empty block at ``next_frame`` carrying
        the ranges lost at the very end (so that they are known)."""
        out = self._release_held()
        if self._lost:
            out.append(self._emit(next_frame, np.empty((0, *frame_shape), dtype), [], None))
        return out
