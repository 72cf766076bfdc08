"""FrameRing: numbering, independent consumers, counted losses, no torn frames, bad frames."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from dblink_live.errors import DblinkError
from dblink_live.io.ring import BadFrameError, FrameRing


def _frame(i: int) -> np.ndarray:
    return np.full((16, 12), i % 65536, np.uint16)


def test_frames_are_numbered_and_each_consumer_reads_all() -> None:
    ring = FrameRing(32, (16, 12))
    a, b = ring.cursor("recorder"), ring.cursor("localizer")
    for i in range(10):
        assert ring.put(_frame(i), {"index": i}) == i
    got = a.get()
    assert got.first == 0 and len(got.frames) == 10 and got.lost == []
    assert [m["index"] for m in got.metadata] == list(range(10))
    assert all("time_s" in m for m in got.metadata)
    assert np.array_equal(got.frames[:, 0, 0], np.arange(10))
    part = b.get(max_frames=4)
    assert part.first == 0 and len(part.frames) == 4
    assert b.get().first == 4
    assert a.get(timeout=0.01) is None


def test_a_slow_consumer_is_told_exactly_what_it_lost() -> None:
    ring = FrameRing(8, (16, 12))
    slow = ring.cursor("slow")
    for i in range(20):
        ring.put(_frame(i))
    batch = slow.get()
    assert batch.lost == [(0, 12)] and batch.n_lost == 12 and slow.lost_frames == 12
    assert batch.first == 12 and np.array_equal(batch.frames[:, 0, 0], np.arange(12, 20))
    assert ring.fill() == 0.0


def test_wrap_around_reads_in_order() -> None:
    ring = FrameRing(5, (16, 12))
    c = ring.cursor("c")
    for i in range(3):
        ring.put(_frame(i))
    c.get()
    for i in range(3, 8):
        ring.put(_frame(i))
    batch = c.get()
    assert batch.lost == [] and np.array_equal(batch.frames[:, 0, 0], np.arange(3, 8))


def test_bad_frames_are_rejected_and_counted() -> None:
    ring = FrameRing(4, (16, 12))
    with pytest.raises(BadFrameError, match="rejected"):
        ring.put(np.zeros((16, 12), np.float32))
    with pytest.raises(BadFrameError):
        ring.put(np.zeros((12, 16), np.uint16))
    assert ring.bad_frames == 2 and ring.frames_put == 0
    assert ring.put(_frame(0)) == 0


def test_close_drains_then_ends() -> None:
    ring = FrameRing(4, (16, 12))
    c = ring.cursor("c")
    ring.put(_frame(0))
    ring.close()
    assert len(c.get(timeout=1).frames) == 1
    assert c.get(timeout=1) is None


def test_concurrent_producer_never_yields_torn_frames() -> None:
    """A fast producer and a slow consumer on a tiny ring: returned + lost = all, no torn frame."""
    ring = FrameRing(4, (16, 12))
    cur = ring.cursor("slow")
    total = 400

    def produce() -> None:
        for i in range(total):
            ring.put(_frame(i))
        ring.close()

    t = threading.Thread(target=produce)
    t.start()
    seen, lost = 0, 0
    while True:
        batch = cur.get(max_frames=3, timeout=2)
        if batch is None:
            break
        for k, f in enumerate(batch.frames):
            assert (f == batch.first + k).all()  # every pixel belongs to the right frame
        seen += len(batch.frames)
        lost += batch.n_lost
        time.sleep(0.0005)
    t.join()
    assert seen + lost == total and cur.lost_frames == lost


def test_on_disk_ring_is_visible_to_another_reader(tmp_path: Path) -> None:
    ring = FrameRing(6, (16, 12), path=tmp_path / "ring.zarr")
    for i in range(3):
        ring.put(_frame(i))
    # an on-disk ring stages frames by default: another process sees them once committed
    deadline = time.monotonic() + 10
    while ring.frames_put < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    other = zarr.open_array(tmp_path / "ring.zarr", mode="r")
    assert other.shape == (6, 16, 12)
    assert np.array_equal(other[:3, 0, 0], [0, 1, 2])
    ring.close()  # stops its writer thread


def test_an_in_memory_ring_commits_in_put_into_numpy_slots() -> None:
    """What the live pipeline builds: a frame is visible to readers when put returns, and the
    stored copy is the ring's own (changing the caller's array afterwards changes nothing)."""
    ring = FrameRing(4, (16, 12))
    cur = ring.cursor("display")
    frame = _frame(5)
    assert ring.put(frame) == 0 and ring.frames_put == 1
    frame[:] = 99
    got = cur.get(timeout=0)
    assert got is not None and got.frames[0, 0, 0] == 5
    number, newest = ring.newest()
    assert number == 0 and newest[0, 0] == 5
    newest[:] = 7  # a copy: the ring is untouched
    assert ring.newest()[1][0, 0] == 5


def test_a_lossless_cursor_keeps_what_would_be_overwritten() -> None:
    ring = FrameRing(4, (16, 12))
    keep = ring.cursor("recorder", lossless=True)
    lossy = ring.cursor("localizer")
    for i in range(11):
        ring.put(_frame(i), {"index": i})
    assert keep.backlog == 7  # frames 0..6 copied aside, 7..10 still in the ring
    got = keep.get()
    assert got.first == 0 and got.lost == [] and keep.lost_frames == 0
    assert np.array_equal(got.frames[:, 0, 0], np.arange(11))
    assert [m["index"] for m in got.metadata] == list(range(11))
    assert keep.backlog == 0 and keep.max_backlog == 7
    assert lossy.get().lost == [(0, 7)]  # the ordinary consumer still loses them


@pytest.mark.parametrize("background", [False, True])
def test_a_lossless_cursor_never_loses_under_a_racing_producer(background: bool) -> None:
    ring = FrameRing(3, (16, 12), background_writer=background)
    keep = ring.cursor("recorder", lossless=True)
    seen: list[int] = []
    done = threading.Event()

    def consume() -> None:
        while True:
            batch = keep.get(max_frames=5, timeout=0.05)
            if batch is None:
                if done.is_set() and keep.available() <= 0:
                    return
                continue
            assert batch.lost == []
            seen.extend(int(v) for v in batch.frames[:, 0, 0])
            time.sleep(0.0005)  # slower than the producer

    t = threading.Thread(target=consume)
    t.start()
    for i in range(2000):
        ring.put(_frame(i))
    done.set()
    ring.close()
    t.join(20)
    assert seen == [i % 65536 for i in range(2000)]
    assert keep.lost_frames == 0


def test_a_background_writer_commits_every_staged_frame_in_order() -> None:
    ring = FrameRing(8, (16, 12), background_writer=True)
    keep = ring.cursor("recorder", lossless=True)
    lossy = ring.cursor("display")
    numbers = [ring.put(_frame(i), {"index": i}) for i in range(100)]
    assert numbers == list(range(100))  # numbered at put time, before the commit
    with pytest.raises(BadFrameError):
        ring.put(np.zeros((3, 3), np.uint16))
    ring.close()  # commits everything staged
    assert ring.frames_put == 100 and ring.bad_frames == 1
    got = keep.get()
    assert np.array_equal(got.frames[:, 0, 0], np.arange(100)) and got.lost == []
    assert [m["index"] for m in got.metadata] == list(range(100))
    late = lossy.get()
    assert late.lost == [(0, 92)] and late.first == 92  # the lossy one is told what it lost
    with pytest.raises(DblinkError, match="closed"):
        ring.put(_frame(0))
