"""MapAssembler alone (no threads): blocks of localized frames and lost ranges -> W-frame maps."""

from __future__ import annotations

import numpy as np
import pytest

from dblink_live.live import LocalizedBlock, MapAssembler
from dblink_live.localizations import Localizations

W, BIN = 10, 20.0


def _locs(frames: list[int], x: list[float], y: list[float]) -> Localizations:
    n = len(frames)
    f32 = np.float32
    return Localizations(
        frame=np.asarray(frames, np.int64),
        x_nm=np.asarray(x, f32),
        y_nm=np.asarray(y, f32),
        photons=np.full(n, 1000, f32),
        background=np.zeros(n, f32),
        uncertainty_nm=np.full(n, 10, f32),
        score=np.ones(n, f32),
        pixel_size_nm=100.0,
    )


def _block(first: int, n: int, locs: Localizations | None = None, lost=(), t0: float = 0.0):  # type: ignore[no-untyped-def]
    locs = locs if locs is not None else _locs([], [], [])
    return LocalizedBlock(first, n, locs, list(lost), [t0 + 0.01 * i for i in range(n)])


def test_windows_are_handed_over_complete_in_order_with_their_counts_and_arrival() -> None:
    asm = MapAssembler(W, (8, 8), BIN)
    # frames 0..14: one localization in frame 3 (map 0) and two in frame 12 (map 1)
    first = asm.add(_block(0, 15, _locs([3, 12, 12], [30, 50, 50], [10, 70, 70]), t0=5.0))
    assert [m.index for m in first] == [0]  # map 1 still lacks frames 15..19
    m0 = first[0]
    assert m0.valid_frames == W and m0.counts.dtype == np.float32 and m0.counts.sum() == 1
    assert m0.counts[0, 1] == 1  # y 10 nm -> bin 0, x 30 nm -> bin 1
    assert m0.arrival_s == pytest.approx(5.0 + 0.01 * 9)  # frame 9, the window's last
    rest = asm.add(_block(15, 15, t0=6.0))
    assert [m.index for m in rest] == [1, 2]
    assert rest[0].counts[3, 2] == 2 and rest[0].counts.sum() == 2
    assert rest[0].arrival_s == pytest.approx(6.0 + 0.01 * 4)  # frame 19
    assert asm.next_map == 3


def test_lost_frames_are_counted_per_window_and_a_window_lost_whole_has_none_valid() -> None:
    asm = MapAssembler(W, (4, 4), BIN)
    # frames 0..4 localized, 5..24 lost (half of map 0, all of map 1, half of map 2)
    assert asm.add(_block(0, 5)) == []
    out = asm.add(_block(25, 5, lost=[(5, 25)]))
    assert [(m.index, m.valid_frames) for m in out] == [(0, 5), (1, 0), (2, 5)]
    assert out[1].arrival_s is None  # its last frame never arrived
    assert out[1].counts.shape == (4, 4) and not out[1].counts.any()


def test_a_block_that_only_reports_a_loss_completes_windows() -> None:
    asm = MapAssembler(W, (4, 4), BIN)
    asm.add(_block(0, 10))
    out = asm.add(_block(30, 0, lost=[(10, 30)]))  # the end of the run: skipped, nothing after
    assert [(m.index, m.valid_frames) for m in out] == [(1, 0), (2, 0)]


def test_a_region_counts_only_what_falls_on_its_grid() -> None:
    # a 4x4-bin grid (80 nm) whose corner is at (100, 200) nm on the camera
    asm = MapAssembler(W, (4, 4), BIN, origin_nm=(100.0, 200.0))
    locs = _locs([0, 1, 2], [110.0, 50.0, 170.0], [210.0, 210.0, 275.0])
    (m,) = asm.add(_block(0, 10, locs))
    assert m.counts.sum() == 2  # x 50 nm is left of the region
    assert m.counts[0, 0] == 1 and m.counts[3, 3] == 1


def test_a_window_split_across_blocks_sums_its_parts() -> None:
    asm = MapAssembler(W, (4, 4), BIN)
    asm.add(_block(0, 4, _locs([1], [10], [10])))
    (m,) = asm.add(_block(4, 6, _locs([7], [10], [10])))
    assert m.counts[0, 0] == 2 and m.valid_frames == W


def test_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_frames"):
        MapAssembler(0, (4, 4), BIN)
