"""LocalizeStage: the localizer thread's loop, from the ring's lossy cursor to the queue.

It takes batches of frames from its cursor, localizes them through a
:class:`~dblink_live.live.localizer.StreamingLocalizer` and hands each
:class:`~dblink_live.live.assembler.LocalizedBlock` on. Frames the ring overwrote before the
cursor read them are counted as dropped and passed on as lost ranges. While the camera runs and
the live path is further behind than the :class:`~dblink_live.live.budget.LatencyBudget`
allows, it skips whole maps, one at each map boundary (so skips interleave evenly with work),
until it is back within the budget; the recorder's own cursor still records every frame. A
map decided to be skipped is skipped whole, including its frames that have not arrived yet:
the localizer waits for them instead of starting a map it would only half see (a map of a few
frames costs a whole reconstruction step and is a poor one), so that the next map it localizes
is localized as its frames arrive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dblink_live.io.ring import FrameRing, RingCursor
from dblink_live.live.assembler import LocalizedBlock
from dblink_live.live.budget import LatencyBudget
from dblink_live.live.localizer import StreamingLocalizer
from dblink_live.live.stats import LiveCounters

__all__ = ["LocalizeStage"]


class LocalizeStage:
    """Drive ``stream`` from ``cursor`` until the ring closes (see the module docstring).

    Parameters
    ----------
    ring, cursor
        The frame ring and this stage's (lossy) cursor on it.
    stream
        The streaming localizer.
    counters, budget
        The run's counters (frames localized, dropped, skipped maps, busy time) and its
        latency budget.
    put
        Hands a block on (blocks while the queue is full, returns when aborted).
    queue_full
        Whether the queue to the reconstruction is full now.
    abort
        Set to stop at once, without processing what is buffered.
    window, batch_frames
        Frames per map W and frames localized per call.
    """

    def __init__(
        self,
        ring: FrameRing,
        cursor: RingCursor,
        stream: StreamingLocalizer,
        counters: LiveCounters,
        budget: LatencyBudget,
        put: Callable[[LocalizedBlock], None],
        queue_full: Callable[[], bool],
        abort: threading.Event,
        window: int,
        batch_frames: int,
    ):
        self.ring, self.cursor, self.stream = ring, cursor, stream
        self.counters, self.budget = counters, budget
        self._put, self._queue_full, self._abort = put, queue_full, abort
        self.window, self.batch_frames = int(window), int(batch_frames)

    def behind(self) -> bool:
        """Whether to skip a map now: the camera runs and the budget is exceeded."""
        if self.ring.closed:  # a draining run processes everything
            return False
        return self.budget.behind(
            self.cursor.available(),
            self.counters.frames_localized,
            self.ring.capacity,
            self._queue_full(),
        )

    def run(self) -> None:
        """Localize until the ring is closed and read (or until aborted)."""
        cur, w, stream = self.cursor, self.window, self.stream
        skip_until = 0  # the end of the map being skipped whole
        while not self._abort.is_set():
            if cur.next_frame < skip_until:  # pass over its frames as they arrive
                if not cur.wait(timeout=0.1):
                    if self.ring.closed:
                        break
                    continue
                a, b = cur.skip(skip_until - cur.next_frame)
                self.counters.dropped(b - a, (b - 1) // w if b == skip_until else None)
                self._publish(time.perf_counter(), stream.lose([(a, b)]))
                continue
            take = self.batch_frames
            if self.behind():
                to_boundary = (-cur.next_frame) % w
                if to_boundary == 0:
                    skip_until = cur.next_frame + w
                    continue
                take = min(self.batch_frames, to_boundary)
            batch = cur.get(max_frames=take, timeout=0.1)
            if batch is None:
                if self.ring.closed and cur.available() <= 0:
                    break
                continue
            t_start = time.perf_counter()
            if batch.lost:
                self.counters.dropped(batch.n_lost)
                self._publish(t_start, stream.lose(batch.lost))
                t_start = time.perf_counter()
            arrival = [m.get("time_s", 0.0) for m in batch.metadata]
            self._publish(t_start, stream.feed(batch.first, batch.frames, arrival))
        if not self._abort.is_set():
            t_start = time.perf_counter()
            self._publish(
                t_start, stream.finish(cur.next_frame, self.ring.frame_shape, self.ring.dtype)
            )

    def _publish(self, t_start: float, blocks: list[LocalizedBlock]) -> None:
        self.counters.busy_s["localizer"] += time.perf_counter() - t_start
        for block in blocks:
            self.counters.localized(block.n, len(block.locs))
            self._put(block)
