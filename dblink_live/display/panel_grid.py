"""The viewer's four linked image panels, their render/tint controls and how a frame is drawn.

:class:`PanelGrid` holds the raw-frame, localization-render, reconstruction and confidence
:class:`~dblink_live.display.panels.ImagePanel` s in a 2 x 2 grid (all in nanometres, zoom and
pan linked), the render-window spin box, the confidence-tint controls and overlay, and draws a
:class:`~dblink_live.display.frames.ViewFrame` on them.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets

from dblink_live.display.frames import ViewFrame
from dblink_live.display.imaging import confidence_tint
from dblink_live.display.panels import ImagePanel

__all__ = ["PanelGrid", "cursor_text"]


class PanelGrid(QtWidgets.QWidget):
    """Raw frame, localizations, reconstruction and confidence panels with their controls.

    Parameters
    ----------
    render_maps
        Initial window of the localization render, in maps of W raw frames.
    """

    #: Emitted with the cursor's position (µm) and the value under it, as text.
    cursor_moved = QtCore.Signal(str)

    def __init__(self, render_maps: int, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.frame: ViewFrame | None = None
        self._shown_output: tuple[int, int] = (-1, -1)
        self._tint_dirty = True
        self._zoomed = False
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

        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        for i, panel in enumerate(self.panels):
            grid.addWidget(panel, i // 2, i % 2)
        for i in range(2):
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        for panel in self.panels:
            panel.graphics.scene().sigMouseMoved.connect(
                lambda pos, p=panel: self.cursor_moved.emit(cursor_text(p, pos))
            )

    @property
    def tint_level(self) -> float | None:
        """Confidence below which the reconstruction is tinted; None while the tint is off."""
        return self.tint_threshold.value() if self.tint_box.isChecked() else None

    def forget(self) -> None:
        """A new source: redraw the reconstruction and zoom to the whole field next time."""
        self.frame = None
        self._shown_output = (-1, -1)
        self._zoomed = False

    def show_frame(self, vf: ViewFrame, *, table_only: bool = False) -> None:
        """Put ``vf`` on the panels (the reconstruction only when it changed).

        ``table_only``: the recording was made from a localization table (no camera frames),
        so its localizations stand in for the raw frame.
        """
        if vf.raw is None and table_only:
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
        if not self._zoomed:
            self.reset_zoom()

    def reset_zoom(self) -> None:
        """Zoom to the whole field of view (all panels are linked)."""
        extents = [p.extent_nm() for p in self.panels if p.image is not None]
        if not extents:
            return
        height = max(e[0] for e in extents)
        width = max(e[1] for e in extents)
        self.raw_panel.view.setRange(QtCore.QRectF(0, 0, width, height), padding=0.0)
        self._zoomed = True

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


def cursor_text(panel: ImagePanel, pos: QtCore.QPointF) -> str:
    """The cursor at scene position ``pos`` over ``panel``: x, y in µm and the pixel's value."""
    point = panel.view.mapSceneToView(pos)
    x_nm, y_nm = point.x(), point.y()
    text = f"x {x_nm / 1e3:.2f} µm, y {y_nm / 1e3:.2f} µm"
    image = panel.image
    if image is not None:
        scale = panel.extent_nm()[1] / image.shape[1]
        col, row = int(np.floor(x_nm / scale)), int(np.floor(y_nm / scale))
        if 0 <= row < image.shape[0] and 0 <= col < image.shape[1]:
            text += f": {panel.title.text().lower()} {image[row, col]:.3g}"
    return text


def _overlay_item() -> pg.ImageItem:
    item = pg.ImageItem(axisOrder="row-major")
    item.setZValue(10)
    item.hide()
    return item
