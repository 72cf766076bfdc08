"""Ground truth of a simulated live run, written block by block while the run goes.

A run killed at any point (``kill -9``, a power cut) keeps the true emitters of every whole
block of frames recorded before the kill, so it can still be scored; a run that ends normally
gets the rest at the end. The truth comes from the simulated microscope's scene, or is copied
from the recording a simulated run is replayed from. Drawing the ground-truth *maps* of a scene
costs about 0.3 s of CPU per second of a 64x64 camera, which the live path cannot spare: they
are drawn at the end (``maps_during_run=False``), and ``evaluate`` redraws them from the stored
simulation (checked against the stored emitters) for a run killed before.

``gt/emitters`` carries ``attrs["frames_covered"]``: emitters are complete for frames
``[0, frames_covered)``. ``gt/skeleton`` and ``gt/structure`` hold one map per whole window of
recorded frames, as the reconstruction does.
"""

from __future__ import annotations

import logging
from typing import Protocol, cast

import numpy as np

from dblink_live.config import GridConfig
from dblink_live.io.recording import Recording
from dblink_live.localizations import EmitterTable
from dblink_live.sim.scene import Region, Scene

__all__ = ["GroundTruthWriter", "copied_truth", "scene_truth"]

log = logging.getLogger(__name__)
MAP_NAMES = ("gt/skeleton", "gt/structure")


class Truth(Protocol):
    """Where the ground truth comes from."""

    def emitters(self, start: int, stop: int) -> EmitterTable:
        """Emitters lit in frames ``[start, stop)``."""
        ...

    def maps(self, first: int, n: int) -> dict[str, np.ndarray] | None:
        """Maps ``first .. first + n`` as {image name: (n, Y', X')} (None: no maps)."""
        ...

    def origin_nm(self) -> tuple[float, float]:
        """Corner (x, y; nm from the camera's) of the maps: (0, 0) for the whole field, a
        region's corner for maps of the region reconstructed live."""
        ...


class _SceneTruth:
    def __init__(self, scene: Scene, grid: GridConfig, region_nm: Region | None = None):
        self.scene, self.grid, self.region_nm = scene, grid, region_nm

    def emitters(self, start: int, stop: int) -> EmitterTable:
        return self.scene.emitters(start, stop, fov_only=True)

    def maps(self, first: int, n: int) -> dict[str, np.ndarray] | None:
        _, skel, struct = self.scene.ground_truth_maps(self.grid, first, n, self.region_nm)
        return {"gt/skeleton": skel, "gt/structure": struct}

    def origin_nm(self) -> tuple[float, float]:
        return (self.region_nm[0], self.region_nm[1]) if self.region_nm else (0.0, 0.0)


class _CopiedTruth:
    def __init__(self, src: Recording, bin_nm: float, window: int):
        self.src = src
        self._emitters = src.read_emitters()
        self._names = []
        for name in MAP_NAMES:
            arr = src.image_array(name)
            if arr is None:
                continue
            attrs = arr.attrs
            same_grid = abs(float(cast(float, attrs["bin_nm"])) - bin_nm) < 1e-6
            if same_grid and int(cast(int, attrs["window_frames"])) == window:
                self._names.append(name)
            else:
                log.info("%s not copied: its grid differs from the reconstruction's", name)

    def emitters(self, start: int, stop: int) -> EmitterTable:
        e = self._emitters
        assert e is not None
        return e.select(np.flatnonzero((e.frame >= start) & (e.frame < stop)))

    def maps(self, first: int, n: int) -> dict[str, np.ndarray] | None:
        out = {}
        for name in self._names:
            arr = self.src.image_array(name)
            assert arr is not None
            written = int(cast(int, arr.attrs.get("frames_written", arr.shape[0])))
            stop = min(first + n, written)
            if stop - first < n:  # the source has fewer maps: copy none rather than a torn set
                return None
            out[name] = np.asarray(arr[first:stop])
        return out or None

    def origin_nm(self) -> tuple[float, float]:
        for name in self._names:
            arr = self.src.image_array(name)
            if arr is not None and arr.attrs.get("origin_nm") is not None:
                x, y = cast(list, arr.attrs["origin_nm"])
                return float(x), float(y)
        return 0.0, 0.0


def scene_truth(scene: Scene, grid: GridConfig, region_nm: Region | None = None) -> Truth:
    """Truth simulated from a scene on ``grid`` (its bin and window are the reconstruction's),
    of the whole field or of ``region_nm`` (x, y, width, height in nm: the region a live run
    reconstructs; a 512x512-pixel camera's whole field at 40 nm bins is 2048x2048 bins a map)."""
    return _SceneTruth(scene, grid, region_nm)


def copied_truth(src: Recording, bin_nm: float, window: int) -> Truth | None:
    """Truth copied from a simulated recording (None when it holds no ground truth)."""
    if src.read_emitters() is None:
        return None
    return _CopiedTruth(src, bin_nm, window)


class GroundTruthWriter:
    """Append the ground truth of recorded frames to ``rec`` in whole blocks.

    Parameters
    ----------
    rec
        The recording being written (open for writing).
    truth
        Where the truth comes from (:func:`scene_truth`, :func:`copied_truth`).
    bin_nm, window
        The reconstruction grid's bin (nm) and map window W (frames).
    block_maps
        Maps per block: ``block_maps * window`` frames are written at a time during the run.
    maps_during_run
        Also append the maps block by block during the run (else all at the end).
    """

    def __init__(
        self,
        rec: Recording,
        truth: Truth,
        bin_nm: float,
        window: int,
        block_maps: int = 64,
        maps_during_run: bool = True,
    ):
        self.rec, self.truth = rec, truth
        self.maps_during_run = bool(maps_during_run)
        self.bin_nm, self.window = float(bin_nm), int(window)
        self.block_frames = int(block_maps) * self.window
        self.frames_done = 0  # emitters complete for [0, frames_done)
        self.maps_done = 0

    def write(self, frames_recorded: int, final: bool = False) -> None:
        """Write the truth of every whole block within ``frames_recorded`` (all of it when
        ``final``: the run is over)."""
        while True:
            stop = self.frames_done + self.block_frames
            if stop > frames_recorded:
                if not final or self.frames_done >= frames_recorded:
                    break
                stop = frames_recorded
            self._write_block(self.frames_done, stop)
        if final:
            self._write_maps(self.frames_done)

    def _write_block(self, start: int, stop: int) -> None:
        rec = self.rec
        rec.append_emitters(self.truth.emitters(start, stop))
        self.frames_done = stop
        rec.group["gt/emitters"].attrs["frames_covered"] = stop
        if self.maps_during_run:
            self._write_maps(stop)

    def _write_maps(self, frames: int) -> None:
        while self.maps_done < frames // self.window:  # in blocks: memory stays bounded
            n_maps = min(self.block_frames // self.window, frames // self.window - self.maps_done)
            if not self._write_map_block(n_maps):
                return

    def _write_map_block(self, n_maps: int) -> bool:
        rec = self.rec
        maps = self.truth.maps(self.maps_done, n_maps)
        for name, data in (maps or {}).items():
            if name not in rec.group:
                rec.create_image(
                    name, data.shape[1:], str(data.dtype), bin_nm=self.bin_nm,
                    window_frames=self.window, origin_nm=self.truth.origin_nm(),
                )  # fmt: skip
            rec.append_image(name, data)
        if maps is None:
            return False
        self.maps_done += n_maps
        return True
