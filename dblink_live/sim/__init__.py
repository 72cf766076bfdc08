"""Physically realistic SMLM simulation: structures, motion, blinking, camera, ground truth.

Public surface
--------------
- :class:`Scene`: structure + motion + labels + blinking of one field, ground truth at any time.
- :class:`MovieSimulator` / :func:`simulate_movie`: raw camera frames (uint16) with ground truth.
- :func:`simulate_localizations`: the fast localization-space mode for reconstruction training.
"""

from dblink_live.sim.locspace import (
    LocalizationSequence,
    localization_precision_nm,
    simulate_localizations,
)
from dblink_live.sim.movie import MovieSimulator, SimulatedMovie, simulate_movie
from dblink_live.sim.scene import Scene, grid_shape, map_times_s

__all__ = [
    "LocalizationSequence",
    "MovieSimulator",
    "Scene",
    "SimulatedMovie",
    "grid_shape",
    "localization_precision_nm",
    "map_times_s",
    "simulate_localizations",
    "simulate_movie",
]
