"""StreamingLocalizer alone (no threads): context frames, the held frame, lost ranges."""

from __future__ import annotations

import numpy as np

from dblink_live.config import RunConfig
from dblink_live.live import StreamingLocalizer
from dblink_live.localize import CameraCalibration, make_localizer
from dblink_live.sim.movie import MovieSimulator


class _Recorded:
    """The real localizer (CNN or classic), with each call's frame numbers and context kept."""

    def __init__(self, kind: str):
        self.inner = make_localizer(RunConfig().updated(localizer={"kind": kind}).localizer, "cpu")
        self.name = self.inner.name
        self.takes_context = self.inner.takes_context
        self.calls: list[tuple[int, int, int | None, int | None]] = []

    def localize(self, frames, calibration, first_frame=0, context_before=None, context_after=None):  # type: ignore[no-untyped-def]
        tag = lambda c: None if c is None else int(c[0, 0, 0])  # noqa: E731  frame number mark
        self.calls.append((first_frame, len(frames), tag(context_before), tag(context_after)))
        return self.inner.localize(frames, calibration, first_frame, context_before, context_after)


def _movie(n: int = 40) -> tuple[np.ndarray, CameraCalibration]:
    cfg = RunConfig().updated(
        simulation={"n_frames": n, "camera": {"width_px": 24, "height_px": 24}}
    )
    sim = MovieSimulator(cfg, n_frames=n, seed=1)
    frames, _ = sim.frames(0, n)
    meta = sim.metadata()
    frames = frames.copy()
    frames[:, 0, 0] = np.arange(n)  # mark each frame with its number (one corner pixel)
    return frames, CameraCalibration.from_camera(meta["camera"], meta["pixel_size_nm"])


def test_a_context_localizer_gets_each_batch_s_neighbours_and_holds_the_last_frame() -> None:
    frames, cal = _movie()
    loc = _Recorded("cnn")
    seen: list[int] = []
    stream = StreamingLocalizer(loc, lambda: cal, on_frames=lambda f: seen.append(len(f)))
    blocks = []
    for a in range(0, 30, 10):
        blocks += stream.feed(a, frames[a : a + 10], [float(i) for i in range(a, a + 10)])
    assert stream.holding == 29
    blocks += stream.finish(30, (24, 24), frames.dtype)
    assert [(b.first, b.n) for b in blocks] == [(0, 9), (9, 10), (19, 10), (29, 1)]
    # (first, n, frame before, frame after): every frame sees its real neighbours
    assert loc.calls == [(0, 9, None, 9), (9, 10, 8, 19), (19, 10, 18, 29), (29, 1, 28, None)]
    assert seen == [9, 10, 10, 1]
    assert blocks[1].arrival_s == [float(i) for i in range(9, 19)]
    # the same localizations as one call over the whole movie, where the context is identical
    whole = loc.inner.localize(frames[:30], cal, 0)
    got = np.concatenate([b.locs.frame for b in blocks])
    assert len(got) == len(whole.frame) and np.array_equal(np.sort(got), np.sort(whole.frame))


def test_lost_frames_release_the_held_frame_without_context_and_travel_with_the_next_block() -> (
    None
):
    frames, cal = _movie()
    loc = _Recorded("cnn")
    stream = StreamingLocalizer(loc, lambda: cal)
    out = stream.feed(0, frames[0:10], [0.0] * 10)
    out += stream.lose([(10, 20)])  # frame 9's successor is gone
    assert [(b.first, b.n, b.lost) for b in out] == [(0, 9, []), (9, 1, [])]
    assert loc.calls[-1] == (9, 1, 8, None)
    nxt = stream.feed(20, frames[20:30], [0.0] * 10)
    assert [(b.first, b.n, b.lost) for b in nxt] == [(20, 9, [(10, 20)])]
    assert loc.calls[-1] == (20, 9, None, 29)  # no frame before: 19 was lost
    end = stream.lose([(30, 40)]) + stream.finish(40, (24, 24), frames.dtype)
    assert [(b.first, b.n, b.lost) for b in end] == [(29, 1, []), (40, 0, [(30, 40)])]


def test_a_per_frame_localizer_is_fed_straight_through() -> None:
    frames, cal = _movie()
    loc = _Recorded("classic")
    stream = StreamingLocalizer(loc, lambda: cal)
    out = stream.feed(0, frames[0:10], [0.0] * 10) + stream.feed(10, frames[10:20], [0.0] * 10)
    assert stream.holding is None
    assert [(b.first, b.n) for b in out] == [(0, 10), (10, 10)]
    assert stream.finish(20, (24, 24), frames.dtype) == []


def test_an_empty_batch_after_a_loss_is_nothing_to_localize() -> None:
    """The ring reports a batch overwritten during its copy as lost, with no frames left:
    nothing is localized, and the loss goes with the next block (a CI run found the held-frame
    logic indexing the empty batch)."""
    frames, cal = _movie()
    for kind in ("cnn", "classic"):
        loc = _Recorded(kind)
        stream = StreamingLocalizer(loc, lambda: cal)
        stream.feed(0, frames[0:10], [0.0] * 10)
        stream.lose([(10, 16)])
        assert stream.feed(16, frames[16:16], []) == []
        (block,) = stream.feed(16, frames[16:26], [0.0] * 10)[-1:]
        assert block.lost == [(10, 16)] and block.first == 16
