"""Raw camera movies: a :class:`~dblink_live.sim.scene.Scene` imaged by a camera model.

Frames are generated in blocks (:meth:`MovieSimulator.frames`) so that arbitrarily long movies
stream to disk in bounded memory; every frame has its own noise stream, so a frame is the same
whatever the block size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dblink_live.config import RunConfig
from dblink_live.localizations import EmitterTable
from dblink_live.sim.camera import Camera, camera_metadata, render_expected_photons
from dblink_live.sim.scene import Scene

__all__ = ["MovieSimulator", "SimulatedMovie", "simulate_movie"]


@dataclass(eq=False)
class SimulatedMovie:
    """A whole simulated movie in memory.

    Attributes
    ----------
    raw : (T, H, W) uint16
        Camera frames in ADU.
    emitters : EmitterTable
        True lit emitters per frame (inside the field of view).
    map_times_s : (T',) float64
        Mid-time of every map (W frames each).
    gt_skeleton : (T', Y', X') uint8
        1-bin thin centre lines on the reconstruction grid.
    gt_structure : (T', Y', X') float32
        Width-true coverage in [0, 1] on the same grid.
    metadata : dict
        ``pixel_size_nm``, ``frame_interval_s``, ``camera`` and simulation facts.
    """

    raw: np.ndarray
    emitters: EmitterTable
    map_times_s: np.ndarray
    gt_skeleton: np.ndarray
    gt_structure: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


class MovieSimulator:
    """Simulates raw frames, ground-truth emitters and ground-truth structure of one movie.

    Parameters
    ----------
    config
        The run config (its ``simulation`` and ``grid`` sections are used).
    n_frames, seed
        Override ``simulation.n_frames`` and ``simulation.seed``.
    """

    def __init__(self, config: RunConfig, n_frames: int | None = None, seed: int | None = None):
        self.config = config
        self.scene = Scene(config.simulation, n_frames=n_frames, seed=seed)
        cam_rng = np.random.default_rng(np.random.SeedSequence([self.scene.seed, 0xCA3]))
        self.camera = Camera.from_config(
            config.simulation.camera, config.simulation.optics, cam_rng
        )

    @property
    def n_frames(self) -> int:
        return self.scene.n_frames

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of a frame in pixels."""
        return self.camera.shape

    @property
    def n_maps(self) -> int:
        """Number of complete W-frame maps in the movie."""
        return self.n_frames // self.config.grid.window_frames

    def metadata(self) -> dict[str, Any]:
        """Facts that describe the movie (stored in the recording attributes)."""
        sim = self.config.simulation
        return {
            "pixel_size_nm": sim.camera.pixel_size_nm,
            "frame_interval_s": sim.frame_interval_s,
            "camera": camera_metadata(sim.camera, self.camera.sigma_nm),
            "simulation": {
                "seed": self.scene.seed,
                "n_frames": self.n_frames,
                "n_objects": self.scene.geometry.n_objects,
                "n_labels": len(self.scene.labels),
                "duty_cycle": self.scene.duty_cycle,
                "duty_cycle_capped": self.scene.duty_capped,
            },
        }

    def _noise_rngs(self, start: int, stop: int) -> list[np.random.Generator]:
        return [
            np.random.default_rng(np.random.SeedSequence([self.scene.seed, 0x401CE, f]))
            for f in range(start, stop)
        ]

    def frames(self, start: int, stop: int) -> tuple[np.ndarray, EmitterTable]:
        """Raw frames ``[start, stop)`` (n, H, W) uint16 and the emitters lit in them."""
        if not 0 <= start <= stop <= self.n_frames:
            raise ValueError(
                f"frames [{start}, {stop}) outside the movie of {self.n_frames} frames"
            )
        table = self.scene.emitters(start, stop, fov_only=False)
        cam = self.config.simulation.camera
        signal = render_expected_photons(
            table.frame - start,
            table.x_nm,
            table.y_nm,
            table.photons,
            stop - start,
            self.shape,
            cam.pixel_size_nm,
            self.camera.sigma_nm,
        )
        raw = self.camera.expose(signal, self._noise_rngs(start, stop))
        return raw, table.select(self.scene.in_fov(table.x_nm, table.y_nm))

    def iter_frames(self, chunk_frames: int = 64) -> Iterator[tuple[int, np.ndarray, EmitterTable]]:
        """Yield ``(first_frame, raw block, emitters)`` over the whole movie."""
        for start in range(0, self.n_frames, chunk_frames):
            stop = min(start + chunk_frames, self.n_frames)
            raw, em = self.frames(start, stop)
            yield start, raw, em

    def ground_truth_maps(
        self, first: int = 0, n_maps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times (T',), skeleton (T', Y', X') uint8, structure (T', Y', X') float32)."""
        return self.scene.ground_truth_maps(self.config.grid, first, n_maps)


def simulate_movie(
    config: RunConfig, n_frames: int | None = None, seed: int | None = None
) -> SimulatedMovie:
    """Simulate a whole movie in memory (use :class:`MovieSimulator` to stream long ones)."""
    sim = MovieSimulator(config, n_frames=n_frames, seed=seed)
    raw, emitters = sim.frames(0, sim.n_frames)
    times, skel, struct = sim.ground_truth_maps()
    return SimulatedMovie(raw, emitters, times, skel, struct, sim.metadata())
