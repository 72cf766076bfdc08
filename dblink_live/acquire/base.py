"""The FrameSource interface: Micro-Manager, the simulated microscope and replay look alike.

A source pushes frames into a sink (``sink(frame, metadata)``, which only copies: e.g.
:meth:`dblink_live.io.ring.FrameRing.put`) until it has produced its frames or ``stop`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from dblink_live.acquire.ground_truth import Truth
    from dblink_live.config import GridConfig

__all__ = ["FrameSink", "FrameSource", "GroundTruthSource", "SourceTruth"]

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


@dataclass
class SourceTruth:
    """What a source knows about the sample it shows, for the pipeline to store beside the
    recording (``gt/``).

    Attributes
    ----------
    truth : Truth
        Emitters and ground-truth maps of the frames the source produces, on the live grid.
    maps_during_run : bool
        Whether its maps may be drawn while acquiring (False: at the end, since drawing costs
        the live path CPU; evaluate redraws them after a kill).
    metadata : dict
        Stored in the recording's metadata (e.g. ``replayed_from``).
    """

    truth: Truth
    maps_during_run: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class GroundTruthSource(Protocol):
    """A source that knows its ground truth: the virtual microscope (its simulation) and a
    replay of a simulated recording (the truth stored in it)."""

    def ground_truth(
        self, grid: GridConfig, region_nm: tuple[float, float, float, float] | None = None
    ) -> SourceTruth | None:
        """The truth on ``grid`` (the live bin size and window), or None when there is none
        (e.g. a replay of a real recording). ``region_nm`` (x, y, width, height in nm): the
        region reconstructed live, whose maps are all a source needs to draw (one that copies
        stored maps may give the whole field: ``evaluate`` crops it)."""
        ...
