"""The recording format: one zarr v3 group per run, appendable, readable after a crash.

Layout, format version 2 (the contract between stages, tools and users; see ``DESIGN.md``)::

    run.zarr/                 attrs["dblink_live"]: format, format_version, package_version,
                              pixel_size_nm, frame_interval_s, camera, config, frames_written
      raw/                    OME-Zarr 0.5 image group; raw/0: (T, Y, X) uint16, appended along T
      localizations/          frame (int64), x_nm, y_nm, photons, background, uncertainty_nm,
                              score: 1-D arrays; attrs["rows_written"]
      reconstruction/         OME-Zarr 0.5 image group; reconstruction/0: (T', Y', X') float32
                              in [0, 1]; attrs of the array: bin_nm, window_frames,
                              stride_frames, first_frame, model, frames_written
      confidence/             the same grid and times
      gt/emitters/            simulated only: frame, x_nm, y_nm, photons, emitter_id
      gt/skeleton/            simulated only: image group, (T', Y', X') uint8, 1-bin thin
      gt/structure/           simulated only: image group, (T', Y', X') float32, coverage

Every image group holds one ``multiscales`` entry (axes t, y, x in seconds and nanometres, the
scale of one frame / pixel / bin and the translation of the *centre* of element 0, so raw
frames and reconstructions overlay in world coordinates) and its array carries zarr v3
``dimension_names``. :func:`image_metadata` builds that block; the tests validate it with
yaozarrs. Format version 1 (images as bare arrays at ``raw``, ``reconstruction``, ...) is still
read, and written to when such a recording is appended to, so one store never mixes layouts.

Crash safety: data are written first and the counters (``frames_written``, ``rows_written``)
after, each metadata write is atomic (zarr writes a temporary file and renames it), so a
killed writer leaves a store whose counters point at complete data. On opening, the reader also
checks that the chunks it needs exist and decode, and falls back to the last complete chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dblink_live.io.recording_append import RecordingWriter

# names marked noqa were defined here before the split into recording_layout / recording_read /
# recording_append; the display modules import the private helpers from here
from dblink_live.io.recording_layout import (
    DIMENSION_NAMES,  # noqa: F401
    FORMAT_NAME,
    FORMAT_VERSION,
    IMAGE_NAMES,
    LEVEL,  # noqa: F401
    STAGED_SUFFIX,  # noqa: F401
    _as_array,  # noqa: F401
    _as_group,  # noqa: F401
    _attr_int,  # noqa: F401
    _map_metadata,  # noqa: F401
    _raw_metadata,  # noqa: F401
    create_store,
    image_metadata,
    open_store,
)
from dblink_live.io.recording_read import RecordingReader, UnreadableFramesError, format_ranges

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_NAMES",
    "Recording",
    "UnreadableFramesError",
    "format_ranges",
    "image_metadata",
]


class Recording(RecordingReader, RecordingWriter):
    """A dblink_live recording on disk. Create with :meth:`create`, open with :meth:`open`.

    Reading never returns data past the counters, so frames of an interrupted write are not
    shown as zeros. Writing methods validate shape and dtype and raise
    :class:`~dblink_live.errors.RecordingError` with what to fix.
    """

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        frame_shape: tuple[int, int],
        pixel_size_nm: float,
        frame_interval_s: float,
        camera: Mapping[str, Any] | None = None,
        config: Any = None,
        chunk_frames: int = 32,
        overwrite: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Recording:
        """Create an empty recording.

        Parameters
        ----------
        path
            Directory to create (conventionally ``*.zarr``).
        frame_shape
            (Y, X) camera frame size in pixels.
        pixel_size_nm, frame_interval_s
            Camera pixel size (nm) and time between frames (s).
        camera
            Camera metadata (model, gain, offset, e-/ADU, ...), stored as is.
        config
            The resolved run config (pydantic model or dict), stored so the recording
            describes itself.
        chunk_frames
            Frames per chunk of ``raw`` (one chunk is the unit a crash can lose).
        overwrite
            Replace an existing store at ``path``.
        """
        path = Path(path)
        group = create_store(
            path,
            frame_shape=frame_shape,
            pixel_size_nm=pixel_size_nm,
            frame_interval_s=frame_interval_s,
            camera=camera,
            config=config,
            chunk_frames=chunk_frames,
            overwrite=overwrite,
            extra=extra,
        )
        rec = cls(path, group, 0, "r+")
        rec._write_series()
        return rec

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> Recording:
        """Open and validate a recording (``mode`` "r" to read, "r+" to append).

        Raises
        ------
        RecordingError
            if the path is missing, not a zarr v3 store, not a dblink_live recording, written by
            a newer format version, or its ``raw`` array is missing or malformed.
        """
        path = Path(path)
        group, version = open_store(path, mode)
        rec = cls(path, group, 0, mode, version)
        raw = rec._checked_raw()
        rec._n_frames = rec._complete_frames(int(rec.meta["frames_written"]), raw)
        return rec

    def __repr__(self) -> str:
        return f"Recording({str(self.path)!r}, frames={self.n_frames}, shape={self.frame_shape})"
