"""Localizers: raw camera frames (uint16 ADU) to :class:`~dblink_live.localizations.Localizations`.

Public surface
--------------
- :class:`CameraCalibration`: ADU -> photons and the assumed PSF width.
- :class:`ClassicLocalizer`: band-pass + local maxima + batched Gaussian fit (no training).
- :class:`CNNLocalizer`: DECODE-style network loaded from a self-describing checkpoint.
- :class:`CheckedLocalizer`: the CNN checked against a count of bright spots (warns, or with
  ``kind: auto`` falls back to the classic localizer).
- :func:`make_localizer`: build one from its config.
- :func:`estimate_camera`: offset and gain from the frames themselves (photon transfer).
"""

from __future__ import annotations

from dblink_live.config import (
    AutoLocalizerConfig,
    ClassicLocalizerConfig,
    CNNLocalizerConfig,
    LocalizerConfig,
)
from dblink_live.localize.base import CameraCalibration, Localizer, resolve_device
from dblink_live.localize.camera_estimate import CameraEstimate, estimate_camera
from dblink_live.localize.checked import CheckedLocalizer
from dblink_live.localize.classic import ClassicLocalizer
from dblink_live.localize.cnn import CNNLocalizer

__all__ = [
    "CNNLocalizer",
    "CameraCalibration",
    "CameraEstimate",
    "CheckedLocalizer",
    "ClassicLocalizer",
    "Localizer",
    "estimate_camera",
    "make_localizer",
    "resolve_device",
]


def make_localizer(config: LocalizerConfig | None = None, device: str = "auto") -> Localizer:
    """The localizer a config asks for: ``kind`` "cnn" (the default; the CNN with its yield
    check, which warns), "auto" (the same check, falling back to the classic localizer) or
    "classic"."""
    config = config or CNNLocalizerConfig()
    if isinstance(config, ClassicLocalizerConfig):
        return ClassicLocalizer(config, device)
    if isinstance(config, AutoLocalizerConfig):
        return CheckedLocalizer(config.cnn, device, fallback=config.classic)
    return CheckedLocalizer(config, device)
