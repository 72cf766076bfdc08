"""Live latency stays bounded under a competing load: whole maps are skipped evenly, each skip
is counted and stored, the recorder keeps every frame, and `reprocess` fills the skips in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dblink_live.cli import main
from dblink_live.config import RunConfig
from dblink_live.io.recording import Recording
from dblink_live.pipeline import PipelineState

W = 10


def _longest_run(indices: list[int]) -> int:
    best = run = 0
    prev = None
    for k in indices:
        run = run + 1 if prev is not None and k == prev + 1 else 1
        best = max(best, run)
        prev = k
    return best


@pytest.mark.mm
@pytest.mark.timeout(300)
def test_latency_is_bounded_under_a_competing_load_and_skips_are_counted(tmp_path: Path) -> None:
    """`dblink-live demo` (64x64 camera, 100 Hz, 2,500 frames) on 2 cores, with a process
    burning one of them beside it: the live path cannot localize and reconstruct every map in
    time. Without a budget its latency grows with the run (16.7 s at p50 was reported); with
    one it skips whole maps, evenly, and stays within a bound that does not grow."""
    out = tmp_path / "loaded.zarr"
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        r = subprocess.run(
            [sys.executable, "-m", "dblink_live.cli", "demo", "--headless", "-n", "2500",
             "--seed", "2", "--device", "cpu", "-o", str(out)],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    finally:
        burner.kill()
        burner.wait()
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "loaded_summary.json").read_text())["summary"]
    # the recorder kept every frame
    assert summary["frames_in"] == summary["frames_recorded"] == 2500
    assert summary["recorder_lost"] == 0
    budget = summary["latency_budget_s"]
    assert budget == pytest.approx(4 * W * 0.01 + 0.5)
    lat = summary["latency_s"]
    first, _, last = lat["p50_by_third"]
    # bounded: no growth over the run, and a tail within a multiple of the budget that an
    # unbounded backlog (5-17 s here) would exceed. The budget itself is NOT met at p99 on 2
    # loaded cores (measured 1.7-2.7 s against 0.9 s; the floor is the look-ahead plus
    # localizing and reconstructing a map, and the start-up backlog): see the README
    assert last <= first + 0.3, lat
    assert lat["p99"] <= 4 * budget, lat
    # every skip is counted, shown and stored; skips spread out, not in bursts
    rec = Recording.open(out)
    skipped = rec.image_array("reconstruction").attrs["skipped_maps"]
    assert len(skipped) == summary["skipped_maps"] > 0
    assert summary["dropped_frames"] >= W * len(skipped)
    assert "maps skipped to stay within" in " ".join(r.stderr.split())
    # (the start-up backlog, while the CNN warms and the camera is measured, is caught up in
    # one run of skips: the budget is counted from the first outputs)
    assert _longest_run([k for k in skipped if k >= 25]) <= 8, skipped
    recon, _ = rec.read_image("reconstruction")
    conf, _ = rec.read_image("confidence")
    assert len(recon) == len(conf) == 250  # indexed by map: skipped maps are empty entries
    assert all(recon[k].max() == 0 and conf[k].max() == 0 for k in skipped)
    done = [k for k in range(250) if k not in set(skipped)]
    assert np.mean([conf[k].max() > 0 for k in done]) > 0.9
    # offline, everything: the skipped frames are localized and every map reconstructed
    assert main(["reprocess", str(out), "--overwrite", "--device", "cpu", "-q"]) == 0
    rec = Recording.open(out)
    assert rec.unlocalized_frames() == []
    conf, _ = rec.read_image("confidence")
    assert all(conf[k].max() > 0 for k in skipped)


def test_an_unpaced_replay_has_no_latency_budget(tmp_path: Path) -> None:
    from dblink_live.acquire.replay import ReplaySource
    from dblink_live.pipeline import Pipeline
    from dblink_live.sim.record import simulate_recording

    cfg = RunConfig().updated(
        simulation={"n_frames": 200, "camera": {"width_px": 32, "height_px": 32}}
    )
    src_path = tmp_path / "sim.zarr"
    simulate_recording(cfg, src_path, seed=1)
    for speed, finite in ((0, False), (2, True)):
        pipe = Pipeline(
            ReplaySource(src_path, speed=speed), tmp_path / f"r{speed}.zarr", config=cfg,
            device="cpu",
        )  # fmt: skip
        status = pipe.run()
        assert status.state is PipelineState.FINISHED
        assert bool(np.isfinite(pipe.latency_budget_s)) is finite
        if finite:  # twice the speed: the look-ahead lasts half as long
            assert pipe.latency_budget_s == pytest.approx(4 * W * 0.005 + 0.5)
        else:
            assert status.skipped_maps == 0
