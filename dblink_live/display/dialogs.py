"""The viewer's dialogs: open, snapshot and export file dialogs, error boxes, export progress.

The dialog flows are plain functions that take the window's own methods (``open_recording``,
``save_snapshot``, ``export_video``, ``show_error``) as callables, so they hold no state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from qtpy import QtCore, QtWidgets

from dblink_live.display.export import VIDEO_SUFFIXES, export_video
from dblink_live.display.panels import ImagePanel
from dblink_live.display.source import RecordingSource
from dblink_live.errors import DblinkError

__all__ = [
    "error_box",
    "export_dialog",
    "export_with_progress",
    "open_dialog",
    "snapshot_dialog",
    "wait_cursor",
]

#: ``show_error(title, text)`` of the window.
ShowError = Callable[[str, str], object]


def error_box(parent: QtWidgets.QWidget, title: str, text: str) -> QtWidgets.QMessageBox:
    """A non-blocking error box, child of ``parent``, deleted when closed."""
    box = QtWidgets.QMessageBox(
        QtWidgets.QMessageBox.Icon.Critical,
        title,
        text,
        QtWidgets.QMessageBox.StandardButton.Ok,
        parent,
    )
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.open()
    return box


@contextlib.contextmanager
def wait_cursor() -> Iterator[None]:
    """Show the application's wait cursor while the ``with`` block runs."""
    QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        QtWidgets.QApplication.restoreOverrideCursor()


def open_dialog(parent: QtWidgets.QWidget, open_recording: Callable[[str], object]) -> None:
    """Ask for a recording folder and open it with ``open_recording(path)``."""
    path = QtWidgets.QFileDialog.getExistingDirectory(parent, "Open a recording (*.zarr folder)")
    if path:
        open_recording(path)


def snapshot_dialog(
    parent: QtWidgets.QWidget, save: Callable[[str], object], show_error: ShowError
) -> None:
    """Ask for a PNG path and ``save(path)`` the snapshot there; report a failure."""
    path, _ = QtWidgets.QFileDialog.getSaveFileName(
        parent, "Save snapshot", "snapshot.png", "PNG (*.png)"
    )
    if path:
        try:
            save(path)
        except DblinkError as exc:
            show_error("Snapshot failed", str(exc))


def export_dialog(
    parent: QtWidgets.QMainWindow, export: Callable[[str], int], show_error: ShowError
) -> None:
    """Ask for a TIFF or GIF path (``.tif`` added when neither) and ``export(path)`` to it.

    A failure is reported with ``show_error``; success in ``parent``'s status bar.
    """
    path, _ = QtWidgets.QFileDialog.getSaveFileName(
        parent,
        "Export reconstruction video",
        "reconstruction.tif",
        "TIFF stack (*.tif *.tiff);;GIF (*.gif)",
    )
    if not path:
        return
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        path += ".tif"
    try:
        n = export(path)
    except DblinkError as exc:
        show_error("Export failed", str(exc))
        return
    parent.statusBar().showMessage(f"wrote {n} frames to {path}", 5000)


def export_with_progress(
    parent: QtWidgets.QWidget,
    source: RecordingSource,
    path: str | Path,
    panel: ImagePanel,
    tint_threshold: float | None,
) -> int:
    """Export ``source``'s reconstructions to ``path`` behind a cancellable progress dialog.

    The colour map and levels are ``panel``'s; ``tint_threshold`` (confidence in [0, 1], or
    None for no tint) as in :func:`~dblink_live.display.export.export_video`. Returns the
    number of frames written.
    """
    dialog = QtWidgets.QProgressDialog("Exporting...", "Cancel", 0, source.n_outputs, parent)
    dialog.setWindowModality(QtCore.Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(500)

    def progress(done: int, total: int) -> bool:
        dialog.setValue(done)
        return not dialog.wasCanceled()

    try:
        return export_video(
            source,
            path,
            levels=panel.levels,
            lut=panel.lut,
            tint_threshold=tint_threshold,
            progress=progress,
        )
    finally:
        dialog.close()
        dialog.deleteLater()
