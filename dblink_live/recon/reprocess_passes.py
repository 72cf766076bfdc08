"""The inference passes of ``dblink-live reprocess``: localizations binned into maps for every
phase of the output stride, run through the ConvBiLSTM in batches of phases, tempered by the
evidence and interleaved in time order; and the maps a step and phases a batch that fit in
memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import cast

import numpy as np
import torch

from dblink_live.errors import DblinkError
from dblink_live.localizations import Localizations, count_maps
from dblink_live.recon.data import count_maps_torch, map_scale
from dblink_live.recon.evidence import evidence, temper_confidence
from dblink_live.recon.inference import LoadedModel, Progress, reconstruct_sequences
from dblink_live.resources import (
    OFFLINE_FIXED_BYTES,
    MemoryNeed,
    format_bytes,
    offline_bytes_per_bin,
    offline_disk_bytes_per_bin,
)
from dblink_live.sim.scene import grid_shape

__all__ = ["BATCH_BINS", "default_batch", "reconstruct_localizations"]

log = logging.getLogger(__name__)


#: Bins of one recurrent step's maps, over the phases batched together: batching phases pays
#: while the grid is small (the step is overhead-bound: 1.5x at 128 x 128 bins and 10 phases)
#: and not once the convolutions are compute-bound (256 x 256 and up on 2 CPU cores), where
#: larger steps only cost memory (``scripts/bench_reprocess.py``).
BATCH_BINS = 10 * 128 * 128


def default_batch(shape: tuple[int, int], phases: int) -> int:
    """Phases run as one batch on a grid of ``shape`` (Y', X') bins."""
    return max(1, min(phases, BATCH_BINS // max(1, shape[0] * shape[1])))


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
