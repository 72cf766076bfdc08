"""Evidence-tempered confidence: structure the localizations do not support loses confidence."""

from __future__ import annotations

import numpy as np

from dblink_live.localizations import Localizations
from dblink_live.recon.evidence import evidence, temper_confidence

BIN = 40.0
SHAPE = (64, 64)  # 2.56 um


def _locs(n_frames: int, line_per_frame: float, background_per_frame: float, seed: int = 0):
    """A vertical line at x = 800 nm (supported) plus uniform background localizations."""
    rng = np.random.default_rng(seed)
    frames, xs, ys = [], [], []
    for f in range(n_frames):
        k = rng.poisson(line_per_frame)
        frames += [f] * k
        xs += list(800 + rng.normal(0, 15, k))
        ys += list(rng.uniform(0, 2560, k))
        b = rng.poisson(background_per_frame)
        frames += [f] * b
        xs += list(rng.uniform(0, 2560, b))
        ys += list(rng.uniform(0, 2560, b))
    n = len(frames)
    one = np.ones(n)
    return Localizations(
        np.array(frames), np.array(xs), np.array(ys), one, one, one, one, n_frames=n_frames
    )


def _recon(n: int) -> np.ndarray:
    """Two drawn lines: the true one (column 20) and one with no support (column 45)."""
    r = np.zeros((n, *SHAPE), np.float32)
    r[:, :, 20] = 1.0
    r[:, :, 45] = 1.0
    return r


def test_unsupported_structure_loses_confidence_supported_keeps_it() -> None:
    locs = _locs(100, line_per_frame=3.0, background_per_frame=2.0)
    recon = _recon(10)
    e = evidence(locs, recon, BIN, first_output=0, stride=10, window=10, n_frames=100)
    assert e.shape == recon.shape
    assert e[:, 8:56, 20].mean() > 0.95  # the line's neighbourhood holds far more than bg
    assert e[:, 8:56, 45].mean() < 0.6  # background alone explains the drawn fake line
    conf = temper_confidence(np.full(recon.shape, 0.99, np.float32), recon, e)
    assert conf[:, 8:56, 20].mean() > 0.9 and conf[:, 8:56, 45].mean() < 0.6
    # background pixels keep the learned confidence
    assert np.all(conf[:, :, 30] == np.float32(0.99))


def test_no_localizations_at_all_means_no_evidence() -> None:
    locs = _locs(100, line_per_frame=3.0, background_per_frame=0.5)
    empty = locs.select(locs.frame < 50)  # frames 50-99 lost
    empty.n_frames = 100
    e = evidence(
        empty, _recon(10), BIN, first_output=0, stride=10, window=10, n_frames=100, context_maps=0
    )
    assert e[:3, 8:56, 20].mean() > 0.9
    assert (e[6:, :, 20] == 0).all()  # maps of frames with no localization: no support
