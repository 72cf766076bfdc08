"""Streaming ConvBiLSTM: equals the offline computation with the same look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dblink_live.config import ReconModelConfig
from dblink_live.recon.model import ConvBiLSTM
from dblink_live.recon.streaming import StreamingReconstructor, reconstruct_with_lookahead


@pytest.fixture(scope="module")
def model() -> ConvBiLSTM:
    torch.manual_seed(3)
    return ConvBiLSTM(**ReconModelConfig().model_dump()).eval()


def _assert_offline(outs: list, model: ConvBiLSTM, maps: np.ndarray, delay: int) -> None:
    """Streamed ``outs`` are every map's output, in order, equal to the offline look-ahead."""
    assert [o[0] for o in outs] == list(range(len(maps)))
    rec, conf = reconstruct_with_lookahead(model, maps, delay)
    assert np.allclose(np.stack([o[1] for o in outs]), rec, atol=1e-5)
    assert np.allclose(np.stack([o[2] for o in outs]), conf, atol=1e-5)


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_streaming_equals_offline_with_the_same_lookahead(model: ConvBiLSTM, delay: int) -> None:
    maps = np.random.default_rng(delay).random((9, 20, 24)).astype(np.float32)
    stream = StreamingReconstructor(model, delay)
    outs = []
    for t, m in enumerate(maps):
        got = stream.push(m)
        if t < delay:
            assert got == []
        else:
            assert [o[0] for o in got] == [t - delay]
            outs += got
    outs += stream.flush()
    _assert_offline(outs, model, maps, delay)


@pytest.mark.parametrize("deferred", [[8], [6, 7, 8], [2, 3, 4, 5]])
def test_outputs_left_to_a_later_call_keep_their_lookahead(
    model: ConvBiLSTM, deferred: list[int]
) -> None:
    """``emit=False`` (the child process does it when more waits in its pipe) hands the due
    outputs to the next call or to ``flush``'s single backward run: the same numbers."""
    delay = 3
    maps = np.random.default_rng(11).random((9, 20, 24)).astype(np.float32)
    stream = StreamingReconstructor(model, delay)
    outs = []
    for t, m in enumerate(maps):
        got = stream.push(m, t, emit=t not in deferred)
        if t in deferred:
            assert got == []
        outs += got
    outs += stream.flush()
    _assert_offline(outs, model, maps, delay)


def test_after_skipped_maps_the_lookahead_is_kept_in_time(model: ConvBiLSTM) -> None:
    """Maps numbered with gaps (the live path skipped some): map i is output once map i + D
    (or later) has arrived, with the maps that did arrive as its look-ahead."""
    delay = 3
    maps = np.random.default_rng(5).random((12, 16, 16)).astype(np.float32)
    numbers = [0, 1, 2, 5, 6, 9, 10, 11]  # 3-4 and 7-8 were skipped
    stream = StreamingReconstructor(model, delay)
    due = {}
    for i in numbers:
        for o in stream.push(maps[i], i):
            due[o[0]] = i
            outs = o
    assert due == {0: 5, 1: 5, 2: 5, 5: 9, 6: 9}  # never later than D maps of camera time
    assert outs[0] == 6
    rest = stream.flush()
    assert [o[0] for o in rest] == [9, 10, 11]
    # map 6's output used maps 6 and 9 (what arrived within its look-ahead): the offline
    # look-ahead over those maps, with the forward state of the maps pushed before it
    seq = maps[numbers]
    ref, _ = reconstruct_with_lookahead(model, seq, 1)
    assert np.allclose(outs[1], ref[numbers.index(6)], atol=1e-5)
    with pytest.raises(ValueError, match="arrived after"):
        stream.push(maps[0], 3)


def test_a_skipped_map_advances_time_and_releases_due_outputs(model: ConvBiLSTM) -> None:
    from dblink_live.recon.streaming import ProcessStreamingReconstructor

    maps = np.random.default_rng(6).random((4, 16, 16)).astype(np.float32)
    local = StreamingReconstructor(model, 2)
    child = ProcessStreamingReconstructor(model, 2, max_pending=2, warm_shape=(16, 16))
    got_local, got_child = [], []
    for i in (0, 1):
        got_local += local.push(maps[i], i)
        got_child += child.push(maps[i], i)
    got_local += local.advance(2)  # map 2 skipped: map 0 is due (2 maps of time later)
    got_child += child.advance(2)
    got_local += local.advance(3)
    got_child += child.advance(3)
    got_child += child.flush()
    child.close()  # the child ended by itself after the flush
    assert child._proc.returncode == 0
    assert [o[0] for o in got_local] == [0, 1]
    assert [o[0] for o in got_child] == [0, 1]
    for a, b in zip(got_local, got_child, strict=True):
        assert np.allclose(a[1], b[1], atol=1e-5)


def test_the_child_process_gives_the_offline_outputs_when_maps_come_in_a_burst(
    model: ConvBiLSTM,
) -> None:
    """Maps sent faster than the child reconstructs (its pipe holds more than one message, so
    it leaves due outputs to the next message, and to the flush's single backward run): the
    outputs still equal the offline look-ahead computation."""
    from dblink_live.recon.streaming import ProcessStreamingReconstructor

    delay = 3
    maps = np.random.default_rng(8).random((10, 16, 16)).astype(np.float32)
    child = ProcessStreamingReconstructor(model, delay, max_pending=10, warm_shape=(16, 16))
    outs = []
    for i, m in enumerate(maps):
        outs += child.push(m, i)
    outs += child.flush()
    child.close()
    _assert_offline(outs, model, maps, delay)


def test_full_lookahead_equals_the_bidirectional_pass(model: ConvBiLSTM) -> None:
    maps = np.random.default_rng(9).random((7, 16, 16)).astype(np.float32)
    rec, _ = reconstruct_with_lookahead(model, maps, delay_maps=10)
    with torch.no_grad():
        logit, _ = model(torch.from_numpy(maps)[None, :, None])
    assert np.allclose(rec, torch.sigmoid(logit[0]).numpy(), atol=1e-5)


def test_the_process_streamer_gives_the_same_outputs(model: ConvBiLSTM) -> None:
    from dblink_live.recon.streaming import ProcessStreamingReconstructor

    maps = np.random.default_rng(4).random((8, 20, 24)).astype(np.float32)
    stream = ProcessStreamingReconstructor(model, 2, max_pending=2)
    outs = []
    for m in maps:
        outs += stream.push(m)
    outs += stream.flush()
    assert [o[0] for o in outs] == list(range(8))
    rec, conf = reconstruct_with_lookahead(model, maps, 2)
    assert np.allclose(np.stack([o[1] for o in outs]), rec, atol=1e-5)
    assert np.allclose(np.stack([o[2] for o in outs]), conf, atol=1e-5)
