"""``dblink-live evaluate``: score a reconstruction against simulated ground truth.

Definitions (the DBlink reference code's): each frame is min-max normalized and thresholded at
100/255; pixel recall, false-positive rate over background pixels ("hallucination"), precision
and Jaccard at 0 and 1 bin tolerance (:func:`dblink_live.metrics.score_reconstruction`), averaged
over frames. Baselines: "static SMLM", the localizations accumulated over W and over 10 W frames
centred on each output, thresholded the same way. Confidence: among predicted structure pixels,
the hallucination rate (fraction farther than 1 bin from the truth) in the lowest and highest
confidence quartiles. Also temporal consistency, FRC resolution (two reconstructions from
alternating blocks of W frames, 1/7 threshold) and decorrelation resolution.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localizations import count_maps
from dblink_live.metrics import (
    binarize,
    decorrelation_resolution,
    frc_resolution,
    score_reconstruction,
    temporal_consistency,
)

__all__ = ["confidence_quartiles", "evaluate_recording", "static_baseline"]

log = logging.getLogger(__name__)


def static_baseline(
    locs, shape: tuple[int, int], bin_nm: float, window: int, span: int, starts: np.ndarray
) -> np.ndarray:
    """Localizations accumulated over ``span`` frames centred on each window ``[s, s + W)``."""
    out = np.zeros((len(starts), *shape), np.float32)
    for i, s in enumerate(starts):
        first = int(s + window / 2 - span / 2)
        out[i] = count_maps(locs, bin_nm, shape, span, 1, first)[0]
    return out


def confidence_quartiles(
    pred: np.ndarray, confidence: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    """Hallucination rate of predicted pixels per confidence quartile (1-bin tolerance)."""
    from scipy.ndimage import binary_dilation

    near = binary_dilation(truth, structure=np.ones((1, 3, 3), bool))
    c = confidence[pred]
    wrong = ~near[pred]
    if len(c) < 8:
        return {"quartile_hallucination": [], "ratio_low_high": float("nan")}
    edges = np.quantile(c, [0, 0.25, 0.5, 0.75, 1.0])
    q = np.clip(np.searchsorted(edges[1:-1], c, side="right"), 0, 3)
    rates = [float(wrong[q == k].mean()) if np.any(q == k) else float("nan") for k in range(4)]
    ratio = rates[0] / rates[3] if rates[3] > 0 else float("inf")
    return {
        "quartile_hallucination": rates,
        "quartile_edges": edges.tolist(),
        "ratio_low_high": ratio,
    }


def _scores(pred_bin: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    return {f"tol{t}": score_reconstruction(pred_bin, truth, t).to_dict() for t in (0, 1)}


def _offset(
    image: tuple[np.ndarray, dict[str, Any]], origin_nm: tuple[float, float], bin_nm: float
) -> tuple[int, int]:
    """(row, col) of the bin at ``origin_nm`` (x, y) in a ground-truth image (same bin)."""
    gx, gy = (float(v) for v in image[1].get("origin_nm") or (0.0, 0.0))
    return round((origin_nm[1] - gy) / bin_nm), round((origin_nm[0] - gx) / bin_nm)


def _covers(
    image: tuple[np.ndarray, dict[str, Any]],
    origin_nm: tuple[float, float],
    shape_yx: tuple[int, ...],
    bin_nm: float,
) -> bool:
    """Whether a ground-truth image covers the grid of ``shape_yx`` bins at ``origin_nm``."""
    i0, j0 = _offset(image, origin_nm, bin_nm)
    data = image[0]
    return (
        i0 >= 0
        and j0 >= 0
        and i0 + shape_yx[0] <= data.shape[1]
        and (j0 + shape_yx[1] <= data.shape[2])
    )


def _crop_to(
    image: tuple[np.ndarray, dict[str, Any]],
    origin_nm: tuple[float, float],
    shape_yx: tuple[int, ...],
    bin_nm: float,
    path: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The part of a ground-truth image (same bin) under a grid of ``shape_yx`` bins whose
    corner is at ``origin_nm`` (x, y)."""
    data, attrs = image
    i0, j0 = _offset(image, origin_nm, bin_nm)
    ny, nx = int(shape_yx[0]), int(shape_yx[1])
    if (i0, j0) == (0, 0) and data.shape[1:] == (ny, nx):
        return image
    if not _covers(image, origin_nm, shape_yx, bin_nm):
        raise DblinkError(
            f"{path}: the reconstruction's grid ({nx}x{ny} bins at {origin_nm} nm) is not "
            "inside its ground truth's"
        )
    return data[:, i0 : i0 + ny, j0 : j0 + nx], attrs


def _truth_on_grid(
    rec: Recording,
    stored: tuple[np.ndarray, dict[str, Any]] | None,
    bin_nm: float,
    w: int,
    region_nm: tuple[float, float, float, float] | None = None,
) -> tuple[tuple[np.ndarray, dict[str, Any]], tuple[np.ndarray, dict[str, Any]]]:
    """Ground truth (skeleton, structure) redrawn from the stored simulation on another grid,
    or when the maps were never stored (``stored`` None: a run killed before they were drawn),
    over ``region_nm`` (x, y, width, height in nm: the reconstruction's own grid; None: the
    whole field); stored maps of a region (a live run's) are checked on their own region.

    The scene is rebuilt from the recording's config and seed; it must redraw the stored
    ground-truth map 0 exactly (or, without stored maps, the stored true emitters of the first
    frames), else the recording cannot be trusted for this and it says so.
    """
    from dblink_live.config import config_from_dict
    from dblink_live.sim.scene import Scene

    if stored is None:
        where = f"{rec.path}: its ground-truth maps were never drawn (the run was killed)"
    else:
        attrs = stored[1]
        where = (
            f"{rec.path}: its ground truth is on a {attrs['bin_nm']:g} nm grid at "
            f"W={attrs['window_frames']}, the reconstruction on {bin_nm:g} nm at W={w}"
        )
    if not rec.meta.get("simulated") or rec.config is None:
        raise DblinkError(f"{where}, and the simulation cannot be redrawn; simulate with that W")
    cfg = config_from_dict(rec.config)
    stored_sim = rec.meta.get("simulation") or {}
    seed = stored_sim.get("seed", cfg.simulation.seed)
    n_sim = int(stored_sim.get("n_frames", cfg.simulation.n_frames))  # a demo's own length
    scene = Scene(cfg.simulation, n_frames=n_sim, seed=seed)
    if stored is not None:
        data, attrs = stored
        stored_bin = float(attrs["bin_nm"])
        same = cfg.grid.model_copy(
            update={"bin_nm": stored_bin, "window_frames": int(attrs["window_frames"])}
        )
        ox, oy = (float(v) for v in attrs.get("origin_nm") or (0.0, 0.0))
        own = (ox, oy, data.shape[2] * stored_bin, data.shape[1] * stored_bin)
        own_region = own if (ox, oy) != (0.0, 0.0) else None
        redrawn0 = scene.ground_truth_maps(same, 0, 1, own_region)[1][0] if len(data) else None
        if redrawn0 is not None and not np.array_equal(redrawn0, data[0]):
            raise DblinkError(f"{where}, and redrawing it does not reproduce the stored one")
    else:
        kept = rec.read_emitters()
        assert kept is not None
        covered = rec.group["gt/emitters"].attrs.get("frames_covered", 0)
        probe = min(int(cast(int, covered)), 100)
        drawn = scene.emitters(0, probe)
        ref = kept.select(np.flatnonzero(kept.frame < probe))
        same_emitters = len(drawn) == len(ref) and np.allclose(drawn.x_nm, ref.x_nm)
        if probe == 0 or not same_emitters:
            raise DblinkError(f"{where}, and redrawing the simulation does not reproduce it")
    grid = cfg.grid.model_copy(update={"bin_nm": bin_nm, "window_frames": w})
    n = rec.n_frames // w
    log.info("ground truth redrawn from the simulation for %d maps at W=%d", n, w)
    _, skel, struct = scene.ground_truth_maps(grid, 0, n, region_nm)
    meta: dict[str, Any] = {"bin_nm": bin_nm, "window_frames": w, "redrawn": True}
    if region_nm is not None:
        meta["origin_nm"] = [region_nm[0], region_nm[1]]
    return (skel, meta), (struct, dict(meta))


def evaluate_recording(
    path: str | Path,
    *,
    output: str | Path | None = None,
    figure: str | Path | None = None,
    weights: str | None = None,
    frc: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Score the reconstruction of a simulated recording; returns (and writes) a JSON report.

    Ground truth: ``gt/skeleton`` (thin) or, for a model trained on the width-true target,
    ``gt/structure`` covered > 50 %. With ``frc``, two more reconstructions are made from the
    even and odd blocks of W frames (needs ``weights`` or the model named in the recording).
    """
    rec = Recording.open(path)
    recon = rec.read_image("reconstruction")
    if recon is None:
        raise DblinkError(f"{path} has no reconstruction: run `dblink-live reprocess {path}` first")
    data, attrs = recon
    conf = rec.read_image("confidence")
    skel = rec.read_image("gt/skeleton")
    struct = rec.read_image("gt/structure")
    bin_nm = float(attrs["bin_nm"])
    w = int(attrs["window_frames"])
    stride = int(attrs["stride_frames"])
    # the reconstruction's own grid: a region reconstructed live (``live.recon_roi``) has its
    # corner there, and the localizations are taken relative to it
    ox, oy = (float(v) for v in attrs.get("origin_nm") or (0.0, 0.0))
    region = (ox, oy, data.shape[2] * bin_nm, data.shape[1] * bin_nm)
    if skel is None or struct is None:
        if rec.read_emitters() is None:
            raise DblinkError(
                f"{path} has no ground truth (gt/skeleton): evaluate needs a simulation"
            )
        # a simulated run killed before its ground-truth maps were drawn: redraw them
        skel, struct = _truth_on_grid(rec, None, bin_nm, w, region)
    elif abs(float(skel[1]["bin_nm"]) - bin_nm) > 1e-6 or int(skel[1]["window_frames"]) != w:
        # e.g. reprocessed at W = 40 a simulation recorded with W = 10 ground truth
        skel, struct = _truth_on_grid(rec, skel, bin_nm, w, region)
    elif not _covers(skel, (ox, oy), data.shape[1:], bin_nm):
        # e.g. the full frame reprocessed after a live run that drew the truth of its region
        skel, struct = _truth_on_grid(rec, skel, bin_nm, w, region)
    # the ground truth of a larger field, cropped to the reconstruction's
    skel = _crop_to(skel, (ox, oy), data.shape[1:], bin_nm, path)
    struct = _crop_to(struct, (ox, oy), data.shape[1:], bin_nm, path)
    model = attrs.get("model", {})
    target = model.get("target") or (
        "structure" if model.get("structure") == "mitochondria" else "skeleton"
    )
    # outputs that coincide with ground-truth maps: j * stride == k * W; maps the live path
    # skipped (empty, confidence 0: see the latency budget) are not scored
    step = w // stride
    # a run killed between writing a map's reconstruction and its confidence holds one more
    # of the first: score the maps that have both
    n = min(len(data[::step]), len(skel[0]))
    if conf is not None:
        n = min(n, len(conf[0][::step]))
    skipped = (
        {int(k) for k in attrs.get("skipped_maps") or [] if int(k) < n} if step == 1 else set()
    )
    keep = np.array([k for k in range(n) if k not in skipped], dtype=np.int64)
    if len(keep) == 0:
        raise DblinkError(f"{path}: every map was skipped by the live path; `reprocess` it")
    pred = data[::step][:n][keep]
    truth = (skel[0][:n] > 0) if target == "skeleton" else (struct[0][:n] > 0.5)
    truth = truth[keep]
    conf_kept = None if conf is None else conf[0][::step][:n][keep]
    n = len(keep)
    pred_bin = binarize(pred)
    starts = keep * w
    locs = rec.read_localizations()
    if ox or oy:
        locs = replace(locs, x_nm=locs.x_nm - np.float32(ox), y_nm=locs.y_nm - np.float32(oy))
    shape = pred.shape[1:]
    report: dict[str, Any] = {
        "recording": str(path),
        "maps": n,
        "skipped_maps": len(skipped),
        "bin_nm": bin_nm,
        "window_frames": w,
        "target": target,
        "model": model,
        "reconstruction": _scores(pred_bin, truth),
        "temporal_consistency": temporal_consistency(pred),
        "decorrelation_resolution_nm": float(
            np.median([decorrelation_resolution(p, bin_nm) for p in pred[:: max(1, n // 10)]])
        ),
        "baselines": {},
    }
    for label, span in (("static_W", w), ("static_10W", 10 * w)):
        base = static_baseline(locs, shape, bin_nm, w, span, starts)
        report["baselines"][label] = {
            **_scores(binarize(base), truth),
            "temporal_consistency": temporal_consistency(base),
        }
    if conf_kept is not None:  # None exactly when there is no confidence image
        report["confidence"] = confidence_quartiles(pred_bin, conf_kept, truth)
    if frc:
        report["frc_resolution_nm"] = _frc(
            rec, locs, weights or model.get("name"), w, bin_nm, shape, n, device
        )
    if figure is not None:
        _figure(
            figure,
            locs,
            pred,
            conf_kept,
            truth,
            pred_bin,
            bin_nm,
            w,
            shape,
        )
        report["figure"] = str(figure)
    if output is not None:
        Path(output).write_text(json.dumps(report, indent=2))
    return report


def _frc(
    rec: Recording, locs, weights: str | None, w: int, bin_nm: float, shape, n: int, device: str
) -> float:
    """FRC between reconstructions of the even and odd W-frame blocks (each at 2W per map)."""
    from dblink_live.recon.inference import load_recon_model
    from dblink_live.recon.resolution import alternating_block_reconstructions

    if not weights:
        raise DblinkError("FRC needs the model: pass --weights")
    model = load_recon_model(weights, device)
    fov = (shape[1] * bin_nm, shape[0] * bin_nm)
    halves = alternating_block_reconstructions(locs, model, fov, rec.n_frames, w)
    m = len(halves[0])
    res = [frc_resolution(halves[0][i], halves[1][i], bin_nm) for i in range(0, m, max(1, m // 10))]
    return float(np.median(res))


def _figure(path, locs, pred, conf, truth, pred_bin, bin_nm, w, shape) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i = len(pred) // 2
    counts = count_maps(locs, bin_nm, shape, w, 1, i * w)[0]
    fig, ax = plt.subplots(1, 5, figsize=(20, 4.4))
    panels = [
        (counts, f"input: localizations, W={w}", "gray"),
        (pred[i], "reconstruction", "magma"),
        (conf[i] if conf is not None else np.zeros(shape), "confidence", "viridis"),
        (truth[i], "ground truth", "gray"),
    ]
    for a, (img, title, cmap) in zip(ax, panels, strict=False):
        a.imshow(img, cmap=cmap)
        a.set_title(title)
    err = np.zeros((*shape, 3))
    err[..., 1] = pred_bin[i] & truth[i]
    err[..., 0] = pred_bin[i] & ~truth[i]
    err[..., 2] = truth[i] & ~pred_bin[i]
    ax[4].imshow(err)
    ax[4].set_title("error: green TP, red FP, blue FN")
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
