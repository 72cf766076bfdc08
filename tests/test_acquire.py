"""Sources into the ring and the recorder: real DemoCamera via pycromanager, and replay."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from dblink_live.acquire import MicroManagerSource, ReplaySource, demo_camera_paths
from dblink_live.io import Recording
from dblink_live.io.recorder import Recorder
from dblink_live.io.ring import FrameRing


def _record(source, ring_capacity: int, path: Path) -> tuple[Recording, Recorder, int]:
    ring = FrameRing(ring_capacity, source.frame_shape)
    rec = Recording.create(
        path,
        frame_shape=source.frame_shape,
        pixel_size_nm=source.pixel_size_nm or 100.0,
        frame_interval_s=source.frame_interval_s or 0.01,
        camera=source.camera,
    )
    recorder = Recorder(ring, rec).start()
    produced = source.run(ring.put, threading.Event())
    ring.close()
    recorder.join(timeout=60)
    return rec, recorder, produced


@pytest.mark.mm
@pytest.mark.isolated
@pytest.mark.timeout(120)
def test_democamera_frames_arrive_in_order_and_are_all_recorded(tmp_path: Path) -> None:
    adapters, config = demo_camera_paths()
    src = MicroManagerSource(
        n_frames=25,
        interval_s=0.0,
        exposure_ms=5.0,
        adapter_path=adapters,
        config_file=config,
        keep_in_micromanager=False,
    )
    seen: list[dict] = []
    try:
        src.start()
        assert src.frame_shape == (512, 512)
        ring = FrameRing(64, src.frame_shape)
        rec = Recording.create(
            tmp_path / "mm.zarr",
            frame_shape=src.frame_shape,
            pixel_size_nm=src.pixel_size_nm,
            frame_interval_s=0.005,
        )
        recorder = Recorder(ring, rec).start()

        def sink(frame, meta):
            seen.append(meta)
            ring.put(frame, meta)

        produced = src.run(sink, threading.Event())
        ring.close()
        recorder.join(timeout=60)
    finally:
        src.stop()
    assert produced == 25 and recorder.frames_written == 25 and recorder.lost_frames == 0
    times = [m.get("Axes", m.get("axes", {})).get("time") for m in seen]
    assert times == list(range(25))  # in order, with their Micro-Manager metadata
    back = Recording.open(tmp_path / "mm.zarr")
    assert back.n_frames == 25 and back.read_frames().dtype == np.uint16
    assert back.read_frames().std() > 0  # real DemoCamera images, not zeros


@pytest.mark.mm
@pytest.mark.isolated
@pytest.mark.timeout(120)
def test_start_stop_start_parks_each_stopped_core_with_its_buffer_given_back() -> None:
    """Acquisition after acquisition in one process (the viewer's Start, Stop, Start): each run
    gets a fresh core and all its frames; a stopped core is kept (never destroyed mid-run; see
    ``_park_core``) with its 64 MB circular buffer shrunk to 1 MB."""
    from pycromanager import Core

    from dblink_live.acquire import micromanager

    adapters, config = demo_camera_paths()
    parked_before = len(micromanager._STOPPED_CORES)
    cores = []
    for _ in range(3):
        src = MicroManagerSource(
            n_frames=4, exposure_ms=5.0, adapter_path=adapters, config_file=config
        )
        src.start()
        cores.append(Core())
        assert cores[-1].get_circular_buffer_memory_footprint() == 64
        assert src.run(lambda frame, meta: None, threading.Event()) == 4
        src.stop()
    assert len({id(c) for c in cores}) == 3  # a fresh core per run
    parked = micromanager._STOPPED_CORES[parked_before:]
    assert [id(c) for c in parked] == [id(c) for c in cores]
    assert [c.get_circular_buffer_memory_footprint() for c in parked] == [1, 1, 1]


@pytest.mark.mm
@pytest.mark.isolated
@pytest.mark.timeout(120)
def test_bad_frames_from_the_camera_are_counted_not_fatal(tmp_path: Path) -> None:
    adapters, config = demo_camera_paths()
    src = MicroManagerSource(n_frames=6, adapter_path=adapters, config_file=config)
    try:
        src.start()
        ring = FrameRing(16, (100, 100))  # wrong shape on purpose: every frame is rejected
        produced = src.run(ring.put, threading.Event())
    finally:
        src.stop()
    assert produced == 0 and ring.bad_frames == 6 and len(src.rejected_frames) == 6
    assert "rejected" in src.rejected_frames[0]


def test_replay_reproduces_the_recording_in_order(tmp_path: Path) -> None:
    orig = Recording.create(
        tmp_path / "orig.zarr",
        frame_shape=(20, 16),
        pixel_size_nm=110,
        frame_interval_s=0.002,
        camera={"em_gain": 1.0},
    )
    frames = np.random.default_rng(0).integers(0, 60000, (70, 20, 16)).astype(np.uint16)
    orig.append_frames(frames)
    src = ReplaySource(tmp_path / "orig.zarr", speed=0)
    # unpaced replay outruns the recorder; a ring that holds the whole burst loses nothing
    rec, recorder, produced = _record(src, 128, tmp_path / "copy.zarr")
    assert produced == 70 and recorder.lost_frames == 0
    assert np.array_equal(Recording.open(tmp_path / "copy.zarr").read_frames(), frames)
    assert rec.pixel_size_nm == 110 and rec.camera["em_gain"] == 1.0


def test_a_burst_larger_than_the_ring_is_recorded_without_loss(tmp_path: Path) -> None:
    """Unpaced replay into a 4-frame ring: the recorder falls far behind, the ring keeps the
    frames it has not written yet aside, and every frame lands in the recording, in order."""
    orig = Recording.create(
        tmp_path / "o.zarr", frame_shape=(20, 16), pixel_size_nm=100, frame_interval_s=0.01
    )
    frames = np.random.default_rng(1).integers(0, 60000, (300, 20, 16)).astype(np.uint16)
    orig.append_frames(frames)
    _, recorder, produced = _record(
        ReplaySource(tmp_path / "o.zarr", speed=0), 4, tmp_path / "c.zarr"
    )
    assert produced == 300 and recorder.lost_frames == 0 and recorder.frames_written == 300
    assert recorder.backlog == 0  # drained
    assert np.array_equal(Recording.open(tmp_path / "c.zarr").read_frames(), frames)


def test_replay_is_paced_by_the_frame_interval(tmp_path: Path) -> None:
    import time

    orig = Recording.create(
        tmp_path / "o.zarr", frame_shape=(8, 8), pixel_size_nm=100, frame_interval_s=0.01
    )
    orig.append_frames(np.zeros((20, 8, 8), np.uint16))
    stamps: list[float] = []
    ReplaySource(tmp_path / "o.zarr", speed=2).run(
        lambda f, m: stamps.append(time.perf_counter()), threading.Event()
    )
    # 20 frames at 2x speed of a 10 ms interval: ~95 ms from first to last
    assert stamps[-1] - stamps[0] >= 0.09
    stop = threading.Event()
    stop.set()
    assert ReplaySource(tmp_path / "o.zarr").run(lambda f, m: None, stop) == 0
