"""Recording format: round trip, validation of foreign/corrupt stores, crash tolerance."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dblink_live.config import RunConfig
from dblink_live.errors import RecordingError
from dblink_live.io import FORMAT_NAME, Recording
from dblink_live.localizations import EmitterTable, Localizations


def _frames(start: int, n: int, shape: tuple[int, int] = (12, 10)) -> np.ndarray:
    """Frames whose every pixel holds the frame index, so order and identity are checkable."""
    return np.broadcast_to(
        np.arange(start, start + n, dtype=np.uint16)[:, None, None], (n, *shape)
    ).copy()


def _new(path: Path, chunk_frames: int = 8) -> Recording:
    return Recording.create(
        path,
        frame_shape=(12, 10),
        pixel_size_nm=107.0,
        frame_interval_s=0.02,
        camera={"model": "emccd", "em_gain": 300.0},
        config=RunConfig(),
        chunk_frames=chunk_frames,
    )


def _locs(n: int, rng: np.random.Generator) -> Localizations:
    return Localizations(
        frame=np.sort(rng.integers(0, 30, n)),
        x_nm=rng.uniform(0, 1000, n),
        y_nm=rng.uniform(0, 1200, n),
        photons=rng.uniform(100, 5000, n),
        background=rng.uniform(0, 100, n),
        uncertainty_nm=rng.uniform(5, 30, n),
        score=rng.uniform(0, 1, n),
        pixel_size_nm=107.0,
    )


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rec = _new(tmp_path / "run.zarr")
    rec.append_frames(_frames(0, 5))
    rec.append_frames(_frames(5, 20))
    rec.append_frames(_frames(25, 1)[0])  # a single (Y, X) frame
    a, b = _locs(100, rng), _locs(50, rng)
    rec.append_localizations(a)
    rec.append_localizations(b)
    em = EmitterTable(
        frame=[0, 1, 1],
        x_nm=[1, 2, 3],
        y_nm=[4, 5, 6],
        photons=[7, 8, 9],
        emitter_id=[0, 0, 1],
        on_fraction=[1, 0.5, 1],
    )
    rec.append_emitters(em)
    rec.create_image(
        "reconstruction",
        (30, 25),
        "float32",
        bin_nm=40,
        window_frames=10,
        model={"name": "test", "sha256": "x"},
    )
    maps = rng.random((3, 30, 25)).astype(np.float32)
    rec.append_image("reconstruction", maps[:2])
    rec.append_image("reconstruction", maps[2])

    back = Recording.open(tmp_path / "run.zarr")
    assert back.n_frames == 26
    assert np.array_equal(back.read_frames(), _frames(0, 26))
    assert np.array_equal(back.read_frames(3, 7), _frames(3, 4))
    assert back.pixel_size_nm == 107.0 and back.frame_interval_s == 0.02
    assert back.camera == {"model": "emccd", "em_gain": 300.0}
    assert back.config == RunConfig().to_dict()
    assert back.meta["format"] == FORMAT_NAME
    locs = back.read_localizations()
    both = Localizations.concatenate([a, b])
    # rows of frames the recording does not hold (26-29: a localizer ahead of the recorder
    # when a run died) are left out
    both = both.select(np.flatnonzero(both.frame < 26))
    assert 0 < len(both) < 150
    for col in Localizations.COLUMNS:
        assert np.array_equal(getattr(locs, col), getattr(both, col)), col
    em_back = back.read_emitters()
    assert em_back is not None and np.array_equal(em_back.on_fraction, em.on_fraction)
    img, attrs = back.read_image("reconstruction")
    assert np.array_equal(img, maps)
    assert attrs["bin_nm"] == 40 and attrs["window_frames"] == 10 and attrs["stride_frames"] == 10
    assert attrs["model"] == {"name": "test", "sha256": "x"}
    assert back.read_image("confidence") is None
    assert back.images() == ["reconstruction"]


def test_ome_ngff_scales(tmp_path: Path) -> None:
    rec = _new(tmp_path / "run.zarr")
    rec.create_image(
        "confidence",
        (4, 4),
        "float32",
        bin_nm=20,
        window_frames=10,
        stride_frames=5,
        first_frame=10,
        origin_nm=(1000.0, 2000.0),
    )
    g = zarr.open_group(tmp_path / "run.zarr", mode="r")
    raw_ms = g["raw"].attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in raw_ms["axes"]] == ["t", "y", "x"]
    assert raw_ms["axes"][1]["unit"] == "nanometer"
    raw_tf = raw_ms["datasets"][0]["coordinateTransformations"]
    assert raw_ms["datasets"][0]["path"] == "0"
    assert raw_tf[0]["scale"] == [0.02, 107.0, 107.0]
    assert raw_tf[1]["translation"] == [0.0, 53.5, 53.5]  # pixel centres
    assert g["raw/0"].metadata.dimension_names == ("t", "y", "x")
    conf = g["confidence"].attrs["ome"]["multiscales"][0]["datasets"][0][
        "coordinateTransformations"
    ]
    assert conf[0]["scale"] == pytest.approx([0.1, 20.0, 20.0])
    # map 0 averages frames 10..19: its time is their mean; bin centres from the origin
    assert conf[1]["translation"] == pytest.approx([14.5 * 0.02, 2010.0, 1010.0])
    assert g["confidence/0"].metadata.dimension_names == ("t", "y", "x")
    assert g["OME"].attrs["ome"]["series"] == ["raw", "confidence"]


def test_bad_frames_are_rejected_clearly(tmp_path: Path) -> None:
    rec = _new(tmp_path / "run.zarr")
    with pytest.raises(RecordingError, match="uint16"):
        rec.append_frames(np.zeros((2, 12, 10), np.float32))
    with pytest.raises(RecordingError, match=r"expected \(n, 12, 10\)"):
        rec.append_frames(np.zeros((2, 10, 12), np.uint16))
    assert rec.n_frames == 0
    ro = Recording.open(tmp_path / "run.zarr")
    with pytest.raises(RecordingError, match="read-only"):
        ro.append_frames(_frames(0, 1))


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    _new(tmp_path / "run.zarr")
    with pytest.raises(RecordingError, match="already exists"):
        _new(tmp_path / "run.zarr")


def test_reopen_and_append(tmp_path: Path) -> None:
    _new(tmp_path / "run.zarr").append_frames(_frames(0, 10))
    rec = Recording.open(tmp_path / "run.zarr", mode="r+")
    rec.append_frames(_frames(10, 7))
    assert np.array_equal(Recording.open(tmp_path / "run.zarr").read_frames(), _frames(0, 17))


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: None, "no recording at"),
        (lambda p: p.write_text("hello"), "is a file"),
        (lambda p: p.mkdir(), "not a zarr store"),
        (lambda p: zarr.open_group(p, mode="w", zarr_format=2), "zarr v2 store"),
        (lambda p: zarr.open_group(p, mode="w", zarr_format=3), "not a dblink_live recording"),
    ],
    ids=["missing", "file", "empty-dir", "zarr-v2", "foreign-group"],
)
def test_foreign_stores_give_clear_errors(tmp_path: Path, make, fragment: str) -> None:
    p = tmp_path / "x.zarr"
    make(p)
    with pytest.raises(RecordingError, match=fragment):
        Recording.open(p)


def test_corrupt_metadata_and_newer_version(tmp_path: Path) -> None:
    p = tmp_path / "run.zarr"
    _new(p).append_frames(_frames(0, 3))
    meta = json.loads((p / "zarr.json").read_text())
    meta["attributes"]["dblink_live"]["format_version"] = 99
    (p / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(RecordingError, match=r"format_version 99.*upgrade"):
        Recording.open(p)
    (p / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    with pytest.raises(RecordingError, match=r"zarr\.json is corrupt"):
        Recording.open(p)
    shutil.rmtree(p / "raw")
    (p / "zarr.json").write_text(
        json.dumps(
            {
                **meta,
                "attributes": {
                    "dblink_live": {**meta["attributes"]["dblink_live"], "format_version": 1}
                },
            }
        )
    )
    with pytest.raises(RecordingError, match="no 'raw' array"):
        Recording.open(p)


def test_missing_last_chunk_opens_up_to_last_complete_chunk(tmp_path: Path) -> None:
    p = tmp_path / "run.zarr"
    _new(p, chunk_frames=8).append_frames(_frames(0, 30))  # chunks 0..3, the last one partial
    (p / "raw" / "0" / "c" / "3" / "0" / "0").unlink()
    rec = Recording.open(p)
    assert rec.n_frames == 24
    assert np.array_equal(rec.read_frames(), _frames(0, 24))


def test_torn_chunk_is_dropped(tmp_path: Path) -> None:
    p = tmp_path / "run.zarr"
    _new(p, chunk_frames=8).append_frames(_frames(0, 32))
    chunk = p / "raw" / "0" / "c" / "3" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:5])  # a write cut short
    rec = Recording.open(p)
    assert rec.n_frames == 24
    assert np.array_equal(rec.read_frames(), _frames(0, 24))
    # appending after the cut continues from the last complete frame
    rec = Recording.open(p, mode="r+")
    rec.append_frames(_frames(24, 8))
    assert np.array_equal(Recording.open(p).read_frames(), _frames(0, 32))


def test_dark_frames_are_kept(tmp_path: Path) -> None:
    """All-zero frames equal zarr's fill value; they must still be written and read back."""
    p = tmp_path / "run.zarr"
    rec = _new(p, chunk_frames=2)
    rec.append_frames(np.zeros((5, 12, 10), np.uint16))
    back = Recording.open(p)
    assert back.n_frames == 5
    assert (p / "raw" / "0" / "c" / "2" / "0" / "0").exists()


def test_counter_behind_data_hides_unconfirmed_frames(tmp_path: Path) -> None:
    """A crash after the chunk write but before the counter update: the counter rules."""
    p = tmp_path / "run.zarr"
    rec = _new(p, chunk_frames=8)
    rec.append_frames(_frames(0, 16))
    rec.update_meta(frames_written=9)
    assert Recording.open(p).n_frames == 9


_WRITER = """
import sys, numpy as np
from dblink_live.io import Recording
rec = Recording.create(sys.argv[1], frame_shape=(64, 64), pixel_size_nm=100.0,
                       frame_interval_s=0.01, chunk_frames=4)
i = 0
while True:
    block = np.full((4, 64, 64), i % 65536, np.uint16)
    rec.append_frames(block + np.arange(4, dtype=np.uint16)[:, None, None])
    i += 4
"""


def test_killed_writer_leaves_a_readable_recording(tmp_path: Path) -> None:
    p = tmp_path / "run.zarr"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(p)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if Recording.open(p).n_frames >= 80:
                    break
            except RecordingError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("writer made no progress")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    rec = Recording.open(p)
    assert rec.n_frames >= 80
    frames = rec.read_frames()
    expected = np.arange(rec.n_frames, dtype=np.uint16)
    assert np.array_equal(frames[:, 0, 0], expected)
    assert np.array_equal(frames.min(axis=(1, 2)), expected)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blocks=st.lists(st.integers(1, 11), min_size=1, max_size=6), chunk=st.integers(1, 9))
def test_any_append_pattern_reads_back_in_order(tmp_path_factory, blocks, chunk) -> None:
    p = tmp_path_factory.mktemp("h") / "run.zarr"
    rec = _new(p, chunk_frames=chunk)
    start = 0
    for n in blocks:
        rec.append_frames(_frames(start, n))
        start += n
    back = Recording.open(p)
    assert back.n_frames == start
    assert np.array_equal(back.read_frames(), _frames(0, start))
