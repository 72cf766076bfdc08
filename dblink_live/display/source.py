"""Read a recording lazily for scrubbing: raw frames, localization renders, reconstructions.

Qt-free. Only the chunks around the shown time are decoded (a small cache per array), and
the localization table keeps three columns (frame, x_nm, y_nm) in memory, read incrementally,
so a recording that is still being written can be followed with :meth:`RecordingSource.refresh`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dblink_live.display.frames import ViewFrame
from dblink_live.errors import RecordingError
from dblink_live.io.recording import Recording, _as_array, _as_group, _attr_int

__all__ = ["DEFAULT_BIN_NM", "DEFAULT_WINDOW_FRAMES", "RecordingSource"]

log = logging.getLogger(__name__)

#: Grid used for the localization render when the recording has no reconstruction or config.
DEFAULT_BIN_NM = 40.0
DEFAULT_WINDOW_FRAMES = 10


class _ChunkCache:
    """Decoded chunks of a (T, Y, X) zarr array along T, the few most recent kept."""

    def __init__(self, array: zarr.Array, keep: int = 3):
        self.array = array
        self.chunk = int(array.chunks[0])
        self.keep = keep
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, index: int, valid: int) -> np.ndarray:
        """Slice ``index`` along T; ``valid`` is the number of complete slices (T counter)."""
        c = index // self.chunk
        block = self._blocks.get(c)
        if block is None or c * self.chunk + len(block) <= index:
            stop = min((c + 1) * self.chunk, valid)
            block = np.asarray(self.array[c * self.chunk : stop])
            self._blocks[c] = block
            while len(self._blocks) > self.keep:
                self._blocks.popitem(last=False)
        self._blocks.move_to_end(c)
        return block[index - c * self.chunk]


def _config_grid(config: dict[str, Any] | None) -> tuple[float, int]:
    grid = (config or {}).get("grid") or {}
    return float(grid.get("bin_nm") or DEFAULT_BIN_NM), int(
        grid.get("window_frames") or DEFAULT_WINDOW_FRAMES
    )


class RecordingSource:
    """A recording opened for display.

    Parameters
    ----------
    path
        A dblink_live recording (``*.zarr`` folder).

    Raises
    ------
    RecordingError
        when ``path`` is not a readable recording (message says why).

    Notes
    -----
    Time runs over raw frames. The reconstruction shown at raw frame ``f`` is the output whose
    window of W frames is centred closest to ``f`` (map k covers ``first_frame + k * stride +
    [0, W)``), clamped to the outputs that exist.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.recording = Recording.open(self.path)
        self._raw = _ChunkCache(self.recording.raw)
        self._loc_frame = np.zeros(0, np.int64)
        self._loc_x = np.zeros(0, np.float32)
        self._loc_y = np.zeros(0, np.float32)
        self._locs_sorted = True
        self._images: dict[str, _ChunkCache] = {}
        self._image_counts: dict[str, int] = {}
        self._read_grid()

    # ------------------------------------------------------------------ metadata
    def _read_grid(self) -> None:
        rec = self.recording
        bin_nm, window = _config_grid(rec.config)
        self.image_attrs: dict[str, Any] = {}
        self._images = {}
        self._image_counts = {}
        for name in ("reconstruction", "confidence"):
            arr = rec.image_array(name)
            if arr is None:
                continue
            attrs: dict[str, Any] = dict(arr.attrs)
            self._images[name] = _ChunkCache(arr, keep=2)
            self._image_counts[name] = min(int(attrs.get("frames_written", 0)), arr.shape[0])
            if name == "reconstruction" or not self.image_attrs:
                self.image_attrs = attrs
        if self.image_attrs:
            bin_nm = float(self.image_attrs.get("bin_nm", bin_nm))
            window = int(self.image_attrs.get("window_frames", window))
            first = next(iter(self._images.values())).array
            self.grid_shape: tuple[int, int] = (int(first.shape[1]), int(first.shape[2]))
        else:
            h, w = self.recording.frame_shape
            px = self.recording.pixel_size_nm
            self.grid_shape = (
                max(1, round(h * px / bin_nm)),
                max(1, round(w * px / bin_nm)),
            )
        self.bin_nm = bin_nm
        self.window_frames = max(1, window)
        self.stride_frames = max(1, int(self.image_attrs.get("stride_frames", self.window_frames)))
        self.first_frame = int(self.image_attrs.get("first_frame", 0))
        ox, oy = self.image_attrs.get("origin_nm") or (0.0, 0.0)
        self.origin_nm = (float(ox), float(oy))

    def refresh(self) -> bool:
        """Re-open the store to see data written since; True if anything grew."""
        before = (self.n_frames, self.n_outputs, len(self._loc_frame))
        try:
            rec = Recording.open(self.path)
        except RecordingError as exc:  # being rewritten: keep what we have
            log.debug("refresh of %s failed: %s", self.path, exc)
            return False
        self.recording = rec
        self._raw = _ChunkCache(rec.raw)
        self._read_grid()
        self._load_localizations()
        return (self.n_frames, self.n_outputs, len(self._loc_frame)) != before

    @property
    def has_raw(self) -> bool:
        """Whether the recording holds camera frames (one made from a table holds none)."""
        return self.recording.n_frames > 0

    @property
    def n_frames(self) -> int:
        """Raw frames on the time axis: the complete camera frames, or for a recording made
        from a localization table the frames its table covers."""
        if self.has_raw:
            return self.recording.n_frames
        if not self._loc_frame.size:
            self._load_localizations()
        table = int(self.recording.meta.get("table_frames") or 0)
        return max(table, int(self._loc_frame.max()) + 1 if self._loc_frame.size else 0)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(Y, X) camera frame size in pixels."""
        return self.recording.frame_shape

    @property
    def pixel_size_nm(self) -> float:
        return self.recording.pixel_size_nm

    @property
    def frame_interval_s(self) -> float:
        return self.recording.frame_interval_s

    @property
    def n_outputs(self) -> int:
        """Reconstructed maps available (0 when the recording has none)."""
        return self._image_counts.get("reconstruction", 0)

    @property
    def has_confidence(self) -> bool:
        return self._image_counts.get("confidence", 0) > 0

    # ------------------------------------------------------------------ time
    def output_for_frame(self, frame: int) -> int:
        """Index of the reconstruction to show at raw ``frame`` (-1 if there is none)."""
        n = self.n_outputs
        if n == 0:
            return -1
        centre = frame - self.first_frame - (self.window_frames - 1) / 2
        k = int(np.floor(centre / self.stride_frames + 0.5))
        return int(np.clip(k, 0, n - 1))

    def output_first_frame(self, k: int) -> int:
        """First raw frame of output ``k``'s window."""
        return self.first_frame + k * self.stride_frames

    # ------------------------------------------------------------------ data
    def raw_frame(self, frame: int) -> np.ndarray:
        """(Y, X) uint16 raw frame ``frame`` (0-based, clipped to the recorded frames)."""
        if not self.has_raw:
            raise RecordingError(f"{self.path} holds no frames yet")
        frame = int(np.clip(frame, 0, self.n_frames - 1))
        return self._raw.get(frame, self.n_frames)

    def image(self, name: str, k: int) -> np.ndarray | None:
        """(Y', X') float32 map ``k`` of ``"reconstruction"`` or ``"confidence"`` (None: absent)."""
        n = self._image_counts.get(name, 0)
        if n == 0 or not 0 <= k < n:
            return None
        return np.asarray(self._images[name].get(k, n), dtype=np.float32)

    def _load_localizations(self) -> None:
        group = self.recording.group
        if "localizations" not in group:
            return
        where = f"{self.path}/localizations"
        g = _as_group(group["localizations"], where)
        cols = {c: _as_array(g[c], f"{where}/{c}") for c in ("frame", "x_nm", "y_nm")}
        rows = _attr_int(g.attrs, "rows_written", 0)
        rows = min([rows, *(a.shape[0] for a in cols.values())])
        done = len(self._loc_frame)
        if rows < done:  # the table was redone: start over
            done = 0
            self._loc_frame = self._loc_frame[:0]
            self._loc_x = self._loc_x[:0]
            self._loc_y = self._loc_y[:0]
        if rows == done:
            return
        new_f = np.asarray(cols["frame"][done:rows], dtype=np.int64)
        self._loc_frame = np.concatenate([self._loc_frame, new_f])
        new_x = np.asarray(cols["x_nm"][done:rows], np.float32)
        self._loc_x = np.concatenate([self._loc_x, new_x])
        new_y = np.asarray(cols["y_nm"][done:rows], np.float32)
        self._loc_y = np.concatenate([self._loc_y, new_y])
        if len(self._loc_frame) > 1 and np.any(np.diff(self._loc_frame) < 0):
            order = np.argsort(self._loc_frame, kind="stable")
            self._loc_frame = self._loc_frame[order]
            self._loc_x = self._loc_x[order]
            self._loc_y = self._loc_y[order]

    @property
    def n_localizations(self) -> int:
        """Localization rows read so far (all complete rows after the first render)."""
        return len(self._loc_frame)

    def render(self, last_frame: int, n_frames: int) -> np.ndarray:
        """Localization counts of raw frames ``[last_frame - n_frames + 1, last_frame]``.

        Returns
        -------
        (Y', X') float32 counts on the reconstruction grid (``bin_nm`` bins).
        """
        if not self._loc_frame.size:
            self._load_localizations()
        ny, nx = self.grid_shape
        lo = np.searchsorted(self._loc_frame, last_frame - max(1, n_frames) + 1, side="left")
        hi = np.searchsorted(self._loc_frame, last_frame, side="right")
        ox, oy = self.origin_nm  # the grid's corner (a table's data box; 0 on a camera)
        ix = np.floor((self._loc_x[lo:hi] - ox) / self.bin_nm).astype(np.int64)
        iy = np.floor((self._loc_y[lo:hi] - oy) / self.bin_nm).astype(np.int64)
        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        counts = np.bincount(iy[ok] * nx + ix[ok], minlength=ny * nx)
        return counts.reshape(ny, nx).astype(np.float32)

    def view(self, frame: int, render_maps: int = 10) -> ViewFrame:
        """Everything the panels show at raw ``frame``.

        Parameters
        ----------
        frame
            0-based raw frame (clipped to the recorded frames).
        render_maps
            The localization render sums the last ``render_maps * window_frames`` raw frames up
            to ``frame``.
        """
        if self.n_frames == 0:
            return ViewFrame(pixel_size_nm=self.pixel_size_nm, bin_nm=self.bin_nm)
        frame = int(np.clip(frame, 0, self.n_frames - 1))
        k = self.output_for_frame(frame)
        render_maps = max(1, int(render_maps))
        return ViewFrame(
            frame_index=frame,
            raw=self.raw_frame(frame) if self.has_raw else None,
            render=self.render(frame, render_maps * self.window_frames),
            render_maps=render_maps,
            render_last_frame=frame,
            output_index=k,
            reconstruction=self.image("reconstruction", k),
            confidence=self.image("confidence", k),
            output_first_frame=self.output_first_frame(k) if k >= 0 else -1,
            pixel_size_nm=self.pixel_size_nm,
            bin_nm=self.bin_nm,
            window_frames=self.window_frames,
            origin_nm=self.origin_nm,
        )

    def describe(self) -> str:
        """One line about the recording for the status bar."""
        if not self._loc_frame.size:
            self._load_localizations()
        n = self.n_frames
        h, w = self.frame_shape
        if not self.has_raw:
            text = (
                f"{self.path.name}: localization table of {n} frames (no camera frames), "
                f"{self.n_localizations:,} localizations, {self.frame_interval_s * 1e3:g} ms"
            )
        else:
            text = (
                f"{self.path.name}: {n} frames of {h}x{w} px, {self.pixel_size_nm:g} nm, "
                f"{self.frame_interval_s * 1e3:g} ms"
            )
        if n and self.has_raw:
            per_frame = self.n_localizations / n
            area_um2 = h * w * (self.pixel_size_nm / 1e3) ** 2
            text += f" | {per_frame:.1f} loc/frame ({per_frame / area_um2:.2f}/um2)"
        if self.n_outputs:
            model = (self.image_attrs.get("model") or {}).get("name")
            text += (
                f" | {self.n_outputs} reconstructions, {self.bin_nm:g} nm bins, "
                f"W={self.window_frames}, stride {self.stride_frames}"
            )
            if model:
                text += f", {model}"
        else:
            text += " | no reconstruction (run `dblink-live reprocess`)"
        return text
