"""GPU code paths give the CPU's results: binning, localizer, reconstruction, streaming, training,
the live pipeline.

Marked ``gpu`` (deselected by default; ``python -m pytest -m gpu``) and skipped without CUDA.
``DBLINK_TEST_DEVICE=cpu python -m pytest -m gpu`` runs the same tests with the CPU standing in
for the GPU, which checks the tests themselves on a machine without one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dblink_live.config import RunConfig
from dblink_live.localizations import count_maps
from dblink_live.localize import CameraCalibration, CNNLocalizer
from dblink_live.metrics import score_localizations
from dblink_live.recon.data import count_maps_torch, map_scale, normalize_maps
from dblink_live.recon.inference import load_recon_model, reconstruct_sequence
from dblink_live.recon.streaming import StreamingReconstructor, reconstruct_with_lookahead
from dblink_live.sim import simulate_localizations, simulate_movie

DEVICE = os.environ.get("DBLINK_TEST_DEVICE", "cuda")

pytestmark = pytest.mark.gpu  # conftest skips these without CUDA


@pytest.fixture
def exact_float32() -> Iterator[None]:
    """TF32 off, so GPU convolutions are compared with the CPU's at float32 precision."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _maps(n_frames: int = 400, width_px: int = 32, seed: int = 2) -> np.ndarray:
    """Normalized count maps (n, Y', X') of a simulated filament field, 40 nm bins, W = 10."""
    cfg = RunConfig().updated(simulation={"camera": {"width_px": width_px, "height_px": width_px}})
    locs = simulate_localizations(cfg, n_frames=n_frames, seed=seed, with_gt=False).localizations
    side = width_px * 4
    counts = count_maps(locs, 40.0, (side, side), 10)
    rate = len(locs) / n_frames / (width_px * 0.16) ** 2
    return normalize_maps(counts, map_scale(rate, 10, 40.0)).numpy()


def test_binning_on_the_device_equals_numpy() -> None:
    cfg = RunConfig().updated(simulation={"camera": {"width_px": 64, "height_px": 64}})
    locs = simulate_localizations(cfg, n_frames=200, seed=3, with_gt=False).localizations
    a = count_maps(locs, 40.0, (256, 256), 10, 20, 0)
    b = count_maps_torch(locs, 40.0, (256, 256), 10, 20, 0, device=DEVICE)
    assert b.device.type == torch.device(DEVICE).type
    assert a.sum() > 1000 and np.array_equal(a, b.cpu().numpy())


def test_reconstruction_on_the_device_equals_the_cpu(exact_float32) -> None:
    maps = _maps()
    outs = {}
    for dev in ("cpu", DEVICE):
        model = load_recon_model("recon_filaments", dev)
        blocks = list(reconstruct_sequence(model.model, lambda a, b: maps[a:b], len(maps), 16))
        outs[dev] = (
            np.concatenate([r for _, r, _ in blocks]),
            np.concatenate([c for _, _, c in blocks]),
        )
    (rc, cc), (rg, cg) = outs["cpu"], outs[DEVICE]
    assert rc.shape == rg.shape == maps.shape
    assert np.abs(rc - rg).max() < 1e-3 and np.abs(cc - cg).max() < 1e-3
    assert np.mean((rc > 100 / 255) == (rg > 100 / 255)) > 0.9999


def test_streaming_on_the_device_equals_the_offline_look_ahead(exact_float32) -> None:
    maps = _maps(n_frames=200)
    model = load_recon_model("recon_filaments_live", DEVICE).model
    ref, _ = reconstruct_with_lookahead(model, maps, 4)
    stream = StreamingReconstructor(model, 4)
    got = {}
    for m in maps:
        for out in stream.push(m):
            got[out[0]] = out[1]
    for i, rec, _ in stream.flush():
        got[i] = rec
    assert sorted(got) == list(range(len(maps)))
    assert np.abs(np.stack([got[i] for i in range(len(maps))]) - ref).max() < 1e-4


def test_cnn_localizer_on_the_device_matches_the_cpu() -> None:
    cfg = RunConfig().updated(
        simulation={
            "photophysics": {"density_per_um2": 1.0},
            "camera": {"width_px": 64, "height_px": 64},
        }
    )
    movie = simulate_movie(cfg, n_frames=40, seed=4)
    cal = CameraCalibration.from_camera(movie.metadata["camera"])
    cpu = CNNLocalizer(device="cpu").localize(movie.raw, cal)
    dev = CNNLocalizer(device=DEVICE).localize(movie.raw, cal)  # mixed precision on CUDA
    assert len(cpu) > 500
    assert abs(len(dev) - len(cpu)) <= 0.01 * len(cpu)
    # the same emitters found, at the same places to well under a bin (40 nm)
    same = score_localizations(cpu.frame, cpu.x_nm, cpu.y_nm, dev.frame, dev.x_nm, dev.y_nm, 20.0)
    assert same.jaccard > 0.98 and same.rmse_lateral_nm < 2.0
    em = movie.emitters
    truth = {
        name: score_localizations(em.frame, em.x_nm, em.y_nm, t.frame, t.x_nm, t.y_nm)
        for name, t in (("cpu", cpu), ("dev", dev))
    }
    assert abs(truth["dev"].jaccard - truth["cpu"].jaccard) < 0.01


def test_training_steps_on_the_device(tmp_path: Path) -> None:
    from dblink_live.recon.training import train_recon

    cfg = RunConfig().updated(
        recon_training={
            "steps": 3,
            "batch_size": 2,
            "tile_bins": 64,
            "sequence_maps": 8,
            "validate_every": 3,
            "validation_sequences": 2,
            "checkpoint_every": 3,
        }
    )
    out = tmp_path / "gpu.pt"
    losses: list[float] = []
    train_recon(cfg, out, device=DEVICE, progress=lambda s, n, parts: losses.append(parts))
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["step"] == 3 and len(losses) == 3
    assert np.isfinite(ckpt["metrics"]["best_validation"])
    model = load_recon_model(out, "cpu")  # a GPU checkpoint loads on a CPU
    assert model.device.type == "cpu"


@pytest.mark.timeout(600)
def test_live_demo_on_the_device_drops_nothing(tmp_path: Path) -> None:
    from dblink_live.io.recording import Recording
    from dblink_live.pipeline import PipelineState, demo_pipeline

    # a 128x128-pixel camera (512x512-bin maps) at 100 Hz on a GPU; a CPU stand-in gets 32x32
    side, n = (32, 600) if DEVICE == "cpu" else (128, 2000)
    cfg = RunConfig().updated(
        simulation={"n_frames": n, "camera": {"width_px": side, "height_px": side}}
    )
    pipe = demo_pipeline(tmp_path / "gpu.zarr", n_frames=n, fps=100, config=cfg, device=DEVICE)
    status = pipe.run()
    assert status.state is PipelineState.FINISHED, status.error
    assert status.frames_recorded == n and status.recorder_lost == 0
    assert status.dropped_frames == 0
    assert status.outputs >= n // 10 - 1
    assert Recording.open(tmp_path / "gpu.zarr").n_frames == n
