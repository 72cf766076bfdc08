"""CNN localizer: shipped weights describe themselves, beat classic at high density, stream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig, RunConfig
from dblink_live.errors import DblinkError
from dblink_live.localize import CameraCalibration, ClassicLocalizer, CNNLocalizer
from dblink_live.localize.cnn import load_localizer_checkpoint, resolve_weights
from dblink_live.metrics import match_localizations, score_localizations
from dblink_live.sim import simulate_movie


@pytest.fixture(scope="module")
def dense_movie():
    cfg = RunConfig().updated(
        simulation={
            "photophysics": {"density_per_um2": 1.5},
            "optics": {"sigma_nm": 130},
            "camera": {"width_px": 48, "height_px": 48},
        }
    )
    return simulate_movie(cfg, n_frames=40, seed=11)


def test_shipped_checkpoint_describes_itself() -> None:
    model, ckpt = load_localizer_checkpoint("localizer")
    assert ckpt["format"] == "dblink-live-localizer"
    assert ckpt["architecture"]["in_frames"] == 3
    assert ckpt["training"]["pixel_size_nm"] == [65.0, 200.0]
    assert ckpt["input_norm"] == "robust" and model.input_norm == "robust"
    assert ckpt["step"] == ckpt["training"]["steps"]
    assert ckpt["package_version"]
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert resolve_weights("localizer").stat().st_size < 5_000_000


def test_cnn_beats_classic_at_high_density(dense_movie) -> None:
    m = dense_movie
    cal = CameraCalibration.from_camera(m.metadata["camera"])
    em = m.emitters
    scores = {}
    for loc in (CNNLocalizer(device="cpu"), ClassicLocalizer(device="cpu")):
        out = loc.localize(m.raw, cal)
        scores[loc.name] = score_localizations(
            em.frame, em.x_nm, em.y_nm, out.frame, out.x_nm, out.y_nm
        )
    assert scores["cnn"].jaccard > scores["classic"].jaccard
    assert scores["cnn"].rmse_lateral_nm < 60


def test_streaming_blocks_with_context_equal_one_call(dense_movie) -> None:
    m = dense_movie
    cal = CameraCalibration.from_camera(m.metadata["camera"])
    loc = CNNLocalizer(CNNLocalizerConfig(batch_frames=5), device="cpu")
    whole = loc.localize(m.raw, cal)
    a = loc.localize(m.raw[:17], cal, context_after=m.raw[17:18])
    b = loc.localize(m.raw[17:], cal, first_frame=17, context_before=m.raw[16:17])
    both_x = np.r_[a.x_nm, b.x_nm]
    assert len(whole) == len(a) + len(b)
    assert np.allclose(np.sort(whole.x_nm), np.sort(both_x), atol=1e-2)


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DblinkError, match="no localizer checkpoint"):
        CNNLocalizer(CNNLocalizerConfig(weights=str(tmp_path / "missing.pt")))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DblinkError, match="cannot be read"):
        CNNLocalizer(CNNLocalizerConfig(weights=str(junk)))
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(DblinkError, match="not a dblink_live localizer checkpoint"):
        CNNLocalizer(CNNLocalizerConfig(weights=str(other)))


def test_train_localizer_runs_and_resumes(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "localizer_training:\n  steps: 3\n  batch_size: 2\n  patch_px: 16\n  channels: 8\n"
        "  validate_every: 2\n  validation_batches: 1\n  checkpoint_every: 2\n"
    )
    out = tmp_path / "loc.pt"
    cmd = [
        sys.executable,
        "-m",
        "dblink_live.cli",
        "train-localizer",
        "-c",
        str(cfg),
        "-o",
        str(out),
        "-q",
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "loc.yaml").exists()
    first = torch.load(out, weights_only=False)
    assert first["step"] == 3 and first["optimizer_state"] is not None
    # the plateau schedule is saved (validations at steps 2 and 3) and resumed, not restarted
    assert first["schedule_state"]["best"] == first["metrics"]["best_validation"]
    assert first["schedule_state"]["scheduler"]["last_epoch"] == 2
    r = subprocess.run(
        [*cmd[:-3], "--steps", "5", "--resume", str(out), "-q", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    resumed = torch.load(out, weights_only=False)
    assert resumed["step"] == 5
    assert resumed["schedule_state"]["scheduler"]["last_epoch"] == 4  # 2 + validations 4, 5
    loc = CNNLocalizer(CNNLocalizerConfig(weights=str(out)), device="cpu")
    assert loc.model_id["name"] == "loc"
    frames = np.full((2, 20, 20), 100, np.uint16)
    assert loc.localize(frames, CameraCalibration(100.0)).n_frames == 2


def test_classic_config_is_reachable_from_yaml() -> None:
    cfg = RunConfig().updated(localizer={"kind": "classic", "threshold_snr": 4})
    assert isinstance(cfg.localizer, ClassicLocalizerConfig) and cfg.localizer.threshold_snr == 4


@pytest.mark.parametrize(
    "camera",
    [
        {"kind": "emccd"},
        {"kind": "scmos", "e_per_adu": 0.3, "baseline_adu": 400.0, "background_photons": 120.0},
    ],
    ids=["emccd", "scmos"],
)
def test_photons_and_background_match_the_simulated_truth(camera: dict) -> None:
    """With the camera's calibration, the CNN's photons (of emitters lit for the whole frame)
    and background (photons per pixel) are within 10 % of the simulator's, in median."""
    cfg = RunConfig().updated(
        simulation={
            "photophysics": {"density_per_um2": 0.3},
            "optics": {"sigma_nm": 130.0},
            "camera": {"width_px": 48, "height_px": 48, **camera},
        }
    )
    m = simulate_movie(cfg, n_frames=60, seed=21)
    cal = CameraCalibration.from_camera(m.metadata["camera"])
    out = CNNLocalizer(device="cpu").localize(m.raw, cal)
    em = m.emitters
    gi, pi = match_localizations(em.frame, em.x_nm, em.y_nm, out.frame, out.x_nm, out.y_nm, 100.0)
    full = em.on_fraction[gi] >= 1
    assert full.sum() > 100
    photons = np.median(out.photons[pi][full] / em.photons[gi][full])
    background = np.median(out.background[pi]) / cfg.simulation.camera.background_photons
    assert photons == pytest.approx(1.0, abs=0.1)
    assert background == pytest.approx(1.0, abs=0.1)


def test_learning_rate_decays_linearly_after_its_start(tmp_path: Path) -> None:
    from dblink_live.config import LocalizerTrainingConfig
    from dblink_live.localize.training import train_localizer

    cfg = LocalizerTrainingConfig(
        steps=4,
        batch_size=2,
        patch_px=16,
        channels=4,
        validate_every=4,
        validation_batches=1,
        checkpoint_every=4,
        learning_rate=1e-3,
        lr_decay_start=0,
    )
    out = train_localizer(cfg, tmp_path / "lr.pt", device="cpu")
    lr = torch.load(out, weights_only=False)["metrics"]["lr"]
    assert lr == pytest.approx(1e-3 * (1 - 0.9 * 3 / 4))  # the rate of the last step taken
