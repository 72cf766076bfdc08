"""The command line, run as a user runs it (the installed ``dblink-live`` entry point)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import interruptible

from dblink_live.io import Recording


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("dblink-live") or ""
    cmd = [exe, *args] if exe else [sys.executable, "-m", "dblink_live.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_simulate_then_info_end_to_end(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "sim.zarr"
    r = _cli(
        "simulate",
        "--config",
        str(repo / "configs" / "filaments.yaml"),
        "--frames",
        "40",
        "--seed",
        "3",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in " ".join(r.stdout.split())
    rec = Recording.open(out)
    assert rec.n_frames == 40
    assert rec.config["simulation"]["n_frames"] == 40 and rec.config["simulation"]["seed"] == 3
    assert rec.config["name"] == "filaments"
    assert rec.read_image("gt/skeleton")[0].shape == (4, 256, 256)
    assert len(rec.read_emitters()) > 0
    assert rec.meta["camera"]["em_gain"] == 300.0
    assert np.any(rec.read_frames() > 0)

    r = _cli("info", str(out), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["frames"] == 40 and info["images"]["gt/structure"]["maps"] == 4
    r = _cli("info", str(out))
    assert r.returncode == 0 and "gt/skeleton" in r.stdout


def test_simulate_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    out = tmp_path / "sim.zarr"
    assert _cli("simulate", "-n", "10", "-o", str(out), "-q").returncode == 0
    r = _cli("simulate", "-n", "10", "-o", str(out), "-q")
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    assert _cli("simulate", "-n", "10", "-o", str(out), "-q", "--overwrite").returncode == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["info", "{tmp}/nothing.zarr"], "no recording at"),
        (
            ["simulate", "--config", "{tmp}/bad.yaml", "-o", "{tmp}/x.zarr"],
            "unknown key 'grid.bins'",
        ),
        (["simulate", "--frames", "0"], "Invalid value for '--frames'"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path: Path, args: list[str], fragment: str) -> None:
    (tmp_path / "bad.yaml").write_text("grid:\n  bins: 3\n")
    r = _cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    assert fragment in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["simulate", "info"])
def test_every_option_is_documented(command: str) -> None:
    r = _cli(command, "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for option in {
        "simulate": ["--config", "--frames", "--seed", "--output", "--overwrite"],
        "info": ["--json"],
    }[command]:
        assert option in text


def test_version() -> None:
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("dblink-live ")


def test_localize_a_tiff_to_a_thunderstorm_table(tmp_path: Path, shared_data: Path) -> None:
    from dblink_live.io.tables import read_localizations

    stack = shared_data / "deepstorm_demo1" / "artificial_dataset_demo1.tif"
    out = tmp_path / "locs.csv"
    r = _cli(
        "localize",
        str(stack),
        "-o",
        str(out),
        "--pixel-size-nm",
        "100",
        "--baseline-adu",
        "30",
        "--e-per-adu",
        "0.486",
        "--em-gain",
        "1",
        "--qe",
        "1",
        "-q",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    locs = read_localizations(out)
    assert len(locs) > 20 * 50 and locs.frame.max() == 19
    assert (locs.x_nm > 0).all() and (locs.x_nm < 6400).all()
    r = _cli(
        "evaluate-localizer",
        str(stack),
        "-g",
        str(shared_data / "deepstorm_demo1" / "positions_demo1.csv"),
        "--pixel-size-nm",
        "100",
        "--baseline-adu",
        "30",
        "--e-per-adu",
        "0.486",
        "--em-gain",
        "1",
        "--qe",
        "1",
        "-q",
        "-o",
        str(tmp_path / "ev.json"),
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "ev.json").read_text())
    assert report["ground_truth_emitters"] == 4956
    assert report["results"]["cnn"]["jaccard"] > report["results"]["classic"]["jaccard"]


def test_localize_a_tiff_needs_an_output_and_a_pixel_size(
    tmp_path: Path, shared_data: Path
) -> None:
    stack = shared_data / "formats" / "images.tif"
    r = _cli("localize", str(stack), "-q")
    assert r.returncode == 2 and "give -o/--output" in r.stderr
    r = _cli("localize", str(stack), "-o", str(tmp_path / "x.csv"), "-q")
    assert r.returncode == 2 and "--pixel-size-nm" in r.stderr


def test_view_refuses_what_is_not_a_recording(tmp_path: Path) -> None:
    (tmp_path / "notes.zarr").mkdir()
    r = _cli("view", str(tmp_path / "notes.zarr"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "recording" in r.stderr.lower()


def test_progress_in_a_log_file_is_a_line_now_and_then(capsys) -> None:
    from dblink_live.cli import _progress_lines

    update = _progress_lines("train", every_s=3600.0)
    for i in range(1, 101):
        update(i, 100)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: 100/100 (100 %)")
    update = _progress_lines("reprocess", every_s=0.0)
    update(25, 100)
    err = capsys.readouterr().err
    assert "reprocess: 25/100 (25 %)" in err and "min left" in err


def test_simulate_in_a_log_file_reports_progress(tmp_path: Path) -> None:
    r = _cli("simulate", "-n", "50", "-o", str(tmp_path / "s.zarr"))
    assert r.returncode == 0, r.stderr
    assert "simulate: " in r.stderr and "(100 %)" in r.stderr


def test_replay_refuses_a_recording_without_frames(tmp_path: Path) -> None:
    rec = Recording.create(
        tmp_path / "empty.zarr", frame_shape=(8, 8), pixel_size_nm=100.0, frame_interval_s=0.01
    )
    del rec
    r = _cli("replay", str(tmp_path / "empty.zarr"), "--headless", "-q")
    assert r.returncode == 2 and "has no raw frames to replay" in r.stderr
    assert "Traceback" not in r.stderr


def test_localize_checks_its_output_before_the_work(tmp_path: Path, shared_data: Path) -> None:
    stack = shared_data / "formats" / "images.tif"
    r = _cli(
        "localize",
        str(stack),
        "-o",
        str(tmp_path / "no" / "such" / "x.csv"),
        "--pixel-size-nm",
        "132.5",
        "-q",
    )
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "afile").write_text("x")
    r = _cli(
        "localize",
        str(stack),
        "-o",
        str(tmp_path / "afile" / "x.csv"),
        "--pixel-size-nm",
        "132.5",
        "-q",
    )
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr


def test_ctrl_c_during_reprocess_overwrite_keeps_the_old_reconstruction(tmp_path: Path) -> None:
    """SIGINT (a real one) while `reprocess --overwrite` writes: the new result was being
    written beside the old one, so the old reconstruction survives whole, and it is said."""
    import os
    import signal
    import time

    rec = tmp_path / "sim.zarr"
    assert _cli("simulate", "-n", "1500", "-o", str(rec), "-q").returncode == 0
    r = _cli("reprocess", str(rec), "-q", "--device", "cpu", "--localizer", "classic")
    assert r.returncode == 0, r.stderr
    before, _ = Recording.open(rec).read_image("reconstruction")
    exe = shutil.which("dblink-live")
    cmd = [exe] if exe else [sys.executable, "-m", "dblink_live.cli"]
    proc = subprocess.Popen(
        [*cmd, "reprocess", str(rec), "--overwrite", "--device", "cpu", "--stride", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    staged = rec / "reconstruction.partial"
    deadline = time.monotonic() + 120
    while not staged.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staged.exists(), "the new reconstruction never started"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "interrupted; the previous reconstruction is kept" in " ".join(err.split())
    assert "Traceback" not in err
    after, _ = Recording.open(rec).read_image("reconstruction")
    np.testing.assert_array_equal(before, after)
    assert not staged.exists() and not (rec / "confidence.partial").exists()
