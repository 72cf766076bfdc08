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


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_streaming_equals_offline_with_the_same_lookahead(model: ConvBiLSTM, delay: int) -> None:
    maps = np.random.default_rng(delay).random((9, 20, 24)).astype(np.float32)
    stream = StreamingReconstructor(model, delay)
    outs = []
    for t, m in enumerate(maps):
        got = stream.push(m)
        if t < delay:
            assert got is None
        else:
            assert got is not None and got[0] == t - delay
            outs.append(got)
    outs += stream.flush()
    assert [o[0] for o in outs] == list(range(9))
    rec, conf = reconstruct_with_lookahead(model, maps, delay)
    assert np.allclose(np.stack([o[1] for o in outs]), rec, atol=1e-5)
    assert np.allclose(np.stack([o[2] for o in outs]), conf, atol=1e-5)


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
