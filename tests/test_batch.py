"""`dblink-live batch`: reprocessing many recordings on a real dask.distributed LocalCluster
(worker processes), against the serial command on copies of the same recordings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.recon.reprocess import reprocess
from dblink_live.sim.record import simulate_recording

pytest.importorskip("distributed")


def _recordings(folder: Path, n: int) -> list[Path]:
    cfg = RunConfig().updated(simulation={"camera": {"width_px": 16, "height_px": 16}})
    paths = []
    for i in range(n):
        p = folder / f"rec{i}.zarr"
        simulate_recording(cfg, p, n_frames=60, seed=10 + i)
        paths.append(p)
    return paths


@pytest.mark.timeout(600)
def test_batch_on_a_local_cluster_equals_serial_and_reports_a_failure(tmp_path: Path) -> None:
    batch_dir, serial_dir = tmp_path / "batch", tmp_path / "serial"
    batch_dir.mkdir()
    paths = _recordings(batch_dir, 3)
    shutil.copytree(batch_dir, serial_dir)
    for p in paths:
        reprocess(serial_dir / p.name, weights="recon_filaments", stride=5)
    # one recording already holds a reconstruction: without --overwrite its task fails
    reprocess(paths[1], weights="recon_filaments", stride=5)
    before = Recording.open(paths[1]).read_image("reconstruction")[0]

    r = subprocess.run(
        [sys.executable, "-m", "dblink_live.cli", "batch", *map(str, paths),
         "--workers", "2", "--weights", "recon_filaments", "--stride", "5"],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    text = " ".join(r.stdout.split())
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 of 3 recordings reprocessed" in text
    assert f"{paths[1]}: FAILED: DblinkError:" in text and "already has a reconstruction" in text
    assert text.count("reconstructed frames,") == 2 and "(tcp://" in text
    assert "Traceback" not in r.stdout + r.stderr
    for p in (paths[0], paths[2]):
        got = Recording.open(p)
        ref = Recording.open(serial_dir / p.name)
        for name in ("reconstruction", "confidence"):
            a, b = got.read_image(name)[0], ref.read_image(name)[0]
            assert a.shape == b.shape == (11, 64, 64)
            assert np.allclose(a, b, atol=1e-5), name
    # the failed one is untouched
    assert np.array_equal(Recording.open(paths[1]).read_image("reconstruction")[0], before)


def test_batch_refuses_bad_input_before_starting_a_cluster(tmp_path: Path) -> None:
    from dblink_live.recon.batch import reprocess_many

    with pytest.raises(DblinkError, match="no such recording"):
        reprocess_many([tmp_path / "nope.zarr"])
    p = tmp_path / "a.zarr"
    p.mkdir()
    with pytest.raises(DblinkError, match="named twice"):
        reprocess_many([p, tmp_path / "." / "a.zarr"])
    with pytest.raises(DblinkError, match="no --output"):
        reprocess_many([p], output=tmp_path / "b.zarr")
