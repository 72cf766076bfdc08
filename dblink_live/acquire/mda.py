"""Micro-Manager through pymmcore-plus: a ``useq.MDASequence`` run by ``CMMCorePlus.mda``.

Beside the pycromanager hook (:mod:`dblink_live.acquire.micromanager`, the documented default
and the route to a running Micro-Manager application), this source lets users of the
pymmcore-plus ecosystem (napari-micromanager, pymmcore-gui) describe the acquisition as the
MDA sequence they already use. Frames arrive through ``core.mda.events.frameReady`` and are
copied into the sink (the ring) on the MDA thread, as the pycromanager hook does; the sequence
is stored in the recording (``mda_sequence`` in its metadata).

SMLM reconstruction needs one time series of one field: a sequence with positions, channels, z
or grid axes is refused with one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.acquire.base import FrameSink
from dblink_live.errors import DblinkError

__all__ = ["MDASource", "load_sequence"]

log = logging.getLogger(__name__)


def load_sequence(path: str | Path) -> Any:
    """A ``useq.MDASequence`` from a YAML or JSON file, checked to be a plain time series."""
    import useq

    p = Path(path)
    if not p.is_file():
        raise DblinkError(f"no MDA sequence file {p}")
    try:
        seq = useq.MDASequence.from_file(p)
    except Exception as exc:  # pydantic / yaml errors: one line naming the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DblinkError(f"{p}: not a valid useq MDA sequence ({first})") from None
    check_time_series(seq, str(p))
    return seq


def check_time_series(seq: Any, name: str = "the MDA sequence") -> int:
    """Frames of a time-series-only sequence; one clear error for any other axis."""
    sizes = {str(getattr(k, "value", k)): int(v) for k, v in seq.sizes.items()}
    other = {k: v for k, v in sizes.items() if k != "t" and v > 1}
    if other:
        axes = ", ".join(f"{k}={v}" for k, v in other.items())
        raise DblinkError(
            f"{name} has more than a time series ({axes}): dblink_live reconstructs one field "
            "in one channel over time; give a sequence with a time_plan only"
        )
    n = sizes.get("t", 0) or 1
    return n


class MDASource:
    """Frames of a ``useq.MDASequence`` run by pymmcore-plus on a Micro-Manager core.

    Parameters
    ----------
    sequence
        The sequence (a time series: see :func:`check_time_series`).
    adapter_path, config_file
        Micro-Manager adapter folder and hardware configuration for a new ``CMMCorePlus``.
    core
        An existing ``CMMCorePlus`` instead (e.g. napari-micromanager's); left loaded.
    pixel_size_nm
        Override the core's pixel size (which may be unset).
    camera
        Calibration metadata stored with the recording.
    roi
        Camera region ``(x, y, width, height)`` in pixels, set before acquiring.
    exposure_ms
        Camera exposure, set before the acquisition when given.
    """

    def __init__(
        self,
        sequence: Any,
        adapter_path: str | None = None,
        config_file: str | None = None,
        core: Any = None,
        pixel_size_nm: float | None = None,
        camera: dict[str, Any] | None = None,
        roi: tuple[int, ...] | None = None,
        exposure_ms: float | None = None,
    ):
        self.sequence = sequence
        self.n_frames = check_time_series(sequence)
        self.adapter_path = adapter_path
        self.config_file = config_file
        self._core = core
        self._own_core = core is None
        self._pixel_override = pixel_size_nm
        self.camera: dict[str, Any] = dict(camera or {})
        self.roi = tuple(int(v) for v in roi) if roi else None
        self.exposure_ms = exposure_ms
        self.frame_shape: tuple[int, int] = (0, 0)
        self.pixel_size_nm = float(pixel_size_nm or 0.0)
        tp = getattr(sequence, "time_plan", None)
        interval = getattr(tp, "interval", None)
        self.frame_interval_s = float(interval.total_seconds()) if interval is not None else 0.0
        #: stored in the recording's metadata by the pipeline
        self.recording_metadata: dict[str, Any] = {"mda_sequence": sequence.model_dump(mode="json")}
        #: messages of frames the sink rejected (wrong shape/dtype), in order
        self.rejected_frames: list[str] = []
        #: seconds spent handing each frame to the sink (the most recent 100,000)
        self.hook_times_s: deque[float] = deque(maxlen=100_000)

    @property
    def core(self) -> Any:
        return self._core

    def start(self) -> None:
        """Load the core (if this source owns it) and read the camera geometry."""
        if self._core is None:
            from pymmcore_plus import CMMCorePlus

            if not (self.adapter_path and self.config_file):
                raise DblinkError("an MDA acquisition needs an adapter folder and a config file")
            core = CMMCorePlus(mm_path=self.adapter_path)
            try:
                core.loadSystemConfiguration(self.config_file)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise DblinkError(
                    f"Micro-Manager could not load {self.config_file}: {first}"
                ) from None
            self._core = core
        core = self._core
        if self.exposure_ms is not None:
            core.setExposure(float(self.exposure_ms))
        if self.roi is not None:
            try:
                core.setROI(*self.roi)
            except Exception as exc:
                raise DblinkError(f"the camera refused the ROI {self.roi}: {exc}") from None
        self.frame_shape = (int(core.getImageHeight()), int(core.getImageWidth()))
        px_um = float(core.getPixelSizeUm())
        self.pixel_size_nm = float(self._pixel_override or (px_um * 1e3 if px_um > 0 else 100.0))
        self.camera.setdefault("pixel_size_nm", self.pixel_size_nm)
        if not self.frame_interval_s:
            self.frame_interval_s = float(core.getExposure()) / 1e3

    def stop(self) -> None:
        """Unload the devices of a core this source created."""
        if self._own_core and self._core is not None:
            try:
                self._core.unloadAllDevices()
            except Exception as exc:  # stopping: only resources are at stake
                log.debug("unloading the MDA core's devices failed: %s", exc)
            self._core = None

    def run(self, sink: FrameSink, stop: threading.Event) -> int:
        """Run the sequence, handing each frame to ``sink``; ``stop`` cancels the MDA."""
        if not self.frame_shape[0]:
            self.start()
        core = self._core
        count = [0]
        rejected, hook_times = self.rejected_frames, self.hook_times_s

        def on_frame(image: np.ndarray, event: Any, meta: Any = None) -> None:
            t0 = time.perf_counter()
            index = dict(getattr(event, "index", {}) or {})
            try:
                sink(image, {"mda_index": index, "source": "pymmcore-plus MDA"})
                count[0] += 1
            except DblinkError as exc:  # a bad frame is counted and reported, never fatal
                rejected.append(str(exc))
            hook_times.append(time.perf_counter() - t0)

        core.mda.events.frameReady.connect(on_frame)
        try:
            thread = core.run_mda(self.sequence)
            while thread.is_alive():
                thread.join(0.05)
                if stop.is_set() and core.mda.is_running():
                    core.mda.cancel()
            thread.join()
        finally:
            core.mda.events.frameReady.disconnect(on_frame)
        return count[0]
