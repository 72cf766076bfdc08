"""Summary of a live run for headless use: one PNG and one JSON beside the recording."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dblink_live.errors import WRITE_ERRNOS, DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localizations import count_maps
from dblink_live.sim.scene import grid_shape

if TYPE_CHECKING:
    from dblink_live.pipeline import Pipeline
    from dblink_live.pipeline_types import PipelineStatus

__all__ = ["RunReport", "finish_run", "summary_paths", "write_live_summary"]

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What a finished live run left: its status, recording, summary files and scores.

    Attributes
    ----------
    status : PipelineStatus
        The final status.
    recording : Path
        The recording written.
    summary_png, summary_json : Path
        ``OUT_summary.png`` / ``OUT_summary.json`` beside it.
    summary_written : bool
        False when the disk refused the summary (said in the log; the recording is complete).
    scores : dict or None
        Scores against the ground truth (a simulated or replayed simulated run), as
        :func:`dblink_live.recon.evaluate.evaluate_recording` returns them.
    """

    status: PipelineStatus
    recording: Path
    summary_png: Path
    summary_json: Path
    summary_written: bool
    scores: dict[str, Any] | None

    def describe(self) -> str:
        """One line for the console: frames recorded, dropped and lost, outputs, scores."""
        st = self.status
        score = ""
        if self.scores:
            t1 = self.scores["reconstruction"]["tol1"]
            score = (
                f"; vs ground truth 1-bin recall {t1['recall']:.3f}, Jaccard {t1['jaccard']:.3f}"
            )
        summary = f"; summary {self.summary_png}" if self.summary_written else ""
        return (
            f"recorded {st.frames_recorded} frames ({st.dropped_frames} dropped by the live "
            f"path, {st.recorder_lost} lost by the recorder), {st.outputs} reconstructions "
            f"to {self.recording}{score}{summary}"
        )


def summary_paths(recording: str | Path) -> tuple[Path, Path]:
    """``(OUT_summary.png, OUT_summary.json)`` beside recording ``OUT.zarr``."""
    base = Path(recording).with_suffix("")
    return base.with_name(base.name + "_summary.png"), base.with_name(base.name + "_summary.json")


def _has_truth(recording: Path) -> bool:
    return Recording.open(recording).read_image("gt/skeleton") is not None


def finish_run(pipeline: Pipeline, status: PipelineStatus) -> RunReport:
    """After a live run ended (``status`` from ``pipeline.run()`` or ``wait()``): score it
    against its ground truth when it has one, write the summary figure and JSON, and return
    the report.

    Raises
    ------
    DblinkError
        when the run failed (after writing what summary it can: the recording is kept), or
        could not start at all.
    """
    from dblink_live.pipeline_types import PipelineState

    rec_path = pipeline.recording_path
    failed = status.state is PipelineState.FAILED
    if failed and pipeline.recording is None:
        raise DblinkError(f"the run could not start: {status.error}")
    png, js = summary_paths(rec_path)
    scores = None
    reconstructed = status.state is PipelineState.FINISHED and bool(status.outputs)
    if reconstructed and pipeline.model is not None and _has_truth(rec_path):
        from dblink_live.recon.evaluate import evaluate_recording

        scores = evaluate_recording(rec_path)
    written = True
    try:
        write_live_summary(rec_path, png, js, pipeline.summary, scores)
    except OSError as exc:
        if not failed and exc.errno not in WRITE_ERRNOS:
            raise
        log.warning("the summary was not written (%s)", exc.strerror or exc)
        written = False
    if failed:
        if "the run stopped" in (status.error or ""):  # the recorder's own message says it
            raise DblinkError(str(status.error))
        raise DblinkError(f"the run failed: {status.error} (recorded frames are in {rec_path})")
    return RunReport(status, rec_path, png, js, written, scores)


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
