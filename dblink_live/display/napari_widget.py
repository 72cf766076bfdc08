"""napari dock widget: run the live pipeline (a replayed recording or the virtual microscope)
and stream its newest raw frame, reconstruction and confidence into napari layers.

The pipeline runs in its own threads (and its reconstruction in a child process); its start
(opening the source, loading the models) runs in a helper thread. The widget only polls
:meth:`~dblink_live.pipeline.Pipeline.latest` from a Qt timer, so napari's event loop is never
blocked. The layers are 2-D, in nanometres, with the same pixel-centre translation as the
recording's OME-Zarr metadata, so they overlay a recording opened with the reader.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dblink_live.pipeline_types import LiveSession, PipelineState

__all__ = ["LIVE_LAYERS", "DblinkLiveWidget"]

log = logging.getLogger(__name__)

#: Names of the layers the widget keeps up to date.
LIVE_LAYERS = {
    "raw": "live raw",
    "reconstruction": "live reconstruction",
    "confidence": "live confidence",
}
_SOURCES = ("Replay a recording", "Virtual microscope (demo)")


class DblinkLiveWidget(QWidget):
    """Start, follow and stop a live run from napari.

    ``napari_viewer`` is injected by napari (npe2 widget contribution). Programmatic use (and
    the tests): :meth:`start_replay`, :meth:`start_demo`, :meth:`stop`, :attr:`pipeline`,
    :attr:`shown_version`.
    """

    def __init__(self, napari_viewer: Any, poll_ms: int = 100):
        super().__init__()
        self.viewer = napari_viewer
        self.pipeline: LiveSession | None = None
        self.shown_version = -1
        #: Layers this widget added (napari compiles a canvas visual for each, once)
        self.layers_created = 0
        self.error: str | None = None
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None

        self.source = QComboBox()
        self.source.addItems(_SOURCES)
        self.input = QLineEdit()
        self.input.setPlaceholderText("recording to replay (*.zarr)")
        self.output = QLineEdit()
        self.output.setPlaceholderText("recording to write (*.zarr)")
        self.frames = QSpinBox()
        self.frames.setRange(10, 10_000_000)
        self.frames.setValue(1000)
        self.speed = QDoubleSpinBox()
        self.speed.setRange(0.01, 1000.0)
        self.speed.setValue(1.0)
        self.overwrite = QCheckBox("replace an existing output")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.status = QLabel("idle")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("source", self.source)
        form.addRow("replay", self.input)
        form.addRow("output", self.output)
        form.addRow("demo frames", self.frames)
        form.addRow("replay speed", self.speed)
        form.addRow("", self.overwrite)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.start_button.clicked.connect(self._start_clicked)
        self.stop_button.clicked.connect(self.stop)
        self.timer = QTimer(self)
        self.timer.setInterval(int(poll_ms))
        self.timer.timeout.connect(self.refresh)
        self._update_buttons()

    # ------------------------------------------------------------------ starting
    def _start_clicked(self) -> None:
        out = self.output.text().strip()
        try:
            if self.source.currentIndex() == 0:
                self.start_replay(self.input.text().strip(), out or None, self.speed.value())
            else:
                self.start_demo(out or "demo.zarr", n_frames=self.frames.value())
        except Exception as exc:  # one line in the widget, never a traceback in napari
            self._fail(str(exc))

    def start_replay(
        self, recording: str | Path, output: str | Path | None = None, speed: float = 1.0
    ) -> None:
        """Stream ``recording`` through the live pipeline at ``speed`` x its recorded rate,
        writing ``output`` (default ``NAME_replay.zarr`` beside it)."""
        from dblink_live.config import RunConfig, config_from_dict
        from dblink_live.io.recording import Recording

        if not str(recording):
            raise ValueError("choose a recording to replay")
        path = Path(recording)
        stored = Recording.open(path).config  # a clear error now for what is not a recording
        cfg = config_from_dict(stored) if stored else RunConfig()
        if output is None:
            base = path.with_suffix("")
            output = base.with_name(base.name + "_replay.zarr")
        self._check_output(output)
        overwrite = self._overwrite()

        def make() -> LiveSession:
            from dblink_live.acquire.replay import ReplaySource
            from dblink_live.pipeline import Pipeline

            source = ReplaySource(path, speed=speed)
            return Pipeline(source, output, config=cfg, overwrite=overwrite)

        self._start(make)

    def start_demo(self, output: str | Path, n_frames: int = 1000, fps: float = 100.0) -> None:
        """Run the virtual microscope (simulated sample, Micro-Manager camera) for
        ``n_frames`` frames at ``fps``, writing ``output``."""
        self._check_output(output)
        overwrite = self._overwrite()

        def make() -> LiveSession:
            from dblink_live.pipeline import demo_pipeline

            return demo_pipeline(output, n_frames=n_frames, fps=fps, overwrite=overwrite)

        self._start(make)

    def _overwrite(self) -> bool:
        return bool(self.overwrite.isChecked())

    def _check_output(self, output: str | Path) -> None:
        from dblink_live.io.outputs import check_writable

        if Path(output).exists() and not self._overwrite():
            raise FileExistsError(f"{output} already exists; tick 'replace' or choose another")
        check_writable(Path(output))

    def _start(self, make: Callable[[], LiveSession]) -> None:
        """Build the pipeline with ``make`` and start it, both in a helper thread (loading the
        models and opening the source take seconds)."""
        if self.running:
            raise RuntimeError("a run is in progress; stop it first")
        self.pipeline, self.shown_version, self.error = None, -1, None
        self._start_error = None

        def start() -> None:
            try:
                pipeline = make()
                self.pipeline = pipeline
                pipeline.start()
            except BaseException as exc:  # reported by the Qt thread in refresh()
                self._start_error = exc

        self._starter = threading.Thread(target=start, name="dblink-napari-start", daemon=True)
        self._starter.start()
        self.status.setText("starting: opening the source and loading the models...")
        self.timer.start()
        self._update_buttons()

    # ------------------------------------------------------------------ following
    @property
    def running(self) -> bool:
        """A run is starting or going on."""
        if self._starter is not None and self._starter.is_alive():
            return True
        return self.pipeline is not None and not self.pipeline.state.done and self.error is None

    def refresh(self) -> None:
        """Timer slot: finish a start, show the newest results and the status line."""
        if self._starter is not None:
            if self._starter.is_alive():
                return
            self._starter = None
            if self._start_error is not None:
                exc, self._start_error = self._start_error, None
                self._fail(f"the run did not start: {exc}")
                return
        if self.pipeline is None:
            return
        res = self.pipeline.latest()
        if res.version > self.shown_version:
            self.shown_version = int(res.version)
            self._show(res)
        status = self.pipeline.status()
        # the warnings too: a region reconstructed instead of the frame, skipped maps, ...
        self.status.setText("\n".join([status.line(), *(f"warning: {w}" for w in status.warnings)]))
        if status.state.done:
            self.timer.stop()
            if status.state is PipelineState.FAILED:
                self.error = status.error or "the run failed"
                self.status.setText(f"failed: {self.error}")
            self._update_buttons()

    def _show(self, res: Any) -> None:
        px, bin_nm = float(res.pixel_size_nm), float(res.bin_nm)
        corner = (float(res.origin_nm[1]), float(res.origin_nm[0]))  # (y, x) of a region
        if res.raw is not None and px > 0:
            self._set_layer("raw", res.raw, px, "gray", None, (0.0, 0.0))
        if res.reconstruction is not None and bin_nm > 0:
            recon = res.reconstruction
            self._set_layer("reconstruction", recon, bin_nm, "magma", (0.0, 1.0), corner)
        if res.confidence is not None and bin_nm > 0:
            self._set_layer("confidence", res.confidence, bin_nm, "viridis", (0.0, 1.0), corner)

    def _set_layer(
        self,
        key: str,
        data: np.ndarray,
        step_nm: float,
        colormap: str,
        limits: tuple[float, float] | None,
        corner_yx: tuple[float, float],
    ) -> None:
        name = LIVE_LAYERS[key]
        scale = (step_nm, step_nm)
        translate = (corner_yx[0] + step_nm / 2, corner_yx[1] + step_nm / 2)  # element centres
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if layer.data.shape == data.shape and tuple(layer.translate) == translate:
                layer.data = data
                return
            self.viewer.layers.remove(name)
        kwargs: dict[str, Any] = {
            "name": name,
            "scale": scale,
            "translate": translate,
            "colormap": colormap,
            "units": ("nanometer", "nanometer"),
        }
        if limits is not None:
            kwargs.update(contrast_limits=limits, blending="additive")
        self.viewer.add_image(data, **kwargs)
        self.layers_created += 1

    # ------------------------------------------------------------------ stopping
    def stop(self) -> None:
        """Ask the run to stop: the source stops, buffered frames are processed, then the
        recording is finished (returns at once; the timer shows the end)."""
        if self.pipeline is not None:  # also while starting: the run then drains at once
            self.pipeline.stop()
        self._update_buttons()

    def _fail(self, message: str) -> None:
        self.error = message
        self.timer.stop()
        self.status.setText(message)
        log.warning("%s", message)
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def closeEvent(self, event: Any) -> None:  # napari closes docks with the viewer
        """Stop a run when the widget closes and wait for it to finish its recording."""
        if self.pipeline is not None and self.running:
            self.pipeline.stop()
            self.pipeline.wait(60)
        self.timer.stop()
        super().closeEvent(event)
