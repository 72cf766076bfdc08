"""The live viewer (pyqtgraph through qtpy): the only package of dblink_live that imports Qt.

Public API::

    run_viewer(recording=None, pipeline=None, title=None) -> int   # event loop, exit code
    ViewerWindow(recording=None, pipeline=None, title=None, ...)    # the main window

The Qt-free helpers (:mod:`~dblink_live.display.source`, :mod:`~dblink_live.display.export`,
:mod:`~dblink_live.display.imaging`, :mod:`~dblink_live.display.alerts`) import without Qt;
``run_viewer`` and ``ViewerWindow`` load Qt on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dblink_live.display.app import run_viewer
    from dblink_live.display.window import ViewerWindow

__all__ = ["ViewerWindow", "run_viewer"]


def __getattr__(name: str) -> Any:
    if name == "run_viewer":
        from dblink_live.display.app import run_viewer

        return run_viewer
    if name == "ViewerWindow":
        from dblink_live.display.window import ViewerWindow

        return ViewerWindow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
