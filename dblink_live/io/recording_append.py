"""Writing a recording: raw frames, localization and ground-truth rows, and the images on the
reconstruction grid (staged beside the old ones and swapped in when complete). Data are written
before the counters, so a killed writer leaves a readable store (see
:mod:`dblink_live.io.recording`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import zarr

from dblink_live.errors import RecordingError
from dblink_live.io.recording_layout import (
    _EMITTER_DTYPES,
    _LOC_DTYPES,
    _TABLE_CHUNK,
    DIMENSION_NAMES,
    IMAGE_NAMES,
    LEVEL,
    STAGED_SUFFIX,
    RecordingBase,
    _as_array,
    _attr_int,
    _full,
    _jsonable,
    _map_metadata,
)
from dblink_live.localizations import EmitterTable, Localizations

__all__ = ["RecordingWriter"]

log = logging.getLogger(__name__)


class RecordingWriter(RecordingBase):
    """The appending half of :class:`~dblink_live.io.recording.Recording` (the live path's
    writers and the offline tools' replacements); every method needs mode ``"r+"``."""

    # ------------------------------------------------------------------ raw frames
    def append_frames(self, frames: np.ndarray) -> int:
        """Append (n, Y, X) or (Y, X) uint16 frames; returns the new frame count.

        The data are written before the counter, so a crash never exposes unwritten frames.
        """
        self._require_writable()
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3 or tuple(frames.shape[1:]) != self.frame_shape:
            raise RecordingError(
                f"frames of shape {frames.shape} do not fit this recording: expected (n, "
                f"{self.frame_shape[0]}, {self.frame_shape[1]})"
            )
        if frames.dtype != np.uint16:
            raise RecordingError(f"frames must be uint16 camera counts, got {frames.dtype}")
        raw = self.raw
        if raw.shape[0] != self._n_frames:  # drop a torn tail before appending
            raw.resize((self._n_frames, *self.frame_shape))
        raw.append(frames, axis=0)
        self._n_frames += len(frames)
        self.update_meta(frames_written=self._n_frames)
        return self._n_frames

    # ------------------------------------------------------------------ tables
    def _table(self, name: str, dtypes: Mapping[str, str]) -> zarr.Group:
        if name in self.group:
            return self._group(name)
        self._require_writable()
        g = self.group.require_group(name)
        for col, dtype in dtypes.items():
            g.create_array(col, shape=(0,), chunks=(_TABLE_CHUNK,), dtype=dtype)
        g.attrs["rows_written"] = 0
        return g

    def _append_table(
        self, name: str, dtypes: Mapping[str, str], columns: Mapping[str, np.ndarray]
    ) -> int:
        self._require_writable()
        g = self._table(name, dtypes)
        done = _attr_int(g.attrs, "rows_written", 0)
        for col, dtype in dtypes.items():
            arr = _full(_as_array(g[col], f"{self.path}/{name}/{col}"))
            if arr.shape[0] != done:
                arr.resize((done,))
            arr.append(np.asarray(columns[col], dtype=dtype), axis=0)
        n = done + len(next(iter(columns.values())))
        g.attrs["rows_written"] = n
        return n

    def append_localizations(self, locs: Localizations) -> int:
        """Append a :class:`Localizations` table; returns the new row count."""
        if abs(locs.pixel_size_nm - self.pixel_size_nm) > 1e-6 and len(locs):
            log.debug(
                "localizations pixel size %s differs from the recording's", locs.pixel_size_nm
            )
        return self._append_table("localizations", _LOC_DTYPES, locs.columns())

    def clear_localizations(self, info: Mapping[str, Any] | None = None) -> None:
        """Drop all localizations (to redo them) and record how the next ones are made; from
        now on the recording keeps which frames were localized (none yet)."""
        self._require_writable()
        if "localizations" in self.group:
            del self.group["localizations"]
        g = self._table("localizations", _LOC_DTYPES)
        g.attrs["localized_frames"] = []
        if info is not None:
            g.attrs["localizer"] = _jsonable(dict(info))

    def mark_localized(self, start: int, stop: int) -> None:
        """Record that raw frames ``[start, stop)`` were localized (their localizations, if any,
        already appended). Kept as merged ``[start, stop)`` ranges in the table's attributes."""
        self._require_writable()
        if stop <= start:
            return
        g = self._table("localizations", _LOC_DTYPES)
        stored = cast(list[list[int]], g.attrs.get("localized_frames") or [])
        ranges = [list(r) for r in stored]
        ranges.append([int(start), int(stop)])
        ranges.sort()
        merged: list[list[int]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        g.attrs["localized_frames"] = merged

    def update_localization_info(self, **values: Any) -> None:
        """Add to how the localizations were made (e.g. the yield check's numbers)."""
        self._require_writable()
        g = self._table("localizations", _LOC_DTYPES)
        info = dict(cast(Mapping[str, Any], g.attrs.get("localizer") or {}))
        info.update(_jsonable(values))
        g.attrs["localizer"] = info

    def append_emitters(self, table: EmitterTable) -> int:
        """Append simulated ground-truth emitters to ``gt/emitters``."""
        return self._append_table("gt/emitters", _EMITTER_DTYPES, table.columns())

    # ------------------------------------------------------------------ images on the grid
    def create_image(
        self,
        name: str,
        shape_yx: tuple[int, int],
        dtype: str,
        *,
        bin_nm: float,
        window_frames: int,
        stride_frames: int | None = None,
        first_frame: int = 0,
        chunk_maps: int = 16,
        overwrite: bool = False,
        origin_nm: tuple[float, float] = (0.0, 0.0),
        staged: bool = False,
        **attrs: Any,
    ) -> zarr.Array:
        """Create an appendable (T', Y', X') image on the reconstruction grid.

        Map k covers raw frames ``first_frame + k * stride_frames + [0, window_frames)``; bin
        ``(i, j)`` covers ``origin_nm + ([j, j + 1), [i, i + 1)) * bin_nm`` (x, y; nm): the
        origin is (0, 0) on a camera's field and the data's corner for a table.

        ``staged``: write beside the image as ``NAME.partial`` (append with ``staged=True``),
        so an existing image stays until :meth:`commit_staged` swaps the new one in.
        """
        self._require_writable()
        if name not in IMAGE_NAMES:
            raise RecordingError(f"unknown image {name!r}; use one of {IMAGE_NAMES}")
        if name in self.group and not overwrite and not staged:
            raise RecordingError(f"{self.path}/{name} exists; pass overwrite=True to replace it")
        stride = window_frames if stride_frames is None else stride_frames
        ny, nx = (int(v) for v in shape_yx)
        where = name + STAGED_SUFFIX if staged else name
        ome = _map_metadata(
            name, self.frame_interval_s, bin_nm, window_frames, stride, first_frame, origin_nm
        )
        spec: dict[str, Any] = {
            "shape": (0, ny, nx),
            "chunks": (chunk_maps, ny, nx),
            "dtype": dtype,
            "fill_value": 0,
        }
        if self.format_version < 2:  # the old layout: a bare array carrying its metadata
            arr = self.group.create_array(where, overwrite=True, **spec)
            arr.attrs["ome"] = ome
        else:
            if where in self.group:
                del self.group[where]
            image = self.group.create_group(where)
            image.attrs["ome"] = ome
            arr = image.create_array(LEVEL, dimension_names=DIMENSION_NAMES, **spec)
        arr.attrs.update(
            {
                "bin_nm": float(bin_nm),
                "window_frames": int(window_frames),
                "stride_frames": int(stride),
                "first_frame": int(first_frame),
                "frames_written": 0,
                "origin_nm": [float(origin_nm[0]), float(origin_nm[1])],
                **_jsonable(attrs),
            }
        )
        if not staged:
            self._write_series()
        return arr

    def append_image(self, name: str, block: np.ndarray, staged: bool = False) -> int:
        """Append (n, Y', X') maps to an image created with :meth:`create_image` (its staged
        copy with ``staged``)."""
        self._require_writable()
        if staged:
            name = name + STAGED_SUFFIX
        if name not in self.group:
            raise RecordingError(f"{self.path} has no image {name!r}; create it first")
        arr = _full(self._array(self._array_path(name)))
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[None]
        if block.ndim != 3 or block.shape[1:] != arr.shape[1:]:
            raise RecordingError(
                f"{name}: block of shape {block.shape} does not fit "
                f"(n, {arr.shape[1]}, {arr.shape[2]})"
            )
        done = _attr_int(arr.attrs, "frames_written", 0)
        if arr.shape[0] != done:
            arr.resize((done, *arr.shape[1:]))
        arr.append(block.astype(arr.dtype, copy=False), axis=0)
        arr.attrs["frames_written"] = done + len(block)
        return done + len(block)

    def commit_staged(self, names: Sequence[str]) -> None:
        """Swap staged images (``NAME.partial``) in for ``names``: each old image is removed
        only now, when its replacement is complete."""
        self._require_writable()
        for name in names:
            staged = name + STAGED_SUFFIX
            if staged not in self.group:
                continue
            if name in self.group:
                self._write_series(leave_out=name)  # never list a path that is going away
                del self.group[name]
            (self.path / staged).rename(self.path / name)
            self._write_series()

    def discard_staged(self, names: Sequence[str]) -> None:
        """Remove staged images left by an interrupted run (the images themselves stay)."""
        self._require_writable()
        for name in names:
            if name + STAGED_SUFFIX in self.group:
                del self.group[name + STAGED_SUFFIX]

    def delete_image(self, name: str) -> None:
        """Remove an image (e.g. before recomputing a reconstruction)."""
        self._require_writable()
        if name in self.group:
            self._write_series(leave_out=name)
            del self.group[name]
