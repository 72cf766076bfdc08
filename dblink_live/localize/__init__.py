"""Localizers: raw camera frames (uint16 ADU) to :class:`~dblink_live.localizations.Localizations`.

Public surface
--------------
- :class:`CameraCalibration`: ADU -> photons and the assumed PSF width.
- :class:`ClassicLocalizer`: band-pass + local maxima + batched Gaussian fit (no training).
- :class:`CNNLocalizer`: DECODE-style network loaded from a self-describing checkpoint.
- :func:`make_localizer`: build either from its config.
"""

from __future__ import annotations

from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig, LocalizerConfig
from dblink_live.localize.base import CameraCalibration, Localizer, resolve_device
from dblink_live.localize.classic import ClassicLocalizer
from dblink_live.localize.cnn import CNNLocalizer

__all__ = [
    "CNNLocalizer",
    "CameraCalibration",
    "ClassicLocalizer",
    "Localizer",
    "make_localizer",
    "resolve_device",
]


def make_localizer(config: LocalizerConfig | None = None, device: str = "auto") -> Localizer:
    """The localizer a config asks for (``kind`` "cnn" by default, or "classic")."""
    config = config or CNNLocalizerConfig()
    if isinstance(config, ClassicLocalizerConfig):
        return ClassicLocalizer(config, device)
    return CNNLocalizer(config, device)
