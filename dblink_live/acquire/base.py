"""The FrameSource interface: Micro-Manager, the simulated microscope and replay look alike.

A source pushes frames into a sink (``sink(frame, metadata)``, which only copies: e.g.
:meth:`dblink_live.io.ring.FrameRing.put`) until it has produced its frames or ``stop`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

__all__ = ["FrameSink", "FrameSource"]

#: Receives one (Y, X) frame and its metadata; must return quickly (copy only).
FrameSink = Callable[[np.ndarray, dict[str, Any]], Any]


class FrameSource(Protocol):
    """Something that produces camera frames.

    Attributes
    ----------
    frame_shape : (Y, X)
    pixel_size_nm : float
    frame_interval_s : float
        Nominal time between frames.
    camera : dict
        Calibration metadata stored in the recording (see ``CameraCalibration.from_camera``).
    arrival_interval_s : float or None, optional
        Seconds between frames as they arrive when that differs from ``frame_interval_s`` (a
        replay at another speed); None for an unpaced source, which has no latency to bound.
    recording_metadata : dict, optional
        Stored in the recording's metadata (e.g. the MDA sequence that made it).
    """

    frame_shape: tuple[int, int]
    pixel_size_nm: float
    frame_interval_s: float
    camera: dict[str, Any]

    def run(self, sink: FrameSink, stop: threading.Event) -> int:
        """Produce frames into ``sink`` until done or ``stop`` is set; returns frames produced."""
        ...
