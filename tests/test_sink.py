"""RecordingSink alone (no threads): buffered writes, localizations before reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dblink_live.io.recording import Recording
from dblink_live.live import LocalizedBlock, RecordingSink
from dblink_live.localizations import Localizations


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _recording(path: Path) -> Recording:
    rec = Recording.create(path, frame_shape=(8, 8), pixel_size_nm=100.0, frame_interval_s=0.01)
    for name in ("reconstruction", "confidence"):
        rec.create_image(name, (4, 4), "float32", bin_nm=200.0, window_frames=10, chunk_maps=8)
    return rec


def _block(first: int, n: int) -> LocalizedBlock:
    f32 = np.float32
    locs = Localizations(
        frame=np.arange(first, first + n, dtype=np.int64),
        x_nm=np.full(n, 50, f32),
        y_nm=np.full(n, 50, f32),
        photons=np.full(n, 1000, f32),
        background=np.zeros(n, f32),
        uncertainty_nm=np.full(n, 10, f32),
        score=np.ones(n, f32),
        pixel_size_nm=100.0,
    )
    return LocalizedBlock(first, n, locs, [], [0.0] * n)


def _n_images(rec: Recording, name: str) -> int:
    got = rec.read_image(name)
    return 0 if got is None else got[0].shape[0]


def _output(k: int, conf: bool = True) -> tuple[int, np.ndarray, np.ndarray | None]:
    img = np.full((4, 4), k, np.float32)
    return k, img, img / 10 if conf else None


def test_outputs_are_written_in_blocks_and_localizations_always_first(tmp_path: Path) -> None:
    clock = _Clock()
    rec = _recording(tmp_path / "r.zarr")
    sink = RecordingSink(rec, output_block=3, output_every_s=1.0, localizations_every_s=0.5,
                         clock=clock)  # fmt: skip
    sink.add_block(_block(0, 10))
    sink.add_output(_output(0))
    sink.add_output(_output(1))
    seen = Recording.open(rec.path)
    assert seen.n_localizations == 0 and _n_images(seen, "reconstruction") == 0
    sink.add_block(_block(10, 10))
    sink.add_output(_output(2))  # the third: a block, written with the localizations first
    seen = Recording.open(rec.path)
    assert seen.n_localizations == 20
    img, _ = seen.read_image("reconstruction")
    assert img.shape[0] == 3 and [float(m[0, 0]) for m in img] == [0, 1, 2]
    conf, _ = seen.read_image("confidence")
    assert np.allclose(conf[2], 0.2)
    assert sink.pending_outputs == 0


def test_writes_are_due_after_their_interval_too(tmp_path: Path) -> None:
    clock = _Clock()
    rec = _recording(tmp_path / "r.zarr")
    sink = RecordingSink(rec, output_block=8, output_every_s=1.0, localizations_every_s=0.5,
                         clock=clock)  # fmt: skip
    sink.add_block(_block(0, 5))
    assert Recording.open(rec.path).n_localizations == 0
    clock.t = 0.6
    sink.add_block(_block(5, 5))  # 0.6 s since the last write: the localizations go out
    assert Recording.open(rec.path).n_localizations == 10
    sink.add_output(_output(0))
    assert sink.pending_outputs == 1
    clock.t = 2.0
    sink.add_output(_output(1))  # over 1 s since the last output write
    assert sink.pending_outputs == 0
    assert _n_images(Recording.open(rec.path), "reconstruction") == 2


def test_a_placeholder_waits_for_the_next_write_and_no_confidence_is_not_written(
    tmp_path: Path,
) -> None:
    rec = _recording(tmp_path / "r.zarr")
    sink = RecordingSink(rec, output_block=1, clock=_Clock())
    sink.add_output(_output(0, conf=False), flush_when_due=False)  # due, but held
    assert sink.pending_outputs == 1
    sink.flush()
    seen = Recording.open(rec.path)
    assert _n_images(seen, "reconstruction") == 1
    assert _n_images(seen, "confidence") == 0
