"""``dblink-live reprocess``: a whole recording (or localization table) through the ConvBiLSTM.

Input: a recording with localizations (localized first if it only has raw frames) or a table
(ThunderSTORM / DECODE / Picasso / CSV). Output: ``reconstruction`` and ``confidence`` on the
model's grid, written into the recording or a new one, with OME-NGFF metadata; optionally a TIFF
stack and a GIF preview.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dblink_live.config import LocalizerConfig
from dblink_live.errors import DblinkError
from dblink_live.io.outputs import check_writable
from dblink_live.io.recording import Recording, format_ranges
from dblink_live.recon.inference import (
    Progress,
    choose_recon_weights,
    load_recon_model,
)

# the names marked noqa were defined in this module before it was split in three (input,
# passes, output); they stay importable from here
from dblink_live.recon.reprocess_input import (
    _TABLE_SUFFIXES,  # noqa: F401
    DEFAULT_FRAME_INTERVAL_S,
    OCCUPANCY_TILE_NM,  # noqa: F401
    TABLE_MARGIN_NM,  # noqa: F401
    _open_localizations,
    _subtract,  # noqa: F401
    _table_metadata_warning,
    data_grid,
    occupied_area_um2,
)
from dblink_live.recon.reprocess_output import (
    _export_reconstruction,
    _set_image_attr,
    _write_outputs,
    export_gif_preview,  # noqa: F401
    export_tiff_stack,  # noqa: F401
)
from dblink_live.recon.reprocess_passes import (
    BATCH_BINS,  # noqa: F401
    _check_stride,  # noqa: F401
    _fitting_chunk,
    default_batch,  # noqa: F401
    reconstruct_localizations,
)
from dblink_live.sim.scene import grid_shape

__all__ = [
    "ReprocessResult",
    "data_grid",
    "occupied_area_um2",
    "reconstruct_localizations",
    "reprocess",
]

log = logging.getLogger(__name__)
#: W for ``weights="auto"`` when none is given (the shipped models' training W).
DEFAULT_WINDOW_FRAMES = 10


@dataclass
class ReprocessResult:
    """What :func:`reprocess` wrote."""

    output: Path
    outputs: int
    stride_frames: int
    seconds: float
    exports: list[Path]
    #: name of the model used
    model: str = ""
    #: what the user should know (e.g. W outside the model's training range)
    warnings: list[str] = field(default_factory=list)


def reprocess(
    input_path: str | Path,
    *,
    output: str | Path | None = None,
    weights: str = "auto",
    stride: int | None = None,
    chunk_maps: int = 32,
    device: str = "auto",
    localizer: LocalizerConfig | None = None,
    pixel_size_nm: float | None = None,
    frame_interval_s: float | None = None,
    overwrite: bool = False,
    export_tiff: bool = False,
    export_gif: bool = False,
    progress: Progress | None = None,
    window_frames: int | None = None,
    structure: str | None = None,
    evidence: bool = True,
) -> ReprocessResult:
    """Reconstruct a whole recording offline with full bidirectional context.

    See the module docstring; ``stride`` (default W) sets the output interval in raw frames.
    ``weights="auto"`` picks the shipped model for the structure (``structure``, else the one in
    the recording's stored config, else filaments) and W (``window_frames``, default 10): see
    :func:`~dblink_live.recon.inference.choose_recon_weights`. A W outside the range the model
    was trained on is run, with a warning in the result. ``evidence=False`` keeps the
    network's learned confidence alone (for comparison).
    """
    input_path = Path(input_path)
    t0 = time.perf_counter()
    if output is not None and Path(output).resolve() != input_path.resolve():
        if Path(output).exists() and not overwrite:
            raise DblinkError(f"{output} already exists; pass --overwrite to replace it")
        check_writable(output)  # before the work, not after it
    locs, camera_fov, n_frames, interval, rec, missing = _open_localizations(
        input_path, pixel_size_nm, localizer, device, progress
    )
    warnings: list[str] = []
    if rec is None:
        meta = _table_metadata_warning(
            input_path, locs, pixel_size_nm, frame_interval_s or interval
        )
        if meta:
            warnings.append(meta)
    if weights == "auto":
        stored = ((rec.config or {}).get("simulation") or {}) if rec is not None else {}
        kind = structure or (stored.get("structure") or {}).get("kind") or "filaments"
        weights = choose_recon_weights(kind, window_frames or DEFAULT_WINDOW_FRAMES)
        log.info("model for %s at W=%s: %s", kind, window_frames or DEFAULT_WINDOW_FRAMES, weights)
    model = load_recon_model(weights, device)
    interval = frame_interval_s or interval or DEFAULT_FRAME_INTERVAL_S
    if camera_fov is None:  # a table: the grid covers its data, never the origin
        origin, fov = data_grid(locs, model.bin_nm)
    else:
        origin, fov = (0.0, 0.0), camera_fov
    if rec is not None and (output is None or Path(output).resolve() == input_path.resolve()):
        target = Recording.open(input_path, mode="r+")
    else:
        if output is None:
            raise DblinkError(f"{input_path} is a table: give -o/--output NEW.zarr")
        px = locs.pixel_size_nm
        right, top = origin[0] + fov[0], origin[1] + fov[1]
        shape = (max(1, math.ceil(top / px)), max(1, math.ceil(right / px)))
        target = Recording.create(
            output,
            frame_shape=shape,
            pixel_size_nm=px,
            frame_interval_s=interval,
            overwrite=overwrite,
            extra={"source": str(input_path), "table_frames": int(n_frames)},
        )
        target.clear_localizations({"source": str(input_path)})
        target.append_localizations(locs)
    w = window_frames or model.window_frames
    stride = w if stride is None else stride
    if camera_fov is None:  # density over the tiles that hold data, not the whole box
        shifted = replace(locs, x_nm=locs.x_nm - origin[0], y_nm=locs.y_nm - origin[1])
        area = occupied_area_um2(shifted, fov)
    else:  # a camera's field, as the models were trained
        area = fov[0] * fov[1] / 1e6
    density = len(locs) / max(n_frames, 1) / area
    warnings += [m for m in (model.window_warning(w), model.density_warning(density, w)) if m]
    for m in warnings:
        log.warning(m)
    images = ("reconstruction", "confidence")
    for name in images:
        if name in target.group and not overwrite:
            raise DblinkError(f"{target.path} already has a {name}; pass --overwrite to replace it")
    target.discard_staged(images)  # left by an interrupted run
    shape = grid_shape(fov, model.bin_nm)
    chunk_maps, batch = _fitting_chunk(model, shape, chunk_maps, w // stride, n_frames // stride)
    info: dict[str, Any] = {
        "model": model.describe(),
        "fov_nm": list(fov),
        "density_per_um2": density,
        "occupied_area_um2": area,
        "confidence_density_factor": model.density_factor(density),
        "warnings": warnings,
        "confidence_kind": (
            "learned x evidence (localizations within 200 nm over +-2 maps against the "
            "background rate)"
            if evidence
            else "learned"
        ),
    }
    # written beside the old images and swapped in at the end: an interrupted run (Ctrl-C)
    # keeps the previous reconstruction whole
    for name in images:
        target.create_image(
            name,
            shape,
            "float32",
            bin_nm=model.bin_nm,
            window_frames=w,
            stride_frames=stride,
            origin_nm=origin,
            staged=True,
            **info,
        )
    had = [name for name in images if name in target.group]
    try:
        n, empty = _write_outputs(
            target,
            reconstruct_localizations(
                locs,
                model,
                fov,
                n_frames,
                stride,
                chunk_maps,
                progress,
                w,
                origin,
                density,
                evidence,
                model.density_factor(density),
                missing,
                batch,
            ),
        )
    except BaseException:
        target.discard_staged(images)
        kept = "the previous reconstruction is kept" if had else "nothing was written"
        log.warning("%s: reprocessing interrupted; %s", target.path, kept)
        raise
    target.commit_staged(images)
    if missing:
        n_gap = sum(b - a for a, b in missing)
        msg = (
            f"{n_gap} raw frames ({format_ranges(missing)}) have no localizations (unreadable "
            "or not localized): the maps over them have confidence 0"
        )
        warnings.append(msg)
        log.warning(msg)
        _set_image_attr(target, "confidence", "frames_without_input", [list(r) for r in missing])
    if empty:
        why = "had no localization" + (" or frames without input" if missing else "")
        msg = f"{empty} of {n} maps {why} in their window: confidence 0"
        warnings.append(msg)
        log.warning(msg)
        _set_image_attr(target, "confidence", "maps_without_localizations", empty)

    exports = _export_reconstruction(
        target, model.bin_nm, stride * interval, export_tiff, export_gif
    )
    return ReprocessResult(
        target.path, n, stride, time.perf_counter() - t0, exports, model.name, warnings
    )


def describe_result(res: ReprocessResult) -> dict[str, Any]:
    """JSON-able summary."""
    return {
        "output": str(res.output),
        "outputs": res.outputs,
        "stride_frames": res.stride_frames,
        "seconds": res.seconds,
        "exports": [str(p) for p in res.exports],
        "model": res.model,
        "warnings": list(res.warnings),
    }
