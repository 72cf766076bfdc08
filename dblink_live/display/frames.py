"""What the viewer shows at one instant: :class:`ViewFrame` (Qt-free).

A :class:`ViewFrame` is built either from the live pipeline's
:class:`~dblink_live.pipeline_types.LiveResults` or from a recording at a chosen raw frame
(:class:`~dblink_live.display.source.RecordingSource`), so the panels have one input type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dblink_live.pipeline_types import LiveResults

__all__ = ["ViewFrame"]


@dataclass(frozen=True)
class ViewFrame:
    """Images and their place in time and space, for the four panels.

    Attributes
    ----------
    frame_index
        0-based number of ``raw`` (-1 before the first frame).
    raw
        (Y, X) uint16 camera frame, or None.
    render
        (Y', X') float32 localization counts on the reconstruction grid, or None.
    render_maps
        How many maps of ``window_frames`` raw frames ``render`` sums.
    render_last_frame
        Last raw frame that ``render`` includes (-1 when unknown, e.g. live).
    output_index
        Index of the reconstruction shown (-1 for none).
    reconstruction, confidence
        (Y', X') float32 in [0, 1], or None.
    output_first_frame
        First raw frame of the reconstruction's window of ``window_frames`` frames (-1: none).
    pixel_size_nm
        Camera pixel size (nm): the raw frame spans ``X * pixel_size_nm`` nm.
    bin_nm
        Reconstruction grid bin (nm): grid images span ``X' * bin_nm`` nm.
    window_frames
        Raw frames per map (W).
    origin_nm
        (x, y) nm of the grid's corner: a reconstructed region's corner on the camera, a
        table's data box; (0, 0) for a full camera frame.
    version
        ``LiveResults.version`` for live frames, -1 for frames read from a recording.
    """

    frame_index: int = -1
    raw: np.ndarray | None = None
    render: np.ndarray | None = None
    render_maps: int = 0
    render_last_frame: int = -1
    output_index: int = -1
    reconstruction: np.ndarray | None = None
    confidence: np.ndarray | None = None
    output_first_frame: int = -1
    pixel_size_nm: float = 0.0
    bin_nm: float = 0.0
    window_frames: int = 0
    origin_nm: tuple[float, float] = (0.0, 0.0)
    version: int = -1

    @classmethod
    def from_live(cls, res: LiveResults) -> ViewFrame:
        """The frame to show for the pipeline's newest results."""
        return cls(
            frame_index=int(res.frame_index),
            raw=res.raw,
            render=res.render,
            render_maps=int(res.render_maps),
            output_index=int(res.output_index),
            reconstruction=res.reconstruction,
            confidence=res.confidence,
            output_first_frame=int(res.output_first_frame),
            pixel_size_nm=float(res.pixel_size_nm),
            bin_nm=float(res.bin_nm),
            window_frames=int(res.window_frames),
            origin_nm=(float(res.origin_nm[0]), float(res.origin_nm[1])),
            version=int(res.version),
        )

    @property
    def output_last_frame(self) -> int:
        """Last raw frame of the reconstruction's window (-1: none)."""
        if self.output_first_frame < 0 or self.window_frames < 1:
            return -1
        return self.output_first_frame + self.window_frames - 1

    def describe(self, frame_interval_s: float | None = None) -> str:
        """One line: which raw frame and which reconstruction window are on screen."""
        if self.frame_index < 0:
            return "no frame yet"
        text = f"frame {self.frame_index}"
        if frame_interval_s:
            text += f" ({self.frame_index * frame_interval_s:.2f} s)"
        if self.output_index >= 0 and self.output_first_frame >= 0:
            text += (
                f" | reconstruction #{self.output_index}: frames "
                f"{self.output_first_frame}-{self.output_last_frame}"
            )
        elif self.output_index < 0:
            text += " | no reconstruction yet"
        return text
