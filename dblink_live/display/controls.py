"""The viewer's toolbar actions and which of its controls are enabled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qtpy import QtGui, QtWidgets

from dblink_live.display.timebar import TimeBar
from dblink_live.pipeline_types import PipelineState

__all__ = ["ViewerActions", "build_toolbar", "window_title"]


@dataclass(frozen=True)
class ViewerActions:
    """The toolbar's actions (``QAction`` s) of a viewer window."""

    open: QtGui.QAction
    start: QtGui.QAction
    stop: QtGui.QAction
    snapshot: QtGui.QAction
    export: QtGui.QAction
    zoom: QtGui.QAction

    def update(
        self,
        time_bar: TimeBar,
        state: PipelineState | None,
        *,
        starting: bool,
        has_source: bool,
        has_pipeline: bool,
        can_follow: bool,
        can_play: bool,
    ) -> None:
        """Enable the actions and the time bar's controls for the pipeline's ``state``.

        ``state`` is None without a pipeline; ``starting``: its start is in progress.
        """
        running = state in (PipelineState.RUNNING, PipelineState.DRAINING)
        self.start.setEnabled(state is PipelineState.IDLE and not starting)
        self.stop.setEnabled(state is PipelineState.RUNNING)
        self.open.setEnabled(not running)
        self.export.setEnabled(has_source or has_pipeline)
        time_bar.live_button.setEnabled(can_follow)
        time_bar.play_button.setEnabled(can_play)
        time_bar.slider.setEnabled(has_source)


def build_toolbar(
    window: QtWidgets.QMainWindow,
    *,
    open_: Callable[[], object],
    start: Callable[[], object],
    stop: Callable[[], object],
    snapshot: Callable[[], object],
    export: Callable[[], object],
    zoom: Callable[[], object],
    toggle_play: Callable[[], object],
) -> ViewerActions:
    """Add the main toolbar to ``window``, its actions calling the slots given.

    ``toggle_play`` is bound to the space bar (a window action, not on the toolbar).
    """
    bar = window.addToolBar("main")
    bar.setMovable(False)

    def action(
        text: str, slot: Callable[[], object], shortcut: str | None = None, tip: str = ""
    ) -> QtGui.QAction:
        act = QtGui.QAction(text, window)
        act.triggered.connect(lambda _checked=False: slot())
        if shortcut:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        act.setToolTip(tip or text)
        bar.addAction(act)
        return act

    open_action = action("Open...", open_, "Ctrl+O", "open a recording")
    start_action = action("Start", start, None, "start acquisition")
    stop_action = action("Stop", stop, None, "stop acquisition")
    bar.addSeparator()
    snapshot_action = action("Snapshot...", snapshot, "Ctrl+S", "save the panels as PNG")
    export_action = action("Export video...", export, "Ctrl+E", "reconstruction as TIFF or GIF")
    zoom_action = action("Reset zoom", zoom, "Ctrl+0", "show the whole field")
    play = QtGui.QAction(window)
    play.setShortcut(QtGui.QKeySequence("Space"))
    play.triggered.connect(lambda _c=False: toggle_play())
    window.addAction(play)
    return ViewerActions(
        open=open_action,
        start=start_action,
        stop=stop_action,
        snapshot=snapshot_action,
        export=export_action,
        zoom=zoom_action,
    )


def window_title(title: str | None, recording_name: str | None, live: bool) -> str:
    """The window's title: ``title`` if given, else the recording's name or the session's."""
    if title:
        return title
    if recording_name is not None:
        return f"dblink_live: {recording_name}"
    if live:
        return "dblink_live: live"
    return "dblink_live viewer"
