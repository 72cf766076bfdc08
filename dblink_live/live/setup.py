"""What a live run creates before its threads start: the model, the recording and its images,
the streaming reconstructor, the ground-truth writer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dblink_live.acquire.base import FrameSource, GroundTruthSource
from dblink_live.acquire.ground_truth import GroundTruthWriter
from dblink_live.config import GridConfig, RunConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recorder import Recorder
from dblink_live.io.recording import Recording
from dblink_live.io.ring import FrameRing, RingCursor
from dblink_live.live.budget import LatencyBudget
from dblink_live.live.camera import LiveCalibration
from dblink_live.live.recon_stage import OUTPUT_BLOCK
from dblink_live.live.roi import check_live_memory, choose_recon_roi, recon_seconds_per_bin
from dblink_live.localize import Localizer, make_localizer
from dblink_live.recon.inference import LoadedModel, load_recon_model
from dblink_live.recon.streaming import (
    ProcessStreamingReconstructor,
    Reconstructor,
    StreamingReconstructor,
)
from dblink_live.sim.scene import grid_shape

__all__ = [
    "GT_BLOCK_MAPS",
    "LiveRun",
    "auto_recon_weights",
    "create_live_recording",
    "create_output_images",
    "ground_truth_writer",
    "make_streamer",
    "open_run",
    "recon_worker",
    "resolve_model",
]

log = logging.getLogger("dblink_live.pipeline")

#: Ground truth is written in blocks of this many maps (emitters during the run).
GT_BLOCK_MAPS = 64


def auto_recon_weights(structure: str) -> str:
    """Shipped model for live use: ``recon_<structure>_live`` (a lighter network, ~3x less
    compute per streamed map) when shipped, else ``recon_<structure>``."""
    from dblink_live.checkpoints import shipped_names

    live = f"recon_{structure}_live"
    return live if live in shipped_names("recon_") else f"recon_{structure}"


def resolve_model(
    recon: LoadedModel | str | Path | None, structure: str, device: str
) -> LoadedModel | None:
    """The model a run reconstructs with: ``recon`` as loaded, loaded from a weights name or
    path, the shipped one for ``structure`` (``"auto"``), or None (None or ``"none"``)."""
    if isinstance(recon, str) and recon == "auto":
        recon = auto_recon_weights(structure)
    if isinstance(recon, str) and recon.lower() == "none":
        recon = None
    if recon is None or isinstance(recon, LoadedModel):
        return recon
    return load_recon_model(recon, device)


def create_live_recording(
    output: Path,
    source: FrameSource,
    pixel_size_nm: float,
    frame_interval_s: float,
    config: RunConfig,
    delay_maps: int,
    overwrite: bool,
) -> Recording:
    """The run's new recording, with the source's metadata (the virtual microscope's
    simulation, an MDA sequence) beside the geometry, camera and config."""
    extra = {"live": True, "source": type(source).__name__, "delay_maps": delay_maps}
    simulation = getattr(source, "simulation_metadata", None)  # the virtual microscope's
    if simulation is not None:
        extra.update(simulated=True, simulation=simulation)
    extra.update(getattr(source, "recording_metadata", None) or {})  # e.g. the MDA sequence
    return Recording.create(
        output,
        frame_shape=source.frame_shape,
        pixel_size_nm=pixel_size_nm,
        frame_interval_s=frame_interval_s,
        camera=dict(source.camera or {}),
        config=config,
        overwrite=overwrite,
        extra=extra,
    )


def create_output_images(
    recording: Recording,
    model: LoadedModel,
    grid_yx: tuple[int, int],
    window: int,
    delay_maps: int,
    origin_nm: tuple[float, float],
    recon_roi_px: tuple[int, int, int, int],
) -> None:
    """The recording's ``reconstruction`` and ``confidence`` images (maps of ``grid_yx``
    bins), chunked by :data:`~dblink_live.live.recon_stage.OUTPUT_BLOCK` maps."""
    for name in ("reconstruction", "confidence"):
        recording.create_image(
            name,
            grid_yx,
            "float32",
            bin_nm=model.bin_nm,
            window_frames=window,
            model=model.describe(),
            delay_maps=delay_maps,
            mode="live",
            chunk_maps=OUTPUT_BLOCK,
            origin_nm=origin_nm,
            recon_roi_px=list(recon_roi_px),
        )


def make_streamer(
    model: LoadedModel, delay_maps: int, worker: str, grid_yx: tuple[int, int] | None = None
) -> Reconstructor:
    """The streaming reconstructor: in a child process (``worker="process"``, one thread) or
    in the calling process (``"thread"``). A child is warmed on ``grid_yx`` (Y, X) maps
    before it says it is ready, so that its first steps (slower: memory being allocated)
    come before the camera starts, not in the first outputs' latency."""
    if worker == "process":
        return ProcessStreamingReconstructor(
            model.model, delay_maps, threads=1, max_pending=2, warm_shape=grid_yx
        )
    return StreamingReconstructor(model.model, delay_maps)


def ground_truth_writer(
    source: FrameSource,
    recording: Recording,
    grid: GridConfig,
    region_nm: tuple[float, float, float, float] | None = None,
) -> GroundTruthWriter | None:
    """A writer of the ground truth of what is recorded, for a source that has one
    (:class:`~dblink_live.acquire.base.GroundTruthSource`: the virtual microscope, a replayed
    simulation), on ``grid`` (the run's bins and W) over ``region_nm`` (x, y, width, height in
    nm: the region reconstructed live; None: the whole field); None for any other source."""
    if not isinstance(source, GroundTruthSource):
        return None
    known = source.ground_truth(grid, region_nm)
    if known is None:
        return None
    if known.metadata:
        recording.update_meta(**known.metadata)
    return GroundTruthWriter(
        recording,
        known.truth,
        grid.bin_nm,
        grid.window_frames,
        GT_BLOCK_MAPS,
        maps_during_run=known.maps_during_run,
    )


def recon_worker(config: RunConfig, model: LoadedModel) -> str:
    """Where the streaming reconstruction runs: "process" (a child, on a CPU) or "thread"."""
    mode = config.live.recon_worker
    if mode == "auto":
        mode = "process" if model.device.type == "cpu" else "thread"
    return mode


@dataclass
class LiveRun:
    """Everything a live run creates before its threads start (see :func:`open_run`).

    Attributes
    ----------
    ring, cursor, recording, recorder
        The frame ring, the localizer's (lossy) cursor on it, the recording and its recorder
        (started: it writes every frame put in the ring).
    localizer, model, streamer, camera
        The localizer, the reconstruction model and its streamer (None: record and localize
        only) and the camera calibration (measured on the first frames when not given).
    budget, truth
        The latency budget and the ground-truth writer (None: the source has no truth).
    pixel_size_nm, window, bin_nm, grid_yx
        Camera pixel (nm), frames per map W, map bin (nm) and the reconstructed grid (Y, X).
    recon_roi_px, origin_nm
        The camera region reconstructed (x, y, width, height; pixels) and its corner (nm).
    frame_area_um2, region_area_um2
        Areas of the camera frame (the status's density) and of the region (the maps' scale).
    notes
        Start-up warnings that stay in the status (the model's window, the region's choice).
    """

    ring: FrameRing
    cursor: RingCursor
    recording: Recording
    recorder: Recorder
    localizer: Localizer
    model: LoadedModel | None
    streamer: Reconstructor | None
    camera: LiveCalibration
    budget: LatencyBudget
    truth: GroundTruthWriter | None
    pixel_size_nm: float
    window: int
    bin_nm: float
    grid_yx: tuple[int, int]
    recon_roi_px: tuple[int, int, int, int]
    origin_nm: tuple[float, float]
    frame_area_um2: float
    region_area_um2: float
    notes: list[str | None]


def open_run(
    source: FrameSource,
    output: Path,
    config: RunConfig,
    *,
    recon: LoadedModel | str | Path | None,
    localizer: Localizer | None,
    device: str,
    delay_maps: int,
    ring_capacity: int | None,
    overwrite: bool,
    history_maps: int,
    on_recorder_error: Callable[[BaseException], None],
) -> LiveRun:
    """Start ``source`` (to learn its geometry), load the localizer and the model, choose the
    region to reconstruct, check the memory, create the ring, the recording and its images,
    start the recorder and make the streamer: a :class:`LiveRun` ready for its threads.
    Raises :class:`~dblink_live.errors.DblinkError` on a source without frame size or pixel
    size, a region that does not fit, or a grid that does not fit in memory."""
    src = source
    if hasattr(src, "start"):
        src.start()
    if not src.frame_shape or not src.frame_shape[0]:
        raise DblinkError("the source did not report its frame size")
    px = float(src.pixel_size_nm or 0.0)
    if px <= 0:
        raise DblinkError("the source has no pixel size; give --pixel-size-nm")
    interval = float(src.frame_interval_s or 0.0) or 0.01
    w = config.grid.window_frames
    loc = localizer or make_localizer(config.localizer, device)
    model = resolve_model(recon, config.simulation.structure.kind, device)
    arrival = getattr(src, "arrival_interval_s", interval)

    def seconds_per_bin() -> float:
        assert model is not None  # the child process runs on one thread
        one_thread = recon_worker(config, model) == "process"
        return recon_seconds_per_bin(model, delay_maps, one_thread)

    roi, roi_warning = choose_recon_roi(
        config.live.recon_roi, src.frame_shape, px, w, arrival, model, seconds_per_bin
    )
    rx, ry, rw, rh = roi
    origin = (rx * px, ry * px)
    check_live_memory((rh, rw), px, model, config.grid.bin_nm, delay_maps, history_maps)
    capacity = ring_capacity or max(256, round(config.live.ring_seconds / interval))
    ring = FrameRing(capacity, src.frame_shape)  # numpy slots, committed in put
    rec = create_live_recording(output, src, px, interval, config, delay_maps, overwrite)
    camera = LiveCalibration(dict(src.camera or {}), px, rec)
    choose = getattr(loc, "choose_for_rate", None)
    if choose is not None and arrival:  # --localizer auto: one that keeps up, said
        choose(src.frame_shape, camera.current(), 1.0 / float(arrival))
    from dblink_live.localize.run import describe_localizer

    rec.clear_localizations(describe_localizer(loc, config.localizer, camera.current()))
    recorder = Recorder(ring, rec, on_error=on_recorder_error).start()
    cursor = ring.cursor("localizer", start=0)
    bin_nm = model.bin_nm if model is not None else config.grid.bin_nm
    grid_yx = grid_shape((rw * px, rh * px), bin_nm)  # the region (the whole frame by default)
    streamer, window_warning = None, None
    if model is not None:
        create_output_images(rec, model, grid_yx, w, delay_maps, origin, roi)
        streamer = make_streamer(model, delay_maps, recon_worker(config, model), grid_yx)
        window_warning = model.window_warning(w)
        if window_warning:
            log.warning(window_warning)
    grid = config.grid.model_copy(update={"window_frames": w, "bin_nm": bin_nm})
    whole = (rw, rh) == tuple(src.frame_shape[::-1])
    truth = ground_truth_writer(src, rec, grid, None if whole else (*origin, rw * px, rh * px))
    fh, fw = src.frame_shape
    return LiveRun(
        ring=ring,
        cursor=cursor,
        recording=rec,
        recorder=recorder,
        localizer=loc,
        model=model,
        streamer=streamer,
        camera=camera,
        budget=LatencyBudget(w, delay_maps, arrival, config.live.latency_budget_s),
        truth=truth,
        pixel_size_nm=px,
        window=w,
        bin_nm=bin_nm,
        grid_yx=grid_yx,
        recon_roi_px=roi,
        origin_nm=origin,
        frame_area_um2=fh * fw * (px / 1e3) ** 2,
        region_area_um2=rw * rh * (px / 1e3) ** 2,
        notes=[window_warning, roi_warning],
    )
