"""Reading a recording: raw frames (checked chunk by chunk, so a damaged chunk is named, not
shown as zeros), the localization and ground-truth tables, the grid images and the summary of
``dblink-live info``. Nothing past the counters is returned (see :mod:`dblink_live.io.recording`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from dblink_live.errors import RecordingError
from dblink_live.io.recording_layout import (
    _EMITTER_DTYPES,
    _LOC_DTYPES,
    RecordingBase,
    _as_array,
    _attr_int,
)
from dblink_live.localizations import EmitterTable, Localizations

__all__ = ["RecordingReader", "UnreadableFramesError", "format_ranges"]

log = logging.getLogger(__name__)


def format_ranges(ranges: Sequence[tuple[int, int]], limit: int = 4) -> str:
    """``[(0, 32), (96, 128)]`` -> ``"0-31, 96-127"`` (inclusive frame numbers, the first
    ``limit`` ranges, then a count)."""
    parts = [f"{a}-{b - 1}" if b - a > 1 else f"{a}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"and {len(ranges) - limit} more ranges")
    return ", ".join(parts)


def _merge(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class UnreadableFramesError(RecordingError):
    """Raw frames that cannot be read back (a corrupt or truncated chunk).

    ``ranges``: the unreadable ``[start, stop)`` frame ranges (whole chunks).
    """

    def __init__(self, path: Path, ranges: Sequence[tuple[int, int]]):
        self.ranges = list(ranges)
        n = sum(b - a for a, b in self.ranges)
        super().__init__(
            f"{path}: raw frames {format_ranges(self.ranges)} ({n} frames) are unreadable "
            "(a corrupt chunk); `dblink-live info --verify` lists every damaged chunk"
        )


class RecordingReader(RecordingBase):
    """The reading half of :class:`~dblink_live.io.recording.Recording`."""

    def _complete_frames(self, claimed: int, raw: zarr.Array) -> int:
        """Frames that are really on disk: counter, array length, chunk files, decodable."""
        n = min(claimed, raw.shape[0])
        if n < claimed:
            log.warning("%s: counter says %d frames, raw holds %d", self.path, claimed, n)
        cf = raw.chunks[0]
        chunk_dir = self.path / self._array_path("raw") / "c"
        n_chunks = -(-n // cf)
        for i in range(n_chunks):
            if not (chunk_dir / str(i) / "0" / "0").exists():
                log.warning("%s: raw chunk %d is missing; reading %d frames", self.path, i, i * cf)
                n = i * cf
                break
        while n > 0:  # the last chunk must decode (a torn write is dropped, not shown)
            start = ((n - 1) // cf) * cf
            try:
                raw[start:n]
                break
            except Exception:
                log.warning(
                    "%s: raw chunk at frame %d is unreadable; dropping it", self.path, start
                )
                n = start
        return n

    # ------------------------------------------------------------------ raw frames
    def read_frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` as (n, Y, X) uint16 (clipped to the complete frames).

        Raises :class:`UnreadableFramesError` (naming the frames) if a chunk cannot be read.
        """
        stop = self._n_frames if stop is None else min(stop, self._n_frames)
        start = max(0, min(start, stop))
        try:
            return np.asarray(self.raw[start:stop])
        except Exception:  # a codec error from a damaged chunk: find which ones
            bad = self.unreadable_frames(start, stop)
            if not bad:  # the damage was transient (e.g. a file being replaced): try again
                return np.asarray(self.raw[start:stop])
            raise UnreadableFramesError(self.path, bad) from None

    def _chunks(self, start: int, stop: int) -> list[tuple[int, int]]:
        cf = self.raw.chunks[0]
        first = (start // cf) * cf
        return [(a, min(a + cf, self._n_frames)) for a in range(first, stop, cf)]

    def unreadable_frames(
        self,
        start: int = 0,
        stop: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, int]]:
        """Read every raw chunk touching ``[start, stop)``; returns the ``[a, b)`` frame ranges
        of those that fail to decode (merged, clipped to ``[start, stop)``). This reads the
        whole range from disk (``info --verify``)."""
        stop = self._n_frames if stop is None else min(stop, self._n_frames)
        raw, bad = self.raw, []
        chunks = self._chunks(start, stop)
        for i, (a, b) in enumerate(chunks):
            try:
                raw[a:b]
            except Exception:
                bad.append((max(a, start), min(b, stop)))
            if progress is not None:
                progress(i + 1, len(chunks))
        return _merge(bad)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Read everything from disk: ``{"unreadable_frames": [[a, b), ...] of raw,
        "unreadable_arrays": [names of tables columns and images that fail to read]}``."""
        bad_frames = self.unreadable_frames(progress=progress)
        bad_arrays = []
        names = [f"localizations/{c}" for c in _LOC_DTYPES if "localizations" in self.group]
        names += [f"gt/emitters/{c}" for c in _EMITTER_DTYPES if "gt/emitters" in self.group]
        names += [self._array_path(name) for name in self.images()]
        for name in names:
            try:
                np.asarray(self._array(name)[:])
            except Exception:
                bad_arrays.append(name)
        return {"unreadable_frames": [list(r) for r in bad_frames], "unreadable_arrays": bad_arrays}

    def iter_frames(
        self,
        start: int = 0,
        stop: int | None = None,
        block: int = 256,
        on_unreadable: Callable[[int, int], None] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_frame, frames (n, Y, X))`` blocks of ``[start, stop)``.

        A block with a damaged chunk raises :class:`UnreadableFramesError`, unless
        ``on_unreadable(a, b)`` is given: then the readable parts are yielded and it is called
        for each unreadable range, which is skipped.
        """
        stop = self._n_frames if stop is None else min(stop, self._n_frames)
        for s in range(start, stop, block):
            e = min(s + block, stop)
            try:
                yield s, self.read_frames(s, e)
            except UnreadableFramesError as exc:
                if on_unreadable is None:
                    raise
                at = s
                for a, b in exc.ranges:
                    if a > at:
                        yield at, self.read_frames(at, a)
                    on_unreadable(a, b)
                    at = b
                if at < e:
                    yield at, self.read_frames(at, e)

    # ------------------------------------------------------------------ tables
    def _read_table(self, name: str, dtypes: Mapping[str, str]) -> dict[str, np.ndarray] | None:
        if name not in self.group:
            return None
        g = self._group(name)
        missing = [c for c in dtypes if c not in g]
        if missing:
            raise RecordingError(
                f"{self.path}/{name} lacks columns {missing}; the store is damaged"
            )
        cols = {c: _as_array(g[c], f"{self.path}/{name}/{c}") for c in dtypes}
        n = _attr_int(g.attrs, "rows_written", 0)
        n = min([n, *(a.shape[0] for a in cols.values())])
        return {c: np.asarray(a[:n]) for c, a in cols.items()}

    @property
    def n_localizations(self) -> int:
        """Complete localization rows."""
        if "localizations" not in self.group:
            return 0
        return _attr_int(self.group["localizations"].attrs, "rows_written", 0)

    def unlocalized_frames(self) -> list[tuple[int, int]] | None:
        """``[start, stop)`` ranges of raw frames never localized (frames the live path
        dropped, a run killed before the localizer caught up); None when the recording does not
        say (made before this was recorded)."""
        if "localizations" not in self.group:
            return [(0, self.n_frames)] if self.n_frames else []
        ranges = cast(
            "list[list[int]] | None", self.group["localizations"].attrs.get("localized_frames")
        )
        if ranges is None:
            return None
        out: list[tuple[int, int]] = []
        at = 0
        for a, b in sorted(ranges):
            if a > at:
                out.append((at, min(a, self.n_frames)))
            at = max(at, b)
        if at < self.n_frames:
            out.append((at, self.n_frames))
        return [(a, b) for a, b in out if b > a]

    def localization_info(self) -> dict[str, Any]:
        """How the localizations were made (localizer, model, calibration), if recorded."""
        if "localizations" not in self.group:
            return {}
        return dict(
            cast(Mapping[str, Any], self.group["localizations"].attrs.get("localizer") or {})
        )

    def read_localizations(self) -> Localizations:
        """All complete localization rows (empty table if none).

        In a recording of camera frames, rows of frames beyond the recorded ones are left out:
        after a crash or a full disk the localizer may have stored frames that the recorder
        never wrote. A recording made from a table (no raw frames) keeps every row.
        """
        cols = self._read_table("localizations", _LOC_DTYPES)
        if cols is None:
            return Localizations.empty(self.pixel_size_nm, self.n_frames)
        if "table_frames" not in self.meta:
            keep = cols["frame"] < self.n_frames
            if not keep.all():
                cols = {k: v[keep] for k, v in cols.items()}
        return Localizations(**cols, pixel_size_nm=self.pixel_size_nm, n_frames=self.n_frames)

    def read_emitters(self) -> EmitterTable | None:
        """Ground-truth emitters, or None for a recording that is not simulated."""
        cols = self._read_table("gt/emitters", _EMITTER_DTYPES)
        return None if cols is None else EmitterTable(**cols)

    # ------------------------------------------------------------------ images on the grid
    def read_image(self, name: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """(data (T', Y', X'), attrs) of an image, or None if the recording lacks it."""
        arr = self.image_array(name)
        if arr is None:
            return None
        n = min(_attr_int(arr.attrs, "frames_written", arr.shape[0]), arr.shape[0])
        return np.asarray(arr[:n]), dict(arr.attrs)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """Facts for ``dblink-live info``: sizes, rates, tables and images."""
        meta = self.meta
        locs = self._read_table("localizations", {"frame": "int64"})
        emitters = self._read_table("gt/emitters", {"frame": "int64"})
        n_locs = 0 if locs is None else len(locs["frame"])
        missing = self.unlocalized_frames() if locs is not None else None
        # localizations per *localized* frame: frames never localized do not dilute it
        localized = self.n_frames - sum(b - a for a, b in missing) if missing else self.n_frames
        out: dict[str, Any] = {
            "path": str(self.path),
            "format_version": meta["format_version"],
            "package_version": meta.get("package_version"),
            "frames": self.n_frames,
            "frame_shape_px": list(self.frame_shape),
            "pixel_size_nm": self.pixel_size_nm,
            "frame_interval_s": self.frame_interval_s,
            "duration_s": self.n_frames * self.frame_interval_s,
            "camera": meta.get("camera"),
            "localizations": n_locs,
            "localized_frames": localized,
            "unlocalized_frames": None if missing is None else self.n_frames - localized,
            "localizations_per_frame": n_locs / localized if localized else 0.0,
            "gt_emitters": None if emitters is None else len(emitters["frame"]),
            "localizer": self.localization_info().get("name"),
            "images": {},
            "live": meta.get("live_summary"),
        }
        for name in self.images():
            arr = self._array(self._array_path(name))
            model = cast(Mapping[str, Any], arr.attrs.get("model") or {})
            out["images"][name] = {
                "maps": min(_attr_int(arr.attrs, "frames_written", arr.shape[0]), arr.shape[0]),
                "shape_yx": list(arr.shape[1:]),
                "dtype": str(arr.dtype),
                "bin_nm": arr.attrs.get("bin_nm"),
                "window_frames": arr.attrs.get("window_frames"),
                "stride_frames": arr.attrs.get("stride_frames"),
                "model": model.get("name"),
                "origin_nm": arr.attrs.get("origin_nm"),
            }
            roi = cast("list[int] | None", arr.attrs.get("recon_roi_px"))
            if roi and list(roi[2:]) != list(self.frame_shape[::-1]):  # a region, not the frame
                out["images"][name]["recon_roi_px"] = list(roi)
        return out
