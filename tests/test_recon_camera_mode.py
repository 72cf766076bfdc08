"""Camera + localizer training data, validation on it, and fine-tuning from shipped weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dblink_live.config import ReconModelConfig, RunConfig
from dblink_live.errors import DblinkError
from dblink_live.localize import make_localizer
from dblink_live.recon.data import camera_sequence, make_sequence, map_scale, training_sequence
from dblink_live.recon.inference import load_recon_model
from dblink_live.recon.training import (
    load_init_weights,
    recon_loss,
    train_recon,
    validation_batches,
)

#: Small, fast training runs: 32x32-bin tiles (8x8 camera pixels of 160 nm), 4 maps of W=10.
TINY = {
    "batch_size": 1,
    "tile_bins": 32,
    "sequence_maps": 4,
    "validate_every": 1,
    "validation_sequences": 2,
    "checkpoint_every": 1,
    "density_per_um2": [0.6, 1.0],
}


def _near(truth: np.ndarray, radius: int) -> np.ndarray:
    """(T, Y, X) bool: within ``radius`` bins (Chebyshev) of a true pixel."""
    t = torch.from_numpy(truth.astype(np.float32))[:, None]
    return F.max_pool2d(t, 2 * radius + 1, 1, radius)[:, 0].numpy() > 0


@pytest.fixture(scope="module")
def localizer():
    return make_localizer(RunConfig().localizer, "cpu")


def test_camera_sequences_look_like_locspace_ones(localizer) -> None:
    cfg = RunConfig()
    inside = total = area = 0.0
    for seed in (1, 2):
        info: dict = {}
        maps, truth = camera_sequence(cfg, seed, 32, 4, 10, 0.8, localizer=localizer, info=info)
        ls_maps, ls_truth = training_sequence(cfg, seed, 32, 4, 10, 0.8)
        assert maps.shape == truth.shape == ls_maps.shape == (4, 32, 32)
        assert maps.dtype == truth.dtype == np.float32
        assert set(np.unique(truth)) <= {0.0, 1.0}
        # same seed, same scene: identical ground truth, only the localizations differ
        assert np.array_equal(truth, ls_truth)
        assert not np.array_equal(maps, ls_maps)
        # the normalization is map_scale of density x localizations per true lit emitter
        assert info["localizations"] > 50 and info["true_emitters"] >= 20
        rate = 0.8 * info["localizations"] / info["true_emitters"]
        assert info["rate_per_um2_frame"] == pytest.approx(rate)
        counts = maps * map_scale(rate, 10, cfg.grid.bin_nm)
        assert np.allclose(counts, np.round(counts), atol=1e-3)
        assert 0.8 * info["localizations"] <= counts.sum() <= info["localizations"]
        near = _near(truth > 0.5, 2)
        inside += float(counts[near].sum())
        total += float(counts.sum())
        area += float(near.mean())
    # the localized blinks sit on the structure, which covers a minority of the tile
    assert area / 2 < 0.5
    assert inside / total > 0.85


def test_make_sequence_rejects_an_unknown_mode() -> None:
    with pytest.raises(DblinkError, match="locspace, camera"):
        make_sequence("frames", RunConfig(), 0, 32, 2, 10, 0.5)


def test_training_on_camera_data_validates_on_both(tmp_path: Path) -> None:
    cfg = RunConfig().updated(
        recon_training={
            **TINY,
            "steps": 3,
            "validate_every": 3,
            "train_data": "camera",
            "validation_data": "both",
        }
    )
    out = train_recon(cfg, tmp_path / "cam.pt", device="cpu", threads=1)
    ckpt = torch.load(out, weights_only=False)
    m = ckpt["metrics"]
    assert ckpt["step"] == 3 and m["train_data"] == "camera"
    assert m["validation_data"] == "camera"
    assert set(m["validation_losses"]) == {"camera", "locspace"}
    assert m["validation_loss"] == m["validation_losses"]["camera"]
    assert m["validation_losses"]["camera"] != m["validation_losses"]["locspace"]
    # the reported camera loss is the final model's loss on camera + localizer sequences
    model = load_recon_model(out, "cpu").model  # best weights, so rebuild from model_state
    model.load_state_dict(ckpt["model_state"])
    val = validation_batches(cfg, ["camera"])["camera"]
    with torch.no_grad():
        loss = np.mean([recon_loss(model.eval(), x, g, cfg)[0].item() for x, g in val])
    assert loss == pytest.approx(m["validation_losses"]["camera"], rel=1e-5)


def test_fine_tuning_starts_from_the_init_weights(tmp_path: Path) -> None:
    cfg = RunConfig().updated(
        recon_training={**TINY, "steps": 1, "learning_rate": 1e-9, "validation_data": "camera"}
    )
    shipped = load_recon_model("recon_filaments", "cpu")
    init_state = shipped.model.state_dict()
    out = train_recon(cfg, tmp_path / "ft.pt", device="cpu", init="recon_filaments", threads=1)
    ckpt = torch.load(out, weights_only=False)
    init_step = int(shipped.checkpoint["step"])
    assert ckpt["step"] == 1 < init_step  # counted from 0, not from the init checkpoint's step
    assert ckpt["init"]["name"] == "recon_filaments" and ckpt["init"]["step"] == init_step
    # one step at a negligible learning rate: still the init weights, not a fresh network
    for k, v in ckpt["model_state"].items():
        assert torch.allclose(v, init_state[k], atol=1e-6), k
    # the init weights were validated first: the same loss as the shipped model's
    val = validation_batches(cfg, ["camera"])["camera"]
    with torch.no_grad():
        loss = np.mean([recon_loss(shipped.model, x, g, cfg)[0].item() for x, g in val])
    assert ckpt["metrics"]["init_validation_loss"] == pytest.approx(loss, rel=1e-5)
    assert ckpt["metrics"]["init_validation_losses"]["camera"] == pytest.approx(loss, rel=1e-5)
    # no improvement beyond 1e-4 in one tiny step: the best weights are still the init's
    for k, v in ckpt["best_model_state"].items():
        assert torch.equal(v, init_state[k]), k


def test_init_checks_the_architecture_and_the_checkpoint_kind(tmp_path: Path) -> None:
    paper = RunConfig(recon_model=ReconModelConfig(preset="dblink_paper"))
    with pytest.raises(DblinkError, match=r"architecture differs.*preset: light"):
        load_init_weights("recon_filaments", paper)
    with pytest.raises(DblinkError, match="not a dblink_live reconstruction checkpoint"):
        load_init_weights("localizer", RunConfig())
    with pytest.raises(DblinkError, match="no reconstruction checkpoint"):
        load_init_weights(tmp_path / "missing.pt", RunConfig())
    with pytest.raises(DblinkError, match="either --init"):
        train_recon(RunConfig(), tmp_path / "x.pt", init="recon_filaments", resume="x.pt")
    state, info = load_init_weights("recon_filaments", RunConfig())
    assert info["name"] == "recon_filaments" and len(info["sha256"]) == 64
    assert set(state) == set(load_recon_model("recon_filaments", "cpu").model.state_dict())


def test_cli_init_option_reports_a_mismatched_architecture(tmp_path: Path) -> None:
    cfg = tmp_path / "paper.yaml"
    cfg.write_text("recon_model: {preset: dblink_paper}\nrecon_training: {steps: 1}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dblink_live.cli",
            "train",
            "-c",
            str(cfg),
            "-o",
            str(tmp_path / "ft.pt"),
            "--init",
            "recon_filaments",
            "-q",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 2, r.stderr
    assert "architecture differs" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ft.pt").exists()
