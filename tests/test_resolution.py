"""`dblink-live resolution`: FRC of alternating blocks and refined decorrelation of a real
reprocessed recording, with no ground truth used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

from dblink_live.config import RunConfig
from dblink_live.recon.reprocess import reprocess
from dblink_live.sim.record import simulate_recording


@pytest.fixture(scope="module")
def reconstructed(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    p = tmp_path_factory.mktemp("resolution") / "rec.zarr"
    cfg = RunConfig().updated(simulation={"camera": {"width_px": 24, "height_px": 24}})
    simulate_recording(cfg, p, n_frames=200, seed=6)
    reprocess(p, weights="recon_filaments")
    return p


def test_resolution_command_reports_frc_and_decorrelation(reconstructed: Path) -> None:
    r = run_cli("resolution", str(reconstructed), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "decorrelation" in text and "FRC" in text and "Traceback" not in r.stderr
    report = json.loads(reconstructed.with_name("rec_resolution.json").read_text())
    assert reconstructed.with_name("rec_resolution.png").stat().st_size > 0
    bin_nm = report["bin_nm"]
    dec = report["decorrelation_nm"]
    assert len(dec["per_map"]) == 20  # every stored map (200 frames / W = 10)
    # a physical resolution: no finer than Nyquist of the grid, no coarser than the field
    assert 2 * bin_nm <= dec["median"] <= 24 * 160.0
    frc = report["frc_nm"]
    assert frc["weights"] == "recon_filaments" and len(frc["per_pair"]) == 10
    assert 2 * bin_nm <= frc["median"] <= 24 * 160.0
    curve = np.array(frc["curve"]["frc"])
    assert curve[0] > 0.5  # the two halves share their coarse structure


def test_resolution_refusals(reconstructed: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.zarr"
    cfg = RunConfig().updated(simulation={"camera": {"width_px": 8, "height_px": 8}})
    simulate_recording(cfg, bare, n_frames=20, seed=1)
    r = run_cli("resolution", str(bare))
    assert r.returncode == 2 and "holds no reconstruction" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("resolution", str(reconstructed), "--no-frc", "-o", str(tmp_path / "no" / "r.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("resolution", str(reconstructed), "--no-frc", "-o", str(tmp_path / "r.json"),
             "--figure", str(tmp_path / "r.png"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "frc_nm" not in json.loads((tmp_path / "r.json").read_text())
