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
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dblink_live import __version__
from dblink_live.acquire.base import FrameSource, GroundTruthSource
from dblink_live.acquire.ground_truth import GroundTruthWriter
from dblink_live.config import RunConfig
from dblink_live.errors import WRITE_ERRNOS, DblinkError, RecordingError
from dblink_live.io.recorder import Recorder
from dblink_live.io.recording import Recording
from dblink_live.io.ring import FrameRing
from dblink_live.live import (
    LocalizedBlock,
    MapAssembler,
    RecordingSink,
    StreamingLocalizer,
    WindowMap,
)
from dblink_live.localize import CameraCalibration, Localizer, make_localizer
from dblink_live.pipeline_types import LiveResults, PipelineState, PipelineStatus
from dblink_live.recon.data import map_scale
from dblink_live.recon.evidence import (
    EVIDENCE_CONTEXT_MAPS,
    evidence_from_counts,
    temper_confidence,
)
from dblink_live.recon.inference import LoadedModel, load_recon_model
from dblink_live.recon.streaming import (
    ProcessStreamingReconstructor,
    Reconstructor,
    StreamingReconstructor,
)
from dblink_live.resources import (
    LIVE_FIXED_BYTES,
    MemoryNeed,
    display_bytes_per_bin,
    live_bytes_per_bin,
)
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
#: ``recon_roi: auto``: the full frame is kept while one map takes at most this share of the
#: time between maps (a margin: on the 2-core machine, 64x64 demo runs whose probe said 0.10 s
#: per map at 0.10 s between maps kept the full frame at 1.0 and dropped 435-597 of 2,000
#: frames, where those given a region dropped 0-264)...
RECON_FULL_SHARE = 0.8
#: ... else the region is sized to take this share, a margin for the localizer, the recorder
#: and whatever else the machine runs.
RECON_ROI_SHARE = 0.6
#: Smallest side of an automatic reconstruction region (pixels).
MIN_ROI_PX = 8
#: Python thread switch interval while running (the default, 5 ms, delays the hook under load).
SWITCH_INTERVAL_S = 0.0002
#: Reconstructions are appended this many at a time (the chunk length: whole-chunk writes).
OUTPUT_BLOCK = 8
#: Ground truth is written in blocks of this many maps (emitters during the run).
GT_BLOCK_MAPS = 64
#: Seconds between checks for a whole block of ground truth to write.
GT_POLL_S = 1.0
#: Localizations are appended to the recording at most this often (s).
LOC_WRITE_S = 0.5


class _Rate:
    """Events per second over the last ``span_s`` seconds (one writer, any number of readers)."""

    def __init__(self, span_s: float = 2.0):
        self.span_s = span_s
        self._marks: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.total += n
            self._marks.append((now, self.total))
            while len(self._marks) > 2 and now - self._marks[0][0] > self.span_s:
                self._marks.popleft()

    def rate(self) -> float:
        with self._lock:
            if len(self._marks) < 2:
                return 0.0
            (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        if time.monotonic() - t1 > self.span_s:  # nothing recent
            return 0.0
        return (n1 - n0) / max(t1 - t0, 1e-9)


class Pipeline:
    """Live processing of one acquisition into one recording (see the module docstring).

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
        self._history: deque[np.ndarray] = deque(maxlen=max(1, int(history_maps)))
        self._recon_arg = recon
        self._localizer_arg = localizer
        self._state = PipelineState.IDLE
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._finished = threading.Event()
        self._error: str | None = None
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._in_rate, self._loc_rate, self._map_rate = _Rate(), _Rate(), _Rate()
        self._locs_recent: deque[tuple[int, int]] = deque(maxlen=64)  # (frames, locs)
        self._latencies: deque[float] = deque(maxlen=20000)
        self._stats_lock = threading.Lock()
        self._frames_in = 0
        self._frames_localized = 0
        self._busy = {"localizer": 0.0, "reconstruction": 0.0}  # seconds of work per worker
        self._dropped = 0
        self._skipped_maps: list[int] = []  # maps skipped whole to keep within the budget
        self.latency_budget_s = float("inf")  # set when the run starts (see _set_latency_budget)
        self._budget_frames = self._max_wait_frames = float("inf")
        self._maps_in = 0
        self._outputs = 0
        self._last_output_end = 0  # first frame after the newest output's window
        self._results = LiveResults()
        self._warned: set[str] = set()
        self._window_warning: str | None = None
        self._gt_writer: GroundTruthWriter | None = None
        self._gt_done = threading.Event()  # the recording is complete: write the rest
        self.recording: Recording | None = None
        self.ring: FrameRing | None = None
        self.recorder: Recorder | None = None
        self.model: LoadedModel | None = None
        self.localizer: Localizer | None = None
        self._estimate_camera = False
        self._camera_meta: dict[str, Any] | None = None
        self.summary: dict[str, Any] = {}
        # set for real in _setup; defined here so status() is safe at any moment
        self.window = self.config.grid.window_frames
        self.bin_nm = self.config.grid.bin_nm
        self.grid_yx: tuple[int, int] = (0, 0)
        #: camera region reconstructed live (x, y, width, height; pixels) and its corner (nm)
        self.recon_roi_px: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.origin_nm: tuple[float, float] = (0.0, 0.0)
        self._roi_warning: str | None = None
        self.streamer: Reconstructor | None = None

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> PipelineState:
        return self._state

    @property
    def recording_path(self) -> Path:
        return self.output

    def _set_state(self, state: PipelineState) -> None:
        with self._lock:
            if self._state.done:
                return
            self._state = state
        log.info("pipeline %s", state.value)

    def start(self) -> Pipeline:
        """Open the source, create the recording and start all threads (returns at once)."""
        if self._state is not PipelineState.IDLE:
            raise DblinkError(f"the pipeline is {self._state.value}; make a new one to start again")
        try:
            self._setup()
        except BaseException as exc:
            self._cleanup_source()
            with self._lock:
                self._error = str(exc) if isinstance(exc, DblinkError) else repr(exc)
            self._state = PipelineState.FAILED
            self._finished.set()  # wait() returns at once
            raise
        self._t0 = time.monotonic()
        # hand the GIL around more often, so the acquisition hook never waits long for it
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        # on a CPU, leave a core to the reconstruction's child process
        self._torch_threads = torch.get_num_threads()
        if self.streamer is not None and self.streamer.runs_in_child:
            torch.set_num_threads(max(1, min(self._torch_threads, (os.cpu_count() or 2) - 1)))
        self._set_state(PipelineState.RUNNING)
        for target, name in (
            (self._localize_loop, "localizer"),
            (self._recon_loop, "reconstruction"),
            (self._source_loop, "source"),
            (self._truth_loop, "ground-truth"),
            (self._supervise, "supervisor"),
        ):
            t = threading.Thread(target=self._guard(target), name=f"dblink-{name}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Ask for a clean stop: the source stops, buffered frames are processed, then finish."""
        if not self._stop.is_set():
            log.info("stop requested: draining")
        self._stop.set()

    def abort(self) -> None:
        """Stop without processing what is buffered (the recorder still writes every frame)."""
        self._abort.set()
        self._stop.set()

    def wait(self, timeout: float | None = None) -> PipelineStatus:
        """Block until finished or failed (or ``timeout`` s); returns the status."""
        self._finished.wait(timeout)
        return self.status()

    def run(self, on_status: Callable[[PipelineStatus], None] | None = None) -> PipelineStatus:
        """Start (if needed) and block until done; Ctrl-C stops cleanly, a second one aborts.

        ``on_status`` is called about twice a second with the status.
        """
        if self._state is PipelineState.IDLE:
            self.start()
        interrupts = 0
        while not self._finished.is_set():
            try:
                self._finished.wait(0.5)
                if on_status is not None:
                    on_status(self.status())
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    log.warning(
                        "stop requested (Ctrl-C or SIGTERM): stopping and draining (again to "
                        "skip processing)"
                    )
                    self.stop()
                else:
                    self.abort()
        return self.status()

    def __enter__(self) -> Pipeline:
        return self.start() if self._state is PipelineState.IDLE else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.wait()

    def status(self) -> PipelineStatus:
        """A snapshot of the counters and rates (safe from any thread)."""
        ring, rec = self.ring, self.recorder
        area_um2 = self._area_um2()
        with self._stats_lock:  # iterating a deque another thread appends to is not safe
            recent = list(self._locs_recent)
            lat = sorted(self._latencies)
        frames = sum(f for f, _ in recent)
        per_frame = sum(n for _, n in recent) / frames if frames else 0.0
        frames_in = ring.frames_put if ring is not None else 0
        with self._lock:
            state, error = self._state, self._error
            outputs, maps_in = self._outputs, self._maps_in
            last_end = self._last_output_end
        warnings = list(self._warnings(per_frame / area_um2 if area_um2 else 0.0))
        return PipelineStatus(
            state=state,
            elapsed_s=time.monotonic() - self._t0 if self._t0 else 0.0,
            frames_in=frames_in,
            frames_recorded=rec.frames_written if rec is not None else 0,
            frames_localized=self._frames_localized,
            maps_in=maps_in,
            outputs=outputs,
            input_fps=self._in_rate.rate(),
            localizer_fps=self._loc_rate.rate(),
            maps_per_s=self._map_rate.rate(),
            lag_frames=max(0, frames_in - last_end) if outputs else frames_in,
            lag_s=float(lat[len(lat) // 2]) if lat else 0.0,
            dropped_frames=self._dropped,
            skipped_maps=len(self._skipped_maps),
            bad_frames=ring.bad_frames if ring is not None else 0,
            recorder_lost=rec.lost_frames if rec is not None else 0,
            recorder_backlog=rec.backlog if rec is not None else 0,
            ring_fill=ring.fill() if ring is not None else 0.0,
            locs_per_frame=per_frame,
            density_per_um2=per_frame / area_um2 if area_um2 else 0.0,
            device=str(self.model.device if self.model else self._localizer_device()),
            delay_maps=self.delay_maps,
            warnings=tuple(warnings),
            error=error,
        )

    def latest(self, render_maps: int = 10) -> LiveResults:
        """The newest frame, localization render (sum of the last ``render_maps`` maps),
        reconstruction and confidence (see :class:`LiveResults`)."""
        with self._lock:
            res = self._results
            hist = list(self._history)[-max(1, int(render_maps)) :]
        render = np.stack(hist).sum(axis=0, dtype=np.float32) if hist else None
        # the camera frame comes straight from the ring, whatever the localizer's backlog:
        # the raw panel never freezes while the processing falls behind
        newest = self.ring.newest() if self.ring is not None else None
        if newest is not None and newest[0] > res.frame_index:
            n, frame = newest
            with self._lock:
                self._results = res = replace(
                    self._results, version=self._results.version + 1, frame_index=n, raw=frame
                )
        return replace(res, render=render, render_maps=len(hist))

    def latencies(self) -> np.ndarray:
        """Seconds from the arrival of each output's last frame to its reconstruction."""
        with self._stats_lock:
            return np.array(self._latencies, dtype=np.float64)

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
        cfg = self.config
        self.localizer = self._localizer_arg or make_localizer(cfg.localizer, self.device)
        recon = self._recon_arg
        if isinstance(recon, str) and recon == "auto":
            recon = auto_recon_weights(cfg.simulation.structure.kind)
        if isinstance(recon, str) and recon.lower() == "none":
            recon = None
        if recon is None or isinstance(recon, LoadedModel):
            self.model = recon
        else:
            self.model = load_recon_model(recon, self.device)
        w = cfg.grid.window_frames
        arrival = getattr(src, "arrival_interval_s", interval)
        self.recon_roi_px = self._choose_recon_roi(src.frame_shape, px, w, arrival)
        rx, ry, rw, rh = self.recon_roi_px
        self.origin_nm = (rx * px, ry * px)
        self._check_memory((rh, rw), px)
        capacity = self._ring_capacity or max(256, round(cfg.live.ring_seconds / interval))
        self.ring = FrameRing(capacity, src.frame_shape)  # numpy slots, committed in put
        extra = {
            "live": True,
            "source": type(src).__name__,
            "delay_maps": self.delay_maps,
        }
        simulation = getattr(src, "simulation_metadata", None)  # the virtual microscope's
        if simulation is not None:
            extra.update(simulated=True, simulation=simulation)
        extra.update(getattr(src, "recording_metadata", None) or {})  # e.g. the MDA sequence
        self.recording = Recording.create(
            self.output,
            frame_shape=src.frame_shape,
            pixel_size_nm=px,
            frame_interval_s=interval,
            camera=dict(src.camera or {}),
            config=cfg,
            overwrite=self.overwrite,
            extra=extra,
        )
        self.calibration = CameraCalibration.from_camera(
            {**(src.camera or {}), "pixel_size_nm": px}
        )
        choose = getattr(self.localizer, "choose_for_rate", None)
        if choose is not None and arrival:  # --localizer auto: one that keeps up, said
            choose(src.frame_shape, self.calibration, 1.0 / float(arrival))
        # a camera that does not state its offset and e-/ADU is measured on the first frames
        # (photons only: the CNN's detections do not depend on it)
        cam = src.camera or {}
        self._estimate_camera = any(cam.get(k) is None for k in ("baseline_adu", "e_per_adu"))
        self.camera_estimate: Any = None
        from dblink_live.localize.run import describe_localizer

        self.recording.clear_localizations(
            describe_localizer(self.localizer, cfg.localizer, self.calibration)
        )
        self.recorder = Recorder(self.ring, self.recording, on_error=self._recorder_failed).start()
        self._loc_cursor = self.ring.cursor("localizer", start=0)
        fov = (rw * px, rh * px)  # the reconstructed region (the whole frame by default)
        if self.model is not None:
            self.grid_yx = grid_shape(fov, self.model.bin_nm)
            self.bin_nm = self.model.bin_nm
            for name in ("reconstruction", "confidence"):
                self.recording.create_image(
                    name,
                    self.grid_yx,
                    "float32",
                    bin_nm=self.model.bin_nm,
                    window_frames=w,
                    model=self.model.describe(),
                    delay_maps=self.delay_maps,
                    mode="live",
                    chunk_maps=OUTPUT_BLOCK,
                    origin_nm=self.origin_nm,
                    recon_roi_px=list(self.recon_roi_px),
                )
            if self._recon_worker() == "process":
                self.streamer = ProcessStreamingReconstructor(
                    self.model.model, self.delay_maps, threads=1, max_pending=2
                )
            else:
                self.streamer = StreamingReconstructor(self.model.model, self.delay_maps)
        else:
            self.bin_nm = cfg.grid.bin_nm
            self.grid_yx = grid_shape(fov, self.bin_nm)
        self.window = w
        if self.model is not None:
            self._window_warning = self.model.window_warning(w)
            if self._window_warning:
                log.warning(self._window_warning)
        self._gt_writer = self._truth_writer()
        self._set_latency_budget(getattr(src, "arrival_interval_s", interval))
        with self._lock:
            self._results = replace(
                self._results,
                pixel_size_nm=px,
                bin_nm=self.bin_nm,
                window_frames=w,
                origin_nm=self.origin_nm,
            )

    def _recon_worker(self) -> str:
        """Where the streaming reconstruction runs: "process" or "thread"."""
        mode = self.config.live.recon_worker
        if mode == "auto":
            assert self.model is not None
            mode = "process" if self.model.device.type == "cpu" else "thread"
        return mode

    def _choose_recon_roi(
        self, frame_shape: tuple[int, int], px: float, window: int, arrival_s: float
    ) -> tuple[int, int, int, int]:
        """The camera region to reconstruct live (x, y, width, height; pixels).

        ``live.recon_roi``: a region as given (checked against the frame), "full", or "auto":
        the full frame if the streaming reconstruction keeps up with one map per ``window``
        frames arriving every ``arrival_s`` s (timed on the device at start-up), else the
        largest centred region of the frame's shape that does, with a warning that says so.
        """
        h, w = (int(v) for v in frame_shape)
        roi = self.config.live.recon_roi
        if isinstance(roi, tuple):
            x, y, rw, rh = (int(v) for v in roi)
            if x + rw > w or y + rh > h:
                raise DblinkError(
                    f"the reconstruction region x={x}, y={y}, {rw}x{rh} pixels (--recon-roi) "
                    f"does not fit the {w}x{h}-pixel camera frame"
                )
            log.info(
                "reconstructing the region x %d-%d, y %d-%d of the %dx%d frame live; the full "
                "frame is recorded",
                x, x + rw - 1, y, y + rh - 1, w, h,
            )  # fmt: skip
            return x, y, rw, rh
        full = (0, 0, w, h)
        if roi == "full" or self.model is None or not arrival_s or arrival_s <= 0:
            return full
        per_bin = self._recon_seconds_per_bin()
        gy, gx = grid_shape((w * px, h * px), self.model.bin_nm)
        per_map = window * float(arrival_s)
        if gy * gx * per_bin <= RECON_FULL_SHARE * per_map:
            return full
        fits = RECON_ROI_SHARE * per_map / per_bin  # bins the device reconstructs per map
        f = min(1.0, (fits / (gy * gx)) ** 0.5)
        rw, rh = max(MIN_ROI_PX, min(w, int(w * f))), max(MIN_ROI_PX, min(h, int(h * f)))
        x, y = (w - rw) // 2, (h - rh) // 2
        self._roi_warning = (
            f"the full {w}x{h}-pixel frame ({gx}x{gy} bins) needs {gy * gx * per_bin:.2f} s "
            f"per map on {self.model.device}, a map comes every {per_map:.2f} s: the centred "
            f"region x {x}-{x + rw - 1}, y {y}-{y + rh - 1} ({rw}x{rh} pixels) is reconstructed "
            "live; every frame is recorded and localized, and `dblink-live reprocess` "
            "reconstructs the full frame (choose with --recon-roi x,y,w,h or --recon-roi full)"
        )
        log.warning(self._roi_warning)
        return x, y, rw, rh

    def _recon_seconds_per_bin(
        self, probe_bins: int = 96, maps: int = 4, repeats: int = 3
    ) -> float:
        """Seconds the streaming reconstruction takes per map and grid bin on the model's
        device, timed on a ``probe_bins``-square grid with as many threads as it will get (the
        best of ``repeats`` runs of ``maps`` maps: the machine's other work only slows it)."""
        assert self.model is not None
        threads = torch.get_num_threads()
        if self._recon_worker() == "process":
            torch.set_num_threads(1)  # the child process runs on one thread
        try:
            streamer = StreamingReconstructor(self.model.model, self.delay_maps)
            rng = np.random.default_rng(0)
            x = rng.poisson(0.5, (probe_bins, probe_bins)).astype(np.float32)
            k = self.delay_maps + 2
            for i in range(k):  # warm-up: the look-ahead fills
                streamer.push(x, i)
            elapsed = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(maps):
                    streamer.push(x, k)
                    k += 1
                elapsed = min(elapsed, (time.perf_counter() - t) / maps)
        finally:
            torch.set_num_threads(threads)
        return elapsed / probe_bins**2

    def _grid_area_um2(self) -> float:
        """Area of the reconstructed region (um^2): the density its maps are scaled by."""
        _, _, rw, rh = self.recon_roi_px
        if not rw or not self.source.pixel_size_nm:
            return self._area_um2()
        return rw * rh * (self.source.pixel_size_nm / 1e3) ** 2

    def _check_memory(self, frame_shape: tuple[int, int], px: float) -> None:
        """Refuse, before anything is created, a grid whose live reconstruction (or, without
        a model, the display's count maps) cannot fit in memory."""
        fov = (frame_shape[1] * px, frame_shape[0] * px)
        history = self._history.maxlen or 1
        if self.model is not None:
            bin_nm, device = self.model.bin_nm, str(self.model.device)
            what = "live reconstruction"
            per_bin = live_bytes_per_bin(self.model.model.hidden_channels, self.delay_maps, history)
            advice = (
                "reconstruct a camera region of at most {px} x {px} pixels (`--recon-roi "
                "x,y,w,h`, or the default --recon-roi auto; the full frame is still recorded), "
                "run on a GPU with more memory, or record and localize only (--weights none, "
                "and a larger bin in the config's grid.bin_nm)"
            )
        else:
            bin_nm, device = self.config.grid.bin_nm, "cpu"
            what = "the live localization display"
            per_bin = display_bytes_per_bin(history)
            advice = "raise grid.bin_nm in the config or reconstruct a region (`--recon-roi`)"
        need = MemoryNeed(what, grid_shape(fov, bin_nm), bin_nm, per_bin, LIVE_FIXED_BYTES)
        need.check(device, advice=advice, pixel_size_nm=px)

    def _cleanup_source(self) -> None:
        if hasattr(self.source, "stop"):
            try:
                self.source.stop()
            except Exception as exc:  # never hide the original failure
                log.warning("stopping the source failed: %s", exc)

    # ------------------------------------------------------------------ threads
    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self._fail(exc)

        return run

    def _fail(self, exc: BaseException) -> None:
        """Record the first failure and abort; later ones (often its consequences, such as
        other writes to the same full disk) are only logged at debug level."""
        msg = str(exc) if isinstance(exc, DblinkError) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            first = self._error is None
            if first:
                self._error = msg
        if first:
            plain = isinstance(exc, DblinkError) or (
                isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS
            )
            log.error("pipeline failed: %s", msg, exc_info=not plain)
        else:
            log.debug("after the first failure: %s", msg)
        self.abort()

    def _recorder_failed(self, exc: BaseException) -> None:
        """The recording cannot be written (disk full...): stop the whole run now, one line."""
        rec = self.recording
        n = rec.n_frames if rec is not None else 0
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self._fail(
            RecordingError(
                f"writing the recording failed ({why}): the run stopped; {rec.path if rec else ''}"
                f" holds frames 0-{n - 1} ({n} frames), readable"
                if n
                else f"writing the recording failed ({why}): the run stopped before any frame "
                "was recorded"
            )
        )

    def _sink(self, frame: np.ndarray, metadata: dict[str, Any]) -> None:
        assert self.ring is not None
        self.ring.put(frame, metadata)  # a BadFrameError is counted by the ring
        self._in_rate.add(1)

    def _source_loop(self) -> None:
        assert self.ring is not None
        try:
            produced = self.source.run(self._sink, self._stop)
            log.info("source finished after %d frames", produced)
        finally:
            self._set_state(PipelineState.DRAINING)
            self.ring.close()

    def _localize_loop(self) -> None:
        cur, loc, ring = self._loc_cursor, self.localizer, self.ring
        assert loc is not None and ring is not None and self.recording is not None
        batch_n = int(getattr(self.config.localizer, "batch_frames", 16))

        def measure(frames: np.ndarray) -> None:
            if self._estimate_camera and len(frames) >= 8:
                self._measure_camera(frames)

        stream = StreamingLocalizer(loc, lambda: self.calibration, on_frames=measure)

        def publish(t_start: float, blocks: list[LocalizedBlock]) -> None:
            self._busy["localizer"] += time.perf_counter() - t_start
            for block in blocks:
                self._frames_localized += block.n
                self._loc_rate.add(block.n)
                with self._stats_lock:
                    self._locs_recent.append((block.n, len(block.locs)))
                self._put(block)

        w = self.window
        while not self._abort.is_set():
            take = batch_n
            # too far behind the camera while it runs: skip whole maps, one at each map
            # boundary, until back within the budget (so skips interleave evenly with work)
            if self._behind(cur):
                to_boundary = (-cur.next_frame) % w
                if to_boundary == 0:
                    a, b = cur.skip(w)
                    if b > a:
                        self._dropped += b - a
                        if b - a == w:
                            self._skipped_maps.append(a // w)
                        publish(time.perf_counter(), stream.lose([(a, b)]))
                    continue
                take = min(batch_n, to_boundary)
            batch = cur.get(max_frames=take, timeout=0.1)
            if batch is None:
                if ring.closed and cur.available() <= 0:
                    break
                continue
            t_start = time.perf_counter()
            if batch.lost:
                self._dropped += batch.n_lost
                log.debug("localizer skipped frames %s", batch.lost)
                publish(t_start, stream.lose(batch.lost))
                t_start = time.perf_counter()
            arrival = [m.get("time_s", 0.0) for m in batch.metadata]
            publish(t_start, stream.feed(batch.first, batch.frames, arrival))
        if not self._abort.is_set():
            t_start = time.perf_counter()
            publish(t_start, stream.finish(cur.next_frame, ring.frame_shape, ring.dtype))
        self._put(_END)

    def _set_latency_budget(self, arrival_s: float | None) -> None:
        """The latency budget: the look-ahead D x W frames (a floor) plus slack, for frames
        arriving every ``arrival_s`` (None: an unpaced source, no budget). Half the slack may
        be spent waiting for the localizer; that allowance then adapts to the latency measured
        on each output (lower while outputs come later than the budget, higher while they come
        in time), so that skipped maps spread evenly."""
        w = self.window
        if not arrival_s:
            self.latency_budget_s = float("inf")
            self._max_wait_frames = self._budget_frames = float("inf")
            return
        lookahead_s = self.delay_maps * w * arrival_s
        budget_s = self.config.live.latency_budget_s
        if budget_s is None:
            budget_s = lookahead_s + 0.5
        self.latency_budget_s = float(budget_s)
        slack_s = max(budget_s - lookahead_s, 2 * w * arrival_s)
        self._max_wait_frames = max(float(w), 0.5 * slack_s / arrival_s)
        self._budget_frames = self._max_wait_frames

    def _behind(self, cur: Any) -> bool:
        """Whether the live path is further behind the camera than the latency budget allows
        (while the camera runs; a draining run processes everything): frames waiting for the
        localizer, or the newest reconstruction further behind the newest frame than the
        look-ahead (D + 1 maps) plus the slack."""
        if self.ring is None or self.ring.closed:
            return False
        if self._max_wait_frames >= self.ring.capacity:  # a budget longer than the ring: off
            return False
        if self._frames_localized < 2 * self.window:
            return False  # starting up (the localizer warming, the camera being measured)
        # the localizer or, when its queue is full, the reconstruction cannot keep up
        waiting = cur.available()
        return waiting > self._budget_frames or (self._queue.full() and waiting > self.window)

    def _adapt_budget(self, latency_s: float) -> None:
        """Steer the frames allowed to wait by the latency of the output just made (not during
        the first outputs, which carry the start-up)."""
        if len(self._latencies) <= 2 * (self.delay_maps + 1):
            return
        if latency_s > self.latency_budget_s:
            self._budget_frames = max(0.0, 0.85 * self._budget_frames - 1.0)
        else:
            self._budget_frames = min(self._max_wait_frames, 1.05 * self._budget_frames + 1.0)

    def _put(self, item: object) -> None:
        while not self._abort.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _recon_loop(self) -> None:
        w = self.window
        ny, nx = self.grid_yx
        assembler = MapAssembler(w, self.grid_yx, self.bin_nm, self.origin_nm)
        arrival_end: dict[int, float] = {}  # map -> arrival of its last frame, until output
        total_locs, total_frames = 0.0, 0
        assert self.recording is not None
        # localizations and reconstructions are written in blocks, localizations first
        sink = RecordingSink(self.recording, OUTPUT_BLOCK, 1.0, LOC_WRITE_S)

        # unscaled counts and localized frames of recent maps: the evidence for the confidence
        evidence_maps: dict[int, tuple[np.ndarray, int]] = {}
        keep_maps = 2 * EVIDENCE_CONTEXT_MAPS + self.delay_maps + 2
        skipped: deque[int] = deque()  # maps with no localized frame: not reconstructed
        next_written = [0]  # the next map index the recording's images get

        def finish_map(wm: WindowMap) -> None:
            nonlocal total_locs, total_frames
            k, counts, valid = wm.index, wm.counts, wm.valid_frames
            if wm.arrival_s is not None:
                arrival_end[k] = wm.arrival_s
            if valid <= 0:  # skipped whole (latency budget) or lost: nothing to reconstruct
                skipped.append(k)
                with self._lock:
                    self._maps_in += 1
                if self.streamer is not None:  # time moves on: earlier maps may be due now
                    for out in self.streamer.advance(k):
                        deliver(out)
                return
            total_locs += float(counts.sum())
            total_frames += valid
            evidence_maps[k] = (counts, valid)
            for old in [m for m in evidence_maps if m <= k - keep_maps]:
                del evidence_maps[old]
            if 0 < valid < w:
                counts = counts * (w / valid)  # a map missing frames, scaled to a full window
            with self._lock:
                self._history.append(counts)
                self._maps_in += 1
            if self.streamer is None:  # no reconstruction: maps for the render only
                return
            area = self._grid_area_um2()
            rate = total_locs / max(total_frames, 1) / area
            for out in self.streamer.push(counts / map_scale(rate, w, self.bin_nm), k):
                deliver(out)

        def placeholders(until: int) -> None:
            """Empty maps, confidence 0, for the skipped maps before map ``until``: the
            recording's images stay indexed by map."""
            while skipped and skipped[0] < until:
                k = skipped.popleft()
                if k >= next_written[0]:
                    blank = np.zeros((ny, nx), np.float32)
                    has_conf = bool(self.model and self.model.model.architecture["confidence"])
                    sink.add_output((k, blank, blank if has_conf else None), flush_when_due=False)
                    next_written[0] = k + 1

        def deliver(out: tuple[int, np.ndarray, np.ndarray | None]) -> None:
            idx, rec, conf = out
            t_arr = arrival_end.pop(idx, None)
            placeholders(idx)
            next_written[0] = idx + 1
            if conf is not None:
                conf = self._tempered(idx, rec, conf, evidence_maps, total_locs, total_frames)
            out = (idx, rec, conf)
            if t_arr is not None:
                latency = time.monotonic() - t_arr
                with self._stats_lock:
                    self._latencies.append(latency)
                self._adapt_budget(latency)
            self._map_rate.add(1)
            with self._lock:
                self._outputs += 1
                self._last_output_end = (idx + 1) * w
                self._results = replace(
                    self._results,
                    version=self._results.version + 1,
                    output_index=idx,
                    reconstruction=rec,
                    confidence=conf,
                    output_first_frame=idx * w,
                )
            sink.add_output(out)

        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._abort.is_set():
                    break
                for out in self.streamer.poll() if self.streamer is not None else []:
                    deliver(out)
                continue
            if item is _END:
                break
            block: LocalizedBlock = item
            t_start = time.perf_counter()
            sink.add_block(block)
            for wm in assembler.add(block):
                finish_map(wm)
            self._busy["reconstruction"] += time.perf_counter() - t_start
        if self.streamer is not None and not self._abort.is_set():
            for out in self.streamer.flush():
                deliver(out)
            placeholders(assembler.next_map)
        sink.flush()

    def _tempered(
        self,
        idx: int,
        rec: np.ndarray,
        conf: np.ndarray,
        maps: dict[int, tuple[np.ndarray, int]],
        total_locs: float,
        total_frames: int,
    ) -> np.ndarray:
        """The learned confidence of output ``idx`` tempered by the evidence of the
        localizations over +-K maps (those that exist yet), 0 for a map with no localized
        frame or no localization, and scaled for a density outside the training range."""
        k = EVIDENCE_CONTEXT_MAPS
        ctx = [maps[m] for m in range(idx - k, idx + k + 1) if m in maps]
        own = maps.get(idx)
        if own is None or own[1] == 0 or float(own[0].sum()) == 0.0:
            return np.zeros_like(conf)
        counts = np.sum([c for c, _ in ctx], axis=0)[None]
        frames = np.array([sum(v for _, v in ctx)])
        ev = evidence_from_counts(counts, frames, rec[None], self.bin_nm)[0]
        out = temper_confidence(conf[None], rec[None], ev[None])[0]
        if self.model is not None and total_frames:
            factor = self.model.density_factor(total_locs / total_frames / self._grid_area_um2())
            out = out * np.float32(factor)
        return out

    def _close_streamer(self) -> None:
        streamer = getattr(self, "streamer", None)  # also from __del__ after a failed init
        if streamer is not None:
            streamer.close()

    def _supervise(self) -> None:
        """Wait for the workers, finish the recording and set the final state."""
        side = ("dblink-supervisor", "dblink-ground-truth")
        for t in self._threads:
            if t.name not in side:
                t.join()
        self._close_streamer()
        try:
            assert self.recorder is not None
            self.recorder.join()
            self._cleanup_source()
            self._gt_done.set()
            for t in self._threads:
                if t.name == "dblink-ground-truth":
                    t.join()
            if self._gt_writer is not None and self.recording is not None:
                self._gt_writer.write(self.recording.n_frames, final=True)
            self._write_summary()
        except BaseException as exc:
            self._fail(exc)
        with self._lock:
            failed = self._error is not None
        sys.setswitchinterval(self._switch_interval)
        torch.set_num_threads(self._torch_threads)
        self._set_state(PipelineState.FAILED if failed else PipelineState.FINISHED)
        self._finished.set()

    def _truth_writer(self) -> GroundTruthWriter | None:
        """A writer of the ground truth of what is recorded, for a source that has one
        (:class:`~dblink_live.acquire.base.GroundTruthSource`: the virtual microscope, a
        replayed simulation)."""
        rec = self.recording
        assert rec is not None
        if not isinstance(self.source, GroundTruthSource):
            return None
        grid = self.config.grid.model_copy(
            update={"window_frames": self.window, "bin_nm": self.bin_nm}
        )
        known = self.source.ground_truth(grid)
        if known is None:
            return None
        if known.metadata:
            rec.update_meta(**known.metadata)
        return GroundTruthWriter(
            rec,
            known.truth,
            self.bin_nm,
            self.window,
            GT_BLOCK_MAPS,
            maps_during_run=known.maps_during_run,
        )

    def _truth_loop(self) -> None:
        """Write the ground truth of whole blocks as they are recorded: a killed run keeps it."""
        writer, rec = self._gt_writer, self.recording
        if writer is None or rec is None:
            return
        while not self._gt_done.wait(GT_POLL_S):
            writer.write(rec.n_frames)

    def _write_summary(self) -> None:
        st = self.status()
        lat = self.latencies()
        self.summary = {
            "frames_in": st.frames_in,
            "frames_recorded": st.frames_recorded,
            "frames_localized": st.frames_localized,
            "dropped_frames": st.dropped_frames,
            "skipped_maps": st.skipped_maps,
            "latency_budget_s": (
                round(self.latency_budget_s, 3) if np.isfinite(self.latency_budget_s) else None
            ),
            "bad_frames": st.bad_frames,
            "recorder_lost": st.recorder_lost,
            "recorder_max_backlog": self.recorder.cursor.max_backlog if self.recorder else 0,
            "outputs": st.outputs,
            "busy_s": {k: round(v, 3) for k, v in self._busy.items()},
            "delay_maps": self.delay_maps,
            "recon_roi_px": list(self.recon_roi_px),
            "latency_s": {
                "p50": float(np.percentile(lat, 50)) if len(lat) else None,
                "p99": float(np.percentile(lat, 99)) if len(lat) else None,
                # did the live path fall further behind as the run went on?
                "p50_by_third": (
                    [float(np.median(part)) for part in np.array_split(lat, 3)]
                    if len(lat) >= 3
                    else None
                ),
            },
            "elapsed_s": st.elapsed_s,
            "device": st.device,
            "error": st.error,
            "package_version": __version__,
        }
        if self.recording is not None:
            extra = {"camera": self._camera_meta} if self._camera_meta else {}
            self.recording.update_meta(live_summary=self.summary, **extra)
            for name in ("reconstruction", "confidence"):
                arr = self.recording.image_array(name)
                if arr is not None:
                    arr.attrs["skipped_maps"] = sorted(self._skipped_maps)
            report = getattr(self.localizer, "report", None)
            if report:
                self.recording.update_localization_info(yield_check=report)

    def _measure_camera(self, frames: np.ndarray) -> None:
        """Estimate offset and gain from the first frames when the camera did not say them;
        the estimate is logged, used for photons from now on and stored in the recording."""
        from dblink_live.localize import estimate_camera

        self._estimate_camera = False
        cam = dict(self.source.camera or {}) if self.source is not None else {}
        model = str(cam.get("model") or "")
        try:
            est = estimate_camera(
                frames,
                camera=model if model in ("emccd", "scmos") else None,
                em_gain=cam.get("em_gain"),
                baseline_adu=cam.get("baseline_adu"),
            )
        except DblinkError as exc:
            log.warning("camera calibration not estimated (%s); photons use the defaults", exc)
            return
        fill = {
            k: v
            for k, v in est.calibration(em_gain=cam.get("em_gain")).items()
            if cam.get(k) is None or k == "e_per_adu"
        }
        self.calibration = replace(self.calibration, **fill)
        self.camera_estimate = est
        log.warning("%s", est.summary())
        self._camera_meta = {**cam, **fill, "estimated": est.to_dict()}
        if self.recording is not None:  # the camera metadata is written with the summary
            self.recording.update_localization_info(
                calibration={
                    k: getattr(self.calibration, k)
                    for k in (
                        "baseline_adu",
                        "e_per_adu",
                        "em_gain",
                        "qe",
                        "pixel_size_nm",
                        "psf_sigma_nm",
                    )
                },
                camera_estimate=est.to_dict(),
            )

    def _warnings(self, density: float) -> list[str]:
        out = []
        if self._skipped_maps:
            out.append(
                f"{len(self._skipped_maps)} maps skipped to stay within "
                f"{self.latency_budget_s:.1f} s of the camera (their frames are in the recording; "
                "`reprocess` reconstructs them)"
            )
        if self._dropped > len(self._skipped_maps) * self.window:
            out.append(
                f"{self._dropped} frames dropped by the live path (all are in the recording)"
            )
        rec = self.recorder
        if rec is not None and rec.lost_frames:
            out.append(f"the recorder lost {rec.lost_frames} frames")
        if rec is not None and rec.backlog > 1000:
            out.append(f"{rec.backlog} frames wait in memory for the disk")
        bad = self.ring.bad_frames if self.ring is not None else 0
        if bad:
            out.append(f"{bad} frames rejected (wrong shape or dtype)")
        loc_warning = getattr(self.localizer, "warning", None)
        if loc_warning:
            out.append(loc_warning)
        model = self.model
        if self._window_warning:
            out.append(self._window_warning)
        if self._roi_warning:
            out.append(self._roi_warning)
        if model is not None and self._frames_localized > 5 * self.window and density > 0:
            msg = model.density_warning(density, self.window)
            if msg:
                out.append(msg)
        return out


def auto_recon_weights(structure: str) -> str:
    """Shipped model for live use: ``recon_<structure>_live`` (a lighter network, ~3x less
    compute per streamed map) when shipped, else ``recon_<structure>``."""
    from dblink_live.checkpoints import shipped_names

    live = f"recon_{structure}_live"
    return live if live in shipped_names("recon_") else f"recon_{structure}"


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
