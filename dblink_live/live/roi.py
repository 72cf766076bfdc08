"""What the live reconstruction can take on: the camera region it reconstructs and the memory
its grid needs, decided before anything is created."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from dblink_live.errors import DblinkError
from dblink_live.recon.inference import LoadedModel
from dblink_live.recon.streaming import StreamingReconstructor
from dblink_live.resources import (
    LIVE_FIXED_BYTES,
    MemoryNeed,
    display_bytes_per_bin,
    live_bytes_per_bin,
)
from dblink_live.sim.scene import grid_shape

__all__ = [
    "MIN_ROI_PX",
    "RECON_FULL_SHARE",
    "RECON_ROI_SHARE",
    "RoiChoice",
    "check_live_memory",
    "choose_recon_roi",
    "recon_seconds_per_bin",
]

log = logging.getLogger(__name__)

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

#: (x, y, width, height) in camera pixels, and the warning that says why (None: as asked)
RoiChoice = tuple[tuple[int, int, int, int], str | None]


def choose_recon_roi(
    roi: object,
    frame_shape: tuple[int, int],
    px: float,
    window: int,
    arrival_s: float | None,
    model: LoadedModel | None,
    seconds_per_bin: Callable[[], float],
) -> RoiChoice:
    """The camera region to reconstruct live (x, y, width, height; pixels) and a warning.

    ``roi`` (``live.recon_roi``): a region as given (checked against the frame), "full", or
    "auto": the full frame if the streaming reconstruction keeps up with one map per
    ``window`` frames arriving every ``arrival_s`` s (``seconds_per_bin()`` times it on the
    device at start-up), else the largest centred region of the frame's shape that does, with
    a warning that says so. ``px`` is the camera pixel (nm).
    """
    h, w = (int(v) for v in frame_shape)
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
        return (x, y, rw, rh), None
    full = (0, 0, w, h)
    if roi == "full" or model is None or not arrival_s or arrival_s <= 0:
        return full, None
    per_bin = seconds_per_bin()
    gy, gx = grid_shape((w * px, h * px), model.bin_nm)
    per_map = window * float(arrival_s)
    if gy * gx * per_bin <= RECON_FULL_SHARE * per_map:
        return full, None
    fits = RECON_ROI_SHARE * per_map / per_bin  # bins the device reconstructs per map
    f = min(1.0, (fits / (gy * gx)) ** 0.5)
    rw, rh = max(MIN_ROI_PX, min(w, int(w * f))), max(MIN_ROI_PX, min(h, int(h * f)))
    x, y = (w - rw) // 2, (h - rh) // 2
    warning = (
        f"the full {w}x{h}-pixel frame ({gx}x{gy} bins) needs {gy * gx * per_bin:.2f} s "
        f"per map on {model.device}, a map comes every {per_map:.2f} s: the centred "
        f"region x {x}-{x + rw - 1}, y {y}-{y + rh - 1} ({rw}x{rh} pixels) is reconstructed "
        "live; every frame is recorded and localized, and `dblink-live reprocess` "
        "reconstructs the full frame (choose with --recon-roi x,y,w,h or --recon-roi full)"
    )
    log.warning(warning)
    return (x, y, rw, rh), warning


def recon_seconds_per_bin(
    model: LoadedModel,
    delay_maps: int,
    one_thread: bool,
    probe_bins: int = 96,
    maps: int = 4,
    repeats: int = 3,
) -> float:
    """Seconds the streaming reconstruction takes per map and grid bin on the model's device,
    timed on a ``probe_bins``-square grid with as many threads as it will get (one when it runs
    in a child process: ``one_thread``; the best of ``repeats`` runs of ``maps`` maps: the
    machine's other work only slows it)."""
    threads = torch.get_num_threads()
    if one_thread:
        torch.set_num_threads(1)
    try:
        streamer = StreamingReconstructor(model.model, delay_maps)
        rng = np.random.default_rng(0)
        x = rng.poisson(0.5, (probe_bins, probe_bins)).astype(np.float32)
        k = delay_maps + 2
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


def check_live_memory(
    frame_shape: tuple[int, int],
    px: float,
    model: LoadedModel | None,
    bin_nm: float,
    delay_maps: int,
    history_maps: int,
) -> None:
    """Refuse, before anything is created, a grid whose live reconstruction (or, without a
    model, the display's count maps of ``bin_nm``) cannot fit in memory. ``frame_shape`` is the
    reconstructed region (Y, X) in pixels of ``px`` nm."""
    fov = (frame_shape[1] * px, frame_shape[0] * px)
    if model is not None:
        bin_nm, device = model.bin_nm, str(model.device)
        what = "live reconstruction"
        per_bin = live_bytes_per_bin(model.model.hidden_channels, delay_maps, history_maps)
        advice = (
            "reconstruct a camera region of at most {px} x {px} pixels (`--recon-roi "
            "x,y,w,h`, or the default --recon-roi auto; the full frame is still recorded), "
            "run on a GPU with more memory, or record and localize only (--weights none, "
            "and a larger bin in the config's grid.bin_nm)"
        )
    else:
        device = "cpu"
        what = "the live localization display"
        per_bin = display_bytes_per_bin(history_maps)
        advice = "raise grid.bin_nm in the config or reconstruct a region (`--recon-roi`)"
    need = MemoryNeed(what, grid_shape(fov, bin_nm), bin_nm, per_bin, LIVE_FIXED_BYTES)
    need.check(device, advice=advice, pixel_size_nm=px)
