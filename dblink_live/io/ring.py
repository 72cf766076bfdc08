"""FrameRing: a fixed-capacity ring buffer of camera frames (numpy in memory, zarr on disk).

One producer (the acquisition hook) puts frames; they are numbered 0, 1, 2, ... for the whole
run. Several consumers (recorder, localizer, display) read with their own cursor. The producer
never waits: when a consumer falls more than ``capacity`` frames behind, the frames it missed
are overwritten, and its next read reports exactly which frame numbers it lost (and counts
them). A frame overwritten while a consumer was copying it is detected (the slot's frame number
is checked after the copy) and reported as lost too, never returned torn.

A *lossless* cursor (the recorder's) never loses a frame: when the producer is about to
overwrite a frame that cursor has not read yet, it first copies that frame aside into the
cursor's backlog (memory), so the producer still never waits; the cursor reads its backlog
first. ``backlog`` says how many frames are held that way.

Storage is a preallocated numpy array of shape (capacity, Y, X) in memory (a frame goes in with
one slot copy), or, with ``path``, a zarr array on disk, one uncompressed chunk per frame, so
that another process can watch the ring.

With ``background_writer=True`` (the default for an on-disk ring), :meth:`FrameRing.put` only
checks and copies the frame into a staging queue and returns; a writer thread commits staged
frames into storage in order. A zarr write goes through zarr's I/O event loop thread, and
waiting on it from the acquisition hook while other threads hold the GIL costs milliseconds;
staging keeps the hook in the tens of microseconds. An in-memory ring commits in ``put``
itself (a slot copy is cheaper than staging; ``scripts/bench_ring.py`` measures both).
Consumers see a frame once it is committed; :meth:`FrameRing.close` commits everything staged
first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage

from dblink_live.errors import DblinkError

__all__ = ["BadFrameError", "FrameBatch", "FrameRing", "RingCursor"]


class BadFrameError(DblinkError, ValueError):
    """A frame of the wrong shape or dtype was offered to the ring (it is counted, not stored)."""


@dataclass
class FrameBatch:
    """Frames read by a consumer.

    Attributes
    ----------
    first : int
        Number of the first frame in ``frames``.
    frames : (n, Y, X) ndarray
        Consecutive frames ``first .. first + n - 1``.
    metadata : list of dict
        Per-frame metadata given to :meth:`FrameRing.put` (with ``"time_s"``, the arrival time).
    lost : list of (start, stop)
        Frame-number ranges this consumer missed since its last read (overwritten).
    """

    first: int
    frames: np.ndarray
    metadata: list[dict[str, Any]]
    lost: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_lost(self) -> int:
        return sum(b - a for a, b in self.lost)


class FrameRing:
    """Ring of ``capacity`` frames of ``frame_shape`` and ``dtype`` (see the module docstring)."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, int],
        dtype: str | np.dtype = "uint16",
        path: str | Path | None = None,
        background_writer: bool | None = None,
    ):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = int(capacity)
        self.frame_shape: tuple[int, int] = (int(frame_shape[0]), int(frame_shape[1]))
        self.dtype = np.dtype(dtype)
        self.path = Path(path) if path is not None else None
        #: frame slots, (capacity, Y, X): a numpy array in memory, a zarr array on disk
        self._slots: np.ndarray | zarr.Array
        if path is None:
            # written through once here, so no put pays for the first touch of its page
            self._slots = np.full((self.capacity, *self.frame_shape), 0, self.dtype)
        else:
            self._slots = zarr.create_array(
                zarr.storage.LocalStore(path),
                shape=(self.capacity, *self.frame_shape),
                chunks=(1, *self.frame_shape),
                dtype=self.dtype,
                compressors=None,
                fill_value=0,
                overwrite=True,
                config={"write_empty_chunks": True},
            )
        if background_writer is None:
            background_writer = path is not None
        self._slot_number = np.full(self.capacity, -1, np.int64)
        self._metadata: list[dict[str, Any]] = [{} for _ in range(self.capacity)]
        self._head = 0  # number of the next frame to commit (consumers see frames below it)
        self._closing = False
        self._cond = threading.Condition()
        self._closed = False
        self.bad_frames = 0
        self._cursors: list[RingCursor] = []
        self._lossless: list[RingCursor] = []
        self._assigned = 0  # numbers handed out by put (>= _head with a background writer)
        self._staged: deque[tuple[int, np.ndarray, dict[str, Any]]] = deque()
        self._stage_cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        if background_writer:
            self._writer = threading.Thread(
                target=self._write_loop, name="ring-writer", daemon=True
            )
            self._writer.start()

    # ------------------------------------------------------------------ producer
    def put(self, frame: np.ndarray, metadata: dict[str, Any] | None = None) -> int:
        """Copy one frame in (never blocks on consumers); returns its frame number.

        Raises
        ------
        BadFrameError
            if the frame's shape or dtype differs from the ring's (counted in ``bad_frames``).
        """
        frame = np.asarray(frame)
        if frame.shape != self.frame_shape or frame.dtype != self.dtype:
            self.bad_frames += 1
            raise BadFrameError(
                f"frame of shape {frame.shape} and dtype {frame.dtype} rejected: the ring holds "
                f"{self.frame_shape} {self.dtype} frames"
            )
        if self._closed:
            raise DblinkError("the ring is closed")
        meta = {**(metadata or {}), "time_s": time.monotonic()}
        if self._writer is None:
            number = self._assigned
            self._assigned += 1
            self._commit(number, frame[None], [meta])
            return number
        if self._writer_error is not None:
            raise DblinkError(f"the ring's writer failed: {self._writer_error}")
        with self._stage_cond:
            number = self._assigned
            self._assigned += 1
            self._staged.append((number, frame.copy(), meta))
            self._stage_cond.notify()
        return number

    def _write_loop(self) -> None:
        try:
            while True:
                with self._stage_cond:
                    self._stage_cond.wait_for(lambda: self._staged or self._closing)
                    if not self._staged and self._closing:
                        return
                batch: list[tuple[int, np.ndarray, dict[str, Any]]] = []
                while self._staged and len(batch) < self.capacity:
                    batch.append(self._staged.popleft())
                # one zarr write per run of slots that does not wrap around the ring's end
                start = 0
                while start < len(batch):
                    s0 = batch[start][0] % self.capacity
                    n = min(len(batch) - start, self.capacity - s0)
                    run = batch[start : start + n]
                    self._commit(
                        run[0][0], np.stack([f for _, f, _ in run]), [m for _, _, m in run]
                    )
                    start += n
        except BaseException as exc:  # surfaced by put() and close()
            self._writer_error = exc

    def _commit(self, first: int, frames: np.ndarray, metas: list[dict[str, Any]]) -> None:
        """Write frames ``first, first + 1, ...`` (n, Y, X) into consecutive slots that do not
        wrap, keeping aside what lossless cursors have not read yet."""
        n = len(frames)
        s0 = first % self.capacity
        old0 = first - self.capacity
        if old0 + n > 0 and self._lossless:
            with self._cond:  # save the frames a lossless cursor has not read yet
                need = [
                    (k, old0 + k)
                    for k in range(n)
                    if old0 + k >= 0
                    and any(
                        c.next_frame <= old0 + k and old0 + k not in c._backlog
                        for c in self._lossless
                    )
                ]
                if need:
                    held = np.asarray(self._slots[s0 : s0 + n])
                    for k, old in need:
                        for cur in self._lossless:
                            if cur.next_frame <= old and old not in cur._backlog:
                                cur._backlog[old] = (held[k].copy(), self._metadata[s0 + k])
        self._slot_number[s0 : s0 + n] = -1  # mark the slots as being written
        if n == 1:
            self._slots[s0] = frames[0]
        else:
            self._slots[s0 : s0 + n] = frames
        self._metadata[s0 : s0 + n] = metas
        self._slot_number[s0 : s0 + n] = np.arange(first, first + n)
        with self._cond:
            self._head = first + n
            self._cond.notify_all()

    def close(self) -> None:
        """No more frames will come: staged frames are committed, then waiting consumers wake
        up and drain."""
        if self._writer is not None:
            with self._stage_cond:
                self._closing = True
                self._stage_cond.notify()
            self._writer.join()
            if self._writer_error is not None:
                raise DblinkError(f"the ring's writer failed: {self._writer_error}")
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def frames_put(self) -> int:
        """Frames committed so far (visible to consumers; the next committed frame's number)."""
        return self._head

    def newest(self) -> tuple[int, np.ndarray] | None:
        """``(number, frame (Y, X))``: a copy of the newest committed frame, for a display
        (None before the first frame, or if it was overwritten while being copied)."""
        n = self._head - 1
        if n < 0:
            return None
        slot = n % self.capacity
        frame = np.array(self._slots[slot])
        if self._slot_number[slot] != n:
            return None
        return n, frame

    # ------------------------------------------------------------------ consumers
    def cursor(self, name: str, start: int | None = None, lossless: bool = False) -> RingCursor:
        """A new consumer reading from frame ``start`` (default: the oldest frame still held).

        ``lossless=True``: frames this consumer has not read are copied aside before being
        overwritten (see the module docstring), so it never loses one.
        """
        with self._cond:
            first = max(0, self._head - self.capacity) if start is None else int(start)
            if lossless and first < self._head - self.capacity:
                raise ValueError("a lossless cursor cannot start before the oldest frame held")
            cur = RingCursor(self, name, first, lossless)
            self._cursors.append(cur)
            if lossless:
                self._lossless.append(cur)
        return cur

    @property
    def cursors(self) -> list[RingCursor]:
        return list(self._cursors)

    def fill(self) -> float:
        """Fraction of the ring the slowest consumer still has to read (0 empty, 1 full)."""
        lossy = [c for c in self._cursors if not c.lossless]
        if not lossy:
            return 0.0
        behind = max(self._head - c.next_frame for c in lossy)
        return min(1.0, behind / self.capacity)


class RingCursor:
    """One consumer's position in a :class:`FrameRing`; ``lost_frames`` counts what it missed."""

    def __init__(self, ring: FrameRing, name: str, start: int, lossless: bool = False):
        self.ring = ring
        self.name = name
        self.next_frame = start
        self.lost_frames = 0
        self.lossless = lossless
        #: frames copied aside for a lossless cursor: number -> (frame, metadata)
        self._backlog: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
        self.max_backlog = 0

    @property
    def backlog(self) -> int:
        """Frames held in memory for this (lossless) cursor because it fell behind."""
        return len(self._backlog)

    def available(self) -> int:
        """Frames waiting for this consumer (including ones already overwritten)."""
        return self.ring.frames_put - self.next_frame

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for a frame this cursor has not passed; whether one is
        there (False when none came in time or the ring is closed and drained). Reads
        nothing."""
        ring = self.ring
        with ring._cond:
            ring._cond.wait_for(lambda: ring._head > self.next_frame or ring._closed, timeout)
            return ring._head > self.next_frame

    def skip(self, n: int) -> tuple[int, int]:
        """Pass over the next ``n`` frames (at most those that have arrived) without reading
        them; returns the ``[start, stop)`` range skipped. Lossy cursors only."""
        if self.lossless:
            raise ValueError(f"cursor {self.name!r} is lossless: it cannot skip frames")
        start = self.next_frame
        self.next_frame = min(start + max(0, int(n)), self.ring.frames_put)
        return start, self.next_frame

    def get(self, max_frames: int | None = None, timeout: float | None = None) -> FrameBatch | None:
        """Read the next frames (at most ``max_frames``), waiting up to ``timeout`` s for one.

        Returns None when nothing arrived in time, or when the ring is closed and drained.
        """
        ring = self.ring
        with ring._cond:
            if not ring._cond.wait_for(
                lambda: ring._head > self.next_frame or ring._closed, timeout
            ):
                return None
            head = ring._head
        if head <= self.next_frame:
            return None  # closed and drained
        if self.lossless:
            return self._get_lossless(head, max_frames)
        lost: list[tuple[int, int]] = []
        oldest = head - ring.capacity
        if self.next_frame < oldest:
            lost.append((self.next_frame, oldest))
            self.next_frame = oldest
        n = (
            head - self.next_frame
            if max_frames is None
            else min(max_frames, head - self.next_frame)
        )
        numbers = np.arange(self.next_frame, self.next_frame + n)
        slots = numbers % ring.capacity
        frames = np.empty((n, *ring.frame_shape), ring.dtype)
        # copy slot by slot (consecutive slots may wrap around the end of the ring)
        start = 0
        while start < n:
            s0 = int(slots[start])
            run = min(n - start, ring.capacity - s0)
            frames[start : start + run] = ring._slots[s0 : s0 + run]
            start += run
        meta = [ring._metadata[s] for s in slots]
        # frames overwritten during the copy (the oldest ones: a prefix) are lost, not torn
        ok = (numbers >= ring._head - ring.capacity) & (ring._slot_number[slots] == numbers)
        if not ok.all():
            cut = int(np.flatnonzero(~ok).max()) + 1
            lost.append((int(numbers[0]), int(numbers[0]) + cut))
            frames, meta, numbers = frames[cut:], meta[cut:], numbers[cut:]
        if len(numbers):
            first = int(numbers[0])
            self.next_frame = first + len(numbers)
        else:
            first = self.next_frame = lost[-1][1]
        self.lost_frames += sum(b - a for a, b in lost)
        return FrameBatch(first, frames, meta, lost)

    def _get_lossless(self, head: int, max_frames: int | None) -> FrameBatch:
        """Read from the backlog first, then the ring; a frame overwritten during the copy is
        taken from the backlog (the producer saved it there before overwriting)."""
        ring = self.ring
        n = (
            head - self.next_frame
            if max_frames is None
            else min(max_frames, head - self.next_frame)
        )
        numbers = list(range(self.next_frame, self.next_frame + n))
        frames = np.empty((n, *ring.frame_shape), ring.dtype)
        meta: list[dict[str, Any]] = [{}] * n
        in_ring = []
        for i, num in enumerate(numbers):
            saved = self._backlog.get(num)
            if saved is not None:
                frames[i], meta[i] = saved
            else:
                in_ring.append(i)
        for i in in_ring:
            slot = numbers[i] % ring.capacity
            frames[i] = ring._slots[slot]
            meta[i] = ring._metadata[slot]
        with ring._cond:
            for i in in_ring:  # overwritten during the copy: the backlog has the original
                num = numbers[i]
                if ring._slot_number[num % ring.capacity] != num:
                    frames[i], meta[i] = self._backlog[num]
            self.max_backlog = max(self.max_backlog, len(self._backlog))
            self.next_frame += n
            for num in numbers:
                self._backlog.pop(num, None)
        return FrameBatch(numbers[0], frames, meta, [])
