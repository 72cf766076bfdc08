"""Micro-Manager through pycromanager: the acquisition hook copies each frame and returns.

``MicroManagerSource`` drives an ``Acquisition`` whose ``image_process_fn`` hands the frame and
its metadata to the sink (a copy into the ring) and immediately returns ``(image, metadata)`` so
that Micro-Manager's own storage keeps it too, or ``None`` with ``keep_in_micromanager=False``
when our recording is the only copy wanted. It reaches Micro-Manager headless (the Python
backend on an adapter folder and a hardware configuration) or, with ``headless=False``, a
running Micro-Manager application (Java backend, ZMQ port).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.acquire.base import FrameSink
from dblink_live.errors import DblinkError

__all__ = ["MicroManagerSource", "demo_camera_paths"]

log = logging.getLogger(__name__)


def demo_camera_paths() -> tuple[str, str]:
    """(adapter folder, config file) of the DemoCamera from the ``mm-test-adapters`` package."""
    try:
        import mm_test_adapters
    except ImportError:
        raise DblinkError(
            "mm-test-adapters is not installed (pip install mm-test-adapters)"
        ) from None
    folder = mm_test_adapters.device_adapter_path()
    return folder, str(Path(folder) / "MMConfig_demo.cfg")


def _install_python_core(core: Any) -> None:
    """Make ``core`` the core of pycromanager's Python backend (what ``start_headless`` does)."""
    from mmpycorex import launcher
    from pycromanager import Core
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    if launcher._PYMMCORES or hasattr(Engine, "singleton"):
        raise DblinkError("a Micro-Manager core is already running in this process; stop it first")
    launcher._PYMMCORES.append(core)
    Engine(Core())


#: Stopped cores, kept for the life of the process (see ``_park_core``).
_STOPPED_CORES: list[Any] = []


def _park_core(core: Any) -> None:
    """Keep a stopped core alive, with its circular buffer shrunk to 1 MB.

    A core is never destroyed here: its destructor joins the core's logging thread, and under
    load that join has been seen to wait forever (once in about 2,300 stops in
    ``scripts/stress_democamera.py``), which would freeze the caller. pycromanager never
    destroys its cores either (its launcher's self-references keep them alive); this makes that
    explicit and gives back the buffer (64 MB reserved per core). What stays: three idle native
    threads per stopped core.
    """
    try:
        core.set_circular_buffer_memory_footprint(1)
    except Exception as exc:  # the core is stopped; only memory is at stake
        log.debug("could not shrink a stopped core's circular buffer: %s", exc)
    _STOPPED_CORES.append(core)


#: After a camera reports its sequence stopped, how long to wait before unloading it (s).
CAMERA_EXIT_GRACE_S = 0.25


def _let_camera_thread_exit(core: Any, timeout_s: float = 5.0) -> None:
    """Wait until the camera's sequence thread has (very probably) exited.

    A C++ camera adapter can report its sequence stopped before its acquisition thread has
    finished: the DemoCamera sets its stopped flag, then calls back into the core
    (``OnThreadExiting`` -> ``AcqFinished``), and its ``StopSequenceAcquisition`` does not wait
    for a thread already flagged stopped. Unloading the devices in that window lets the exiting
    thread use a freed camera: a native crash, now or later, through the corrupted heap (seen
    under CPU load: ``AcqFinished`` -> ``DeviceManager::GetDevice`` segfaulting). No core call
    tells when the thread is gone, so this waits for the sequence to stop (stopping it after
    ``timeout_s``) and then ``CAMERA_EXIT_GRACE_S`` more.
    """
    try:
        deadline = time.monotonic() + timeout_s
        while core.is_sequence_running() and time.monotonic() < deadline:
            time.sleep(0.005)
        if core.is_sequence_running():
            core.stop_sequence_acquisition()
    except Exception as exc:  # a core that is already half torn down: nothing left to wait for
        log.debug("not waiting for the camera's sequence thread: %s", exc)
        return
    time.sleep(CAMERA_EXIT_GRACE_S)


#: How long the core's pop waits for an image before reporting none (s), and its poll period.
POP_WAIT_S = 0.002
POP_POLL_S = 0.0005


def _wait_instead_of_spinning(core: Any) -> None:
    """Make the Python-backend core's ``pop_next_tagged_image`` wait briefly for an image.

    pycromanager's Python acquisition engine calls it in a loop with no pause until an image
    arrives, which keeps one thread running Python (holding the GIL) between frames and slows
    every processing thread of this process. The wrapper sleeps (GIL released) in steps of
    ``POP_POLL_S`` while the circular buffer is empty and a sequence runs, for at most
    ``POP_WAIT_S``, then defers to the original, which returns the image or raises as before.
    """
    if getattr(core, "_dblink_patient_pop", False):
        return
    original = core.pop_next_tagged_image

    def pop_next_tagged_image() -> Any:
        deadline = time.perf_counter() + POP_WAIT_S
        while (
            core.get_remaining_image_count() == 0
            and time.perf_counter() < deadline
            and core.is_sequence_running()
        ):
            time.sleep(POP_POLL_S)
        return original()

    core.pop_next_tagged_image = pop_next_tagged_image
    core._dblink_patient_pop = True


class MicroManagerSource:
    """Frames from a Micro-Manager camera (see the module docstring).

    Parameters
    ----------
    n_frames
        Frames to acquire (a time series).
    interval_s
        Time between frames (0: as fast as the camera runs).
    exposure_ms
        Camera exposure, set before the acquisition when given.
    adapter_path, config_file
        Headless Python backend: the Micro-Manager adapter folder and a hardware config.
    headless
        False: connect to a running Micro-Manager (Java backend) instead.
    keep_in_micromanager
        Return the frame from the hook so Micro-Manager stores it too.
    pixel_size_nm
        Override the core's pixel size (which may be unset).
    camera
        Calibration metadata (baseline, e-/ADU, gain, QE) stored with the recording.
    roi
        Camera region of interest ``(x, y, width, height)`` in pixels, set before acquiring.
    core_factory
        Instead of ``start_headless``: a function returning a prepared pymmcore core (with
        snake_case methods, as pycromanager's launcher makes them), installed as pycromanager's
        Python backend. The virtual microscope uses it.
    """

    def __init__(
        self,
        n_frames: int,
        interval_s: float = 0.0,
        exposure_ms: float | None = None,
        adapter_path: str | None = None,
        config_file: str | None = None,
        headless: bool = True,
        keep_in_micromanager: bool = True,
        pixel_size_nm: float | None = None,
        camera: dict[str, Any] | None = None,
        core_factory: Callable[[], Any] | None = None,
        roi: tuple[int, ...] | None = None,
    ):
        self.n_frames = int(n_frames)
        self.interval_s = float(interval_s)
        self.exposure_ms = exposure_ms
        self.adapter_path = adapter_path
        self.config_file = config_file
        self.headless = headless
        self.keep = keep_in_micromanager
        self._pixel_override = pixel_size_nm
        self.camera: dict[str, Any] = dict(camera or {})
        self.frame_shape: tuple[int, int] = (0, 0)
        self.pixel_size_nm = float(pixel_size_nm or 0.0)
        self.frame_interval_s = self.interval_s
        self._started = False
        self._core_factory = core_factory
        self.roi = tuple(int(v) for v in roi) if roi else None
        #: messages of frames the sink rejected (wrong shape/dtype), in order
        self.rejected_frames: list[str] = []
        #: seconds spent in the acquisition hook, per frame (the most recent 100,000)
        self.hook_times_s: deque[float] = deque(maxlen=100_000)

    def start(self) -> None:
        """Start the headless core (if asked) and read the camera geometry."""
        from pycromanager import Core, start_headless

        if self._core_factory is not None and not self._started:
            _install_python_core(self._core_factory())
            self._started = True
        elif self.headless and not self._started:
            if not (self.adapter_path and self.config_file):
                raise DblinkError(
                    "headless Micro-Manager needs an adapter folder and a config file"
                )
            start_headless(
                self.adapter_path, self.config_file, python_backend=True, buffer_size_mb=64
            )
            self._started = True
        core = Core()
        if self._started and hasattr(core, "get_remaining_image_count"):
            _wait_instead_of_spinning(core)
        if self.exposure_ms is not None:
            core.set_exposure(float(self.exposure_ms))
        if self.roi is not None:
            try:
                core.set_roi(*self.roi)
            except Exception as exc:
                raise DblinkError(f"the camera refused the ROI {self.roi}: {exc}") from None
        self.frame_shape = (int(core.get_image_height()), int(core.get_image_width()))
        px_um = float(core.get_pixel_size_um())
        self.pixel_size_nm = float(self._pixel_override or (px_um * 1e3 if px_um > 0 else 100.0))
        self.camera.setdefault("pixel_size_nm", self.pixel_size_nm)
        if not self.frame_interval_s:
            self.frame_interval_s = float(core.get_exposure()) / 1e3

    def stop(self) -> None:
        """Stop the headless core (so another can start in this process)."""
        if (self.headless or self._core_factory is not None) and self._started:
            from mmpycorex import launcher
            from pycromanager import stop_headless
            from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

            cores = list(launcher._PYMMCORES)
            if self._core_factory is None:  # C++ camera adapters: let their threads finish
                for core in cores:
                    _let_camera_thread_exit(core)
            stop_headless()
            if hasattr(Engine, "singleton"):
                del Engine.singleton
            self._started = False
            for core in cores:
                _park_core(core)

    def run(self, sink: FrameSink, stop: threading.Event) -> int:
        """Acquire ``n_frames`` frames, handing each to ``sink``; ``stop`` aborts cleanly."""
        from pycromanager import Acquisition, multi_d_acquisition_events

        if not self.frame_shape[0]:
            self.start()
        count = [0]
        keep = self.keep

        rejected = self.rejected_frames

        hook_times = self.hook_times_s

        def hook(image: np.ndarray, metadata: dict[str, Any]):
            t0 = time.perf_counter()
            try:
                sink(image, dict(metadata))
                count[0] += 1
            except DblinkError as exc:  # a bad frame is counted and reported, never fatal
                rejected.append(str(exc))
            hook_times.append(time.perf_counter() - t0)
            return (image, metadata) if keep else None

        events = multi_d_acquisition_events(
            num_time_points=self.n_frames, time_interval_s=self.interval_s
        )
        acq = Acquisition(show_display=False, image_process_fn=hook)
        done = threading.Event()

        def watch() -> None:  # abort on request; mark_finished after abort avoids a hang
            while not done.wait(0.02):
                if stop.is_set():
                    acq.abort()
                    acq.mark_finished()
                    return

        watcher = threading.Thread(target=watch, name="mm-stop-watch", daemon=True)
        watcher.start()
        try:
            acq.acquire(events)
            acq.mark_finished()
            acq.await_completion()
        finally:
            done.set()
            watcher.join()
        return count[0]
