"""One image panel: a pyqtgraph view in nanometres, a scale bar and contrast/LUT controls."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets

from dblink_live.display.imaging import (
    LUT_NAMES,
    auto_levels,
    format_length,
    lookup_table,
    nice_length_nm,
)

__all__ = ["ImagePanel", "NmScaleBar"]


class NmScaleBar(pg.ScaleBar):
    """A scale bar for a view whose units are nanometres; its length follows the zoom.

    The bar is 1, 2 or 5 x 10^n nm long, about a fifth of the visible width, and labelled in
    um (or nm below 1 um).
    """

    def __init__(self) -> None:
        super().__init__(size=1000.0, width=4, brush="w", pen=None, suffix="m")
        self.text.setColor("w")

    def updateBar(self) -> None:
        view = self.parentItem()
        if view is None:
            return
        width = view.viewRect().width()
        if width > 0:
            self.size = nice_length_nm(width)
            self.text.setText(format_length(self.size))
        super().updateBar()

    @property
    def label(self) -> str:
        """The label on screen, e.g. ``"2 µm"``."""
        return self.text.toPlainText()


class ImagePanel(QtWidgets.QWidget):
    """An image in nanometre coordinates with a title, scale bar and contrast controls.

    Parameters
    ----------
    title
        Shown above the image.
    lut
        Initial colour map (one of :data:`~dblink_live.display.imaging.LUT_NAMES`).
    auto
        Start with automatic levels (percentiles of each new image).
    levels
        Initial manual (low, high) levels.
    """

    def __init__(
        self,
        title: str,
        *,
        lut: str = "gray",
        auto: bool = True,
        levels: tuple[float, float] = (0.0, 1.0),
        parent: QtWidgets.QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName(title)
        self._image: np.ndarray | None = None
        self._scale_nm = 0.0
        self._origin_nm = (0.0, 0.0)
        self.title = QtWidgets.QLabel(title)
        self.title.setStyleSheet("font-weight: bold")
        self.subtitle = QtWidgets.QLabel("")
        self.subtitle.setStyleSheet("color: gray")
        self.graphics = pg.GraphicsView(parent=self)
        self.graphics.setBackground("k")
        self.view = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.graphics.setCentralItem(self.view)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.scale_bar = NmScaleBar()
        self.scale_bar.setParentItem(self.view)
        self.scale_bar.anchor((1, 1), (1, 1), offset=(-12, -12))
        self.scale_bar.hide()

        self.lut_box = QtWidgets.QComboBox()
        self.lut_box.addItems(LUT_NAMES)
        self.lut_box.setCurrentText(lut)
        self.lut_box.setToolTip("colour map")
        self.auto_box = QtWidgets.QCheckBox("auto")
        self.auto_box.setChecked(auto)
        self.auto_box.setToolTip("levels from the 0.5 and 99.8 percentiles of each image")
        self.low_spin = self._spin(levels[0], "black level")
        self.high_spin = self._spin(levels[1], "white level")

        header = QtWidgets.QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.subtitle, 1)
        self.controls = QtWidgets.QHBoxLayout()
        self.controls.addWidget(self.lut_box)
        self.controls.addWidget(self.auto_box)
        self.controls.addWidget(self.low_spin)
        self.controls.addWidget(self.high_spin)
        self.controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(self.controls)

        self.item.setLookupTable(lookup_table(lut))
        self.lut_box.currentTextChanged.connect(self._lut_changed)
        self.auto_box.toggled.connect(self._auto_toggled)
        self.low_spin.valueChanged.connect(self._manual_levels)
        self.high_spin.valueChanged.connect(self._manual_levels)
        self._auto_toggled(auto)

    @staticmethod
    def _spin(value: float, tip: str) -> QtWidgets.QDoubleSpinBox:
        spin = QtWidgets.QDoubleSpinBox()
        spin.setRange(-1e9, 1e9)
        spin.setDecimals(3)
        spin.setSingleStep(0.05)
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.setKeyboardTracking(False)
        return spin

    # ------------------------------------------------------------------ image
    @property
    def image(self) -> np.ndarray | None:
        """The (Y, X) array on screen (None when empty)."""
        return self._image

    @property
    def levels(self) -> tuple[float, float]:
        """Current (low, high) display levels."""
        return float(self.low_spin.value()), float(self.high_spin.value())

    @property
    def lut(self) -> str:
        return self.lut_box.currentText()

    def set_image(
        self,
        image: np.ndarray | None,
        scale_nm: float,
        origin_nm: tuple[float, float] = (0.0, 0.0),
    ) -> bool:
        """Show (Y, X) ``image`` whose pixels are ``scale_nm`` nm wide, its corner at
        ``origin_nm`` (x, y; nm: a reconstructed region's corner on the camera), None clears it.

        Returns False, and repaints nothing, when the same image is already on screen.
        """
        if image is None:
            if self._image is not None:
                self.clear()
            return False
        old = self._image
        if (
            old is not None
            and scale_nm == self._scale_nm
            and tuple(origin_nm) == self._origin_nm
            and old.shape == image.shape
            and old.dtype == image.dtype
            and np.array_equal(old, image)
        ):
            return False
        self._image = image
        if self.auto_box.isChecked():
            low, high = auto_levels(image)
            self._set_spins(low, high)
        self.item.setImage(image, autoLevels=False, levels=self.levels)
        origin = (float(origin_nm[0]), float(origin_nm[1]))
        if scale_nm > 0 and (scale_nm != self._scale_nm or origin != self._origin_nm):
            self._scale_nm, self._origin_nm = float(scale_nm), origin
            s = float(scale_nm)
            self.item.setTransform(QtGui.QTransform(s, 0.0, 0.0, s, origin[0], origin[1]))
        self.item.show()
        self.scale_bar.show()
        return True

    def clear(self) -> None:
        """Remove the image (the panel shows black)."""
        self._image = None
        self.item.clear()
        self.item.hide()

    def extent_nm(self) -> tuple[float, float]:
        """(height, width) of the shown image in nm (0, 0 when empty)."""
        if self._image is None:
            return 0.0, 0.0
        h, w = self._image.shape[:2]
        return h * self._scale_nm, w * self._scale_nm

    # ------------------------------------------------------------------ controls
    def _set_spins(self, low: float, high: float) -> None:
        for spin, value in ((self.low_spin, low), (self.high_spin, high)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    def _lut_changed(self, name: str) -> None:
        self.item.setLookupTable(lookup_table(name))

    def _auto_toggled(self, auto: bool) -> None:
        self.low_spin.setEnabled(not auto)
        self.high_spin.setEnabled(not auto)
        if auto and self._image is not None:
            self._set_spins(*auto_levels(self._image))
            self.item.setLevels(self.levels)

    def _manual_levels(self, _value: float = 0.0) -> None:
        low, high = self.levels
        if high <= low:
            high = low + 1e-3
        self.item.setLevels((low, high))

    def set_levels(self, low: float, high: float) -> None:
        """Fix the levels (switches automatic levels off)."""
        self.auto_box.setChecked(False)
        self._set_spins(low, high)
        self._manual_levels()

    def view_rect_nm(self) -> QtCore.QRectF:
        """The visible region in nm."""
        return self.view.viewRect()
