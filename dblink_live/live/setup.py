"""What a live run creates before its threads start: the model, the recording and its images,
the streaming reconstructor, the ground-truth writer."""

from __future__ import annotations

import logging
from pathlib import Path

from dblink_live.acquire.base import FrameSource, GroundTruthSource
from dblink_live.acquire.ground_truth import GroundTruthWriter
from dblink_live.config import GridConfig, RunConfig
from dblink_live.io.recording import Recording
from dblink_live.live.recon_stage import OUTPUT_BLOCK
from dblink_live.recon.inference import LoadedModel, load_recon_model
from dblink_live.recon.streaming import (
    ProcessStreamingReconstructor,
    Reconstructor,
    StreamingReconstructor,
)

__all__ = [
    "GT_BLOCK_MAPS",
    "auto_recon_weights",
    "create_live_recording",
    "create_output_images",
    "ground_truth_writer",
    "make_streamer",
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


def make_streamer(model: LoadedModel, delay_maps: int, worker: str) -> Reconstructor:
    """The streaming reconstructor: in a child process (``worker="process"``, one thread) or
    in the calling process (``"thread"``)."""
    if worker == "process":
        return ProcessStreamingReconstructor(model.model, delay_maps, threads=1, max_pending=2)
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
