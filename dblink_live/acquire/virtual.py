"""The virtual microscope: the simulator as a real Micro-Manager camera.

:class:`SimulatedSMLMCamera` is a pymmcore-plus Python camera device that exposes the frames of
a :class:`~dblink_live.sim.movie.MovieSimulator` movie at the set exposure (one frame per
exposure time, paced by the clock). :func:`virtual_core` loads it into a ``UniMMCore`` (the
pymmcore-plus core that accepts Python devices) with a pixel-size configuration, and
:class:`VirtualMicroscopeSource` hands that core to pycromanager's Python backend, so the demo
runs through exactly the same ``Acquisition`` and hook as a real microscope
(:class:`~dblink_live.acquire.micromanager.MicroManagerSource`). The movie's ground truth stays
available for scoring.
"""

from __future__ import annotations

import logging
import re
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.acquire.base import SourceTruth
from dblink_live.acquire.ground_truth import scene_truth
from dblink_live.acquire.micromanager import MicroManagerSource
from dblink_live.config import GridConfig, RunConfig
from dblink_live.errors import DblinkError
from dblink_live.sim.movie import MovieSimulator

__all__ = ["CAMERA_LABEL", "SimulatedSMLMCamera", "VirtualMicroscopeSource", "virtual_core"]

#: Device label of the simulated camera in the core.
CAMERA_LABEL = "SMLMCamera"

_root_level = logging.getLogger().level
try:  # pymmcore-plus is needed for the virtual microscope only
    from pymmcore_plus._logger import configure_logging
    from pymmcore_plus.experimental.unicore import UniMMCore
    from pymmcore_plus.experimental.unicore.devices._camera import CameraDevice

    # importing pymmcore-plus sets the root logger to DEBUG and logs to a file: undo that
    configure_logging(file=None, stderr_level="WARNING")
    logging.getLogger().setLevel(_root_level)
except ImportError:  # pragma: no cover - reported when the virtual microscope is used
    UniMMCore = None  # type: ignore[assignment,misc]
    CameraDevice = object  # type: ignore[assignment,misc]


class SimulatedSMLMCamera(CameraDevice):
    """A Micro-Manager camera whose sensor images a simulated moving, blinking sample.

    Frame ``k`` of the movie is read out ``(k + 1) * exposure`` after the sequence starts (a
    camera that exposes continuously); consecutive sequences continue the movie. The movie is
    simulated ``chunk_frames`` frames ahead, so the cost per frame stays small and smooth.

    Parameters
    ----------
    simulator
        The movie (its length bounds the frames this camera can deliver).
    exposure_ms
        Initial exposure = frame period (ms).
    chunk_frames
        Frames simulated at once.
    """

    def __init__(self, simulator: MovieSimulator, exposure_ms: float, chunk_frames: int = 16):
        super().__init__()
        self.simulator = simulator
        self._exposure_ms = float(exposure_ms)
        self.chunk_frames = int(chunk_frames)
        self.next_frame = 0
        self._block: np.ndarray | None = None
        self._block_start = 0

    # -- required by pymmcore-plus ------------------------------------------------------------
    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        if exposure <= 0:
            raise ValueError("exposure must be positive (ms)")
        self._exposure_ms = float(exposure)

    def shape(self) -> tuple[int, int]:
        return tuple(self.simulator.shape)  # type: ignore[return-value]

    def dtype(self) -> Any:
        return np.uint16

    def _frame(self, k: int) -> np.ndarray:
        b = self._block
        if b is None or not (self._block_start <= k < self._block_start + len(b)):
            stop = min(k + self.chunk_frames, self.simulator.n_frames)
            self._block, _ = self.simulator.frames(k, stop)
            self._block_start = k
            b = self._block
        return b[k - self._block_start]

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], Any], np.ndarray]
    ) -> Iterator[Mapping]:
        shape, dtype = self.shape(), self.dtype()
        t0 = time.perf_counter()
        done = 0
        while (n is None or done < n) and self.next_frame < self.simulator.n_frames:
            k = self.next_frame
            image = self._frame(k)
            wait = t0 + (done + 1) * self._exposure_ms / 1e3 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            buf = get_buffer(shape, dtype)
            buf[:] = image
            self.next_frame += 1
            done += 1
            yield {"SimulatedFrame": k}


def _snake(name: str) -> str:
    s = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def _snake_case_core_class() -> type:
    """``UniMMCore`` with snake_case aliases, the API pycromanager's Python backend calls.

    Aliases point at the most derived method (``getattr`` on the class), so UniMMCore's Python
    device handling is what runs.
    """
    attrs: dict[str, Any] = {}
    for name in dir(UniMMCore):
        if name.startswith("_"):
            continue
        value = getattr(UniMMCore, name)
        snake = _snake(name)
        if callable(value) and snake != name and not hasattr(UniMMCore, snake):
            attrs[snake] = value
    return type("UniMMCoreSnakeCase", (UniMMCore,), attrs)


def virtual_core(camera: SimulatedSMLMCamera, pixel_size_nm: float) -> Any:
    """A ``UniMMCore`` with ``camera`` loaded as the current camera and its pixel size set."""
    if UniMMCore is None:
        raise DblinkError("the virtual microscope needs pymmcore-plus (pip install pymmcore-plus)")
    from mmpycorex import launcher

    # Only Python devices are loaded: give a folder without C++ adapters, which skips
    # pymmcore-plus's search for a Micro-Manager installation (it logs an error when none is).
    core = _snake_case_core_class()(mm_path=str(Path(__file__).parent))
    core.loadPyDevice(CAMERA_LABEL, camera)
    core.initializeDevice(CAMERA_LABEL)
    core.setCameraDevice(CAMERA_LABEL)
    core.definePixelSizeConfig("sim")
    core.setPixelSizeUm("sim", float(pixel_size_nm) / 1e3)
    core.setPixelSizeConfig("sim")
    # what pycromanager's launcher adds to its own pymmcore cores
    core.get_tagged_image = types.MethodType(launcher.get_tagged_image, core)
    core.pop_next_tagged_image = types.MethodType(launcher.pop_next_tagged_image, core)
    core.TaggedImage = launcher.TaggedImage
    return core


class VirtualMicroscopeSource(MicroManagerSource):
    """The simulated SMLM camera in Micro-Manager, acquired through pycromanager.

    Parameters
    ----------
    config
        Run config; its ``simulation`` section describes sample, motion, blinking and camera.
    n_frames
        Frames to acquire (the movie is simulated this long).
    frame_rate_hz
        Camera frame rate (exposure = 1 / rate); default from
        ``simulation.frame_interval_s``.
    seed
        Overrides ``simulation.seed``.
    keep_in_micromanager
        Also let Micro-Manager keep each frame (off: our recording is the only copy).
    """

    def __init__(
        self,
        config: RunConfig,
        n_frames: int,
        frame_rate_hz: float | None = None,
        seed: int | None = None,
        keep_in_micromanager: bool = False,
    ):
        interval = (
            1.0 / float(frame_rate_hz) if frame_rate_hz else config.simulation.frame_interval_s
        )
        if interval <= 0:
            raise DblinkError("the frame rate must be positive")
        self.config = config.updated(simulation={"frame_interval_s": interval})
        self.simulator = MovieSimulator(self.config, n_frames=n_frames, seed=seed)
        meta = self.simulator.metadata()
        self.device = SimulatedSMLMCamera(self.simulator, exposure_ms=interval * 1e3)
        super().__init__(
            n_frames=self.simulator.n_frames,
            interval_s=0.0,  # the camera paces itself at its exposure
            keep_in_micromanager=keep_in_micromanager,
            pixel_size_nm=meta["pixel_size_nm"],
            camera=meta["camera"],
            core_factory=lambda: virtual_core(self.device, meta["pixel_size_nm"]),
        )
        self.frame_interval_s = interval
        self.simulation_metadata = meta["simulation"]

    def ground_truth(
        self, grid: GridConfig, region_nm: tuple[float, float, float, float] | None = None
    ) -> SourceTruth:
        """The simulated scene's truth on ``grid``, of the region reconstructed live
        (``region_nm``; the whole field when None); its maps are drawn at the end of the run
        (they cost the live path CPU)."""
        truth = scene_truth(self.simulator.scene, grid, region_nm)
        return SourceTruth(truth, maps_during_run=False)
