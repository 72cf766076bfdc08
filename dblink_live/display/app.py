"""``run_viewer``: the entry point the command line calls."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from qtpy import QtCore, QtWidgets

from dblink_live.display.window import ViewerWindow
from dblink_live.pipeline_types import LiveSession, PipelineState

__all__ = ["application", "run_viewer"]

_DONE = (PipelineState.FINISHED, PipelineState.FAILED)


def application() -> QtWidgets.QApplication:
    """The process's QApplication (created on first use)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setApplicationName("dblink_live")
    return app  # type: ignore[return-value]


def run_viewer(
    recording: str | Path | None = None,
    pipeline: LiveSession | None = None,
    title: str | None = None,
    *,
    start: bool = False,
) -> int:
    """Show the viewer and run the Qt event loop until its window is closed.

    Parameters
    ----------
    recording
        A recording to show and scrub (with a pipeline: its recording, if None).
    pipeline
        A running (or not yet started: the Start button starts it)
        :class:`dblink_live.pipeline.Pipeline`; the viewer follows its newest results.
        Closing the window calls ``pipeline.stop()`` and ``pipeline.wait()``.
    title
        Window title.
    start
        Start a not yet started pipeline as soon as the window shows (in the background, as
        the Start button does: the window appears at once and says "starting").

    Returns
    -------
    int
        0, or 1 when the pipeline failed or its recorder lost frames.

    Raises
    ------
    RecordingError
        if ``recording`` is not a readable recording (before any window opens).
    """
    app = application()
    window = ViewerWindow(recording=recording, pipeline=pipeline, title=title)
    # A loop of our own that ends when this window closes: app.exit()/quit() would also end
    # loops that callers (or other windows) run later in the same process.
    loop = QtCore.QEventLoop()
    window.closed.connect(loop.quit)
    quit_on_last = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    restore_sigint = _close_on_sigint(window)
    try:
        window.show()
        window.raise_()
        if start and pipeline is not None:
            window.start_pipeline()
        rc = int(loop.exec())
    finally:
        restore_sigint()
        app.setQuitOnLastWindowClosed(quit_on_last)
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    if pipeline is not None:
        if pipeline.state not in (PipelineState.IDLE, *_DONE):  # closing timed out: finish
            print("waiting for the pipeline to finish writing...", file=sys.stderr)
            pipeline.stop()
            pipeline.wait()
        status = pipeline.status()
        if status.state is PipelineState.FAILED or status.recorder_lost:
            return rc or 1
    return rc


def _close_on_sigint(window: ViewerWindow) -> Callable[[], None]:
    """Ctrl-C in the terminal (or SIGTERM) closes the window (clean stop); returns the undo
    function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: window.close())
    # Python runs signal handlers only between bytecodes: wake the interpreter regularly
    wake = QtCore.QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(200)

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore
