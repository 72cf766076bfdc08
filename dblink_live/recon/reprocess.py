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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from dblink_live.config import LocalizerConfig
from dblink_live.errors import DblinkError, RecordingError
from dblink_live.io.outputs import check_writable
from dblink_live.io.recording import Recording, format_ranges
from dblink_live.localizations import Localizations, count_maps
from dblink_live.recon.data import count_maps_torch, map_scale
from dblink_live.recon.evidence import evidence, temper_confidence
from dblink_live.recon.inference import (
    LoadedModel,
    choose_recon_weights,
    load_recon_model,
    reconstruct_sequences,
)
from dblink_live.resources import (
    OFFLINE_FIXED_BYTES,
    MemoryNeed,
    format_bytes,
    offline_bytes_per_bin,
    offline_disk_bytes_per_bin,
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
Progress = Callable[[int, int, str], None]
_TABLE_SUFFIXES = {".csv", ".h5", ".hdf5", ".txt"}
#: W for ``weights="auto"`` when none is given (the shipped models' training W).
DEFAULT_WINDOW_FRAMES = 10
#: Frame interval (s) assumed for a table that does not state it (with a warning).
DEFAULT_FRAME_INTERVAL_S = 0.01


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


#: Bins of one recurrent step's maps, over the phases batched together: batching phases pays
#: while the grid is small (the step is overhead-bound: 1.5x at 128 x 128 bins and 10 phases)
#: and not once the convolutions are compute-bound (256 x 256 and up on 2 CPU cores), where
#: larger steps only cost memory (``scripts/bench_reprocess.py``).
BATCH_BINS = 10 * 128 * 128


def default_batch(shape: tuple[int, int], phases: int) -> int:
    """Phases run as one batch on a grid of ``shape`` (Y', X') bins."""
    return max(1, min(phases, BATCH_BINS // max(1, shape[0] * shape[1])))


#: Margin (nm) kept around a table's localizations on the reconstruction grid.
TABLE_MARGIN_NM = 1000.0
#: Side (nm) of the tiles that decide which area holds data.
OCCUPANCY_TILE_NM = 1000.0


def data_grid(
    locs: Localizations, bin_nm: float, margin_nm: float = TABLE_MARGIN_NM
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The grid of a table without a camera frame: its bounding box plus ``margin_nm``.

    Returns ``(origin_nm, fov_nm)``, both (x, y); the origin is a whole number of bins, so a
    table shifted by a whole number of bins reconstructs identically, shifted.
    """
    if len(locs) == 0:
        raise DblinkError("no localizations to place a grid on")
    x0 = math.floor((float(locs.x_nm.min()) - margin_nm) / bin_nm) * bin_nm
    y0 = math.floor((float(locs.y_nm.min()) - margin_nm) / bin_nm) * bin_nm
    x1 = float(locs.x_nm.max()) + margin_nm
    y1 = float(locs.y_nm.max()) + margin_nm
    return (x0, y0), (x1 - x0, y1 - y0)


def occupied_area_um2(
    locs: Localizations, fov_nm: tuple[float, float], tile_nm: float = OCCUPANCY_TILE_NM
) -> float:
    """Area (um^2) of the ``tile_nm`` tiles of ``[0, fov)`` that hold data.

    A tile holds data when it has at least a tenth of the median count of the non-empty tiles
    (and 2), so a few scattered background localizations do not make an empty margin count.
    Coordinates are relative to the grid origin.
    """
    nx = max(1, math.ceil(fov_nm[0] / tile_nm))
    ny = max(1, math.ceil(fov_nm[1] / tile_nm))
    full = fov_nm[0] * fov_nm[1] / 1e6
    if len(locs) == 0:
        return full
    ix = np.clip((locs.x_nm // tile_nm).astype(np.int64), 0, nx - 1)
    iy = np.clip((locs.y_nm // tile_nm).astype(np.int64), 0, ny - 1)
    counts = np.bincount(iy * nx + ix, minlength=nx * ny)
    nonzero = counts[counts > 0]
    held = counts >= max(2.0, 0.1 * float(np.median(nonzero)))
    if not held.any():
        return full
    return min(full, float(held.sum()) * (tile_nm / 1e3) ** 2)


def _check_stride(stride: int, window: int) -> int:
    if stride < 1 or window % stride:
        raise DblinkError(f"--stride must divide the window W={window} (e.g. 1, 2, 5, {window})")
    return window // stride


def reconstruct_localizations(
    locs: Localizations,
    model: LoadedModel,
    fov_nm: tuple[float, float],
    n_frames: int,
    stride: int | None = None,
    chunk_maps: int = 32,
    progress: Progress | None = None,
    window_frames: int | None = None,
    origin_nm: tuple[float, float] = (0.0, 0.0),
    density_per_um2: float | None = None,
    with_evidence: bool = True,
    confidence_scale: float = 1.0,
    missing_frames: Sequence[tuple[int, int]] = (),
    batch: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Yield ``(first_output_index, reconstruction, confidence)`` blocks in time order.

    ``window_frames`` overrides the model's W (the input normalization keeps the scale of the
    maps, so a model trained at W = 10 can be run at W = 20 or 40). The grid covers
    ``origin_nm + [0, fov_nm)`` (x, y). ``density_per_um2`` (localizations per um^2 per frame)
    normalizes the maps; by default it is measured over the whole field (as in training).

    The confidence is the network's, tempered by the evidence of the localizations
    (``with_evidence``; :mod:`dblink_live.recon.evidence`): a structure pixel whose
    neighbourhood holds no more localizations over the temporal context than background
    predicts loses its confidence. A map whose W frames hold no localization at all gets
    confidence 0: there is nothing to be confident about. ``confidence_scale`` multiplies the
    confidence (e.g. :meth:`LoadedModel.density_factor` for data outside the training range).
    A map whose window holds any of ``missing_frames`` (``[a, b)`` ranges of frames with no
    localization input: unreadable or never localized) gets confidence 0 too.

    Output j covers raw frames ``[j * stride, j * stride + W)``; with ``stride < W`` the
    ``W / stride`` phase sequences (each with full bidirectional context) run in batches of
    ``batch`` phases (default :func:`default_batch`: all of them on small grids, fewer on large
    ones) and their outputs are interleaved. ``chunk_maps`` counts the maps of a batch
    processed at once (``chunk_maps // batch`` of each phase); ``batch=1`` is one phase at a
    time (the path before batching; it needs the least memory).
    """
    w = window_frames or model.window_frames
    stride = w if stride is None else stride
    phases = _check_stride(stride, w)
    shape = grid_shape(fov_nm, model.bin_nm)
    if origin_nm != (0.0, 0.0):
        locs = replace(locs, x_nm=locs.x_nm - origin_nm[0], y_nm=locs.y_nm - origin_nm[1])
    if density_per_um2 is None:
        density_per_um2 = len(locs) / max(n_frames, 1) / (fov_nm[0] * fov_nm[1] / 1e6)
    scale = map_scale(density_per_um2, w, model.bin_nm)
    order = np.argsort(locs.frame, kind="stable")
    locs = locs.select(order)
    per_frame = np.bincount(locs.frame, minlength=n_frames)[:n_frames]
    cum = np.concatenate([[0], np.cumsum(per_frame)])
    gap = np.zeros(n_frames, np.int64)
    for a, b in missing_frames:
        gap[max(a, 0) : min(b, n_frames)] = 1
    cum_gap = np.concatenate([[0], np.cumsum(gap)])
    n_out = max((n_frames - w) // stride + 1, 0) if n_frames >= w else 0
    if n_out == 0:
        raise DblinkError(f"{n_frames} frames are fewer than one window of W={w} frames")

    def phase_maps(phase: int, start: int, stop: int) -> np.ndarray | torch.Tensor:
        first = phase * stride
        lo, hi = np.searchsorted(locs.frame, [first + start * w, first + stop * w])
        part = locs.select(np.arange(lo, hi))
        if model.device.type == "cuda":  # bin on the GPU, next to the model
            return (
                count_maps_torch(
                    part, model.bin_nm, shape, w, stop - start, first + start * w, model.device
                )
                / scale
            )
        return count_maps(part, model.bin_nm, shape, w, stop - start, first + start * w) / scale

    def maps_for(group: range) -> Callable[[int, int], np.ndarray | torch.Tensor]:
        def get(start: int, stop: int) -> np.ndarray | torch.Tensor:
            parts = [phase_maps(p, start, stop) for p in group]
            # phase_maps bins every phase on the same device: all tensors or all arrays
            if torch.is_tensor(parts[0]):
                return torch.stack(cast(list[torch.Tensor], parts))
            return np.stack(cast(list[np.ndarray], parts))

        return get

    lengths = [(n_frames - p * stride) // w for p in range(phases)]
    size = default_batch(shape, phases) if batch is None else max(1, min(batch, phases))
    per_phase = max(1, chunk_maps // size)
    groups = [range(g, min(g + size, phases)) for g in range(0, phases, size)]
    done = [0]
    total_steps = sum(2 * math.ceil(lengths[g[0]] / per_phase) for g in groups)

    def step(_d: int, _t: int, stage: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total_steps, stage)

    # the phases of a group run as one batch (one recurrent step per map index for all of
    # them); groups, when memory asks for more than one, run side by side and interleave
    gens = [
        reconstruct_sequences(model.model, maps_for(g), [lengths[p] for p in g], per_phase, step)
        for g in groups
    ]
    pending: list[list[tuple[np.ndarray, np.ndarray | None]]] = [[] for _ in range(phases)]
    next_out = 0
    while next_out < n_out:
        for g, gen in zip(groups, gens, strict=True):
            if not pending[g[0]]:
                item = next(gen, None)
                if item is not None:
                    _, rec, conf = item
                    for row, p in enumerate(g):
                        n_p = max(0, min(rec.shape[1], lengths[p] - item[0]))
                        pending[p].extend(
                            (rec[row, i], None if conf is None else conf[row, i])
                            for i in range(n_p)
                        )
        # interleave while every phase has its next map ready
        recs, confs = [], []
        while next_out < n_out and pending[next_out % phases]:
            r, c = pending[next_out % phases].pop(0)
            recs.append(r)
            confs.append(c)
            next_out += 1
        if recs:
            first_out = next_out - len(recs)
            # the model gives every map a confidence or none (conf is None for all phases)
            conf_block = None if confs[0] is None else np.stack(cast(list[np.ndarray], confs))
            recon_block = np.stack(recs)
            if conf_block is not None:
                if with_evidence:
                    ev = evidence(locs, recon_block, model.bin_nm, first_out, stride, w, n_frames)
                    conf_block = temper_confidence(conf_block, recon_block, ev)
                starts = (first_out + np.arange(len(recs))) * stride
                ends = np.minimum(starts + w, n_frames)
                empty = cum[ends] == cum[starts]
                conf_block[empty | (cum_gap[ends] > cum_gap[starts])] = 0.0
                if confidence_scale != 1.0:
                    conf_block *= np.float32(confidence_scale)
            yield first_out, recon_block, conf_block
        elif all(not pq for pq in pending):
            break


def _open_localizations(
    input_path: Path,
    pixel_size_nm: float | None,
    localizer: LocalizerConfig | None,
    device: str,
    progress: Progress | None,
) -> tuple[
    Localizations,
    tuple[float, float] | None,
    int,
    float | None,
    Recording | None,
    list[tuple[int, int]],
]:
    """(localizations, camera field (x, y nm) or None for a table, frames, frame interval (s)
    or None when unknown, the recording, frame ranges still without localization input)."""
    if input_path.suffix.lower() in _TABLE_SUFFIXES:
        from dblink_live.io.tables import read_localizations

        locs = read_localizations(input_path, pixel_size_nm=pixel_size_nm)
        if len(locs) == 0:
            raise DblinkError(f"{input_path} holds no localizations")
        return locs, None, locs.n_frames, None, None, []
    rec = Recording.open(input_path)
    if rec.n_localizations == 0:
        if rec.n_frames == 0:
            raise DblinkError(f"{input_path} has neither frames nor localizations")
        log.info("%s has no localizations yet: localizing first", input_path)
        from dblink_live.localize.run import localize

        localize(input_path, config=localizer, device=device, progress=progress)
        rec = Recording.open(input_path)
    locs = rec.read_localizations()
    missing = rec.unlocalized_frames() if rec.n_frames else []
    if missing:
        # never reconstruct from frames nobody localized (dropped live, or a killed run)
        from dblink_live.localize.run import localize_missing

        n_missing = sum(b - a for a, b in missing)
        log.warning(
            "%s: %d of %d frames were never localized (dropped by the live path or not reached):"
            " localizing them first",
            input_path.name,
            n_missing,
            rec.n_frames,
        )
        extra, done = localize_missing(rec, missing, localizer, device, progress)
        try:
            writable = Recording.open(input_path, mode="r+")
            writable.append_localizations(extra)
            for a, b in done:
                writable.mark_localized(a, b)
        except (OSError, DblinkError) as exc:  # read-only input: use them without storing
            log.warning("%s: could not store them (%s); used for this run only", input_path, exc)
        locs = Localizations.concatenate([locs, extra])
        locs.n_frames = rec.n_frames
        missing = _subtract(missing, done)
    if rec.n_frames == 0:  # made from a table: no camera field, the data decide the grid
        n = max(locs.n_frames, int(rec.meta.get("table_frames") or 0))
        return locs, None, n, rec.frame_interval_s, rec, []
    h, w = rec.frame_shape
    fov = (w * rec.pixel_size_nm, h * rec.pixel_size_nm)
    return locs, fov, rec.n_frames, rec.frame_interval_s, rec, list(missing or [])


def _subtract(
    ranges: Sequence[tuple[int, int]], done: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of ``ranges`` not covered by ``done`` (both ``[a, b)`` frame ranges)."""
    out = []
    for a, b in ranges:
        at = a
        for c, d in sorted(done):
            if d <= at or c >= b:
                continue
            if c > at:
                out.append((at, c))
            at = max(at, d)
        if at < b:
            out.append((at, b))
    return out


def _table_metadata_warning(
    path: Path, locs: Localizations, pixel_size_nm: float | None, interval_s: float | None
) -> str | None:
    """One line naming what a table does not say and what was assumed for it."""
    missing = []
    if interval_s is None:
        missing.append(
            f"the frame interval ({DEFAULT_FRAME_INTERVAL_S * 1e3:g} ms assumed for the time "
            "axis; give --frame-interval-s)"
        )
    if pixel_size_nm is None and locs.pixel_size_nm == Localizations.empty().pixel_size_nm:
        missing.append(
            f"the camera pixel size ({locs.pixel_size_nm:g} nm assumed; it only sizes the drawn "
            "field; give --pixel-size-nm)"
        )
    if not missing:
        return None
    return f"{path.name} does not state " + " nor ".join(missing)


def _fitting_chunk(
    model: LoadedModel, shape: tuple[int, int], chunk_maps: int, phases: int, n_maps: int
) -> tuple[int, int]:
    """``(chunk_maps, phases per batch)``: :func:`default_batch` phases in one batch and
    ``chunk_maps`` maps a step, lowered until the reconstruction fits in memory (first the maps
    a step, then the phases a batch; said); one clear error if even one map at a time does not
    fit, or the backward features do not fit on disk."""
    import shutil
    import tempfile

    h, device = model.model.hidden_channels, str(model.device)

    def need(chunk: int, size: int) -> MemoryNeed:
        per_bin = offline_bytes_per_bin(h, size * max(1, chunk // size), size)
        return MemoryNeed(
            "offline reconstruction", shape, model.bin_nm, per_bin, OFFLINE_FIXED_BYTES
        )

    chunk, size = max(chunk_maps, 1), default_batch(shape, phases)
    while chunk > size and not need(chunk, size).fits(device):
        chunk = max(size, chunk // 2)
    while size > 1 and not need(chunk, size).fits(device):
        size = math.ceil(size / 2)
        chunk = size
    while chunk > 1 and not need(chunk, size).fits(device):
        chunk = max(1, chunk // 2)
    need(chunk, size).check(
        device,
        advice="reconstruct a smaller region (crop the table or the recording) or use a GPU "
        "with more memory",
    )
    if chunk < chunk_maps or size < default_batch(shape, phases):
        log.warning(
            "maps a step lowered from %d to %d%s so that a %d x %d grid fits in memory",
            chunk_maps,
            chunk,
            f" and phases a batch from {default_batch(shape, phases)} to {size}"
            if size < default_batch(shape, phases)
            else "",
            *shape,
        )
    tmp = tempfile.gettempdir()
    disk = offline_disk_bytes_per_bin(h, n_maps) * shape[0] * shape[1]
    free = shutil.disk_usage(tmp).free
    if disk > 0.9 * free:
        raise DblinkError(
            f"the backward pass keeps {format_bytes(disk)} of features on disk in {tmp}, and "
            f"{format_bytes(free)} is free there: set TMPDIR to a disk with more space"
        )
    return chunk, size


def _write_outputs(
    target: Recording, blocks: Iterable[tuple[int, np.ndarray, np.ndarray | None]]
) -> tuple[int, int]:
    """Append reconstruction and confidence blocks to the staged images; returns (maps
    written, maps with no localization in their window)."""
    n = empty = 0
    for _, recon, conf in blocks:
        target.append_image("reconstruction", recon, staged=True)
        if conf is not None:
            target.append_image("confidence", conf, staged=True)
            empty += int((conf.reshape(len(conf), -1).max(axis=1) == 0).sum())
        n += len(recon)
    return n, empty


def _set_image_attr(target: Recording, name: str, key: str, value: Any) -> None:
    """Set ``attrs[key]`` of image ``name`` just written (RecordingError if it is not there)."""
    arr = target.image_array(name)
    if arr is None:
        raise RecordingError(f"{target.path} has no {name} after writing it")
    arr.attrs[key] = value


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

    exports: list[Path] = []
    if export_tiff or export_gif:
        written = target.read_image("reconstruction")
        if written is None:
            raise RecordingError(f"{target.path} has no reconstruction after writing it")
        data = written[0]
        base = target.path.with_suffix("")
        if export_tiff:
            exports.append(
                export_tiff_stack(
                    data,
                    base.with_name(base.name + "_reconstruction.tif"),
                    model.bin_nm,
                    stride * interval,
                )
            )
        if export_gif:
            exports.append(
                export_gif_preview(
                    data, base.with_name(base.name + "_preview.gif"), stride * interval
                )
            )
    return ReprocessResult(
        target.path, n, stride, time.perf_counter() - t0, exports, model.name, warnings
    )


def export_tiff_stack(data: np.ndarray, path: Path, bin_nm: float, interval_s: float) -> Path:
    """(T', Y', X') float32 stack as an ImageJ TIFF with the pixel size (um) and frame interval."""
    import tifffile

    tifffile.imwrite(
        path,
        data.astype(np.float32)[:, None, None],
        imagej=True,
        resolution=(1e3 / bin_nm, 1e3 / bin_nm),
        metadata={"axes": "TZCYX", "unit": "um", "finterval": interval_s},
    )
    return path


def export_gif_preview(
    data: np.ndarray, path: Path, interval_s: float, max_side: int = 512
) -> Path:
    """An 8-bit GIF of the reconstruction (each frame min-max scaled), real-time or >= 50 ms."""
    from PIL import Image

    frames = []
    for img in data:
        lo, hi = float(img.min()), float(img.max())
        u8 = ((img - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8)
        im = Image.fromarray(u8)
        if max(im.size) > max_side:
            im = im.resize(
                (max_side * im.size[0] // max(im.size), max_side * im.size[1] // max(im.size))
            )
        frames.append(im)
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        loop=0,
        duration=max(50, int(interval_s * 1000)),
    )
    return path


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
