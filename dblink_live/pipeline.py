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
from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError, RecordingError
from dblink_live.io.recording import Recording
from dblink_live.live import StreamingLocalizer
from dblink_live.live.localize_stage import LocalizeStage
from dblink_live.live.recon_stage import ReconStage
from dblink_live.live.results import LatestResults
from dblink_live.live.roi import recon_seconds_per_bin
from dblink_live.live.runner import Runner
from dblink_live.live.setup import LiveRun, auto_recon_weights, open_run, recon_worker
from dblink_live.live.stats import LiveCounters
from dblink_live.live.summary import live_status, live_summary, live_warnings
from dblink_live.localize import Localizer
from dblink_live.pipeline_types import LiveResults, PipelineState, PipelineStatus
from dblink_live.recon.inference import LoadedModel

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
        self._recon_arg, self._localizer_arg = recon, localizer
        self._ring_capacity, self._overwrite = ring_capacity, overwrite
        self._history_maps = max(1, int(history_maps))
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_blocks)))
        self._latest = LatestResults(history_maps)
        self._runner = Runner()
        self._t0 = 0.0
        self._gt_done = threading.Event()  # the recording is complete: write the rest
        self.counters = LiveCounters()
        #: what the run created (None before start, or when it failed to start)
        self.parts: LiveRun | None = None
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> PipelineState:
        return self._runner.state

    @property
    def recording_path(self) -> Path:
        return self.output

    @property
    def recording(self) -> Recording | None:
        """The recording being written (None before start)."""
        return self.parts.recording if self.parts else None

    @property
    def model(self) -> LoadedModel | None:
        """The reconstruction model (None before start, or when recording only)."""
        return self.parts.model if self.parts else None

    @property
    def bin_nm(self) -> float:
        """The reconstruction grid's bin (nm)."""
        return self.parts.bin_nm if self.parts else self.config.grid.bin_nm

    @property
    def recon_roi_px(self) -> tuple[int, int, int, int]:
        """The camera region reconstructed live (x, y, width, height; pixels)."""
        return self.parts.recon_roi_px if self.parts else (0, 0, 0, 0)

    @property
    def latency_budget_s(self) -> float:
        """Seconds from a map's last frame to its reconstruction the live path keeps within
        (inf for an unpaced source, or before start)."""
        return self.parts.budget.seconds if self.parts else float("inf")

    @property
    def camera_estimate(self) -> Any:
        """The camera estimate measured on the first frames (None: given, or not yet)."""
        return self.parts.camera.estimate if self.parts else None

    def start(self) -> Pipeline:
        """Open the source, create the recording and start all threads (returns at once)."""
        if self.state is not PipelineState.IDLE:
            raise DblinkError(f"the pipeline is {self.state.value}; make a new one to start again")
        try:
            self.parts = open_run(
                self.source, self.output, self.config, recon=self._recon_arg,
                localizer=self._localizer_arg, device=self.device, delay_maps=self.delay_maps,
                ring_capacity=self._ring_capacity, overwrite=self._overwrite,
                history_maps=self._history_maps, on_recorder_error=self._recorder_failed,
            )  # fmt: skip
        except BaseException as exc:
            self._cleanup_source()
            self._runner.failed_to_start(exc)
            raise
        p = self.parts
        self._latest.set_geometry(p.pixel_size_nm, p.bin_nm, p.window, p.origin_nm)
        self._t0 = time.monotonic()
        # hand the GIL around more often, so the acquisition hook never waits long for it
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        # on a CPU, leave a core to the reconstruction's child process
        self._torch_threads = torch.get_num_threads()
        if p.streamer is not None and p.streamer.runs_in_child:
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
        p = self.parts
        device = p.model.device if p and p.model else getattr(p and p.localizer, "device", "cpu")
        return live_status(
            self.state,
            time.monotonic() - self._t0 if self._t0 else 0.0,
            self.counters,
            p.ring if p else None,
            p.recorder if p else None,
            p.frame_area_um2 if p else 0.0,
            str(device),
            self.delay_maps,
            self._warnings,
            self._runner.error,
        )

    def latest(self, render_maps: int = 10) -> LiveResults:
        """The newest frame, localization render (sum of the last ``render_maps`` maps),
        reconstruction and confidence (see :class:`LiveResults`); the camera frame comes
        straight from the ring, so the raw panel never freezes while the processing lags."""
        return self._latest.latest(self.parts.ring if self.parts else None, render_maps)

    def latencies(self) -> np.ndarray:
        """Seconds from the arrival of each output's last frame to its reconstruction."""
        return self.counters.latencies()

    # ------------------------------------------------------------------ internals
    def _recon_seconds_per_bin(self) -> float:
        """Seconds the streaming reconstruction takes per map and grid bin here (see
        :func:`~dblink_live.live.roi.recon_seconds_per_bin`)."""
        assert self.parts is not None and self.parts.model is not None
        model = self.parts.model
        one_thread = recon_worker(self.config, model) == "process"
        return recon_seconds_per_bin(model, self.delay_maps, one_thread)

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

    def _sink(self, frame: np.ndarray, metadata: dict[str, Any]) -> None:
        assert self.parts is not None
        self.parts.ring.put(frame, metadata)  # a BadFrameError is counted by the ring
        self.counters.in_rate.add(1)

    def _source_loop(self) -> None:
        assert self.parts is not None
        try:
            produced = self.source.run(self._sink, self._runner.stop_event)
            log.info("source finished after %d frames", produced)
        finally:
            self._runner.set_state(PipelineState.DRAINING)
            self.parts.ring.close()

    def _put(self, item: object) -> None:
        while not self._runner.abort_event.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _localize_loop(self) -> None:
        p = self.parts
        assert p is not None
        stream = StreamingLocalizer(p.localizer, p.camera.current, on_frames=p.camera.on_frames)
        batch = int(getattr(self.config.localizer, "batch_frames", 16))
        LocalizeStage(
            p.ring, p.cursor, stream, self.counters, p.budget, self._put, self._queue.full,
            self._runner.abort_event, p.window, batch,
        ).run()  # fmt: skip
        self._put(_END)

    def _recon_loop(self) -> None:
        p = self.parts
        assert p is not None
        ReconStage(
            window=p.window, grid_yx=p.grid_yx, bin_nm=p.bin_nm, origin_nm=p.origin_nm,
            area_um2=p.region_area_um2, recording=p.recording, streamer=p.streamer,
            model=p.model, delay_maps=self.delay_maps, counters=self.counters, budget=p.budget,
            on_map=self._latest.add_map, on_output=self._latest.add_output,
        ).run(self._queue, _END, self._runner.abort_event)  # fmt: skip

    def _supervise(self) -> None:
        """Wait for the workers, finish the recording and set the final state."""
        runner, p = self._runner, self.parts
        assert p is not None
        runner.join(n for n in ("localizer", "reconstruction", "source"))
        if p.streamer is not None:
            p.streamer.close()
        try:
            p.recorder.join()
            self._cleanup_source()
            self._gt_done.set()
            runner.join(["ground-truth"])
            if p.truth is not None:
                p.truth.write(p.recording.n_frames, final=True)
            self._write_summary(p)
        except BaseException as exc:
            runner.fail(exc)
        sys.setswitchinterval(self._switch_interval)
        torch.set_num_threads(self._torch_threads)
        runner.end()

    def _truth_loop(self) -> None:
        """Write the ground truth of whole blocks as they are recorded: a killed run keeps it."""
        p = self.parts
        if p is None or p.truth is None:
            return
        while not self._gt_done.wait(GT_POLL_S):
            p.truth.write(p.recording.n_frames)

    def _write_summary(self, p: LiveRun) -> None:
        self.summary = live_summary(
            self.status(), self.counters, p.budget, p.recorder, p.recon_roi_px
        )
        meta = p.camera.camera_meta
        p.recording.update_meta(live_summary=self.summary, **({"camera": meta} if meta else {}))
        for name in ("reconstruction", "confidence"):
            arr = p.recording.image_array(name)
            if arr is not None:
                arr.attrs["skipped_maps"] = sorted(self.counters.skipped_maps)
        report = getattr(p.localizer, "report", None)
        if report:
            p.recording.update_localization_info(yield_check=report)

    def _warnings(self, density: float) -> list[str]:
        p = self.parts
        if p is None:
            return []
        notes = [getattr(p.localizer, "warning", None), *p.notes]
        return live_warnings(
            self.counters, p.budget, p.window, p.recorder, p.ring, p.model, density, notes
        )


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
