"""Summary of a live run for headless use: one PNG and one JSON beside the recording."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.io.recording import Recording
from dblink_live.localizations import count_maps
from dblink_live.sim.scene import grid_shape

__all__ = ["write_live_summary"]


def _clip(img: np.ndarray, pct: float = 99.5) -> tuple[float, float]:
    hi = float(np.percentile(img, pct)) if img.size else 1.0
    return float(img.min()) if img.size else 0.0, hi if hi > 0 else 1.0


def write_live_summary(
    recording: str | Path,
    png: str | Path,
    json_path: str | Path,
    summary: dict[str, Any],
    scores: dict[str, Any] | None = None,
) -> None:
    """Write a figure (newest raw frame, static SMLM render of the whole run, the last
    reconstruction, its confidence and, for a simulation, the ground truth) and a JSON with the
    run's counters (``summary``) and ``scores`` against ground truth when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = Recording.open(recording)
    panels: list[tuple[str, np.ndarray, str, tuple[float, float] | None]] = []
    if rec.n_frames:
        raw = rec.read_frames(rec.n_frames - 1, rec.n_frames)[0].astype(np.float32)
        panels.append((f"raw frame {rec.n_frames - 1}", raw, "gray", _clip(raw)))
    recon = rec.read_image("reconstruction")
    bin_nm = float(recon[1]["bin_nm"]) if recon is not None else 40.0
    locs = rec.read_localizations()
    if len(locs):
        fov = (rec.frame_shape[1] * rec.pixel_size_nm, rec.frame_shape[0] * rec.pixel_size_nm)
        render = count_maps(locs, bin_nm, grid_shape(fov, bin_nm), max(rec.n_frames, 1))[0]
        panels.append((f"static SMLM, all {rec.n_frames} frames", render, "hot", _clip(render)))
    if recon is not None and len(recon[0]):
        k = len(recon[0]) - 1
        panels.append((f"DBlink reconstruction {k}", recon[0][k], "hot", (0.0, 1.0)))
        conf = rec.read_image("confidence")
        if conf is not None and len(conf[0]) > k:
            panels.append(("confidence", conf[0][k], "viridis", (0.0, 1.0)))
        gt = rec.read_image("gt/structure")
        if gt is not None and len(gt[0]) > k:
            panels.append(("ground truth", gt[0][k], "gray", (0.0, 1.0)))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.2 * max(len(panels), 1), 3.8))
    axes = np.atleast_1d(axes)
    for ax, (title, img, cmap, lim) in zip(axes, panels, strict=False):
        ax.imshow(img, cmap=cmap, vmin=lim[0] if lim else None, vmax=lim[1] if lim else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    line = (
        f"{summary.get('frames_recorded', 0)} frames recorded, "
        f"{summary.get('dropped_frames', 0)} dropped by the live path, "
        f"{summary.get('outputs', 0)} reconstructions"
    )
    if scores:
        r = scores["reconstruction"]["tol1"]
        line += f"; 1-bin recall {r['recall']:.3f}, Jaccard {r['jaccard']:.3f}"
    fig.suptitle(f"{Path(recording).name}: {line}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    report = {"recording": str(recording), "summary": summary}
    if scores is not None:
        report["scores"] = scores
    Path(json_path).write_text(json.dumps(report, indent=2, default=float))
