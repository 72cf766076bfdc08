"""Turn a :class:`~dblink_live.pipeline_types.PipelineStatus` into status-bar text (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

from dblink_live.pipeline_types import PipelineState, PipelineStatus

__all__ = ["StatusText", "status_text"]


@dataclass(frozen=True)
class StatusText:
    """What the status bar shows.

    Attributes
    ----------
    fields
        Ordered (key, text) pairs: state, input, processing, lag, dropped, density, device.
    errors
        Problems that lose data or stop the run (recorder lost frames, pipeline failed).
    warnings
        Problems to act on (frames dropped by the live path, density out of range, ...).
    """

    fields: tuple[tuple[str, str], ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def status_text(status: PipelineStatus) -> StatusText:
    """Fields and alerts for one status snapshot.

    The pipeline's own ``warnings`` are shown as they are; the viewer adds an error for
    ``recorder_lost != 0``, a failed state or ``error``, and a warning for dropped or bad
    frames when the pipeline did not already say so.
    """
    fields = (
        ("state", status.state.value),
        ("input", f"in {status.input_fps:.0f} fr/s ({status.frames_in})"),
        (
            "processing",
            f"loc {status.localizer_fps:.0f} fr/s, recon {status.maps_per_s:.1f}/s "
            f"({status.outputs})",
        ),
        ("lag", f"lag {status.lag_frames} fr / {status.lag_s:.2f} s"),
        ("dropped", f"dropped {status.dropped_frames}"),
        ("density", f"{status.density_per_um2:.2f} loc/um2/frame"),
        ("device", status.device),
    )
    errors: list[str] = []
    if status.recorder_lost:
        errors.append(f"recorder lost {status.recorder_lost} frames: the recording is incomplete")
    if status.state is PipelineState.FAILED or status.error:
        errors.append(f"pipeline failed: {status.error or 'unknown error'}")
    warnings = list(status.warnings)
    joined = " ".join(warnings).lower()
    if status.dropped_frames and "drop" not in joined:
        warnings.append(
            f"{status.dropped_frames} frames dropped by the live path (the recording keeps them)"
        )
    if status.bad_frames and "bad" not in joined and "reject" not in joined:
        warnings.append(f"{status.bad_frames} frames rejected (wrong shape or dtype)")
    return StatusText(fields=fields, errors=tuple(errors), warnings=tuple(dict.fromkeys(warnings)))
