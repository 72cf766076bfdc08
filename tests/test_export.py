"""`dblink-live export`: a recording's stored localizations as other tools' tables, read back
whole by our readers; Picasso's files obey Picasso's own sanity rules for every row."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from cli_runner import run_cli

from dblink_live.config import RunConfig
from dblink_live.io.recording import Recording
from dblink_live.io.tables import read_localizations
from dblink_live.localizations import Localizations
from dblink_live.localize.run import localize
from dblink_live.sim.record import simulate_recording

PX = 160.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A simulated, localized 16x16 recording, plus localizations in the outer half pixel of
    the frame (where a naive Picasso export falls below x = 0) and one without a precision."""
    p = tmp_path_factory.mktemp("export") / "rec.zarr"
    cfg = RunConfig().updated(simulation={"camera": {"width_px": 16, "height_px": 16}})
    simulate_recording(cfg, p, n_frames=60, seed=4)
    localize(p)
    edge = Localizations(
        frame=np.array([3, 7, 9], np.int64),
        x_nm=np.array([5.0, 40.0, 16 * PX - 3.0], np.float32),
        y_nm=np.array([70.0, 1.0, 16 * PX - 1.0], np.float32),
        photons=np.array([900.0, 1200.0, 800.0], np.float32),
        background=np.array([20.0, 25.0, 22.0], np.float32),
        uncertainty_nm=np.array([12.0, np.nan, 15.0], np.float32),
        score=np.array([0.9, 0.8, 0.95], np.float32),
        pixel_size_nm=PX,
        n_frames=60,
    )
    Recording.open(p, mode="r+").append_localizations(edge)
    return p


def _picasso_sane(h5: Path) -> tuple[int, int]:
    """(rows, rows that pass Picasso's sanity filter), by its documented rules: every field
    finite, 0 < x < Width, 0 < y < Height, lpx > 0, lpy > 0."""
    with h5py.File(h5) as f:
        locs = f["locs"][()]
    info = list(yaml.safe_load_all(h5.with_suffix(".yaml").read_text()))
    finite = np.all([np.isfinite(locs[n]) for n in locs.dtype.names], axis=0)
    ok = (
        finite
        & (locs["x"] > 0)
        & (locs["y"] > 0)
        & (locs["x"] < info[0]["Width"])
        & (locs["y"] < info[0]["Height"])
        & (locs["lpx"] > 0)
        & (locs["lpy"] > 0)
    )
    return len(locs), int(ok.sum())


@pytest.mark.parametrize(
    "name, fmt", [("t.csv", None), ("plain.csv", "csv"), ("d.h5", None), ("p.hdf5", None)]
)
def test_export_reads_back_whole(recording: Path, tmp_path: Path, name: str, fmt: str) -> None:
    stored = Recording.open(recording).read_localizations()
    assert (stored.x_nm < PX / 2).any()  # the outer half pixel is populated
    out = tmp_path / name
    r = run_cli("export", str(recording), "-o", str(out), *(["--format", fmt] if fmt else []))
    assert r.returncode == 0, r.stderr
    assert f"wrote {len(stored)} localizations of 60 frames" in " ".join(r.stdout.split())
    back = read_localizations(out, pixel_size_nm=PX)
    assert len(back) == len(stored)
    order_a = np.lexsort((stored.x_nm, stored.frame))
    order_b = np.lexsort((back.x_nm, back.frame))
    assert np.array_equal(back.frame[order_b], stored.frame[order_a])
    assert np.allclose(back.x_nm[order_b], stored.x_nm[order_a], atol=0.01)
    assert np.allclose(back.y_nm[order_b], stored.y_nm[order_a], atol=0.01)
    if name.endswith(".hdf5"):
        rows, sane = _picasso_sane(out)
        assert rows == sane == len(stored)
        meta = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))[1]
        assert meta["dblink_live shift (px)"] == [1, 1]
        assert meta["dblink_live rows filled"] == 1  # the one without a precision
        assert "Picasso requires" in r.stderr


def test_export_reconstruction_and_refusals(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert run_cli("export", str(recording), "-o", str(out)).returncode == 0
    r = run_cli("export", str(recording), "-o", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("export", str(recording), "-o", str(tmp_path / "t.xlsx"))
    assert r.returncode == 2 and "cannot tell the format" in r.stderr
    r = run_cli("export", str(recording), "--tiff")
    assert r.returncode == 2 and "no reconstruction" in r.stderr
    empty = tmp_path / "empty.zarr"
    cfg = RunConfig().updated(simulation={"camera": {"width_px": 8, "height_px": 8}})
    simulate_recording(cfg, empty, n_frames=20, seed=1)
    r = run_cli("export", str(empty), "-o", str(tmp_path / "e.csv"))
    assert r.returncode == 2 and "holds no localizations" in r.stderr
    # with a reconstruction: a TIFF stack beside the table
    assert (
        run_cli("reprocess", str(recording), "--weights", "recon_filaments", "-q").returncode == 0
    )
    r = run_cli("export", str(recording), "-o", str(tmp_path / "x.csv"), "--tiff")
    assert r.returncode == 0, r.stderr
    import tifffile

    stack = tifffile.imread(tmp_path / "x_reconstruction.tif")
    assert stack.shape[-2:] == (64, 64) and stack.shape[0] == 6
