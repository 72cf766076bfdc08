"""The time controls: play/pause, follow-live, a slider over raw frames, speed, position text."""

from __future__ import annotations

from qtpy import QtCore, QtWidgets

__all__ = ["TimeBar"]


class TimeBar(QtWidgets.QWidget):
    """Slider over raw frames with play and live buttons.

    Signals
    -------
    frame_requested(int)
        The user moved the slider to a raw frame (not emitted for programmatic moves).
    live_toggled(bool)
        The user switched following the live pipeline on or off.
    play_toggled(bool)
        The user started or paused playback.
    """

    frame_requested = QtCore.Signal(int)
    live_toggled = QtCore.Signal(bool)
    play_toggled = QtCore.Signal(bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setText("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("play the recording (space)")
        self.live_button = QtWidgets.QToolButton()
        self.live_button.setText("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip(
            "follow the newest output; switch off to pause the display (acquisition goes on)"
        )
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setToolTip("raw frame")
        self.speed = QtWidgets.QDoubleSpinBox()
        self.speed.setRange(0.1, 100.0)
        self.speed.setValue(1.0)
        self.speed.setSuffix(" x")
        self.speed.setToolTip("playback speed relative to the recorded frame rate")
        self.label = QtWidgets.QLabel("no data")
        self.label.setMinimumWidth(360)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        layout.addWidget(self.live_button)
        layout.addWidget(self.play_button)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.speed)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self.frame_requested)
        self.live_button.toggled.connect(self.live_toggled)
        self.play_button.toggled.connect(self.play_toggled)

    def set_position(self, frame: int, n_frames: int) -> None:
        """Show ``frame`` of ``n_frames`` without emitting :attr:`frame_requested`."""
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n_frames - 1))
        self.slider.setValue(max(0, frame))
        self.slider.blockSignals(False)

    def set_live(self, live: bool) -> None:
        """Check or uncheck the live button without emitting :attr:`live_toggled`."""
        self.live_button.blockSignals(True)
        self.live_button.setChecked(live)
        self.live_button.blockSignals(False)

    def set_playing(self, playing: bool) -> None:
        """Check or uncheck the play button without emitting :attr:`play_toggled`."""
        self.play_button.blockSignals(True)
        self.play_button.setChecked(playing)
        self.play_button.setText("Pause" if playing else "Play")
        self.play_button.blockSignals(False)

    @property
    def frame(self) -> int:
        """Raw frame under the slider."""
        return int(self.slider.value())
