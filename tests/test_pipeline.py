"""The live pipeline end to end: virtual microscope through pycromanager, replay, drops vs the
lossless recorder, stop mid-acquisition, a killed process, bad frames, failures, the CLI."""

from __future__ import annotations

import gc
import json
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from cli_runner import interruptible
from doubles import SlowLocalizer

from dblink_live.acquire import ReplaySource
from dblink_live.cli import main
from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localize import make_localizer
from dblink_live.pipeline import Pipeline, PipelineState, demo_pipeline
from dblink_live.recon.evaluate import evaluate_recording
from dblink_live.sim.record import simulate_recording


def _small(frames: int = 200) -> RunConfig:
    """A 32x32-pixel camera (128x128-bin grid) so the tests stay quick on 2 cores."""
    return RunConfig().updated(
        simulation={"n_frames": frames, "camera": {"width_px": 32, "height_px": 32}},
        live={"recon_roi": "full"},  # the whole grid, however busy the machine (see test_recon_roi)
    )


@pytest.fixture(scope="module")
def small_recording(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("rec") / "sim.zarr"
    simulate_recording(_small(300), p, seed=5)
    return p


@pytest.mark.mm
@pytest.mark.timeout(240)
def test_virtual_microscope_end_to_end_beats_static_accumulation(tmp_path: Path) -> None:
    out = tmp_path / "demo.zarr"
    states: list[PipelineState] = []
    # every frame localized (no latency budget: the start-up backlog at 200 Hz would otherwise
    # skip a few maps; tests/test_latency.py covers the budget)
    cfg = _small().updated(live={"latency_budget_s": 600.0})
    pipe = demo_pipeline(out, n_frames=300, fps=200, config=cfg, seed=3, device="cpu")
    assert pipe.state is PipelineState.IDLE
    status = pipe.run(on_status=lambda s: states.append(s.state))
    assert status.state is PipelineState.FINISHED, status.error
    assert PipelineState.RUNNING in states
    assert status.frames_in == status.frames_recorded == status.frames_localized == 300
    assert status.dropped_frames == 0 and status.recorder_lost == 0 and status.bad_frames == 0
    rec = Recording.open(out)
    assert rec.n_frames == 300 and rec.meta["simulated"] and rec.meta["live"]
    assert rec.meta["source"] == "VirtualMicroscopeSource"
    locs = rec.read_localizations()
    assert len(locs) > 300 and locs.frame.min() >= 0 and locs.frame.max() == 299
    recon, attrs = rec.read_image("reconstruction")
    conf, _ = rec.read_image("confidence")
    assert recon.shape == conf.shape == (30, 128, 128) and attrs["delay_maps"] == 4
    assert rec.read_image("gt/skeleton")[0].shape == (30, 128, 128)
    # the frames are the simulator's: Micro-Manager delivered them unchanged and in order
    assert np.array_equal(rec.read_frames(0, 20), pipe.source.simulator.frames(0, 20)[0])
    scores = evaluate_recording(out)
    dblink = scores["reconstruction"]["tol1"]
    for base in ("static_W", "static_10W"):
        assert dblink["jaccard"] > scores["baselines"][base]["tol1"]["jaccard"] + 0.2
    assert dblink["recall"] > 0.85
    lat = pipe.latencies()
    assert len(lat) == 30 and np.all(lat > 0)


def test_replay_through_the_pipeline_reproduces_the_recording(
    small_recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "replay.zarr"
    pipe = Pipeline(ReplaySource(small_recording, speed=0), out, config=_small(), device="cpu")
    status = pipe.run()
    assert status.state is PipelineState.FINISHED and status.dropped_frames == 0
    src, copy = Recording.open(small_recording), Recording.open(out)
    assert np.array_equal(copy.read_frames(), src.read_frames())  # every frame, in order
    assert copy.pixel_size_nm == src.pixel_size_nm
    assert copy.read_image("reconstruction")[0].shape[0] == 30
    assert status.outputs == 30 and status.maps_in == 30
    # a finished run leaves nothing behind: no worker thread, no child process, and the
    # pipeline itself is collectable (the viewer starts run after run in one process)
    ours = ("dblink-", "recorder", "ring-writer", "recon-worker")
    assert not [t.name for t in threading.enumerate() if t.name.startswith(ours)]
    assert multiprocessing.active_children() == []
    ref = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert ref() is None


def test_a_slow_consumer_drops_in_the_live_path_but_the_recording_is_complete(
    small_recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "slow.zarr"
    pipe = Pipeline(
        ReplaySource(small_recording, speed=0),
        out,
        config=_small(),
        device="cpu",
        ring_capacity=16,
        localizer=SlowLocalizer(0.05),
    )
    status = pipe.run()
    assert status.state is PipelineState.FINISHED
    assert status.dropped_frames > 0  # counted ...
    assert any("dropped" in w for w in status.warnings)  # ... and shown
    assert status.frames_localized + status.dropped_frames == 300
    assert status.recorder_lost == 0
    rec = Recording.open(out)
    assert np.array_equal(rec.read_frames(), Recording.open(small_recording).read_frames())
    assert rec.meta["live_summary"]["dropped_frames"] == status.dropped_frames
    # every map is still reconstructed (maps missing frames are rescaled)
    assert rec.read_image("reconstruction")[0].shape[0] == 30


def test_the_raw_frame_follows_the_camera_while_the_localizer_falls_behind(
    small_recording: Path, tmp_path: Path
) -> None:
    """The viewer's camera panel is fed from the ring, not by the localizer: with a localizer
    far slower than the camera, the newest raw frame still keeps up."""
    pipe = Pipeline(
        ReplaySource(small_recording, speed=1),
        tmp_path / "raw.zarr",
        config=_small(),
        device="cpu",
        recon="none",
        localizer=SlowLocalizer(0.3),
    )
    pipe.start()
    behind = []
    try:
        while not pipe.wait(0.1).state.done:
            st, res = pipe.status(), pipe.latest()
            if st.frames_in > 100 and st.state is PipelineState.RUNNING:
                behind.append((st.frames_in, st.frames_localized, res.frame_index))
    finally:
        pipe.abort()
        pipe.wait()
    assert behind
    # the localizer lags by many frames while the displayed frame is within a few of the newest
    assert max(n_in - n_loc for n_in, n_loc, _ in behind) > 50
    assert all(n_in - 1 - shown <= 5 for n_in, _, shown in behind), behind
    frames = Recording.open(tmp_path / "raw.zarr").read_frames()
    res = pipe.latest()
    assert np.array_equal(res.raw, frames[res.frame_index])  # the frame it says it is


def test_stopping_mid_acquisition_leaves_a_valid_recording(tmp_path: Path) -> None:
    out = tmp_path / "stopped.zarr"
    pipe = demo_pipeline(out, n_frames=3000, fps=100, config=_small(3000), device="cpu")
    pipe.start()
    deadline = time.monotonic() + 60
    while pipe.status().outputs < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipe.stop()
    status = pipe.wait(120)
    assert status.state is PipelineState.FINISHED
    assert 30 <= status.frames_in < 3000
    rec = Recording.open(out)
    assert rec.n_frames == status.frames_in == status.frames_recorded
    assert rec.read_localizations().frame.max() < rec.n_frames
    n_maps = rec.n_frames // 10
    # every map has its place: reconstructed, or skipped to keep within the latency budget
    n_images = rec.read_image("reconstruction")[0].shape[0]
    assert n_images == n_maps == status.outputs + status.skipped_maps
    assert rec.read_image("gt/skeleton")[0].shape[0] == n_maps


_KILLED = """
import sys
from dblink_live.acquire import ReplaySource
from dblink_live.pipeline import Pipeline
Pipeline(ReplaySource(sys.argv[1], speed=1.0), sys.argv[2], recon=None, device="cpu").run()
"""


def test_a_killed_pipeline_process_leaves_a_readable_recording(
    small_recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(small_recording), str(out)])
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if Recording.open(out).n_frames >= 64:
                    break
            except DblinkError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the pipeline made no progress")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    rec = Recording.open(out)
    assert 64 <= rec.n_frames < 300
    src = Recording.open(small_recording).read_frames(0, rec.n_frames)
    assert np.array_equal(rec.read_frames(), src)


class _GlitchySource:
    """Frames from a recording, with one wrong-shape and one wrong-dtype frame mid-stream."""

    def __init__(self, path: Path):
        self.inner = ReplaySource(path, speed=0)
        self.frame_shape = self.inner.frame_shape
        self.pixel_size_nm = self.inner.pixel_size_nm
        self.frame_interval_s = self.inner.frame_interval_s
        self.camera = self.inner.camera
        self.errors: list[str] = []

    def run(self, sink, stop: threading.Event) -> int:
        def guarded(frame, meta):
            try:
                sink(frame, meta)
            except DblinkError as exc:  # what the Micro-Manager hook does
                self.errors.append(str(exc))

        def inject(frame, meta):
            if meta["frame"] == 50:
                guarded(np.zeros((5, 5), np.uint16), {})
            if meta["frame"] == 60:
                guarded(frame.astype(np.float32), {})
            guarded(frame, meta)

        return self.inner.run(inject, stop)


def test_bad_frames_are_rejected_counted_and_the_run_goes_on(
    small_recording: Path, tmp_path: Path
) -> None:
    src = _GlitchySource(small_recording)
    status = Pipeline(src, tmp_path / "bad.zarr", config=_small(), recon=None).run()
    assert status.state is PipelineState.FINISHED
    assert status.bad_frames == 2 and len(src.errors) == 2
    assert "shape (5, 5)" in src.errors[0] and "float32" in src.errors[1]
    assert any("rejected" in w for w in status.warnings)
    assert Recording.open(tmp_path / "bad.zarr").n_frames == 300


class _BrokenLocalizer:
    name = "broken"
    device = "cpu"
    takes_context = True

    def localize(self, frames, calibration, first_frame=0, **context):
        if first_frame >= 100:
            raise RuntimeError("GPU fell off the bus")
        return make_localizer(None, "cpu").localize(frames, calibration, first_frame, **context)


def test_a_failing_worker_fails_the_pipeline_but_the_recording_is_complete(
    small_recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "failed.zarr"
    pipe = Pipeline(
        ReplaySource(small_recording, speed=0), out, config=_small(), localizer=_BrokenLocalizer()
    )
    status = pipe.run()
    assert status.state is PipelineState.FAILED
    assert "GPU fell off the bus" in status.error
    assert Recording.open(out).n_frames == status.frames_in  # the recorder still wrote all
    with pytest.raises(DblinkError, match="make a new one"):
        pipe.start()


def test_a_replayed_simulation_is_a_ground_truth_source(small_recording: Path) -> None:
    """The pipeline asks the source for its truth (GroundTruthSource), not its attributes:
    a replay hands over the stored truth at the live grid, and says where it came from."""
    from dblink_live.acquire.base import FrameSource, GroundTruthSource

    src: FrameSource = ReplaySource(small_recording, speed=0)
    assert isinstance(src, GroundTruthSource)
    grid = _small().grid
    known = src.ground_truth(grid)
    assert known is not None and known.maps_during_run
    assert known.metadata == {"simulated": True, "replayed_from": str(small_recording)}
    stored = Recording.open(small_recording)
    assert len(known.truth.emitters(0, stored.n_frames)) == len(stored.read_emitters())
    maps = known.truth.maps(0, 2)
    assert maps is not None and maps["gt/skeleton"].shape[0] == 2


def test_finish_run_scores_a_replayed_simulation_and_reports_a_failed_run(
    small_recording: Path, tmp_path: Path
) -> None:
    """The orchestration after a run (library, not CLI): scores against the replayed
    simulation's ground truth, the summary files, one line; a failed run raises after
    writing its summary, naming where the frames are."""
    from dblink_live.report import finish_run

    out = tmp_path / "ok.zarr"
    pipe = Pipeline(ReplaySource(small_recording, speed=0), out, config=_small(), device="cpu")
    report = finish_run(pipe, pipe.run())
    assert report.recording == out and report.summary_written
    assert report.summary_png.exists() and report.summary_json.exists()
    tol1 = report.scores["reconstruction"]["tol1"]
    assert 0.0 <= tol1["jaccard"] <= 1.0
    assert f"Jaccard {tol1['jaccard']:.3f}" in report.describe()
    assert json.loads(report.summary_json.read_text())["scores"] == json.loads(
        json.dumps(report.scores)
    )

    bad = tmp_path / "bad.zarr"
    pipe = Pipeline(
        ReplaySource(small_recording, speed=0), bad, config=_small(), localizer=_BrokenLocalizer()
    )
    status = pipe.run()
    with pytest.raises(DblinkError, match=r"the run failed: .*GPU fell off the bus.*bad\.zarr"):
        finish_run(pipe, status)
    assert (tmp_path / "bad_summary.png").exists()


def test_a_window_outside_the_models_training_range_is_warned(
    small_recording: Path, tmp_path: Path
) -> None:
    cfg = _small().updated(grid={"window_frames": 20})
    pipe = Pipeline(ReplaySource(small_recording, speed=0), tmp_path / "w20.zarr", config=cfg)
    status = pipe.run()
    assert status.state is PipelineState.FINISHED and status.outputs == 15
    (warning,) = [w for w in status.warnings if "outside the range" in w]
    assert "W=20" in warning and "recon_filaments_live" in warning
    assert "recon_filaments_wrange was trained for it" in warning
    ok = Pipeline(ReplaySource(small_recording, speed=0), tmp_path / "w10.zarr", config=_small())
    assert not [w for w in ok.run().warnings if "outside the range" in w]


def test_a_failed_start_reports_and_does_not_hang(small_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.zarr"
    pipe = Pipeline(ReplaySource(small_recording), out, recon=tmp_path / "missing.pt")
    with pytest.raises(DblinkError, match=r"missing\.pt"):
        pipe.start()
    t0 = time.monotonic()
    status = pipe.wait(timeout=30)  # returns at once: nothing is running
    assert time.monotonic() - t0 < 5
    assert status.state is PipelineState.FAILED and "missing.pt" in status.error
    assert not out.exists()  # failed before creating the recording


def test_an_existing_output_is_refused(small_recording: Path) -> None:
    with pytest.raises(DblinkError, match="already exists"):
        Pipeline(ReplaySource(small_recording), small_recording)


@pytest.mark.mm
@pytest.mark.timeout(240)
def test_demo_command_headless_writes_recording_and_summary(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "small.yaml"
    from dblink_live.config import save_config

    # every frame processed (no latency budget: at 200 Hz the start-up backlog may skip a map;
    # tests/test_latency.py covers the budget)
    save_config(_small().updated(live={"latency_budget_s": 600.0}), cfg)
    out = tmp_path / "demo.zarr"
    code = main(
        ["demo", "-n", "120", "--fps", "200", "-c", str(cfg), "-o", str(out), "--headless", "-q"]
    )
    assert code == 0
    said = capsys.readouterr().out
    assert "recorded 120 frames (0 dropped" in said and "Jaccard" in said
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["summary"]["frames_recorded"] == 120
    assert summary["scores"]["reconstruction"]["tol1"]["recall"] > 0.5
    png = tmp_path / "demo_summary.png"
    assert png.stat().st_size > 10_000
    assert main(["demo", "-n", "10", "-o", str(out), "--headless"]) == 2  # exists: refused
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "120 frames recorded, 0 dropped by the live path" in capsys.readouterr().out


@pytest.mark.mm
@pytest.mark.isolated
@pytest.mark.timeout(240)
def test_live_command_on_the_democamera(tmp_path: Path, capsys) -> None:
    from dblink_live.acquire import demo_camera_paths
    from dblink_live.config import save_config

    adapters, mm_cfg = demo_camera_paths()
    cfg = tmp_path / "scope.yaml"  # acquisition settings from a config, the rest on the line
    save_config(
        RunConfig().updated(
            live={"frames": 20, "roi": [0, 0, 64, 48], "adapter_path": adapters,
                  "micromanager_config": mm_cfg, "keep_in_micromanager": False}
        ),
        cfg,
    )  # fmt: skip
    out = tmp_path / "live.zarr"
    code = main(
        ["live", "-c", str(cfg), "--exposure-ms", "5", "--weights", "none", "-o", str(out),
         "--headless", "-q"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    rec = Recording.open(out)
    assert rec.n_frames == 20 and rec.frame_shape == (48, 64)
    assert rec.config["live"]["roi"] == [0, 0, 64, 48]
    assert (tmp_path / "live_summary.png").exists()
    assert main(["live", "-n", "5", "-o", str(tmp_path / "x.zarr"), "--headless"]) == 2
    assert main(["live", "-c", str(cfg), "--roi", "1,2,3", "-o", str(tmp_path / "y.zarr")]) == 2


def test_replay_command_headless_with_the_classic_localizer(
    small_recording: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "again.zarr"
    code = main(
        ["replay", str(small_recording), "--speed", "0", "--localizer", "classic", "-o",
         str(out), "--headless", "-q"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    rec = Recording.open(out)
    assert rec.n_frames == 300 and rec.localization_info()["name"] == "classic"
    assert rec.read_image("reconstruction")[0].shape[0] == 30
    assert "Jaccard" in capsys.readouterr().out  # the replayed simulation is scored
    assert len(rec.read_emitters()) == len(Recording.open(small_recording).read_emitters())
    assert main(["replay", str(tmp_path / "missing.zarr"), "--headless"]) == 2


@pytest.mark.mm
@pytest.mark.timeout(240)
def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    from dblink_live.config import save_config

    cfg = tmp_path / "small.yaml"
    save_config(_small(5000), cfg)
    out = tmp_path / "interrupted.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dblink_live.cli", "demo", "-n", "5000", "-c", str(cfg), "-o",
         str(out), "--headless"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if Recording.open(out).n_frames >= 100:
                    break
            except DblinkError:
                pass
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopping and draining" in stderr and "recorded" in stdout
    rec = Recording.open(out)
    assert 100 <= rec.n_frames < 5000
    assert rec.meta["live_summary"]["frames_recorded"] == rec.n_frames
    assert rec.read_image("reconstruction")[0].shape[0] == rec.n_frames // 10
    assert (tmp_path / "interrupted_summary.png").exists()


def test_status_and_latest_are_safe_from_another_thread_during_a_run(
    small_recording: Path, tmp_path: Path
) -> None:
    pipe = Pipeline(ReplaySource(small_recording, speed=0), tmp_path / "s.zarr", config=_small())
    errors: list[str] = []
    seen: set[PipelineState] = set()

    def hammer() -> None:
        while not pipe.state.done:
            try:
                seen.add(pipe.status().state)
                pipe.latest(render_maps=5)
            except Exception as exc:  # any exception here is a thread-safety bug
                errors.append(repr(exc))

    t = threading.Thread(target=hammer)
    t.start()  # from before the start: status() must be safe during setup too
    time.sleep(0.05)
    pipe.start()
    status = pipe.wait(120)
    t.join(10)
    assert errors == [] and PipelineState.RUNNING in seen
    assert status.state is PipelineState.FINISHED
    assert pipe.latest().reconstruction is not None
