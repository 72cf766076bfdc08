"""Status bar fields and the warning/error banner of the viewer."""

from __future__ import annotations

from qtpy import QtWidgets

from dblink_live.display.alerts import StatusText

__all__ = ["AlertBanner", "StatusFields"]

_ERROR_STYLE = "background: #b00020; color: white; padding: 4px; font-weight: bold"
_WARNING_STYLE = "background: #ffb300; color: black; padding: 4px"


class AlertBanner(QtWidgets.QLabel):
    """A strip above the panels listing errors (red) or warnings (amber); hidden when none."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.errors: tuple[str, ...] = ()
        self.warnings: tuple[str, ...] = ()
        self.hide()

    def show_alerts(self, errors: tuple[str, ...], warnings: tuple[str, ...]) -> None:
        """Show ``errors`` and ``warnings`` (one line each); hide when both are empty."""
        if (errors, warnings) == (self.errors, self.warnings):
            return
        self.errors, self.warnings = tuple(errors), tuple(warnings)
        lines = [f"ERROR: {e}" for e in errors] + [f"warning: {w}" for w in warnings]
        self.setText("\n".join(lines))
        self.setStyleSheet(_ERROR_STYLE if errors else _WARNING_STYLE)
        self.setVisible(bool(lines))

    @property
    def level(self) -> str:
        """``"error"``, ``"warning"`` or ``""``."""
        return "error" if self.errors else "warning" if self.warnings else ""


class StatusFields:
    """Labels in a QStatusBar, one per field of :class:`~dblink_live.display.alerts.StatusText`.

    Parameters
    ----------
    bar
        The window's status bar (the labels become its permanent widgets).
    """

    KEYS = ("state", "input", "processing", "lag", "dropped", "density", "device")

    def __init__(self, bar: QtWidgets.QStatusBar):
        self.bar = bar
        self.labels: dict[str, QtWidgets.QLabel] = {}
        for key in self.KEYS:
            label = QtWidgets.QLabel("")
            label.setObjectName(f"status_{key}")
            label.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
            label.setContentsMargins(4, 0, 4, 0)
            label.hide()
            bar.addPermanentWidget(label)
            self.labels[key] = label

    def show_status(self, text: StatusText) -> None:
        """Fill the labels; the dropped and density fields turn red/amber with alerts."""
        joined = " ".join(text.warnings).lower()
        for key, value in text.fields:
            label = self.labels[key]
            label.setText(value)
            style = ""
            if key == "dropped" and "drop" in joined:
                style = "color: #b00020; font-weight: bold"
            elif key == "density" and "density" in joined:
                style = "color: #b36b00; font-weight: bold"
            elif key == "state" and text.errors:
                style = "color: #b00020; font-weight: bold"
            label.setStyleSheet(style)
            label.show()

    def hide_all(self) -> None:
        for label in self.labels.values():
            label.hide()

    def text(self) -> str:
        """All visible fields joined by " | " (for tests and logs)."""
        return " | ".join(lb.text() for lb in self.labels.values() if not lb.isHidden())
