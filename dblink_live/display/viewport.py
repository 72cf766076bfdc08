"""The viewer's central widget: alert banner, the four panels and the time bar.

:class:`Viewport` draws :class:`~dblink_live.display.frames.ViewFrame` s: the live pipeline's
newest results while it follows them, else a recording's frames (the one opened, or the
pipeline's own, scrubbed with the time bar's slider or played back).
"""

from __future__ import annotations

import logging
from pathlib import Path

from qtpy import QtCore, QtWidgets

from dblink_live.display.frames import ViewFrame
from dblink_live.display.panel_grid import PanelGrid
from dblink_live.display.session import SessionControl
from dblink_live.display.source import RecordingSource
from dblink_live.display.state import ViewerState
from dblink_live.display.statusbar import AlertBanner
from dblink_live.display.timebar import TimeBar
from dblink_live.errors import DblinkError

__all__ = ["Viewport"]

log = logging.getLogger(__name__)


class Viewport(QtWidgets.QWidget):
    """Banner, panels and time bar, showing a recording's frames or live results.

    Parameters
    ----------
    state
        The window's follow / pause / play state (shared, see
        :class:`~dblink_live.display.state.ViewerState`).
    session
        The window's pipeline (its results and recording), if any.
    render_maps
        Initial window of the localization render, in maps of W raw frames.
    """

    #: A line for the status bar: the source's description, or why a frame cannot be read.
    info = QtCore.Signal(str)
    #: Following the live pipeline was switched on or off (the window's actions follow).
    follow_changed = QtCore.Signal()

    def __init__(
        self,
        state: ViewerState,
        session: SessionControl,
        render_maps: int,
        parent: QtWidgets.QWidget | None = None,
    ):
        super().__init__(parent)
        self.state = state
        self.session = session
        self.source: RecordingSource | None = None
        self.frame: ViewFrame | None = None
        #: Display counters: timer ticks, redraws, live versions skipped (newer one shown).
        self.counters = {"ticks": 0, "redraws": 0, "skipped_versions": 0}
        self.banner = AlertBanner()
        self.grid = PanelGrid(render_maps)
        self.time_bar = TimeBar()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.time_bar)
        self.grid.render_window.valueChanged.connect(self._render_window_changed)
        self.time_bar.play_toggled.connect(self.set_playing)
        self.time_bar.live_toggled.connect(self.set_follow_live)
        self.time_bar.frame_requested.connect(self._slider_moved)

    def set_source(self, source: RecordingSource | None, *, fresh: bool = True) -> None:
        """Show frames of ``source`` from now on.

        ``fresh``: a new recording, so forget the frame on screen (its reconstruction is
        redrawn and the view zoomed to the whole field next time); False for the live
        pipeline's own recording, opened while its results are on screen.
        """
        self.source = source
        if fresh:
            self.frame = None
            self.grid.forget()
        if source is not None:
            self.info.emit(source.describe())

    def attach_recording(self, refresh: bool = False) -> None:
        """Use the pipeline's recording for scrubbing (opened lazily, re-read when asked)."""
        if self.session.pipeline is None:
            return
        if self.source is not None:
            if refresh:
                self.source.refresh()
            return
        self.set_source(self.session.recording(), fresh=False)

    def refresh_source(self) -> None:
        """Re-read the pipeline's recording, still being written (the display is paused)."""
        if self.source is None:
            self.attach_recording()
        elif self.source.refresh():
            self.info.emit(self.source.describe())
        if self.source is not None and self.frame is not None:
            self.time_bar.set_position(self.time_bar.frame, self.source.n_frames)

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
            self.attach_recording()
            if self.source is not None and self.frame is not None:
                self.time_bar.set_position(self.frame.frame_index, self.source.n_frames)
        self.follow_changed.emit()

    def pull_live(self) -> None:
        """Draw the pipeline's newest results if their version is newer than the one shown."""
        if self.session.pipeline is None:
            return
        res = self.session.pipeline.latest(render_maps=self.grid.render_window.value())
        if not self.state.accept(res.version):
            return
        self.counters["skipped_versions"] = self.state.skipped_versions
        self.draw(ViewFrame.from_live(res))

    def show_frame_index(self, frame: int) -> None:
        """Show raw frame ``frame`` of the recording (stops following the live pipeline)."""
        if self.source is None:
            return
        try:
            vf = self.source.view(frame, self.grid.render_window.value())
        except Exception as exc:  # e.g. a chunk being rewritten by the pipeline
            log.warning("cannot read frame %d of %s: %s", frame, self.source.path, exc)
            self.info.emit(f"cannot read frame {frame}: {exc}")
            return
        self.state.show_recording_frame()
        self.draw(vf)

    def draw(self, vf: ViewFrame) -> None:
        """Put ``vf`` on the panels (the reconstruction only when it changed)."""
        self.counters["redraws"] += 1
        table_only = self.source is not None and not self.source.has_raw
        self.grid.show_frame(vf, table_only=table_only)
        self.frame = vf
        interval = self.source.frame_interval_s if self.source is not None else None
        self.time_bar.label.setText(vf.describe(interval))
        n = self.source.n_frames if self.source is not None and not self.state.follow else 0
        self.time_bar.set_position(vf.frame_index, max(n, vf.frame_index + 1))

    def set_playing(self, playing: bool) -> None:
        """Play the recording from the slider position (only when not following live)."""
        playing = self.state.can_play(self.source is not None) and bool(playing)
        if playing and self.source is not None and self.time_bar.frame >= self.source.n_frames - 1:
            self.show_frame_index(0)
        self.state.set_playing(playing, self.source is not None)
        self.time_bar.set_playing(playing)

    def advance_playback(self, tick_s: float) -> None:
        """One playback step, ``tick_s`` seconds after the last (at the time bar's speed)."""
        if self.source is None:
            self.set_playing(False)
            return
        step = max(1, round(self.time_bar.speed.value() * tick_s / self.source.frame_interval_s))
        nxt = self.time_bar.frame + step
        if nxt >= self.source.n_frames:
            nxt = self.source.n_frames - 1
            self.set_playing(False)
        self.show_frame_index(nxt)

    def save_png(self, path: str | Path) -> Path:
        """Save the banner, panels and time bar as a PNG at ``path``; returns the path."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path), "PNG"):
            raise DblinkError(f"could not write {path}")
        return path

    def end_session(self) -> None:
        """The run ended: show its recording, scrubbable, at its last frame."""
        self.state.end_session()
        self.time_bar.set_live(False)
        if self.frame is None or self.frame.version >= 0:
            # catch the final results first, then switch to the recording
            try:
                self.state.redraw()
                self.pull_live()
            except Exception:  # pragma: no cover - a failed pipeline may have none
                log.debug("no final results", exc_info=True)
        self.attach_recording(refresh=True)
        if self.source is not None and self.source.n_frames:
            last = self.frame.frame_index if self.frame is not None else self.source.n_frames
            self.show_frame_index(min(max(last, 0), self.source.n_frames - 1))

    def _slider_moved(self, frame: int) -> None:
        if self.state.follow:
            self.set_follow_live(False)
            self.attach_recording(refresh=True)
        self.show_frame_index(frame)

    def _render_window_changed(self, _value: int) -> None:
        if self.state.follow:
            self.state.redraw()
        elif self.frame is not None:
            self.show_frame_index(self.frame.frame_index)
