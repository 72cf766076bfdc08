"""The viewer's main window: four linked panels, time bar, status bar and actions.

Everything here runs in the Qt thread, except the pipeline's ``start()`` behind the Start button
(opening the camera and loading the models can take seconds, so it runs in a helper thread and
the window stays responsive). The pipeline is only asked for snapshots
(:meth:`status`, :meth:`latest`) on a QTimer; results whose ``version`` did not change are not
redrawn, and versions produced between two ticks are skipped, so the display never queues work
for the pipeline or falls behind it.
"""

from __future__ import annotations

from pathlib import Path

from qtpy import QtCore, QtGui, QtWidgets

from dblink_live.display import dialogs
from dblink_live.display.alerts import status_text
from dblink_live.display.controls import build_toolbar, window_title
from dblink_live.display.frames import ViewFrame
from dblink_live.display.session import SessionControl, open_source, start_error_text
from dblink_live.display.source import RecordingSource
from dblink_live.display.state import ViewerState
from dblink_live.display.statusbar import StatusFields
from dblink_live.display.viewport import Viewport
from dblink_live.errors import DblinkError
from dblink_live.pipeline_types import LiveSession, PipelineStatus

__all__ = ["ViewerWindow"]

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
        self.session = SessionControl(pipeline)
        self.close_timeout_s = float(close_timeout_s)
        self.last_error: str | None = None
        #: follow / pause / play and the live version on screen (Qt-free, see state.py)
        self.state = ViewerState.for_session(pipeline is not None)
        self._last_refresh_tick = 0
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
        self.view = view = Viewport(self.state, self.session, render_maps)
        self.setCentralWidget(view)
        # the viewport's parts, as the window's own attributes
        self.banner, self.time_bar, self.counters = view.banner, view.time_bar, view.counters
        grid = view.grid
        self.raw_panel, self.render_panel = grid.raw_panel, grid.render_panel
        self.recon_panel, self.conf_panel = grid.recon_panel, grid.conf_panel
        self.panels = grid.panels
        self.render_window, self.tint_item = grid.render_window, grid.tint_item
        self.tint_box, self.tint_threshold = grid.tint_box, grid.tint_threshold
        view.follow_changed.connect(self._update_actions)

        self.info_label = QtWidgets.QLabel("")
        self.cursor_label = QtWidgets.QLabel("")
        view.info.connect(self.info_label.setText)
        grid.cursor_moved.connect(self.cursor_label.setText)
        self.statusBar().addWidget(self.info_label, 1)
        self.statusBar().addWidget(self.cursor_label)
        self.status_fields = StatusFields(self.statusBar())
        self.toolbar = build_toolbar(
            self,
            open_=lambda: dialogs.open_dialog(self, self.open_recording),
            start=self.start_pipeline,
            stop=self.stop_pipeline,
            snapshot=lambda: dialogs.snapshot_dialog(self, self.save_snapshot, self.show_error),
            export=lambda: dialogs.export_dialog(self, self.export_video, self.show_error),
            zoom=self.reset_zoom,
            toggle_play=lambda: self.set_playing(not self.state.playing),
        )
        self.open_action, self.start_action = self.toolbar.open, self.toolbar.start
        self.stop_action, self.snapshot_action = self.toolbar.stop, self.toolbar.snapshot
        self.export_action, self.zoom_action = self.toolbar.export, self.toolbar.zoom
        self.resize(1200, 980)

    def _update_title(self) -> None:
        name = self.source.path.name if self.source is not None else None
        self.setWindowTitle(window_title(self._title, name, self.pipeline is not None))

    def _update_actions(self) -> None:
        self.toolbar.update(
            self.time_bar,
            self.session.state,
            starting=self.starting,
            has_source=self.source is not None,
            has_pipeline=self.pipeline is not None,
            can_follow=self.state.can_follow,
            can_play=self.state.can_play(self.source is not None),
        )

    # ------------------------------------------------------------------ public API
    @property
    def source(self) -> RecordingSource | None:
        """The recording shown or scrubbed (None: none yet)."""
        return self.view.source

    @property
    def frame(self) -> ViewFrame | None:
        """What the panels show (None: nothing yet)."""
        return self.view.frame

    @property
    def last_status(self) -> PipelineStatus | None:
        """The pipeline's newest status snapshot (None: no pipeline, or not asked yet)."""
        return self.session.last_status

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
            source = open_source(path)
        except DblinkError as exc:
            self.show_error("Cannot open recording", str(exc))
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
        return dialogs.error_box(self, title, text)

    def show_frame_index(self, frame: int) -> None:
        """Show raw frame ``frame`` of the recording (stops following the live pipeline)."""
        self.view.show_frame_index(frame)

    def set_follow_live(self, follow: bool) -> None:
        """Follow the pipeline's newest results (True) or pause the display (False).

        Pausing never stops acquisition; while paused the recording written so far can be
        scrubbed.
        """
        self.view.set_follow_live(follow)  # and the actions, on its follow_changed

    def set_playing(self, playing: bool) -> None:
        """Play the recording from the slider position (only when not following live)."""
        self.view.set_playing(playing)

    @property
    def starting(self) -> bool:
        """True while the pipeline's ``start()`` runs in the background (Start was pressed)."""
        return self.session.starting

    def start_pipeline(self) -> None:
        """Start the pipeline if it has not been started; returns at once.

        ``pipeline.start()`` (opening the camera, loading the models, starting the
        reconstruction process) runs in a helper thread while the window keeps refreshing and
        says "starting"; the timer then switches to following the live results, or shows an
        error box if the start failed.
        """
        if self.session.start():
            self.statusBar().showMessage("starting: opening the source and loading the models...")
            self._update_actions()

    def _finish_start(self) -> None:
        """Called by the timer: once the background start is over, follow or report it."""
        finished, exc = self.session.finish_start()
        if not finished:
            return
        self.statusBar().clearMessage()
        if exc is None:
            self.set_follow_live(True)
            self._update_actions()
            return
        # a failed start has no live results to follow: stop following now, not at the next
        # status poll (which would see the failed state a tick later)
        self.state.set_follow(False)
        self.time_bar.set_live(False)
        self.show_error("Cannot start", start_error_text(exc))
        self._update_actions()

    def stop_pipeline(self) -> None:
        """Ask the pipeline to stop (it drains what is buffered, then finishes)."""
        self.session.stop()
        self._update_actions()

    def reset_zoom(self) -> None:
        """Zoom to the whole field of view (all panels are linked)."""
        self.view.grid.reset_zoom()

    def save_snapshot(self, path: str | Path) -> Path:
        """Save the panels, time bar and banner as a PNG at ``path``; returns the path."""
        return self.view.save_png(path)

    def export_video(self, path: str | Path) -> int:
        """Export the reconstruction (TIFF stack or GIF, by suffix); returns frames written.

        The GIF uses the reconstruction panel's colour map and levels and, when it is on,
        its confidence tint.
        """
        self.view.attach_recording(refresh=True)
        if self.source is None:
            raise DblinkError("no recording to export: open one first")
        tint = self.view.grid.tint_level
        return dialogs.export_with_progress(self, self.source, path, self.recon_panel, tint)

    # ------------------------------------------------------------------ timer
    def refresh(self) -> None:
        """One display refresh (the timer calls it): status, newest live results, playback.

        Live results are fetched with ``pipeline.latest()`` and drawn only when their
        ``version`` is newer than the one on screen; versions produced in between are skipped.
        """
        self.counters["ticks"] += 1
        tick = self.counters["ticks"]
        if self.session.starting:
            self._finish_start()
        if self.pipeline is not None and not self.state.session_done:
            if tick % self._status_every == 1 or self._status_every == 1:
                self._show_status(self.pipeline.status())
            if self.state.follow:
                self.view.pull_live()
            elif tick - self._last_refresh_tick >= self._refresh_every:
                self._last_refresh_tick = tick
                self.view.refresh_source()
        if self.state.playing:
            self.view.advance_playback(self.timer.interval() / 1000.0)

    def _show_status(self, status: PipelineStatus) -> None:
        self.session.last_status = status
        text = status_text(status)
        self.status_fields.show_status(text)
        self.banner.show_alerts(text.errors, text.warnings)
        if status.state.done and not self.state.session_done:
            self.view.end_session()  # the run ended: show its recording, scrubbable
        self._update_actions()

    # ------------------------------------------------------------------ source
    def _set_source(self, source: RecordingSource) -> None:
        self.view.set_source(source)
        if self.pipeline is None:
            self.status_fields.hide_all()

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Stop the timer; stop the pipeline and wait for it to finish draining."""
        self.timer.stop()
        self.state.set_playing(False, False)
        if self.session.starting:  # let a start in progress end before stopping
            with dialogs.wait_cursor():
                self.session.join_start(self.close_timeout_s)
        pipeline = self.pipeline
        if pipeline is not None:
            state = pipeline.state
            if not state.done:
                self.statusBar().showMessage("stopping the pipeline...")
                with dialogs.wait_cursor():
                    self.session.stop_and_wait(state, self.close_timeout_s)
        super().closeEvent(event)
        self.closed.emit()
