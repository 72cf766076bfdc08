"""The viewer's main window: four linked panels, time bar, status bar and actions.

Everything here runs in the Qt thread, except the pipeline's ``start()`` behind the Start button
(opening the camera and loading the models can take seconds, so it runs in a helper thread and
the window stays responsive). The pipeline is only asked for snapshots
(:meth:`status`, :meth:`latest`) on a QTimer; results whose ``version`` did not change are not
redrawn, and versions produced between two ticks are skipped, so the display never queues work
for the pipeline or falls behind it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets

from dblink_live.display.alerts import status_text
from dblink_live.display.export import VIDEO_SUFFIXES, export_video
from dblink_live.display.frames import ViewFrame
from dblink_live.display.imaging import confidence_tint
from dblink_live.display.panels import ImagePanel
from dblink_live.display.source import RecordingSource
from dblink_live.display.state import ViewerState
from dblink_live.display.statusbar import AlertBanner, StatusFields
from dblink_live.display.timebar import TimeBar
from dblink_live.errors import DblinkError
from dblink_live.pipeline_types import LiveSession, PipelineState, PipelineStatus

__all__ = ["ViewerWindow"]

log = logging.getLogger(__name__)

#: Seconds between re-reads of a recording that is still being written (display paused).
_REFRESH_S = 1.0
#: Status snapshots per second.
_STATUS_HZ = 5.0


class ViewerWindow(QtWidgets.QMainWindow):
    """Live and offline viewer of a dblink_live run.

    The window deletes itself when closed (``WA_DeleteOnClose``) and emits :attr:`closed`
    after it has stopped the pipeline.

    Parameters
    ----------
    recording
        A recording to show (scrubbable). With a pipeline, its own recording is used when this
        is None.
    pipeline
        A :class:`~dblink_live.pipeline_types.LiveSession` (a
        :class:`dblink_live.pipeline.Pipeline`). The window follows its newest results;
        closing the window stops it and waits for it to finish.
    title
        Window title (default: the recording's name).
    refresh_hz
        Display refresh rate (timer ticks per second).
    render_maps
        Initial window of the localization render, in maps of W raw frames.
    close_timeout_s
        How long closing the window waits for the pipeline to drain.

    Raises
    ------
    RecordingError
        if ``recording`` is given and cannot be opened.
    """

    #: Emitted once the window has closed (after the pipeline was stopped).
    closed = QtCore.Signal()

    def __init__(
        self,
        recording: str | Path | None = None,
        pipeline: LiveSession | None = None,
        title: str | None = None,
        *,
        refresh_hz: float = 20.0,
        render_maps: int = 10,
        close_timeout_s: float = 60.0,
        parent: QtWidgets.QWidget | None = None,
    ):
        source = RecordingSource(recording) if recording is not None else None  # fail early
        super().__init__(parent)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.pipeline = pipeline
        self.source: RecordingSource | None = None
        self.close_timeout_s = float(close_timeout_s)
        self.frame: ViewFrame | None = None
        self.last_status: PipelineStatus | None = None
        self.last_error: str | None = None
        #: Display counters: timer ticks, redraws, live versions skipped (newer one shown).
        self.counters = {"ticks": 0, "redraws": 0, "skipped_versions": 0}
        #: follow / pause / play and the live version on screen (Qt-free, see state.py)
        self.state = ViewerState.for_session(pipeline is not None)
        self._shown_output: tuple[int, int] = (-1, -1)
        self._tint_dirty = True
        self._zoomed = False
        self._last_refresh_tick = 0
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._title = title
        self._build_ui(render_maps)

        if source is not None:
            self._set_source(source)
        if pipeline is not None:
            self.time_bar.set_live(True)
        self._update_title()
        self._update_actions()

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(max(1, round(1000.0 / refresh_hz)))
        self.timer.timeout.connect(self.refresh)
        self._status_every = max(1, round(refresh_hz / _STATUS_HZ))
        self._refresh_every = max(1, round(refresh_hz * _REFRESH_S))
        self.timer.start()
        if self.source is not None and pipeline is None:
            self.show_frame_index(0)

    # ------------------------------------------------------------------ UI
    def _build_ui(self, render_maps: int) -> None:
        self.raw_panel = ImagePanel("Raw frame", lut="gray")
        self.render_panel = ImagePanel("Localizations", lut="hot")
        self.recon_panel = ImagePanel("Reconstruction", lut="inferno", auto=False)
        self.conf_panel = ImagePanel("Confidence", lut="viridis", auto=False, levels=(0.5, 1.0))
        self.panels = (self.raw_panel, self.render_panel, self.recon_panel, self.conf_panel)
        for panel in self.panels[1:]:
            panel.view.setXLink(self.raw_panel.view)
            panel.view.setYLink(self.raw_panel.view)

        self.render_window = QtWidgets.QSpinBox()
        self.render_window.setRange(1, 100000)
        self.render_window.setValue(max(1, render_maps))
        self.render_window.setSuffix(" maps")
        self.render_window.setToolTip("accumulate localizations over this many maps of W frames")
        self.render_window.valueChanged.connect(self._render_window_changed)
        self.render_panel.controls.insertWidget(0, self.render_window)

        self.tint_box = QtWidgets.QCheckBox("tint conf <")
        self.tint_box.setChecked(True)
        self.tint_box.setToolTip("tint reconstruction pixels whose confidence is below this")
        self.tint_threshold = QtWidgets.QDoubleSpinBox()
        self.tint_threshold.setRange(0.0, 1.0)
        self.tint_threshold.setSingleStep(0.05)
        self.tint_threshold.setValue(0.9)
        self.recon_panel.controls.insertWidget(4, self.tint_box)
        self.recon_panel.controls.insertWidget(5, self.tint_threshold)
        self.tint_item = _overlay_item()
        self.recon_panel.view.addItem(self.tint_item)
        self.tint_box.toggled.connect(self._tint_changed)
        self.tint_threshold.valueChanged.connect(self._tint_changed)

        grid = QtWidgets.QGridLayout()
        grid.setSpacing(4)
        for i, panel in enumerate(self.panels):
            grid.addWidget(panel, i // 2, i % 2)
        for i in range(2):
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        self.banner = AlertBanner()
        self.time_bar = TimeBar()
        self.time_bar.frame_requested.connect(self._slider_moved)
        self.time_bar.live_toggled.connect(self.set_follow_live)
        self.time_bar.play_toggled.connect(self.set_playing)
        self.cursor_label = QtWidgets.QLabel("")
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addLayout(grid, 1)
        layout.addWidget(self.time_bar)
        self.setCentralWidget(central)

        self.info_label = QtWidgets.QLabel("")
        self.statusBar().addWidget(self.info_label, 1)
        self.statusBar().addWidget(self.cursor_label)
        self.status_fields = StatusFields(self.statusBar())
        for panel in self.panels:
            panel.graphics.scene().sigMouseMoved.connect(
                lambda pos, p=panel: self._mouse_moved(p, pos)
            )
        self._build_actions()
        self.resize(1200, 980)

    def _build_actions(self) -> None:
        bar = self.addToolBar("main")
        bar.setMovable(False)

        def action(text: str, slot: Any, shortcut: str | None = None, tip: str = "") -> Any:
            act = QtGui.QAction(text, self)
            act.triggered.connect(lambda _checked=False: slot())
            if shortcut:
                act.setShortcut(QtGui.QKeySequence(shortcut))
            act.setToolTip(tip or text)
            bar.addAction(act)
            return act

        self.open_action = action("Open...", self._open_dialog, "Ctrl+O", "open a recording")
        self.start_action = action("Start", self.start_pipeline, None, "start acquisition")
        self.stop_action = action("Stop", self.stop_pipeline, None, "stop acquisition")
        bar.addSeparator()
        self.snapshot_action = action(
            "Snapshot...", self._snapshot_dialog, "Ctrl+S", "save the panels as PNG"
        )
        self.export_action = action(
            "Export video...", self._export_dialog, "Ctrl+E", "reconstruction as TIFF or GIF"
        )
        self.zoom_action = action("Reset zoom", self.reset_zoom, "Ctrl+0", "show the whole field")
        play = QtGui.QAction(self)
        play.setShortcut(QtGui.QKeySequence("Space"))
        play.triggered.connect(lambda _c=False: self.set_playing(not self.state.playing))
        self.addAction(play)

    def _update_title(self) -> None:
        if self._title:
            text = self._title
        elif self.source is not None:
            text = f"dblink_live: {self.source.path.name}"
        elif self.pipeline is not None:
            text = "dblink_live: live"
        else:
            text = "dblink_live viewer"
        self.setWindowTitle(text)

    def _update_actions(self) -> None:
        state = self._pipeline_state()
        running = state in (PipelineState.RUNNING, PipelineState.DRAINING)
        self.start_action.setEnabled(state is PipelineState.IDLE and not self.starting)
        self.stop_action.setEnabled(state is PipelineState.RUNNING)
        self.open_action.setEnabled(not running)
        self.export_action.setEnabled(self.source is not None or self.pipeline is not None)
        self.time_bar.live_button.setEnabled(self.state.can_follow)
        self.time_bar.play_button.setEnabled(self.state.can_play(self.source is not None))
        self.time_bar.slider.setEnabled(self.source is not None)

    # ------------------------------------------------------------------ public API
    @property
    def following_live(self) -> bool:
        """True while the panels follow the pipeline's newest results."""
        return self.state.follow

    @property
    def playing(self) -> bool:
        return self.state.playing

    @property
    def shown_version(self) -> int:
        """``LiveResults.version`` on screen (-1: a recording frame or nothing)."""
        return self.state.shown_version

    def open_recording(self, path: str | Path) -> bool:
        """Show the recording at ``path``; on failure show a message box and return False."""
        try:
            source = RecordingSource(path)
        except DblinkError as exc:
            self.show_error("Cannot open recording", str(exc))
            return False
        except Exception as exc:  # a foreign or damaged store: say so, keep the window
            log.exception("opening %s failed", path)
            self.show_error("Cannot open recording", f"{path}: {type(exc).__name__}: {exc}")
            return False
        self._set_source(source)
        self.state.set_follow(False)
        self.time_bar.set_live(False)
        self.show_frame_index(0)
        self._update_title()
        self._update_actions()
        return True

    def show_error(self, title: str, text: str) -> QtWidgets.QMessageBox:
        """A non-blocking error box (child of the window); also kept in :attr:`last_error`."""
        self.last_error = text
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Critical,
            title,
            text,
            QtWidgets.QMessageBox.StandardButton.Ok,
            self,
        )
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()
        return box

    def show_frame_index(self, frame: int) -> None:
        """Show raw frame ``frame`` of the recording (stops following the live pipeline)."""
        if self.source is None:
            return
        try:
            vf = self.source.view(frame, self.render_window.value())
        except Exception as exc:  # e.g. a chunk being rewritten by the pipeline
            log.warning("cannot read frame %d of %s: %s", frame, self.source.path, exc)
            self.info_label.setText(f"cannot read frame {frame}: {exc}")
            return
        self.state.show_recording_frame()
        self._show(vf)

    def set_follow_live(self, follow: bool) -> None:
        """Follow the pipeline's newest results (True) or pause the display (False).

        Pausing never stops acquisition; while paused the recording written so far can be
        scrubbed.
        """
        follow = self.state.set_follow(follow)  # stops playback, redraws the newest at once
        self.time_bar.set_live(follow)
        if follow:
            self.time_bar.set_playing(False)
        else:
            self._attach_pipeline_recording()
            if self.source is not None and self.frame is not None:
                self.time_bar.set_position(self.frame.frame_index, self.source.n_frames)
        self._update_actions()

    def set_playing(self, playing: bool) -> None:
        """Play the recording from the slider position (only when not following live)."""
        playing = self.state.can_play(self.source is not None) and bool(playing)
        if playing and self.source is not None and self.time_bar.frame >= self.source.n_frames - 1:
            self.show_frame_index(0)
        self.state.set_playing(playing, self.source is not None)
        self.time_bar.set_playing(playing)

    @property
    def starting(self) -> bool:
        """True while the pipeline's ``start()`` runs in the background (Start was pressed)."""
        return self._starter is not None

    def start_pipeline(self) -> None:
        """Start the pipeline if it has not been started; returns at once.

        ``pipeline.start()`` (opening the camera, loading the models, starting the
        reconstruction process) runs in a helper thread while the window keeps refreshing and
        says "starting"; the timer then switches to following the live results, or shows an
        error box if the start failed.
        """
        if self.pipeline is None or self.starting:
            return
        if self._pipeline_state() is not PipelineState.IDLE:
            return
        pipeline = self.pipeline
        self._start_error = None

        def start() -> None:
            try:
                pipeline.start()
            except BaseException as exc:  # shown by the Qt thread in _finish_start
                self._start_error = exc

        self._starter = threading.Thread(target=start, name="dblink-viewer-start", daemon=True)
        self._starter.start()
        self.statusBar().showMessage("starting: opening the source and loading the models...")
        self._update_actions()

    def _finish_start(self) -> None:
        """Called by the timer: once the background start is over, follow or report it."""
        if self._starter is None or self._starter.is_alive():
            return
        self._starter.join()
        self._starter = None
        self.statusBar().clearMessage()
        exc, self._start_error = self._start_error, None
        if exc is None:
            self.set_follow_live(True)
            self._update_actions()
            return
        # a failed start has no live results to follow: stop following now, not at the next
        # status poll (which would see the failed state a tick later)
        self.state.set_follow(False)
        self.time_bar.set_live(False)
        if isinstance(exc, DblinkError):
            self.show_error("Cannot start", str(exc))
        else:
            log.error("starting the pipeline failed", exc_info=exc)
            self.show_error("Cannot start", f"{type(exc).__name__}: {exc}")
        self._update_actions()

    def stop_pipeline(self) -> None:
        """Ask the pipeline to stop (it drains what is buffered, then finishes)."""
        state = self._pipeline_state()  # None exactly when there is no pipeline
        if self.pipeline is not None and state is not None and not state.done:
            self.pipeline.stop()
        self._update_actions()

    def reset_zoom(self) -> None:
        """Zoom to the whole field of view (all panels are linked)."""
        extents = [p.extent_nm() for p in self.panels if p.image is not None]
        if not extents:
            return
        height = max(e[0] for e in extents)
        width = max(e[1] for e in extents)
        self.raw_panel.view.setRange(QtCore.QRectF(0, 0, width, height), padding=0.0)
        self._zoomed = True

    def save_snapshot(self, path: str | Path) -> Path:
        """Save the panels, time bar and banner as a PNG at ``path``; returns the path."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        central = self.centralWidget()
        if central is None:  # set in __init__ and never removed
            raise DblinkError("the window has no panels to save")
        if not central.grab().save(str(path), "PNG"):
            raise DblinkError(f"could not write {path}")
        return path

    def export_video(self, path: str | Path) -> int:
        """Export the reconstruction (TIFF stack or GIF, by suffix); returns frames written.

        The GIF uses the reconstruction panel's colour map and levels and, when it is on,
        its confidence tint.
        """
        self._attach_pipeline_recording(refresh=True)
        if self.source is None:
            raise DblinkError("no recording to export: open one first")
        tint = self.tint_threshold.value() if self.tint_box.isChecked() else None
        dialog = QtWidgets.QProgressDialog("Exporting...", "Cancel", 0, self.source.n_outputs, self)
        dialog.setWindowModality(QtCore.Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(500)

        def progress(done: int, total: int) -> bool:
            dialog.setValue(done)
            return not dialog.wasCanceled()

        try:
            return export_video(
                self.source,
                path,
                levels=self.recon_panel.levels,
                lut=self.recon_panel.lut,
                tint_threshold=tint,
                progress=progress,
            )
        finally:
            dialog.close()
            dialog.deleteLater()

    # ------------------------------------------------------------------ dialogs
    def _open_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a recording (*.zarr folder)")
        if path:
            self.open_recording(path)

    def _snapshot_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save snapshot", "snapshot.png", "PNG (*.png)"
        )
        if path:
            try:
                self.save_snapshot(path)
            except DblinkError as exc:
                self.show_error("Snapshot failed", str(exc))

    def _export_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Export reconstruction video",
            "reconstruction.tif",
            "TIFF stack (*.tif *.tiff);;GIF (*.gif)",
        )
        if not path:
            return
        if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
            path += ".tif"
        try:
            n = self.export_video(path)
        except DblinkError as exc:
            self.show_error("Export failed", str(exc))
            return
        self.statusBar().showMessage(f"wrote {n} frames to {path}", 5000)

    # ------------------------------------------------------------------ timer
    def refresh(self) -> None:
        """One display refresh (the timer calls it): status, newest live results, playback.

        Live results are fetched with ``pipeline.latest()`` and drawn only when their
        ``version`` is newer than the one on screen; versions produced in between are skipped.
        """
        self.counters["ticks"] += 1
        tick = self.counters["ticks"]
        if self._starter is not None:
            self._finish_start()
        if self.pipeline is not None and not self.state.session_done:
            if tick % self._status_every == 1 or self._status_every == 1:
                self._show_status(self.pipeline.status())
            if self.state.follow:
                self._pull_live()
            elif tick - self._last_refresh_tick >= self._refresh_every:
                self._last_refresh_tick = tick
                self._refresh_source()
        if self.state.playing:
            self._advance_playback()

    def _pull_live(self) -> None:
        if self.pipeline is None:
            return
        res = self.pipeline.latest(render_maps=self.render_window.value())
        if not self.state.accept(res.version):
            return
        self.counters["skipped_versions"] = self.state.skipped_versions
        self._show(ViewFrame.from_live(res))

    def _advance_playback(self) -> None:
        if self.source is None:
            self.set_playing(False)
            return
        tick_s = self.timer.interval() / 1000.0
        step = max(1, round(self.time_bar.speed.value() * tick_s / self.source.frame_interval_s))
        nxt = self.time_bar.frame + step
        if nxt >= self.source.n_frames:
            nxt = self.source.n_frames - 1
            self.set_playing(False)
        self.show_frame_index(nxt)

    def _show_status(self, status: PipelineStatus) -> None:
        self.last_status = status
        text = status_text(status)
        self.status_fields.show_status(text)
        self.banner.show_alerts(text.errors, text.warnings)
        if status.state.done and not self.state.session_done:
            self._on_pipeline_done(status)
        self._update_actions()

    def _on_pipeline_done(self, status: PipelineStatus) -> None:
        """The run ended: show its recording, scrubbable, at its last frame."""
        self.state.end_session()
        self.time_bar.set_live(False)
        if self.frame is None or self.frame.version >= 0:
            # catch the final results first, then switch to the recording
            try:
                self.state.redraw()
                self._pull_live()
            except Exception:  # pragma: no cover - a failed pipeline may have none
                log.debug("no final results", exc_info=True)
        self._attach_pipeline_recording(refresh=True)
        if self.source is not None and self.source.n_frames:
            last = self.frame.frame_index if self.frame is not None else self.source.n_frames
            self.show_frame_index(min(max(last, 0), self.source.n_frames - 1))
        self._update_actions()

    # ------------------------------------------------------------------ source
    def _set_source(self, source: RecordingSource) -> None:
        self.source = source
        self.frame = None
        self._shown_output = (-1, -1)
        self._zoomed = False
        self.info_label.setText(source.describe())
        if self.pipeline is None:
            self.status_fields.hide_all()

    def _attach_pipeline_recording(self, refresh: bool = False) -> None:
        """Use the pipeline's recording for scrubbing (opened lazily, re-read when asked)."""
        if self.pipeline is None:
            return
        if self.source is not None:
            if refresh:
                self.source.refresh()
            return
        path = getattr(self.pipeline, "recording_path", None)
        if path is None or not Path(path).exists():
            return
        try:
            self.source = RecordingSource(path)
        except DblinkError as exc:
            log.debug("recording %s not readable yet: %s", path, exc)
            return
        self.info_label.setText(self.source.describe())

    def _refresh_source(self) -> None:
        if self.source is None:
            self._attach_pipeline_recording()
        elif self.source.refresh():
            self.info_label.setText(self.source.describe())
        if self.source is not None and self.frame is not None:
            self.time_bar.set_position(self.time_bar.frame, self.source.n_frames)

    # ------------------------------------------------------------------ drawing
    def _show(self, vf: ViewFrame) -> None:
        """Put ``vf`` on the panels (the reconstruction only when it changed)."""
        self.counters["redraws"] += 1
        if vf.raw is None and self.source is not None and not self.source.has_raw:
            # a recording made from a table: its localizations stand in for the camera
            self.raw_panel.set_image(vf.render, vf.bin_nm, vf.origin_nm)
            self.raw_panel.subtitle.setText("no camera frames: localizations shown")
        else:
            self.raw_panel.set_image(vf.raw, vf.pixel_size_nm)
            self.raw_panel.subtitle.setText(f"frame {vf.frame_index}" if vf.raw is not None else "")
        self.render_panel.set_image(vf.render, vf.bin_nm, vf.origin_nm)
        if vf.render is not None:
            frames = vf.render_maps * vf.window_frames
            self.render_panel.subtitle.setText(
                f"last {vf.render_maps} maps ({frames} frames), {int(vf.render.sum())} locs"
            )
        key = (vf.output_index, 0 if vf.version >= 0 else 1)
        if key != self._shown_output or vf.reconstruction is None:
            self._shown_output = key
            self.recon_panel.set_image(vf.reconstruction, vf.bin_nm, vf.origin_nm)
            self.conf_panel.set_image(vf.confidence, vf.bin_nm, vf.origin_nm)
            self._tint_dirty = True
            text = ""
            if vf.output_index >= 0:
                text = f"#{vf.output_index}: frames {vf.output_first_frame}-{vf.output_last_frame}"
            self.recon_panel.subtitle.setText(text)
            self.conf_panel.subtitle.setText(text)
        if self._tint_dirty:
            self._update_tint(vf)
        self.frame = vf
        interval = self.source.frame_interval_s if self.source is not None else None
        self.time_bar.label.setText(vf.describe(interval))
        n = self.source.n_frames if self.source is not None and not self.state.follow else 0
        self.time_bar.set_position(vf.frame_index, max(n, vf.frame_index + 1))
        if not self._zoomed:
            self.reset_zoom()

    def _update_tint(self, vf: ViewFrame | None) -> None:
        self._tint_dirty = False
        conf = vf.confidence if vf is not None else None
        if vf is None or conf is None or not self.tint_box.isChecked():
            self.tint_item.hide()
            return
        self.tint_item.setImage(confidence_tint(conf, self.tint_threshold.value()))
        self.tint_item.setTransform(QtGui.QTransform.fromScale(vf.bin_nm, vf.bin_nm))
        self.tint_item.show()

    def _tint_changed(self, *_args: object) -> None:
        self._update_tint(self.frame)

    def _render_window_changed(self, _value: int) -> None:
        if self.state.follow:
            self.state.redraw()
        elif self.frame is not None:
            self.show_frame_index(self.frame.frame_index)

    def _slider_moved(self, frame: int) -> None:
        if self.state.follow:
            self.set_follow_live(False)
            self._attach_pipeline_recording(refresh=True)
        self.show_frame_index(frame)

    def _mouse_moved(self, panel: ImagePanel, pos: QtCore.QPointF) -> None:
        point = panel.view.mapSceneToView(pos)
        x_nm, y_nm = point.x(), point.y()
        text = f"x {x_nm / 1e3:.2f} µm, y {y_nm / 1e3:.2f} µm"
        image = panel.image
        if image is not None:
            scale = panel.extent_nm()[1] / image.shape[1]
            col, row = int(np.floor(x_nm / scale)), int(np.floor(y_nm / scale))
            if 0 <= row < image.shape[0] and 0 <= col < image.shape[1]:
                text += f": {panel.title.text().lower()} {image[row, col]:.3g}"
        self.cursor_label.setText(text)

    def _pipeline_state(self) -> PipelineState | None:
        if self.pipeline is None:
            return None
        if self.last_status is not None and self.last_status.state.done:
            return self.last_status.state
        return self.pipeline.state

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Stop the timer; stop the pipeline and wait for it to finish draining."""
        self.timer.stop()
        self.state.set_playing(False, False)
        pipeline = self.pipeline
        if self._starter is not None:  # let a start in progress end before stopping
            QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
            try:
                self._starter.join(self.close_timeout_s)
            finally:
                QtWidgets.QApplication.restoreOverrideCursor()
            self._starter = None
        if pipeline is not None:
            state = pipeline.state
            if not state.done:
                self.statusBar().showMessage("stopping the pipeline...")
                QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
                try:
                    pipeline.stop()
                    if state is not PipelineState.IDLE:
                        self.last_status = pipeline.wait(timeout=self.close_timeout_s)
                finally:
                    QtWidgets.QApplication.restoreOverrideCursor()
        super().closeEvent(event)
        self.closed.emit()


def _overlay_item() -> pg.ImageItem:
    item = pg.ImageItem(axisOrder="row-major")
    item.setZValue(10)
    item.hide()
    return item
