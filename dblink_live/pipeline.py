"""The live pipeline: source -> ring -> recorder | localizer -> binner -> streaming ConvBiLSTM.

::

    source thread ──put──> FrameRing ──lossless cursor──> Recorder thread ──> recording.zarr/raw
                               │
                               └─lossy cursor─> localizer thread ──> recording/localizations
                                                     │ bounded queue (blocks: back-pressure)
                                                     ▼
                                              reconstruction thread: W-frame count maps,
                                              streaming ConvBiLSTM (delay D) ──> recording/
                                              reconstruction, confidence; latest results

The source only copies into the ring, so acquisition never waits. The recorder never loses a
frame (its cursor is lossless). When the localizer or the reconstruction cannot keep up, the
bounded queue fills, the localizer falls behind the ring and the frames it misses are counted
as *dropped* (the recording still has them; a map with dropped frames is rescaled to a full
window). :class:`Pipeline` has an explicit state machine (idle -> running -> draining ->
finished | failed), a thread-safe :meth:`Pipeline.status` snapshot and :meth:`Pipeline.latest`
results for a display; :meth:`Pipeline.stop` (or Ctrl-C in :meth:`Pipeline.run`) stops the
source, drains what is buffered and closes the recording.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dblink_live.acquire.base import FrameSource
from dblink_live.acquire.ground_truth import GroundTruthWriter
from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError, RecordingError
from dblink_live.io.recorder import Recorder
from dblink_live.io.recording import Recording
from dblink_live.io.ring import FrameRing
from dblink_live.live import StreamingLocalizer
from dblink_live.live.budget import LatencyBudget
from dblink_live.live.camera import LiveCalibration
from dblink_live.live.localize_stage import LocalizeStage
from dblink_live.live.recon_stage import ReconStage
from dblink_live.live.results import LatestResults
from dblink_live.live.roi import check_live_memory, choose_recon_roi, recon_seconds_per_bin
from dblink_live.live.runner import Runner
from dblink_live.live.setup import (
    auto_recon_weights,
    create_live_recording,
    create_output_images,
    ground_truth_writer,
    make_streamer,
    resolve_model,
)
from dblink_live.live.stats import LiveCounters
from dblink_live.live.summary import live_status, live_summary, live_warnings
from dblink_live.localize import CameraCalibration, Localizer, make_localizer
from dblink_live.pipeline_types import LiveResults, PipelineState, PipelineStatus
from dblink_live.recon.inference import LoadedModel
from dblink_live.recon.streaming import Reconstructor
from dblink_live.sim.scene import grid_shape

__all__ = [
    "LiveResults",
    "Pipeline",
    "PipelineState",
    "PipelineStatus",
    "auto_recon_weights",
    "demo_pipeline",
]

log = logging.getLogger(__name__)

_END = object()
#: Python thread switch interval while running (the default, 5 ms, delays the hook under load).
SWITCH_INTERVAL_S = 0.0002
#: Seconds between checks for a whole block of ground truth to write.
GT_POLL_S = 1.0


class Pipeline:
    """Live processing of one acquisition into one recording (see the module docstring).

    A facade: the state machine and threads are a :class:`~dblink_live.live.runner.Runner`,
    the localizer thread runs a :class:`~dblink_live.live.localize_stage.LocalizeStage`, the
    reconstruction thread a :class:`~dblink_live.live.recon_stage.ReconStage`; counters,
    latency budget, region choice, calibration and summary are modules of
    :mod:`dblink_live.live`.

    Parameters
    ----------
    source
        A :class:`~dblink_live.acquire.base.FrameSource` (Micro-Manager, virtual microscope,
        replay). Sources with a ``start()`` method are started first (to learn the geometry),
        and ``stop()`` is called at the end.
    output
        The new recording (``*.zarr``).
    config
        Run config (localizer and grid sections are used; stored in the recording).
    recon
        A loaded reconstruction model, a weights name/path, or None (or ``"none"``) for
        localization and recording only. Default ``"auto"``: the shipped model for the config's
        structure.
    delay_maps
        Trailing delay D of the streaming reconstruction (default ``config.live.delay_maps``).
    ring_capacity
        Frames the ring holds (default: ``config.live.ring_seconds`` of frames, >= 256).
    device
        ``auto``, ``cpu`` or ``cuda[:N]`` for the localizer and the model.
    overwrite
        Replace an existing recording.
    queue_blocks
        Localized blocks buffered between localizer and reconstruction (default from config).
    history_maps
        Count maps kept for :meth:`latest` renders.
    localizer
        A localizer to use instead of the config's (tests, benchmarks).
    """

    def __init__(
        self,
        source: FrameSource,
        output: str | Path,
        *,
        config: RunConfig | None = None,
        recon: LoadedModel | str | Path | None = "auto",
        delay_maps: int | None = None,
        ring_capacity: int | None = None,
        device: str = "auto",
        overwrite: bool = False,
        queue_blocks: int | None = None,
        history_maps: int = 100,
        localizer: Localizer | None = None,
    ):
        self.source = source
        self.output = Path(output)
        if self.output.exists() and not overwrite:
            raise DblinkError(f"{self.output} already exists; pass --overwrite to replace it")
        self.config = config or RunConfig()
        live = self.config.live
        self.delay_maps = int(live.delay_maps if delay_maps is None else delay_maps)
        if self.delay_maps < 0:
            raise DblinkError("the delay must be >= 0 maps")
        queue_blocks = live.queue_blocks if queue_blocks is None else queue_blocks
        self.device = device
        self.overwrite = overwrite
        self._ring_capacity = ring_capacity
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_blocks)))
        self._latest = LatestResults(history_maps)
        self._recon_arg = recon
        self._localizer_arg = localizer
        self._runner = Runner()
        self._t0 = 0.0
        self.counters = LiveCounters()
        self.window = self.config.grid.window_frames
        self.budget = LatencyBudget(self.window, self.delay_maps, None, None)  # set in start
        self._window_warning: str | None = None
        self._roi_warning: str | None = None
        self._gt_writer: GroundTruthWriter | None = None
        self._gt_done = threading.Event()  # the recording is complete: write the rest
        self.recording: Recording | None = None
        self.ring: FrameRing | None = None
        self.recorder: Recorder | None = None
        self.model: LoadedModel | None = None
        self.localizer: Localizer | None = None
        self.camera: LiveCalibration | None = None
        self.streamer: Reconstructor | None = None
        self.summary: dict[str, Any] = {}
        # set for real in _setup; defined here so status() is safe at any moment
        self.bin_nm = self.config.grid.bin_nm
        self.grid_yx: tuple[int, int] = (0, 0)
        #: camera region reconstructed live (x, y, width, height; pixels) and its corner (nm)
        self.recon_roi_px: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.origin_nm: tuple[float, float] = (0.0, 0.0)

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> PipelineState:
        return self._runner.state

    @property
    def recording_path(self) -> Path:
        return self.output

    @property
    def latency_budget_s(self) -> float:
        """Seconds from a map's last frame to its reconstruction the live path keeps within
        (inf for an unpaced source)."""
        return self.budget.seconds

    @property
    def calibration(self) -> CameraCalibration | None:
        """The camera calibration in use (refined from the frames when the camera did not
        state it)."""
        return self.camera.current() if self.camera is not None else None

    @property
    def camera_estimate(self) -> Any:
        """The camera estimate measured on the first frames (None: given, or not yet)."""
        return self.camera.estimate if self.camera is not None else None

    def start(self) -> Pipeline:
        """Open the source, create the recording and start all threads (returns at once)."""
        if self.state is not PipelineState.IDLE:
            raise DblinkError(f"the pipeline is {self.state.value}; make a new one to start again")
        try:
            self._setup()
        except BaseException as exc:
            self._cleanup_source()
            self._runner.failed_to_start(exc)
            raise
        self._t0 = time.monotonic()
        # hand the GIL around more often, so the acquisition hook never waits long for it
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        # on a CPU, leave a core to the reconstruction's child process
        self._torch_threads = torch.get_num_threads()
        if self.streamer is not None and self.streamer.runs_in_child:
            torch.set_num_threads(max(1, min(self._torch_threads, (os.cpu_count() or 2) - 1)))
        self._runner.start(
            [
                (self._localize_loop, "localizer"),
                (self._recon_loop, "reconstruction"),
                (self._source_loop, "source"),
                (self._truth_loop, "ground-truth"),
                (self._supervise, "supervisor"),
            ]
        )
        return self

    def stop(self) -> None:
        """Ask for a clean stop: the source stops, buffered frames are processed, then finish."""
        self._runner.stop()

    def abort(self) -> None:
        """Stop without processing what is buffered (the recorder still writes every frame)."""
        self._runner.abort()

    def wait(self, timeout: float | None = None) -> PipelineStatus:
        """Block until finished or failed (or ``timeout`` s); returns the status."""
        self._runner.finished.wait(timeout)
        return self.status()

    def run(self, on_status: Callable[[PipelineStatus], None] | None = None) -> PipelineStatus:
        """Start (if needed) and block until done; Ctrl-C stops cleanly, a second one aborts.

        ``on_status`` is called about twice a second with the status.
        """
        if self.state is PipelineState.IDLE:
            self.start()
        self._runner.run(None if on_status is None else lambda: on_status(self.status()))
        return self.status()

    def __enter__(self) -> Pipeline:
        return self.start() if self.state is PipelineState.IDLE else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.wait()

    def status(self) -> PipelineStatus:
        """A snapshot of the counters and rates (safe from any thread)."""
        return live_status(
            self.state,
            time.monotonic() - self._t0 if self._t0 else 0.0,
            self.counters,
            self.ring,
            self.recorder,
            self._area_um2(),
            str(self.model.device if self.model else self._localizer_device()),
            self.delay_maps,
            self._warnings,
            self._runner.error,
        )

    def latest(self, render_maps: int = 10) -> LiveResults:
        """The newest frame, localization render (sum of the last ``render_maps`` maps),
        reconstruction and confidence (see :class:`LiveResults`); the camera frame comes
        straight from the ring, so the raw panel never freezes while the processing lags."""
        return self._latest.latest(self.ring, render_maps)

    def latencies(self) -> np.ndarray:
        """Seconds from the arrival of each output's last frame to its reconstruction."""
        return self.counters.latencies()

    # ------------------------------------------------------------------ setup
    def _localizer_device(self) -> str:
        loc = self.localizer
        return str(getattr(loc, "device", "cpu")) if loc is not None else "cpu"

    def _area_um2(self) -> float:
        ring = self.ring
        if ring is None or not self.source.pixel_size_nm:
            return 0.0
        y, x = ring.frame_shape
        return y * x * (self.source.pixel_size_nm / 1e3) ** 2

    def _grid_area_um2(self) -> float:
        """Area of the reconstructed region (um^2): the density its maps are scaled by."""
        _, _, rw, rh = self.recon_roi_px
        if not rw or not self.source.pixel_size_nm:
            return self._area_um2()
        return rw * rh * (self.source.pixel_size_nm / 1e3) ** 2

    def _setup(self) -> None:
        src = self.source
        if hasattr(src, "start"):
            src.start()
        if not src.frame_shape or not src.frame_shape[0]:
            raise DblinkError("the source did not report its frame size")
        px = float(src.pixel_size_nm or 0.0)
        if px <= 0:
            raise DblinkError("the source has no pixel size; give --pixel-size-nm")
        interval = float(src.frame_interval_s or 0.0) or 0.01
        cfg, w = self.config, self.config.grid.window_frames
        self.localizer = self._localizer_arg or make_localizer(cfg.localizer, self.device)
        self.model = resolve_model(self._recon_arg, cfg.simulation.structure.kind, self.device)
        arrival = getattr(src, "arrival_interval_s", interval)
        self.recon_roi_px, self._roi_warning = choose_recon_roi(
            cfg.live.recon_roi, src.frame_shape, px, w, arrival, self.model,
            self._recon_seconds_per_bin,
        )  # fmt: skip
        rx, ry, rw, rh = self.recon_roi_px
        self.origin_nm = (rx * px, ry * px)
        check_live_memory(
            (rh, rw),
            px,
            self.model,
            cfg.grid.bin_nm,
            self.delay_maps,
            self._latest.history.maxlen or 1,
        )
        capacity = self._ring_capacity or max(256, round(cfg.live.ring_seconds / interval))
        self.ring = FrameRing(capacity, src.frame_shape)  # numpy slots, committed in put
        self.recording = rec = create_live_recording(
            self.output, src, px, interval, cfg, self.delay_maps, self.overwrite
        )
        self.camera = LiveCalibration(dict(src.camera or {}), px, rec)
        choose = getattr(self.localizer, "choose_for_rate", None)
        if choose is not None and arrival:  # --localizer auto: one that keeps up, said
            choose(src.frame_shape, self.camera.current(), 1.0 / float(arrival))
        from dblink_live.localize.run import describe_localizer

        rec.clear_localizations(
            describe_localizer(self.localizer, cfg.localizer, self.camera.current())
        )
        self.recorder = Recorder(self.ring, rec, on_error=self._recorder_failed).start()
        self._loc_cursor = self.ring.cursor("localizer", start=0)
        fov = (rw * px, rh * px)  # the reconstructed region (the whole frame by default)
        self.bin_nm = self.model.bin_nm if self.model is not None else cfg.grid.bin_nm
        self.grid_yx = grid_shape(fov, self.bin_nm)
        if self.model is not None:
            create_output_images(
                rec, self.model, self.grid_yx, w, self.delay_maps, self.origin_nm, self.recon_roi_px
            )
            self.streamer = make_streamer(self.model, self.delay_maps, self._recon_worker())
            self._window_warning = self.model.window_warning(w)
            if self._window_warning:
                log.warning(self._window_warning)
        self.window = w
        grid = cfg.grid.model_copy(update={"window_frames": w, "bin_nm": self.bin_nm})
        region = (
            None
            if (rw, rh) == tuple(src.frame_shape[::-1])
            else (*self.origin_nm, rw * px, rh * px)
        )
        self._gt_writer = ground_truth_writer(src, rec, grid, region)
        self.budget = LatencyBudget(w, self.delay_maps, arrival, cfg.live.latency_budget_s)
        self._latest.set_geometry(px, self.bin_nm, w, self.origin_nm)

    def _recon_worker(self) -> str:
        """Where the streaming reconstruction runs: "process" or "thread"."""
        mode = self.config.live.recon_worker
        if mode == "auto":
            assert self.model is not None
            mode = "process" if self.model.device.type == "cpu" else "thread"
        return mode

    def _recon_seconds_per_bin(self) -> float:
        """Seconds the streaming reconstruction takes per map and grid bin here (see
        :func:`~dblink_live.live.roi.recon_seconds_per_bin`)."""
        assert self.model is not None
        one_thread = self._recon_worker() == "process"  # the child process runs on one thread
        return recon_seconds_per_bin(self.model, self.delay_maps, one_thread)

    def _cleanup_source(self) -> None:
        if hasattr(self.source, "stop"):
            try:
                self.source.stop()
            except Exception as exc:  # never hide the original failure
                log.warning("stopping the source failed: %s", exc)

    def _recorder_failed(self, exc: BaseException) -> None:
        """The recording cannot be written (disk full...): stop the whole run now, one line."""
        rec = self.recording
        n = rec.n_frames if rec is not None else 0
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self._runner.fail(
            RecordingError(
                f"writing the recording failed ({why}): the run stopped; {rec.path if rec else ''}"
                f" holds frames 0-{n - 1} ({n} frames), readable"
                if n
                else f"writing the recording failed ({why}): the run stopped before any frame "
                "was recorded"
            )
        )

    # ------------------------------------------------------------------ threads
    def _sink(self, frame: np.ndarray, metadata: dict[str, Any]) -> None:
        assert self.ring is not None
        self.ring.put(frame, metadata)  # a BadFrameError is counted by the ring
        self.counters.in_rate.add(1)

    def _source_loop(self) -> None:
        assert self.ring is not None
        try:
            produced = self.source.run(self._sink, self._runner.stop_event)
            log.info("source finished after %d frames", produced)
        finally:
            self._runner.set_state(PipelineState.DRAINING)
            self.ring.close()

    def _put(self, item: object) -> None:
        while not self._runner.abort_event.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _localize_loop(self) -> None:
        assert self.localizer is not None and self.ring is not None and self.camera is not None
        stream = StreamingLocalizer(
            self.localizer, self.camera.current, on_frames=self.camera.on_frames
        )
        LocalizeStage(
            self.ring,
            self._loc_cursor,
            stream,
            self.counters,
            self.budget,
            self._put,
            self._queue.full,
            self._runner.abort_event,
            self.window,
            int(getattr(self.config.localizer, "batch_frames", 16)),
        ).run()
        self._put(_END)

    def _recon_loop(self) -> None:
        assert self.recording is not None
        ReconStage(
            window=self.window,
            grid_yx=self.grid_yx,
            bin_nm=self.bin_nm,
            origin_nm=self.origin_nm,
            area_um2=self._grid_area_um2(),
            recording=self.recording,
            streamer=self.streamer,
            model=self.model,
            delay_maps=self.delay_maps,
            counters=self.counters,
            budget=self.budget,
            on_map=self._latest.add_map,
            on_output=self._latest.add_output,
        ).run(self._queue, _END, self._runner.abort_event)

    def _supervise(self) -> None:
        """Wait for the workers, finish the recording and set the final state."""
        runner = self._runner
        runner.join(n for n in ("localizer", "reconstruction", "source"))
        self._close_streamer()
        try:
            assert self.recorder is not None
            self.recorder.join()
            self._cleanup_source()
            self._gt_done.set()
            runner.join(["ground-truth"])
            if self._gt_writer is not None and self.recording is not None:
                self._gt_writer.write(self.recording.n_frames, final=True)
            self._write_summary()
        except BaseException as exc:
            runner.fail(exc)
        sys.setswitchinterval(self._switch_interval)
        torch.set_num_threads(self._torch_threads)
        runner.end()

    def _close_streamer(self) -> None:
        streamer = getattr(self, "streamer", None)  # also from __del__ after a failed init
        if streamer is not None:
            streamer.close()

    def _truth_loop(self) -> None:
        """Write the ground truth of whole blocks as they are recorded: a killed run keeps it."""
        writer, rec = self._gt_writer, self.recording
        if writer is None or rec is None:
            return
        while not self._gt_done.wait(GT_POLL_S):
            writer.write(rec.n_frames)

    def _write_summary(self) -> None:
        self.summary = live_summary(
            self.status(), self.counters, self.budget, self.recorder, self.recon_roi_px
        )
        if self.recording is None:
            return
        meta = self.camera.camera_meta if self.camera is not None else None
        self.recording.update_meta(live_summary=self.summary, **({"camera": meta} if meta else {}))
        for name in ("reconstruction", "confidence"):
            arr = self.recording.image_array(name)
            if arr is not None:
                arr.attrs["skipped_maps"] = sorted(self.counters.skipped_maps)
        report = getattr(self.localizer, "report", None)
        if report:
            self.recording.update_localization_info(yield_check=report)

    def _warnings(self, density: float) -> list[str]:
        notes = [getattr(self.localizer, "warning", None), self._window_warning, self._roi_warning]
        return live_warnings(
            self.counters, self.budget, self.window, self.recorder, self.ring, self.model,
            density, notes,
        )  # fmt: skip


def demo_pipeline(
    output: str | Path,
    n_frames: int = 1000,
    fps: float = 100.0,
    config: RunConfig | None = None,
    device: str = "auto",
    seed: int | None = None,
    delay_maps: int | None = None,
    overwrite: bool = False,
    recon: LoadedModel | str | Path | None = "auto",
    **kwargs: Any,
) -> Pipeline:
    """A :class:`Pipeline` on the virtual microscope (simulated sample, real Micro-Manager core,
    pycromanager hook) writing to ``output``; not started."""
    from dblink_live.acquire.virtual import VirtualMicroscopeSource

    cfg = config or RunConfig()
    source = VirtualMicroscopeSource(cfg, n_frames=n_frames, frame_rate_hz=fps, seed=seed)
    return Pipeline(
        source,
        output,
        config=source.config,
        recon=recon,
        delay_maps=delay_maps,
        device=device,
        overwrite=overwrite,
        **kwargs,
    )
