"""What a live run says about itself: its warnings while it runs, its summary at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dblink_live import __version__
from dblink_live.io.recorder import Recorder
from dblink_live.io.ring import FrameRing
from dblink_live.live.budget import LatencyBudget
from dblink_live.live.stats import LiveCounters
from dblink_live.pipeline_types import PipelineState, PipelineStatus
from dblink_live.recon.inference import LoadedModel

__all__ = ["live_status", "live_summary", "live_warnings"]


def live_status(
    state: PipelineState,
    elapsed_s: float,
    counters: LiveCounters,
    ring: FrameRing | None,
    recorder: Recorder | None,
    area_um2: float,
    device: str,
    delay_maps: int,
    warnings: Callable[[float], list[str]],
    error: str | None,
) -> PipelineStatus:
    """A snapshot of a run (see :class:`~dblink_live.pipeline_types.PipelineStatus`);
    ``area_um2`` is the camera frame's area (the density's), ``warnings(density)`` gives the
    warnings for the density measured now (localizations per um^2 per frame)."""
    c = counters
    lat = np.sort(c.latencies())
    per_frame = c.locs_per_frame()
    density = per_frame / area_um2 if area_um2 else 0.0
    frames_in = ring.frames_put if ring is not None else 0
    outputs, maps_in, last_end = c.outputs_so_far()
    return PipelineStatus(
        state=state,
        elapsed_s=elapsed_s,
        frames_in=frames_in,
        frames_recorded=recorder.frames_written if recorder is not None else 0,
        frames_localized=c.frames_localized,
        maps_in=maps_in,
        outputs=outputs,
        input_fps=c.in_rate.rate(),
        localizer_fps=c.loc_rate.rate(),
        maps_per_s=c.map_rate.rate(),
        lag_frames=max(0, frames_in - last_end) if outputs else frames_in,
        lag_s=float(lat[len(lat) // 2]) if len(lat) else 0.0,
        dropped_frames=c.dropped_frames,
        skipped_maps=len(c.skipped_maps),
        bad_frames=ring.bad_frames if ring is not None else 0,
        recorder_lost=recorder.lost_frames if recorder is not None else 0,
        recorder_backlog=recorder.backlog if recorder is not None else 0,
        ring_fill=ring.fill() if ring is not None else 0.0,
        locs_per_frame=per_frame,
        density_per_um2=density,
        device=device,
        delay_maps=delay_maps,
        warnings=tuple(warnings(density)),
        error=error,
    )


def live_warnings(
    counters: LiveCounters,
    budget: LatencyBudget,
    window: int,
    recorder: Recorder | None,
    ring: FrameRing | None,
    model: LoadedModel | None,
    density_per_um2: float,
    notes: list[str | None],
) -> list[str]:
    """The run's warnings now: skipped maps and dropped frames, the recorder's losses and
    backlog, rejected frames, ``notes`` (the localizer's yield check, the model's window and
    the reconstructed region, said at start-up; None skipped), and a density outside the
    model's training range (measured ``density_per_um2``: localizations per um^2 per frame)."""
    out = []
    skipped = len(counters.skipped_maps)
    if skipped:
        out.append(
            f"{skipped} maps skipped to stay within {budget.seconds:.1f} s of the camera (their "
            "frames are in the recording; `reprocess` reconstructs them)"
        )
    if counters.dropped_frames > skipped * window:
        out.append(
            f"{counters.dropped_frames} frames dropped by the live path (all are in the recording)"
        )
    if recorder is not None and recorder.lost_frames:
        out.append(f"the recorder lost {recorder.lost_frames} frames")
    if recorder is not None and recorder.backlog > 1000:
        out.append(f"{recorder.backlog} frames wait in memory for the disk")
    bad = ring.bad_frames if ring is not None else 0
    if bad:
        out.append(f"{bad} frames rejected (wrong shape or dtype)")
    out.extend(n for n in notes if n)
    if model is not None and counters.frames_localized > 5 * window and density_per_um2 > 0:
        msg = model.density_warning(density_per_um2, window)
        if msg:
            out.append(msg)
    return out


def live_summary(
    status: PipelineStatus,
    counters: LiveCounters,
    budget: LatencyBudget,
    recorder: Recorder | None,
    recon_roi_px: tuple[int, int, int, int],
) -> dict[str, Any]:
    """The ``live_summary`` a run writes into its recording (and the CLI's summary JSON):
    frames in, recorded, localized, dropped; maps skipped; latency p50/p99 (s) overall and by
    third of the run (did it fall further behind?); busy seconds per worker."""
    lat = counters.latencies()
    return {
        "frames_in": status.frames_in,
        "frames_recorded": status.frames_recorded,
        "frames_localized": status.frames_localized,
        "dropped_frames": status.dropped_frames,
        "skipped_maps": status.skipped_maps,
        "latency_budget_s": budget.summary_s(),
        "bad_frames": status.bad_frames,
        "recorder_lost": status.recorder_lost,
        "recorder_max_backlog": recorder.cursor.max_backlog if recorder else 0,
        "outputs": status.outputs,
        "busy_s": {k: round(v, 3) for k, v in counters.busy_s.items()},
        "delay_maps": status.delay_maps,
        "recon_roi_px": list(recon_roi_px),
        "latency_s": {
            "p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99": float(np.percentile(lat, 99)) if len(lat) else None,
            "p50_by_third": (
                [float(np.median(part)) for part in np.array_split(lat, 3)]
                if len(lat) >= 3
                else None
            ),
        },
        "elapsed_s": status.elapsed_s,
        "device": status.device,
        "error": status.error,
        "package_version": __version__,
    }
