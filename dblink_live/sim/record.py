"""Write a simulated movie, with all its ground truth, as a recording."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dblink_live.config import RunConfig
from dblink_live.io.recording import Recording
from dblink_live.resources import MemoryNeed, simulate_bytes_per_bin
from dblink_live.sim.movie import MovieSimulator
from dblink_live.sim.scene import grid_shape

__all__ = ["simulate_recording"]

#: progress(done, total, what) callback
Progress = Callable[[int, int, str], None]


def simulate_recording(
    config: RunConfig,
    output: str | Path,
    *,
    n_frames: int | None = None,
    seed: int | None = None,
    chunk_frames: int = 64,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Recording:
    """Simulate a movie and stream it to a new recording in bounded memory.

    Writes ``raw``, ``gt/emitters``, ``gt/skeleton`` and ``gt/structure`` (one map per W frames
    at the map's mid-time, on the ``grid.bin_nm`` grid), and stores the resolved config (with the
    effective ``n_frames`` and ``seed``) in the attributes.

    Parameters
    ----------
    config
        Run config.
    output
        Path of the new ``*.zarr`` recording.
    n_frames, seed
        Override ``simulation.n_frames`` / ``simulation.seed``.
    chunk_frames
        Frames simulated and written per block (also the ``raw`` chunk length).
    overwrite
        Replace an existing recording.
    progress
        Called as ``progress(done, total, stage)`` after each block.
    """
    grid, cam = config.grid, config.simulation.camera
    h, w = cam.height_px, cam.width_px
    MemoryNeed(  # before the scene is built: its size grows with the field too
        "simulating the ground truth",
        grid_shape((w * cam.pixel_size_nm, h * cam.pixel_size_nm), grid.bin_nm),
        grid.bin_nm,
        simulate_bytes_per_bin(grid.supersample, chunk_frames // grid.window_frames + 1),
        fixed=chunk_frames * h * w * 8.0 * 4,  # a block of frames: photons, noise (float64)
    ).check(
        advice="simulate a smaller camera (simulation.camera.width_px/height_px), or a larger "
        "grid.bin_nm or smaller grid.supersample",
        pixel_size_nm=cam.pixel_size_nm,
    )
    sim = MovieSimulator(config, n_frames=n_frames, seed=seed)
    resolved = config.updated(simulation={"n_frames": sim.n_frames, "seed": sim.scene.seed})
    meta = sim.metadata()
    rec = Recording.create(
        output,
        frame_shape=sim.shape,
        pixel_size_nm=meta["pixel_size_nm"],
        frame_interval_s=meta["frame_interval_s"],
        camera=meta["camera"],
        config=resolved,
        chunk_frames=chunk_frames,
        overwrite=overwrite,
        extra={"simulated": True, "simulation": meta["simulation"]},
    )
    grid = config.grid
    w = grid.window_frames
    total = sim.n_frames + sim.n_maps
    ny_nx = sim.ground_truth_maps(0, 0)[1].shape[1:]
    for name, dtype in (("gt/skeleton", "uint8"), ("gt/structure", "float32")):
        rec.create_image(name, ny_nx, dtype, bin_nm=grid.bin_nm, window_frames=w)
    maps_done = 0
    for start, raw, emitters in sim.iter_frames(chunk_frames):
        rec.append_frames(raw)
        rec.append_emitters(emitters)
        # ground truth for every map whose window is complete
        n_ready = (start + len(raw)) // w - maps_done
        if n_ready > 0:
            _, skel, struct = sim.ground_truth_maps(maps_done, n_ready)
            rec.append_image("gt/skeleton", skel)
            rec.append_image("gt/structure", struct)
            maps_done += n_ready
        if progress is not None:
            progress(start + len(raw) + maps_done, total, "simulate")
    return rec
