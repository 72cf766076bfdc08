"""The live viewer: recording scrubbing, live following, status, snapshot, export, clean close.

Live mode runs against ``FakePipeline``, a test double with exactly the pipeline's public
surface (start/stop/wait/status/latest/state/recording_path) that produces synthetic frames
from a thread and writes them to a real recording; one test runs the real ``demo_pipeline``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dblink_live.display.alerts import status_text
from dblink_live.display.imaging import auto_levels, confidence_tint, nice_length_nm
from dblink_live.display.source import RecordingSource
from dblink_live.errors import DblinkError, RecordingError
from dblink_live.io.recording import Recording
from dblink_live.localizations import Localizations, count_maps
from dblink_live.pipeline_types import LiveResults, PipelineState, PipelineStatus

PX_NM = 160.0
BIN_NM = 40.0
W = 5
SHAPE = (16, 16)  # camera pixels: 2560 nm
GRID = (64, 64)  # bins of 40 nm: 2560 nm


# ---------------------------------------------------------------------- synthetic data
def _raw(i: int) -> np.ndarray:
    """Frame ``i``: a gradient whose [0, 0] pixel is 100 + i (identifies the frame)."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (100 + i + 20 * xx + 7 * yy).astype(np.uint16)


def _locs(first: int, n: int) -> Localizations:
    """Three localizations per frame at positions that depend on the frame."""
    frames = np.repeat(np.arange(first, first + n), 3)
    x = (np.tile([300.0, 1300.0, 2300.0], n) + 10 * frames) % 2560
    y = np.tile([500.0, 1500.0, 2000.0], n)
    z = np.zeros(len(frames))
    return Localizations(frames, x, y, z + 1000, z + 10, z + 20, z + 0.9, pixel_size_nm=PX_NM)


def _recon(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Output ``k``: a diagonal band that moves with k; confidence low in one corner."""
    yy, xx = np.mgrid[: GRID[0], : GRID[1]]
    rec = (np.abs(xx - yy - k) < 3).astype(np.float32) * 0.9
    conf = np.ones(GRID, np.float32)
    conf[:16, :16] = 0.2
    return rec, conf


def _write_recording(path: Path, n_frames: int, n_outputs: int) -> Recording:
    rec = Recording.create(path, frame_shape=SHAPE, pixel_size_nm=PX_NM, frame_interval_s=0.01)
    rec.append_frames(np.stack([_raw(i) for i in range(n_frames)]))
    rec.append_localizations(_locs(0, n_frames))
    for name in ("reconstruction", "confidence"):
        rec.create_image(name, GRID, "float32", bin_nm=BIN_NM, window_frames=W)
    for k in range(n_outputs):
        r, c = _recon(k)
        rec.append_image("reconstruction", r)
        rec.append_image("confidence", c)
    return rec


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec.zarr"
    _write_recording(path, n_frames=40, n_outputs=8)
    return path


class FakePipeline:
    """The pipeline's public surface, producing synthetic results (from a thread or by hand).

    Frame i arrives every ``period_s``; every W frames a reconstruction appears. Everything is
    also written to a recording at ``recording_path``, as the real pipeline does.
    """

    def __init__(
        self,
        path: Path,
        n_frames: int = 400,
        period_s: float = 0.004,
        threaded: bool = True,
        start_delay_s: float = 0.0,
        start_error: Exception | None = None,
        **status: object,
    ):
        self._path = path
        self.n_frames = n_frames
        self.period_s = period_s
        self.threaded = threaded
        self.start_delay_s = start_delay_s
        self.start_error = start_error
        self.status_extra = status
        self.calls: dict[str, int] = {"start": 0, "stop": 0, "wait": 0, "latest": 0}
        self._state = PipelineState.IDLE
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._results = LiveResults(pixel_size_nm=PX_NM, bin_nm=BIN_NM, window_frames=W)
        self._maps: list[np.ndarray] = []
        self.frames_in = 0
        self.thread: threading.Thread | None = None
        self.recording: Recording | None = None

    # -- the pipeline API ------------------------------------------------------------------
    @property
    def state(self) -> PipelineState:
        return self._state

    @property
    def recording_path(self) -> Path:
        return self._path

    def start(self) -> FakePipeline:
        self.calls["start"] += 1
        time.sleep(self.start_delay_s)  # opening a camera, loading models
        if self.start_error is not None:
            self._state = PipelineState.FAILED
            raise self.start_error
        self.recording = Recording.create(
            self._path, frame_shape=SHAPE, pixel_size_nm=PX_NM, frame_interval_s=0.01
        )
        for name in ("reconstruction", "confidence"):
            self.recording.create_image(name, GRID, "float32", bin_nm=BIN_NM, window_frames=W)
        self._state = PipelineState.RUNNING
        if self.threaded:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def stop(self) -> None:
        self.calls["stop"] += 1
        self._stop.set()
        if not self.threaded and self._state is PipelineState.RUNNING:
            self._finish()

    def wait(self, timeout: float | None = None) -> PipelineStatus:
        self.calls["wait"] += 1
        self._finished.wait(timeout)
        return self.status()

    def status(self) -> PipelineStatus:
        return PipelineStatus(
            state=self._state,
            frames_in=self.frames_in,
            frames_recorded=self.frames_in,
            frames_localized=self.frames_in,
            outputs=max(0, self._results.output_index + 1),
            input_fps=250.0,
            localizer_fps=240.0,
            maps_per_s=48.0,
            lag_frames=7,
            lag_s=0.03,
            density_per_um2=0.5,
            device="cpu",
            **self.status_extra,  # type: ignore[arg-type]
        )

    def latest(self, render_maps: int = 10) -> LiveResults:
        self.calls["latest"] += 1
        with self._lock:
            res = self._results
            maps = self._maps[-max(1, render_maps) :]
        render = np.sum(maps, axis=0, dtype=np.float32) if maps else None
        return replace(res, render=render, render_maps=len(maps))

    # -- the producer ----------------------------------------------------------------------
    def step(self) -> None:
        """Produce one frame (and an output every W frames); one or two new versions."""
        i = self.frames_in
        raw = _raw(i)
        with self._lock:
            self._results = replace(
                self._results, version=self._results.version + 1, frame_index=i, raw=raw
            )
        self.frames_in = i + 1
        if (i + 1) % W == 0:
            k = i // W
            assert self.recording is not None
            self.recording.append_frames(np.stack([_raw(j) for j in range(k * W, i + 1)]))
            locs = _locs(k * W, W)
            self.recording.append_localizations(locs)
            rec, conf = _recon(k)
            self.recording.append_image("reconstruction", rec)
            self.recording.append_image("confidence", conf)
            counts = count_maps(locs, BIN_NM, GRID, W, 1, k * W)[0]
            with self._lock:
                self._maps.append(counts)
                self._results = replace(
                    self._results,
                    version=self._results.version + 1,
                    output_index=k,
                    reconstruction=rec,
                    confidence=conf,
                    output_first_frame=k * W,
                )

    def _run(self) -> None:
        while self.frames_in < self.n_frames and not self._stop.is_set():
            self.step()
            time.sleep(self.period_s)
        self._state = PipelineState.DRAINING
        time.sleep(0.02)
        self._finish()

    def _finish(self) -> None:
        self._state = PipelineState.FINISHED
        self._finished.set()


@pytest.fixture
def windows(qtbot):
    """Factory of ViewerWindows that closes (and deletes) any the test left open."""
    from qtpy import QtWidgets

    from dblink_live.display import ViewerWindow

    made = []

    def make(*args, **kwargs):
        win = ViewerWindow(*args, **kwargs)
        made.append(win)
        win.show()
        return win

    yield make
    for win in made:
        with contextlib.suppress(RuntimeError):  # already deleted by the test
            win.close()
    QtWidgets.QApplication.processEvents()


def test_the_fake_pipeline_has_the_live_session_surface() -> None:
    """The viewer is typed against LiveSession; the pipeline and this test double both
    implement it, parameter for parameter, so a change to the pipeline's surface that the
    double does not follow fails here rather than hiding behind the double."""
    import inspect

    from dblink_live.pipeline import Pipeline
    from dblink_live.pipeline_types import LiveSession

    members = [n for n in vars(LiveSession) if not n.startswith("_")]
    assert {"state", "recording_path", "start", "stop", "wait", "status", "latest"} <= set(members)

    def params(fn) -> list[tuple[str, object, object]]:  # type: ignore[no-untyped-def]
        sig = inspect.signature(fn)
        return [(p.name, p.kind, p.default) for p in sig.parameters.values()]

    for name in members:
        want = vars(LiveSession)[name]
        for impl in (Pipeline, FakePipeline):
            got = inspect.getattr_static(impl, name)
            if isinstance(want, property):
                assert isinstance(got, property), (impl.__name__, name)
            else:
                assert params(got) == params(want), (impl.__name__, name)
    fake = FakePipeline(Path("unused.zarr"), threaded=False)
    assert isinstance(fake, LiveSession)


def _is_live(widget) -> bool:
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


# ---------------------------------------------------------------------- Qt-free parts
def test_recording_source_time_mapping_and_render(recording: Path) -> None:
    src = RecordingSource(recording)
    assert (src.n_frames, src.n_outputs, src.window_frames, src.bin_nm) == (40, 8, W, BIN_NM)
    assert src.grid_shape == GRID
    # the output whose window is centred nearest to the frame, clamped to what exists
    assert [src.output_for_frame(f) for f in (0, 4, 5, 7, 9, 39)] == [0, 0, 1, 1, 1, 7]
    vf = src.view(23, render_maps=2)
    assert vf.frame_index == 23 and vf.output_index == 4 and vf.output_first_frame == 20
    np.testing.assert_array_equal(vf.raw, _raw(23))
    np.testing.assert_array_equal(vf.reconstruction, _recon(4)[0])
    # the render sums the localizations of frames 14..23 (2 maps of W) on the grid
    locs = Recording.open(recording).read_localizations()
    expected = count_maps(locs, BIN_NM, GRID, 2 * W, 1, 14)[0]
    np.testing.assert_array_equal(vf.render, expected)
    assert vf.render.sum() == 3 * 2 * W


def test_recording_source_follows_a_growing_recording(tmp_path: Path) -> None:
    rec = _write_recording(tmp_path / "grow.zarr", n_frames=10, n_outputs=2)
    src = RecordingSource(rec.path)
    assert src.render(9, 10).sum() == 30
    rec.append_frames(np.stack([_raw(i) for i in range(10, 20)]))
    rec.append_localizations(_locs(10, 10))
    assert src.n_frames == 10  # until refreshed
    assert src.refresh()
    assert src.n_frames == 20
    np.testing.assert_array_equal(src.raw_frame(17), _raw(17))
    assert src.render(19, 20).sum() == 60
    assert not src.refresh()  # nothing new


def test_recording_source_without_reconstruction(tmp_path: Path) -> None:
    rec = Recording.create(
        tmp_path / "r.zarr", frame_shape=SHAPE, pixel_size_nm=PX_NM, frame_interval_s=0.01
    )
    rec.append_frames(np.stack([_raw(i) for i in range(12)]))
    src = RecordingSource(rec.path)
    vf = src.view(5)
    assert vf.output_index == -1 and vf.reconstruction is None
    assert vf.render is not None and vf.render.shape == GRID and vf.render.sum() == 0
    assert "no reconstruction" in src.describe()


def test_status_text_alerts() -> None:
    clean = status_text(PipelineStatus(state=PipelineState.RUNNING, device="cuda:0"))
    assert clean.errors == () and clean.warnings == ()
    assert dict(clean.fields)["device"] == "cuda:0"
    bad = status_text(
        PipelineStatus(
            dropped_frames=7,
            recorder_lost=2,
            warnings=("localization density 3.10/um2/frame is outside the training range",),
        )
    )
    assert any("recorder lost 2" in e for e in bad.errors)
    assert any("density" in w for w in bad.warnings)
    assert any("7 frames dropped" in w for w in bad.warnings)
    # the pipeline's own dropped-frames warning is not repeated
    own = status_text(PipelineStatus(dropped_frames=3, warnings=("3 frames dropped by x",)))
    assert own.warnings == ("3 frames dropped by x",)
    failed = status_text(PipelineStatus(state=PipelineState.FAILED, error="boom"))
    assert failed.errors == ("pipeline failed: boom",)


def test_imaging_helpers() -> None:
    assert auto_levels(np.zeros((8, 8))) == (0.0, 1.0)
    sparse = np.zeros((100, 100))
    sparse[3, 4] = 5
    assert auto_levels(sparse) == (0.0, 5.0)
    assert nice_length_nm(10240) == 2000 and nice_length_nm(2400) == 200
    tint = confidence_tint(np.array([[0.0, 0.45, 0.5, 1.0]]), threshold=0.5)
    alpha = tint[0, :, 3]
    assert alpha[0] > alpha[1] > 0 and alpha[2] == 0 and alpha[3] == 0


def test_display_is_the_only_qt_importer(repo: Path) -> None:
    code = (
        "import pkgutil, importlib, sys, dblink_live\n"
        "for m in pkgutil.walk_packages(dblink_live.__path__, 'dblink_live.'):\n"
        "    if not m.name.startswith('dblink_live.display'):\n"
        "        importlib.import_module(m.name)\n"
        "import dblink_live.display, dblink_live.display.source, dblink_live.display.export\n"
        "bad = sorted(n for n in ('qtpy', 'PySide6', 'pyqtgraph') if n in sys.modules)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 0, r.stderr[-2000:]


def test_export_video_tiff_and_gif(recording: Path, tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    from dblink_live.display.export import export_video

    src = RecordingSource(recording)
    assert export_video(src, tmp_path / "v.tif") == 8
    stack = tifffile.imread(tmp_path / "v.tif")
    assert stack.shape == (8, *GRID)
    np.testing.assert_allclose(stack[3], _recon(3)[0])
    assert export_video(src, tmp_path / "v.gif", tint_threshold=0.5) == 8
    with Image.open(tmp_path / "v.gif") as gif:
        assert gif.n_frames == 8
        first = np.asarray(gif.convert("RGB"))
    assert first.shape == (*GRID, 3)
    assert (first[:16, :16, 2] > first[:16, :16, 0]).all()  # low-confidence corner tinted cyan
    # cancelling leaves no partial file
    assert export_video(src, tmp_path / "c.tif", progress=lambda d, t: d < 3) == 3
    assert not (tmp_path / "c.tif").exists()


# ---------------------------------------------------------------------- the window
@pytest.mark.qt
def test_viewer_opens_recording_and_slider_scrubs(windows, recording: Path, qtbot) -> None:
    win = windows(recording)
    qtbot.waitExposed(win)
    assert win.time_bar.slider.maximum() == 39
    np.testing.assert_array_equal(win.raw_panel.image, _raw(0))
    win.time_bar.slider.setValue(23)  # as the user would
    np.testing.assert_array_equal(win.raw_panel.image, _raw(23))
    np.testing.assert_array_equal(win.recon_panel.image, _recon(4)[0])
    np.testing.assert_array_equal(win.conf_panel.image, _recon(4)[1])
    assert win.render_window.value() * W > 24  # the window reaches back to frame 0
    assert win.render_panel.image.sum() == 3 * 24
    assert "frame 23" in win.time_bar.label.text()
    assert "#4: frames 20-24" in win.recon_panel.subtitle.text()
    assert not win.following_live
    # a smaller localization window re-renders at once
    win.render_window.setValue(1)
    assert win.render_panel.image.sum() == 3 * W
    # the low-confidence tint covers exactly the low-confidence corner
    assert win.tint_item.isVisible()
    alpha = win.tint_item.image[..., 3]
    assert alpha[:16, :16].min() > 0 and alpha[16:, 16:].max() == 0
    win.tint_box.setChecked(False)
    assert not win.tint_item.isVisible()


@pytest.mark.qt
def test_playback_steps_through_the_recording(windows, recording: Path) -> None:
    win = windows(recording)
    win.timer.stop()  # drive the refreshes by hand
    win.time_bar.speed.setValue(2.0)  # 2x real time: 0.1 s of frames (10) per 50 ms tick
    win.time_bar.play_button.click()
    assert win.playing
    frames = []
    for _ in range(6):
        win.refresh()
        frames.append(win.frame.frame_index)
    assert frames == [10, 20, 30, 39, 39, 39]
    assert not win.playing and win.time_bar.play_button.text() == "Play"
    np.testing.assert_array_equal(win.raw_panel.image, _raw(39))
    win.set_playing(True)  # from the end: starts again at 0
    assert win.frame.frame_index == 0


@pytest.mark.qt
def test_panels_are_linked_in_nanometres(windows, recording: Path, qtbot) -> None:
    from qtpy import QtCore

    win = windows(recording)
    qtbot.waitExposed(win)
    # raw (16 px of 160 nm) and grid images (64 bins of 40 nm) cover the same 2560 nm
    for panel in win.panels:
        rect = panel.item.mapRectToView(panel.item.boundingRect())
        assert (rect.left(), rect.top()) == (0.0, 0.0), panel.objectName()
        assert rect.width() == pytest.approx(2560) and rect.height() == pytest.approx(2560)
    win.recon_panel.view.setRange(QtCore.QRectF(500, 700, 800, 800), padding=0)
    qtbot.wait(10)
    ref = win.recon_panel.view.viewRect()
    assert ref.width() < 1500  # zoomed in
    for panel in win.panels:
        r = panel.view.viewRect()
        assert r.center().x() == pytest.approx(ref.center().x(), abs=1)
        assert r.center().y() == pytest.approx(ref.center().y(), abs=1)
        assert r.width() == pytest.approx(ref.width(), rel=1e-3)
    assert win.raw_panel.scale_bar.label in ("100 nm", "200 nm")
    win.reset_zoom()
    assert win.raw_panel.view.viewRect().width() >= 2560
    assert win.raw_panel.scale_bar.label in ("500 nm", "1 µm")


@pytest.mark.qt
def test_snapshot_png_is_written_and_not_blank(windows, recording: Path, qtbot, tmp_path) -> None:
    from PIL import Image

    win = windows(recording)
    qtbot.waitExposed(win)
    win.show_frame_index(12)
    path = win.save_snapshot(tmp_path / "snap.png")
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    colours = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    assert len(np.unique(colours)) > 50
    # the reconstruction panel itself shows its bright band on black
    panel = tmp_path / "recon.png"
    assert win.recon_panel.graphics.grab().save(str(panel))
    with Image.open(panel) as img:
        lum = np.asarray(img.convert("L"))
    assert lum.max() > 150 and lum.min() < 30


@pytest.mark.qt
def test_export_from_the_window(windows, recording: Path, tmp_path: Path) -> None:
    import tifffile

    win = windows(recording)
    assert win.export_video(tmp_path / "out.tif") == 8
    assert tifffile.imread(tmp_path / "out.tif").shape == (8, *GRID)


@pytest.mark.qt
def test_opening_a_non_recording_shows_an_error(windows, recording: Path, tmp_path) -> None:
    from qtpy import QtWidgets

    win = windows(recording)
    (tmp_path / "plain").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for bad in (tmp_path / "plain", tmp_path / "notes.txt", tmp_path / "missing.zarr"):
        assert not win.open_recording(bad)
        assert str(bad.name) in win.last_error
        boxes = [b for b in win.findChildren(QtWidgets.QMessageBox) if b.isVisible()]
        assert boxes and bad.name in boxes[-1].text()
        boxes[-1].close()
    assert win.source is not None and win.source.path == recording  # still showing it
    with pytest.raises(RecordingError):
        windows(tmp_path / "plain")


@pytest.mark.qt
def test_live_display_skips_old_versions_and_redraws_only_new(windows, tmp_path: Path) -> None:
    fake = FakePipeline(tmp_path / "live.zarr", threaded=False).start()
    win = windows(pipeline=fake)
    win.timer.stop()  # drive the refreshes by hand
    assert win.following_live
    for _ in range(3):
        fake.step()
    win.refresh()
    assert win.shown_version == fake.latest().version == 3
    np.testing.assert_array_equal(win.raw_panel.image, _raw(2))
    redraws = win.counters["redraws"]
    win.refresh()  # nothing new: not redrawn
    assert win.counters["redraws"] == redraws
    for _ in range(4):  # frames 3, 4 (+ output 0), 5, 6: five new versions
        fake.step()
    win.refresh()
    assert win.shown_version == 8 and win.counters["skipped_versions"] == 4
    assert win.counters["redraws"] == redraws + 1
    np.testing.assert_array_equal(win.raw_panel.image, _raw(6))
    np.testing.assert_array_equal(win.recon_panel.image, _recon(0)[0])
    assert win.frame.output_index == 0


@pytest.mark.qt
def test_live_pause_and_scrub_without_stopping(windows, tmp_path: Path, qtbot) -> None:
    fake = FakePipeline(tmp_path / "live.zarr", n_frames=100000, period_s=0.003).start()
    win = windows(pipeline=fake, refresh_hz=50)
    qtbot.waitUntil(lambda: win.frame is not None and win.frame.output_index >= 2, timeout=10000)
    assert win.raw_panel.image[0, 0] == 100 + win.frame.frame_index  # the frame it says
    assert win.raw_panel.image.shape == SHAPE and win.recon_panel.image.shape == GRID
    # pause the display: acquisition goes on, the screen stays
    win.time_bar.live_button.click()
    assert not win.following_live
    shown, frames = win.shown_version, fake.frames_in
    qtbot.waitUntil(lambda: fake.frames_in > frames + 20, timeout=10000)
    qtbot.wait(100)  # several display ticks
    assert win.shown_version == shown
    assert fake.state is PipelineState.RUNNING and fake.calls["stop"] == 0
    # scrub back through what has been recorded so far
    qtbot.waitUntil(lambda: win.source is not None and win.source.n_frames >= 10, timeout=5000)
    win.time_bar.slider.setValue(3)
    np.testing.assert_array_equal(win.raw_panel.image, _raw(3))
    np.testing.assert_array_equal(win.recon_panel.image, _recon(0)[0])
    # follow again: newer results appear
    win.time_bar.live_button.click()
    assert win.following_live
    qtbot.waitUntil(lambda: win.shown_version > shown, timeout=5000)
    assert win.frame.frame_index > frames


@pytest.mark.qt
def test_status_bar_shows_rates_warnings_and_errors(windows, tmp_path: Path) -> None:
    fake = FakePipeline(
        tmp_path / "live.zarr",
        threaded=False,
        dropped_frames=12,
        recorder_lost=3,
        warnings=("localization density 3.10/um2/frame is outside the training range 0.2-1.0",),
    ).start()
    win = windows(pipeline=fake)
    win.timer.stop()
    fake.step()
    win.refresh()
    text = win.status_fields.text()
    for part in ("running", "in 250 fr/s", "loc 240 fr/s", "lag 7 fr", "dropped 12", "cpu"):
        assert part in text
    assert "0.50 loc/um2/frame" in text
    assert not win.banner.isHidden() and win.banner.level == "error"
    banner = win.banner.text()
    assert "recorder lost 3 frames" in banner
    assert "outside the training range" in banner
    assert "12 frames dropped" in banner
    assert "bold" in win.status_fields.labels["dropped"].styleSheet()


@pytest.mark.qt
def test_start_stop_buttons_and_finished_run_becomes_scrubbable(windows, tmp_path, qtbot) -> None:
    fake = FakePipeline(tmp_path / "live.zarr", n_frames=30, period_s=0.002)
    win = windows(pipeline=fake, refresh_hz=50)
    assert fake.state is PipelineState.IDLE
    assert win.start_action.isEnabled() and not win.stop_action.isEnabled()
    win.start_action.trigger()
    qtbot.waitUntil(lambda: fake.calls["start"] == 1, timeout=5000)
    qtbot.waitUntil(lambda: fake.state.done, timeout=10000)
    qtbot.waitUntil(lambda: win.source is not None and win.source.n_frames == 30, timeout=5000)
    assert not win.following_live and not win.time_bar.live_button.isEnabled()
    assert not win.start_action.isEnabled() and not win.stop_action.isEnabled()
    assert win.time_bar.slider.maximum() == 29
    win.time_bar.slider.setValue(11)
    np.testing.assert_array_equal(win.raw_panel.image, _raw(11))


@pytest.mark.qt
def test_a_slow_start_keeps_the_window_responsive(windows, tmp_path, qtbot) -> None:
    fake = FakePipeline(tmp_path / "live.zarr", n_frames=100000, start_delay_s=1.0)
    win = windows(pipeline=fake, refresh_hz=50)
    win.start_action.trigger()
    assert win.starting and not win.start_action.isEnabled()
    assert "starting" in win.statusBar().currentMessage()
    ticks = win.counters["ticks"]
    qtbot.wait(500)  # the start is still sleeping: the timer must keep ticking meanwhile
    assert fake.state is PipelineState.IDLE and win.starting
    assert win.counters["ticks"] - ticks >= 10
    qtbot.waitUntil(lambda: not win.starting, timeout=5000)
    assert win.following_live and win.stop_action.isEnabled() and win.last_error is None
    qtbot.waitUntil(lambda: win.frame is not None, timeout=5000)
    with qtbot.waitSignal(win.closed, timeout=5000):
        win.close()
    assert fake.calls["stop"] == 1 and fake.state is PipelineState.FINISHED


@pytest.mark.qt
def test_a_failed_start_is_shown(windows, tmp_path, qtbot) -> None:
    error = DblinkError("no camera named 'Andor' in MMConfig_demo.cfg")
    fake = FakePipeline(tmp_path / "live.zarr", start_delay_s=0.2, start_error=error)
    win = windows(pipeline=fake, refresh_hz=50)
    win.start_action.trigger()
    qtbot.waitUntil(lambda: not win.starting, timeout=5000)
    assert win.last_error == str(error)
    assert not win.following_live
    assert not win.start_action.isEnabled() and not win.stop_action.isEnabled()


@pytest.mark.qt
def test_closing_during_a_slow_start_stops_the_pipeline(windows, tmp_path, qtbot) -> None:
    fake = FakePipeline(tmp_path / "live.zarr", n_frames=100000, start_delay_s=0.5)
    win = windows(pipeline=fake, refresh_hz=50)
    win.start_action.trigger()
    with qtbot.waitSignal(win.closed, timeout=5000):
        win.close()
    assert fake.calls["start"] == 1 and fake.calls["stop"] == 1
    assert fake.state is PipelineState.FINISHED and not fake.thread.is_alive()


@pytest.mark.qt
def test_stop_button_stops_acquisition(windows, tmp_path, qtbot) -> None:
    fake = FakePipeline(tmp_path / "live.zarr", n_frames=100000).start()
    win = windows(pipeline=fake, refresh_hz=50)
    qtbot.waitUntil(lambda: win.stop_action.isEnabled(), timeout=5000)
    win.stop_action.trigger()
    assert fake.calls["stop"] == 1
    qtbot.waitUntil(lambda: fake.state.done, timeout=5000)
    assert fake.frames_in < 100000


@pytest.mark.qt
def test_closing_stops_the_pipeline_and_leaks_no_widgets(windows, tmp_path, qtbot) -> None:
    from qtpy import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    before = set(app.topLevelWidgets())
    fake = FakePipeline(tmp_path / "live.zarr", n_frames=100000).start()
    win = windows(pipeline=fake, refresh_hz=50)
    win.show_error("test", "a child message box")  # children go with the window
    qtbot.waitUntil(lambda: win.frame is not None, timeout=5000)
    destroyed = []
    win.destroyed.connect(lambda *_: destroyed.append(True))
    with qtbot.waitSignal(win.closed, timeout=5000):
        win.close()
    assert fake.calls["stop"] == 1 and fake.calls["wait"] == 1
    assert fake.state is PipelineState.FINISHED and not fake.thread.is_alive()
    for _ in range(3):
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
        app.processEvents()
    assert destroyed and not _is_live(win)
    assert [w for w in app.topLevelWidgets() if w not in before] == []


@pytest.mark.qt
def test_run_viewer_returns_when_closed(tmp_path: Path, qtbot) -> None:
    from qtpy import QtCore, QtWidgets

    from dblink_live.display import ViewerWindow, run_viewer

    fake = FakePipeline(tmp_path / "live.zarr", n_frames=100000).start()
    seen = {}

    def close_it() -> None:
        wins = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ViewerWindow)]
        if not wins or wins[0].frame is None:
            QtCore.QTimer.singleShot(50, close_it)
            return
        seen["title"] = wins[0].windowTitle()
        wins[0].close()

    QtCore.QTimer.singleShot(100, close_it)
    assert run_viewer(pipeline=fake, title="demo run") == 0
    assert seen["title"] == "demo run"
    assert fake.calls["stop"] == 1 and fake.state is PipelineState.FINISHED
    # start=True: the window opens first, then starts the pipeline in the background
    slow = FakePipeline(tmp_path / "slow.zarr", n_frames=100000, start_delay_s=0.5)
    QtCore.QTimer.singleShot(100, close_it)
    assert run_viewer(pipeline=slow, start=True) == 0
    assert slow.calls["start"] == 1 and slow.calls["stop"] == 1
    assert slow.state is PipelineState.FINISHED
    failed = FakePipeline(tmp_path / "bad.zarr", threaded=False, recorder_lost=2).start()
    failed.step()
    QtCore.QTimer.singleShot(100, close_it)
    assert run_viewer(pipeline=failed) == 1
    # event loops run afterwards still work (run_viewer must not quit the application)
    ticks = []
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=2000)
    timer.stop()


@pytest.mark.qt
def test_viewer_on_real_demo_pipeline(windows, tmp_path: Path, qtbot) -> None:
    try:
        from dblink_live.pipeline import demo_pipeline
    except ImportError as exc:  # pragma: no cover - while the pipeline is being written
        pytest.skip(f"dblink_live.pipeline not available: {exc}")
    from dblink_live.config import RunConfig

    cfg = RunConfig().updated(
        simulation={"camera": {"width_px": 32, "height_px": 32}},
        live={"recon_roi": "full"},  # the whole grid, however busy the machine
    )
    pipe = demo_pipeline(tmp_path / "demo.zarr", n_frames=200, fps=200, config=cfg, device="cpu")
    pipe.start()
    win = windows(pipeline=pipe)
    qtbot.waitUntil(lambda: win.frame is not None and win.frame.output_index >= 0, timeout=120000)
    assert win.raw_panel.image.shape == (32, 32)
    assert win.recon_panel.image.shape == win.conf_panel.image.shape
    assert win.render_panel.image.sum() > 0
    assert "cpu" in win.status_fields.text()
    win.close()
    assert pipe.state is PipelineState.FINISHED
    # closing the window stopped the acquisition: what arrived is recorded, nothing lost
    st = pipe.status()
    assert 0 < st.frames_in <= 200 and st.recorder_lost == 0
    assert Recording.open(tmp_path / "demo.zarr").n_frames == st.frames_in


@pytest.mark.qt
@pytest.mark.timeout(240)
def test_the_raw_panel_follows_the_camera_while_the_localizer_lags(
    windows, tmp_path: Path, qtbot
) -> None:
    """A real window on a real pipeline (replayed camera at 100 Hz, real ring) whose localizer
    is made ten times too slow: the camera panel still shows a new frame at >= 15 Hz."""
    from doubles import SlowLocalizer

    from dblink_live.acquire.replay import ReplaySource
    from dblink_live.config import RunConfig
    from dblink_live.pipeline import Pipeline
    from dblink_live.sim.record import simulate_recording

    cfg = RunConfig().updated(
        simulation={"n_frames": 1200, "camera": {"width_px": 32, "height_px": 32}},
        live={"recon_roi": "full"},
    )
    rec = tmp_path / "sim.zarr"
    simulate_recording(cfg, rec, seed=2)
    assert Recording.open(rec).frame_interval_s == pytest.approx(0.01)
    pipe = Pipeline(
        ReplaySource(rec, speed=1),
        tmp_path / "lagging.zarr",
        config=cfg,
        device="cpu",
        recon="none",
        localizer=SlowLocalizer(0.5),
    )
    pipe.start()
    win = windows(pipeline=pipe, refresh_hz=20.0)
    shown: list[tuple[float, int, int]] = []  # (time, raw frame shown, localizer lag)

    def sample() -> None:
        st = pipe.status()
        if win.frame is not None and st.state is PipelineState.RUNNING:
            shown.append(
                (time.monotonic(), win.frame.frame_index, st.frames_in - st.frames_localized)
            )

    win.timer.timeout.connect(sample)  # after the window's own refresh
    qtbot.waitUntil(lambda: any(lag > 100 for *_, lag in shown), timeout=60000)
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: time.monotonic() - t0 > 3.0 or pipe.state.done, timeout=10000)
    win.close()
    lagging = [(t, f) for t, f, lag in shown if t >= t0 and lag > 100]
    assert len(lagging) > 20, shown[-5:]
    span = lagging[-1][0] - lagging[0][0]
    changes = sum(1 for (_, a), (_, b) in itertools.pairwise(lagging) if b != a)
    assert changes / span >= 15.0, (changes, span)
    # and what it shows is the camera: the frame numbers advance at the camera rate
    advance = (lagging[-1][1] - lagging[0][1]) / span
    assert advance > 50.0, advance


def test_screenshot_script(recording: Path, tmp_path: Path, repo: Path) -> None:
    png, js = tmp_path / "shot.png", tmp_path / "shot.json"
    r = subprocess.run(
        [
            sys.executable,
            str(repo / "scripts" / "screenshot_viewer.py"),
            "--recording",
            str(recording),
            "--frame",
            "20",
            "-o",
            str(png),
            "--json",
            str(js),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(js.read_text())
    assert info["mode"] == "recording" and info["frame_index"] == 20
    assert info["width_px"] > 200 and info["unique_colours"] > 50
    assert png.stat().st_size > 1000


@pytest.mark.slow
def test_bench_viewer_script(tmp_path: Path, repo: Path) -> None:
    pytest.importorskip("dblink_live.pipeline")
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(repo / "scripts" / "bench_viewer.py"),
            "--frames",
            "40",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {row["mode"] for row in data["runs"]} == {"headless", "viewer"}
    assert all(row["outputs"] == 4 for row in data["runs"])
    assert data["median"]["viewer_over_headless"]["outputs_per_s"] > 0
    assert data["display"]["ticks_per_s"] > 0
    assert "viewer/headless" in r.stdout


def _dblink(*args: str) -> subprocess.CompletedProcess:
    """The command line in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dblink_live.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.qt
def test_real_tiff_route_localize_reprocess_view(windows, shared_data: Path, tmp_path, qtbot):
    """A TIFF nobody calibrated becomes a recording (`localize -o NEW.zarr`), is reconstructed
    (`reprocess`) and browsed (`view`): raw frames, localizations and reconstruction show."""
    stack = shared_data / "deepstorm_demo1" / "artificial_dataset_demo1.tif"
    rec = tmp_path / "stack.zarr"
    r = _dblink(
        "localize", str(stack), "-o", str(rec), "--pixel-size-nm", "100", "-q", "--device", "cpu"
    )
    assert r.returncode == 0, r.stderr
    assert "camera estimated from 20 frames" in " ".join(r.stderr.split())
    r = _dblink("reprocess", str(rec), "-q", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    recording = Recording.open(rec)
    assert recording.n_frames == 20 and recording.n_localizations > 20 * 50
    recon, _ = recording.read_image("reconstruction")
    assert recon.shape[0] == 2
    win = windows(rec)
    qtbot.waitExposed(win)
    assert win.raw_panel.image is not None and win.raw_panel.image.shape == (64, 64)
    assert win.recon_panel.image is not None and win.recon_panel.image.max() > 0
    assert win.render_panel.image is not None and win.render_panel.image.sum() > 0


@pytest.mark.qt
def test_a_recording_made_from_a_table_shows_its_localizations(windows, tmp_path, qtbot):
    """`reprocess TABLE -o NEW.zarr` makes a recording without camera frames (and with a grid
    away from the origin); `view` shows its localizations in the raw frame's place and its
    reconstructions, over the table's frames."""
    from dblink_live.io.tables import write_localizations

    rng = np.random.default_rng(3)
    n = 3000
    frame = np.sort(rng.integers(0, 50, n))
    x = 21_000 + rng.uniform(0, 2000, n)  # a short vertical line at x ~ 21-23 um
    y = 15_000 + rng.normal(0, 20, n) + np.linspace(0, 2000, n)
    locs = Localizations(
        frame, x, y, np.full(n, 1e3), np.full(n, 50.0), np.full(n, 15.0), np.ones(n), n_frames=50
    )
    table = tmp_path / "line.csv"
    write_localizations(locs, table, format="thunderstorm")
    out = tmp_path / "line.zarr"
    r = _dblink(
        "reprocess",
        str(table),
        "-o",
        str(out),
        "--weights",
        "recon_filaments_live",
        "-q",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    src = RecordingSource(out)
    assert not src.has_raw and src.n_frames == 50 and src.n_outputs == 5
    assert src.origin_nm[0] > 19_000  # the data's box, not the origin
    assert src.render(49, 50).sum() == n  # every localization lands on the grid
    win = windows(out)
    qtbot.waitExposed(win)
    assert win.time_bar.slider.maximum() == 49
    assert win.raw_panel.image is not None and win.raw_panel.image.sum() > 0
    assert "no camera frames" in win.raw_panel.subtitle.text()
    assert win.recon_panel.image is not None
    assert "localization table" in win.info_label.text()
