"""What the live pipeline shows the outside world: its state, a status snapshot, latest results.

These are plain frozen dataclasses so that the viewer (Qt thread), the terminal status line and
tests read them without locks: :meth:`dblink_live.pipeline.Pipeline.status` and
:meth:`~dblink_live.pipeline.Pipeline.latest` build a new object under the pipeline's lock and
hand it out; nothing in it is mutated afterwards.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LiveResults", "LiveSession", "PipelineState", "PipelineStatus"]


class PipelineState(str, enum.Enum):
    """idle -> running -> draining -> finished, or failed from any of them."""

    IDLE = "idle"
    RUNNING = "running"
    DRAINING = "draining"  # no new frames; workers finish what is buffered
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def done(self) -> bool:
        return self in (PipelineState.FINISHED, PipelineState.FAILED)


@dataclass(frozen=True)
class PipelineStatus:
    """A thread-safe snapshot of the pipeline (rates over the last few seconds).

    Attributes
    ----------
    state
        Current :class:`PipelineState`.
    elapsed_s
        Seconds since ``start``.
    frames_in, frames_recorded, frames_localized
        Frames put into the ring by the source / appended to the recording / localized.
    maps_in, outputs
        Count maps formed (W frames each) / reconstructions produced.
    input_fps, localizer_fps, maps_per_s
        Recent rates (frames/s, frames/s, reconstructions/s).
    lag_frames, lag_s
        Newest frame in the ring minus the last frame covered by the newest reconstruction, and
        the time from that frame's arrival to its reconstruction being available (p50 so far).
    dropped_frames
        Frames the live path (localizer) had to skip because it fell behind (the recording still
        has them).
    skipped_maps
        Whole maps (W frames each, among ``dropped_frames``) skipped to keep the latency within
        the budget; they are stored as empty maps with confidence 0 (``reprocess`` fills them).
    bad_frames
        Frames rejected by the ring (wrong shape or dtype).
    recorder_lost
        Frames the recorder lost (must stay 0; any other value is shown as an error).
    recorder_backlog
        Frames waiting for the recorder (held in memory when it falls behind the ring).
    ring_fill
        Fraction of the ring the slowest lossy consumer still has to read.
    locs_per_frame, density_per_um2
        Recent localizations per frame and per frame and um^2 of field of view.
    device
        ``"cpu"`` or ``"cuda:0"``.
    delay_maps
        The trailing delay D of the streaming reconstruction.
    warnings
        Human-readable warnings (frames dropped, density outside the model's training range...).
    error
        The message of the error that failed the pipeline, else None.
    """

    state: PipelineState = PipelineState.IDLE
    elapsed_s: float = 0.0
    frames_in: int = 0
    frames_recorded: int = 0
    frames_localized: int = 0
    maps_in: int = 0
    outputs: int = 0
    input_fps: float = 0.0
    localizer_fps: float = 0.0
    maps_per_s: float = 0.0
    lag_frames: int = 0
    lag_s: float = 0.0
    dropped_frames: int = 0
    skipped_maps: int = 0
    bad_frames: int = 0
    recorder_lost: int = 0
    recorder_backlog: int = 0
    ring_fill: float = 0.0
    locs_per_frame: float = 0.0
    density_per_um2: float = 0.0
    device: str = "cpu"
    delay_maps: int = 0
    warnings: tuple[str, ...] = ()
    error: str | None = None

    def line(self) -> str:
        """One status line for a terminal."""
        parts = [
            f"{self.state.value}",
            f"{self.frames_in} frames ({self.input_fps:.0f}/s)",
            f"localized {self.frames_localized} ({self.localizer_fps:.0f}/s)",
            f"recon {self.outputs} ({self.maps_per_s:.1f}/s)",
            f"lag {self.lag_frames} fr / {self.lag_s:.2f} s",
            f"dropped {self.dropped_frames}"
            + (f" (skipped {self.skipped_maps} maps)" if self.skipped_maps else ""),
            f"{self.density_per_um2:.2f} loc/um2/frame",
            self.device,
        ]
        if self.recorder_lost:
            parts.append(f"RECORDER LOST {self.recorder_lost}")
        return " | ".join(parts)


@dataclass(frozen=True)
class LiveResults:
    """The newest results, for display. Arrays are copies owned by this object.

    Attributes
    ----------
    version
        Increases whenever anything here changes (a display skips an unchanged version).
    frame_index
        Number of ``raw`` (-1 before the first frame).
    raw
        (Y, X) uint16 newest camera frame, or None.
    render
        (Y', X') float32 localization counts on the reconstruction grid, summed over the last
        ``render_maps`` maps (the static SMLM image of that window), or None.
    render_maps
        How many maps ``render`` sums.
    output_index
        Index of the newest reconstruction (-1 before the first); it covers raw frames
        ``output_first_frame .. output_first_frame + window_frames - 1``.
    reconstruction, confidence
        (Y', X') float32 in [0, 1], or None.
    output_first_frame
        First raw frame of the newest reconstruction's window.
    pixel_size_nm, bin_nm, window_frames
        Camera pixel size, reconstruction bin and window W.
    origin_nm
        (x, y) nm of the reconstruction grid's corner on the camera: (0, 0) for the full
        frame, the region's corner when a region is reconstructed (``live.recon_roi``).
    """

    version: int = 0
    frame_index: int = -1
    raw: np.ndarray | None = None
    render: np.ndarray | None = None
    render_maps: int = 0
    output_index: int = -1
    reconstruction: np.ndarray | None = None
    confidence: np.ndarray | None = None
    output_first_frame: int = -1
    pixel_size_nm: float = 0.0
    bin_nm: float = 0.0
    window_frames: int = 0
    origin_nm: tuple[float, float] = (0.0, 0.0)
    extra: dict = field(default_factory=dict)


@runtime_checkable
class LiveSession(Protocol):
    """What a viewer drives and reads: a live run (:class:`dblink_live.pipeline.Pipeline`).

    The viewer window and the napari widget are typed against this, and the viewer's test
    double implements it (``tests/test_display.py`` checks its signatures against the
    pipeline's). Every method is thread-safe and returns at once, except :meth:`wait`.
    """

    @property
    def state(self) -> PipelineState:
        """Where the run is (idle, running, draining, finished, failed)."""
        ...

    @property
    def recording_path(self) -> Path:
        """The recording being written."""
        ...

    def start(self) -> LiveSession:
        """Open the source, load the models and start the threads (seconds: call it off the
        GUI thread); returns the session."""
        ...

    def stop(self) -> None:
        """Stop acquiring; what is buffered is processed and recorded (draining)."""
        ...

    def wait(self, timeout: float | None = None) -> PipelineStatus:
        """Wait up to ``timeout`` s (None: until done) for the run to end; its status."""
        ...

    def status(self) -> PipelineStatus:
        """A snapshot of the counters, rates and warnings."""
        ...

    def latest(self, render_maps: int = 10) -> LiveResults:
        """The newest raw frame, render of the last ``render_maps`` maps, reconstruction and
        confidence; ``version`` grows whenever any of them changes."""
        ...
