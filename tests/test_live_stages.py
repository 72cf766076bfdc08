"""The live engine's thread-free parts alone: latency budget, runner state machine, the
reconstruction stage with the shipped live model and a real recording on disk."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.live import LocalizedBlock
from dblink_live.live.budget import LatencyBudget
from dblink_live.live.recon_stage import ReconStage
from dblink_live.live.runner import Runner
from dblink_live.live.stats import LiveCounters
from dblink_live.localizations import Localizations
from dblink_live.pipeline_types import PipelineState
from dblink_live.recon.inference import load_recon_model
from dblink_live.recon.streaming import StreamingReconstructor

W, DELAY, DT = 10, 2, 0.01


# ---------------------------------------------------------------------------- budget
def test_an_unpaced_source_has_no_budget_and_never_skips() -> None:
    b = LatencyBudget(W, DELAY, None, None)
    assert math.isinf(b.seconds) and b.summary_s() is None
    assert not b.behind(10_000, 10_000, 1_000_000, queue_full=True)


def test_the_budget_is_the_lookahead_plus_half_a_second_and_waits_half_the_slack() -> None:
    b = LatencyBudget(W, DELAY, DT, None)
    assert b.seconds == pytest.approx(DELAY * W * DT + 0.5)
    assert b.max_wait_frames == pytest.approx(0.5 * 0.5 / DT)  # 25 frames
    assert not b.behind(24, 100, 1000, queue_full=False)
    assert b.behind(26, 100, 1000, queue_full=False)
    # a full queue to the reconstruction: behind as soon as more than a map waits
    assert not b.behind(W, 100, 1000, queue_full=True)
    assert b.behind(W + 1, 100, 1000, queue_full=True)
    # starting up (fewer than 2 W frames localized), or an allowance longer than the ring: no
    assert not b.behind(500, 2 * W - 1, 1000, queue_full=True)
    assert not b.behind(500, 100, 24, queue_full=True)


def test_the_wait_allowance_shrinks_fast_when_late_and_recovers_slowly_in_time() -> None:
    b = LatencyBudget(W, DELAY, DT, 0.7)
    start = b.wait_frames
    b.adapt(5.0)  # one late output, even the first: a third of the allowance off
    assert b.wait_frames == pytest.approx(start - start / 3)
    for _ in range(3):
        b.adapt(5.0)
    assert b.wait_frames == 0.0
    for _ in range(50):  # in time: small steps back ...
        b.adapt(0.1)
    assert 0.0 < b.wait_frames < 0.5 * start
    for _ in range(2000):  # ... up to the most allowed
        b.adapt(0.1)
    assert b.wait_frames == pytest.approx(b.max_wait_frames)


def test_the_allowance_settles_where_about_one_output_in_a_hundred_is_late() -> None:
    """Against a plant whose latency grows with the frames allowed to wait, plus noise, the
    steering holds the late fraction near LATE_FRACTION (the budget holds at p99)."""
    from dblink_live.live.budget import LATE_FRACTION

    b = LatencyBudget(W, DELAY, DT, None)  # 0.7 s for D = 2, up to 25 frames waiting
    rng = np.random.default_rng(0)
    late = []
    for _ in range(20_000):
        latency = 0.45 + 0.012 * b.wait_frames + rng.normal(0, 0.05)  # p99 in time: 11 frames
        late.append(latency > b.seconds)
        b.adapt(latency)
    frac = float(np.mean(late[2000:]))
    assert 0.3 * LATE_FRACTION < frac < 2.5 * LATE_FRACTION
    # a fixed allowance at the median's set point would be late half the time
    assert 0.0 < b.wait_frames < b.max_wait_frames


# ---------------------------------------------------------------------------- runner
def test_the_runner_goes_idle_running_finished_and_a_finished_run_stays_finished() -> None:
    r = Runner()
    assert r.state is PipelineState.IDLE
    done = threading.Event()
    r.start([(done.set, "worker")])
    assert r.state is PipelineState.RUNNING
    r.join(["worker"])
    assert done.is_set()
    r.end()
    assert r.state is PipelineState.FINISHED and r.finished.is_set() and r.error is None
    r.set_state(PipelineState.RUNNING)
    assert r.state is PipelineState.FINISHED


def test_the_first_failure_is_kept_aborts_the_run_and_the_run_ends_failed() -> None:
    r = Runner()

    def first() -> None:
        raise DblinkError("the disk is full")

    def second() -> None:
        r.abort_event.wait(5)  # fails after the first, as its consequence
        raise OSError("another write failed")

    r.start([(first, "a"), (second, "b")])
    r.join(["a", "b"])
    assert r.abort_event.is_set() and r.stop_event.is_set()
    assert r.error == "the disk is full"
    r.end()
    assert r.state is PipelineState.FAILED


def test_a_setup_failure_leaves_a_failed_run_that_wait_does_not_block_on() -> None:
    r = Runner()
    r.failed_to_start(DblinkError("no camera"))
    assert r.state is PipelineState.FAILED and r.error == "no camera"
    assert r.finished.wait(0)


# ---------------------------------------------------------------------------- recon stage
GRID = (16, 16)
BIN = 40.0


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _block(first: int, n: int, rng: np.random.Generator, per_frame: int, t0: float,
           lost: list[tuple[int, int]] | None = None) -> LocalizedBlock:  # fmt: skip
    k = n * per_frame
    f32 = np.float32
    locs = Localizations(
        frame=np.repeat(np.arange(first, first + n), per_frame).astype(np.int64),
        x_nm=rng.uniform(0, GRID[1] * BIN, k).astype(f32),
        y_nm=rng.uniform(200, 260, k).astype(f32),  # a horizontal line of localizations
        photons=np.full(k, 1000, f32),
        background=np.zeros(k, f32),
        uncertainty_nm=np.full(k, 10, f32),
        score=np.ones(k, f32),
        pixel_size_nm=100.0,
    )
    return LocalizedBlock(first, n, locs, lost or [], [t0 + DT * i for i in range(n)])


@pytest.fixture(scope="module")
def live_model():  # type: ignore[no-untyped-def]
    return load_recon_model("recon_filaments_live", "cpu")


def _stage(tmp_path: Path, model, clock: _Clock, outputs: list) -> tuple[ReconStage, Recording]:  # type: ignore[no-untyped-def]
    rec = Recording.create(
        tmp_path / "r.zarr", frame_shape=(7, 7), pixel_size_nm=100.0, frame_interval_s=DT
    )
    for name in ("reconstruction", "confidence"):
        rec.create_image(name, GRID, "float32", bin_nm=BIN, window_frames=W, chunk_maps=8)
    counters = LiveCounters()
    stage = ReconStage(
        window=W,
        grid_yx=GRID,
        bin_nm=BIN,
        origin_nm=(0.0, 0.0),
        area_um2=GRID[0] * GRID[1] * (BIN / 1e3) ** 2,
        recording=rec,
        streamer=StreamingReconstructor(model.model, DELAY),
        model=model,
        delay_maps=DELAY,
        counters=counters,
        budget=LatencyBudget(W, DELAY, DT, None),
        on_map=lambda counts: None,
        on_output=lambda k, r, c: outputs.append((k, r, c)),
        clock=clock,
    )
    return stage, rec


def test_every_map_gets_an_image_and_a_map_lost_whole_is_blank_with_confidence_zero(
    tmp_path: Path, live_model
) -> None:  # type: ignore[no-untyped-def]
    clock, outputs = _Clock(), []
    stage, rec = _stage(tmp_path, live_model, clock, outputs)
    rng = np.random.default_rng(0)
    # maps 0, 1 localized; map 2 lost whole (skipped to keep the budget); maps 3..7 localized
    stage.add(_block(0, 2 * W, rng, 3, t0=0.0))
    stage.add(_block(3 * W, 5 * W, rng, 3, t0=0.3, lost=[(2 * W, 3 * W)]))
    clock.t = 0.3 + 5 * W * DT + 0.25  # 0.25 s after the last frame arrived
    stage.finish(complete=True)
    assert [k for k, _, _ in outputs] == [0, 1, 3, 4, 5, 6, 7]  # no output for map 2
    img, _ = Recording.open(rec.path).read_image("reconstruction")
    conf, _ = Recording.open(rec.path).read_image("confidence")
    assert img.shape == (8, *GRID) and conf.shape == (8, *GRID)
    assert not img[2].any() and not conf[2].any()  # the placeholder
    assert img[4].max() > 0.5 and conf[4].max() > 0  # the line is reconstructed
    assert stage.counters.outputs == 7 and stage.counters.maps_in == 8
    lat = stage.counters.latencies()
    assert len(lat) == 7 and lat[-1] == pytest.approx(0.25 + DT)  # from map 7's last frame


def test_a_map_without_localizations_has_confidence_zero_whatever_the_model_draws(
    tmp_path: Path, live_model
) -> None:  # type: ignore[no-untyped-def]
    clock, outputs = _Clock(), []
    stage, _ = _stage(tmp_path, live_model, clock, outputs)
    rng = np.random.default_rng(1)
    stage.add(_block(0, 3 * W, rng, 3, t0=0.0))
    stage.add(_block(3 * W, W, rng, 0, t0=0.3))  # map 3: localized, but nothing found
    stage.add(_block(4 * W, 3 * W, rng, 3, t0=0.4))
    stage.finish(complete=True)
    by_map = {k: c for k, _, c in outputs}
    assert set(by_map) == set(range(7))
    assert not by_map[3].any()
    assert all(by_map[k].max() > 0 for k in (0, 1, 5, 6))


def test_an_aborted_stage_writes_what_it_has_without_flushing_the_look_ahead(
    tmp_path: Path, live_model
) -> None:  # type: ignore[no-untyped-def]
    clock, outputs = _Clock(), []
    stage, rec = _stage(tmp_path, live_model, clock, outputs)
    stage.add(_block(0, 6 * W, np.random.default_rng(2), 3, t0=time.monotonic()))
    stage.finish(complete=False)
    n = len(outputs)
    assert n == 6 - DELAY  # the last D maps wait for their future, which never comes
    img, _ = Recording.open(rec.path).read_image("reconstruction")
    assert img.shape[0] == n
