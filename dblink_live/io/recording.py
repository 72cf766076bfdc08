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

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr

from dblink_live import __version__
from dblink_live.errors import RecordingError
from dblink_live.io.outputs import check_writable
from dblink_live.localizations import EmitterTable, Localizations

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_NAMES",
    "Recording",
    "UnreadableFramesError",
    "format_ranges",
    "image_metadata",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "dblink-live-recording"
FORMAT_VERSION = 2
#: The array of an image group (its single resolution level) in format version 2.
LEVEL = "0"
#: zarr v3 ``dimension_names`` of every image array.
DIMENSION_NAMES = ("t", "y", "x")
#: Image arrays on the reconstruction grid that a recording may hold.
IMAGE_NAMES = ("reconstruction", "confidence", "gt/skeleton", "gt/structure")
#: Suffix of an image being written beside the one it will replace (see ``commit_staged``).
STAGED_SUFFIX = ".partial"
_LOC_DTYPES = {c: ("int64" if c == "frame" else "float32") for c in Localizations.COLUMNS}
_EMITTER_DTYPES = {
    "frame": "int64",
    "x_nm": "float32",
    "y_nm": "float32",
    "photons": "float32",
    "emitter_id": "int64",
    "on_fraction": "float32",
}
_TABLE_CHUNK = 65536


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


def image_metadata(
    name: str, scale: Sequence[float], translation: Sequence[float]
) -> dict[str, Any]:
    """The OME-Zarr 0.5 ``attrs["ome"]`` of a single-level (t, y, x) image group.

    ``scale``: (s per frame or map, nm per pixel or bin in y, in x); ``translation``: world
    position (s, nm, nm) of the centre of element (0, 0, 0). The array is at ``LEVEL``.
    """
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "t", "type": "time", "unit": "second"},
                    {"name": "y", "type": "space", "unit": "nanometer"},
                    {"name": "x", "type": "space", "unit": "nanometer"},
                ],
                "datasets": [
                    {
                        "path": LEVEL,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [float(v) for v in scale]},
                            {"type": "translation", "translation": [float(v) for v in translation]},
                        ],
                    }
                ],
            }
        ],
    }


def _raw_metadata(frame_interval_s: float, pixel_size_nm: float) -> dict[str, Any]:
    """Raw frames: frame k at k * interval; pixel (i, j) centred at ((i, j) + 0.5) * pixel, the
    convention of every localization table here."""
    px, half = float(pixel_size_nm), 0.5 * float(pixel_size_nm)
    return image_metadata("raw", [frame_interval_s, px, px], [0.0, half, half])


def _map_metadata(
    name: str,
    frame_interval_s: float,
    bin_nm: float,
    window: int,
    stride: int,
    first_frame: int,
    origin_nm: tuple[float, float],
) -> dict[str, Any]:
    """Maps on the reconstruction grid: map k at the mean time of its frames
    ``first + k * stride + [0, window)``; bin (i, j) centred at origin + ((j, i) + 0.5) * bin."""
    t0 = (first_frame + (window - 1) / 2) * frame_interval_s
    half = 0.5 * float(bin_nm)
    return image_metadata(
        name,
        [stride * frame_interval_s, bin_nm, bin_nm],
        [t0, float(origin_nm[1]) + half, float(origin_nm[0]) + half],
    )


def _full(arr: zarr.Array) -> zarr.Array:
    """The array set to write every chunk, even one equal to the fill value.

    zarr skips chunks that hold only the fill value; a dark frame of zeros would then leave no
    chunk file, which the crash check reads as a missing chunk. Recordings write them all.
    """
    return arr.with_config({"write_empty_chunks": True})


def _as_array(node: zarr.Array | zarr.Group, where: str) -> zarr.Array:
    """``node`` (found at ``where``) as an array; RecordingError if the store holds a group
    where its layout has an array."""
    if not isinstance(node, zarr.Array):
        raise RecordingError(f"{where} is a group, not an array; the store is damaged")
    return node


def _as_group(node: zarr.Array | zarr.Group, where: str) -> zarr.Group:
    """``node`` (found at ``where``) as a group; RecordingError if the store holds an array
    where its layout has a group."""
    if not isinstance(node, zarr.Group):
        raise RecordingError(f"{where} is an array, not a group; the store is damaged")
    return node


def _attr_int(attrs: Mapping[str, object], key: str, default: int) -> int:
    """An integer attribute (a counter such as ``rows_written``), ``default`` when absent."""
    return int(cast(int, attrs.get(key, default)))


def _jsonable(value: Any) -> Any:
    """Config objects and numpy scalars as plain JSON types."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


class Recording:
    """A dblink_live recording on disk. Create with :meth:`create`, open with :meth:`open`.

    Reading never returns data past the counters, so frames of an interrupted write are not
    shown as zeros. Writing methods validate shape and dtype and raise
    :class:`~dblink_live.errors.RecordingError` with what to fix.
    """

    def __init__(
        self,
        path: Path,
        group: zarr.Group,
        n_frames: int,
        mode: str,
        format_version: int = FORMAT_VERSION,
    ):
        self.path = path
        self.group = group
        self._n_frames = n_frames
        self.mode = mode
        #: The layout this store uses (1: bare image arrays; 2: OME-Zarr image groups).
        self.format_version = format_version

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
        if path.exists() and not overwrite:
            raise RecordingError(
                f"{path} already exists; pass overwrite=True (--overwrite) to replace it"
            )
        check_writable(path)
        h, w = (int(v) for v in frame_shape)
        if h < 1 or w < 1:
            raise RecordingError(f"frame_shape must be positive, got {frame_shape}")
        if not pixel_size_nm > 0 or not frame_interval_s > 0:
            raise RecordingError("pixel_size_nm and frame_interval_s must be positive")
        group = zarr.open_group(path, mode="w", zarr_format=3)
        image = group.create_group("raw")
        image.attrs["ome"] = _raw_metadata(frame_interval_s, pixel_size_nm)
        image.create_array(
            LEVEL,
            shape=(0, h, w),
            chunks=(chunk_frames, h, w),
            dtype="uint16",
            fill_value=0,
            dimension_names=DIMENSION_NAMES,
        )
        loc = group.create_group("localizations")
        for name, dtype in _LOC_DTYPES.items():
            loc.create_array(name, shape=(0,), chunks=(_TABLE_CHUNK,), dtype=dtype)
        loc.attrs["rows_written"] = 0
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "pixel_size_nm": float(pixel_size_nm),
            "frame_interval_s": float(frame_interval_s),
            "camera": _jsonable(dict(camera or {})),
            "config": _jsonable(config) if config is not None else None,
            "frames_written": 0,
            **_jsonable(dict(extra or {})),
        }
        group.attrs["dblink_live"] = meta
        # the root is an OME-Zarr 0.5 collection of images (the bioformats2raw layout with an
        # explicit series list, the one collection that 0.5 defines)
        group.attrs["ome"] = {"version": "0.5", "bioformats2raw.layout": 3}
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
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        if not path.exists():
            raise RecordingError(f"no recording at {path}")
        if path.is_file():
            raise RecordingError(
                f"{path} is a file, not a recording (a recording is a *.zarr folder)"
            )
        if not (path / "zarr.json").exists():
            if (path / ".zgroup").exists() or (path / ".zarray").exists():
                raise RecordingError(
                    f"{path} is a zarr v2 store; dblink_live recordings are zarr v3"
                )
            raise RecordingError(f"{path} is not a zarr store (no zarr.json); is this a recording?")
        try:
            json.loads((path / "zarr.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecordingError(
                f"{path}/zarr.json is corrupt ({exc}); the store cannot be read"
            ) from None
        open_mode: Literal["r", "r+"] = "r" if mode == "r" else "r+"
        try:
            group = zarr.open_group(path, mode=open_mode, zarr_format=3)
        except Exception as exc:  # zarr raises many types for foreign stores
            raise RecordingError(f"{path} cannot be opened as a zarr v3 group: {exc}") from None
        meta = group.attrs.get("dblink_live")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise RecordingError(
                f"{path} is a zarr group but not a dblink_live recording "
                f"(attrs['dblink_live']['format'] != {FORMAT_NAME!r})"
            )
        version = meta.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise RecordingError(
                f"{path} has format_version {version!r}; this dblink_live reads up to "
                f"{FORMAT_VERSION}: upgrade dblink_live"
            )
        for key in ("pixel_size_nm", "frame_interval_s", "frames_written"):
            if key not in meta:
                raise RecordingError(
                    f"{path}: attrs['dblink_live'] lacks {key!r}; the store is damaged"
                )
        rec = cls(path, group, 0, mode, version)
        where = rec._array_path("raw")
        try:
            raw = group[where]
        except KeyError:
            raise RecordingError(f"{path} has no 'raw' array; the store is damaged") from None
        if not isinstance(raw, zarr.Array) or raw.ndim != 3 or raw.dtype != np.uint16:
            raise RecordingError(f"{path}/{where} must be a (T, Y, X) uint16 array")
        rec._n_frames = rec._complete_frames(int(meta["frames_written"]), raw)
        return rec

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

    # ------------------------------------------------------------------ layout
    def _array_path(self, image: str) -> str:
        """Where the array of image ``image`` ("raw", a name of ``IMAGE_NAMES``, or a staged
        name) lives in this store's layout."""
        return image if self.format_version < 2 else f"{image}/{LEVEL}"

    def _array(self, where: str) -> zarr.Array:
        """The array at ``where`` in the store (KeyError if absent, RecordingError if a group
        is there)."""
        return _as_array(self.group[where], f"{self.path}/{where}")

    def _group(self, where: str) -> zarr.Group:
        """The group at ``where`` in the store (KeyError if absent, RecordingError if an array
        is there)."""
        return _as_group(self.group[where], f"{self.path}/{where}")

    def image_array(self, name: str) -> zarr.Array | None:
        """The array of image ``name`` (its dblink_live attributes: ``bin_nm``,
        ``frames_written``, ...), in either layout; None if the recording lacks it.
        RecordingError if a group stands where the array belongs (a damaged store)."""
        if name not in self.group:
            return None
        return self._array(self._array_path(name))

    def _write_series(self, leave_out: str | None = None) -> None:
        """List the image groups present in ``OME/zarr.json`` (format 2), so that OME-Zarr
        tools find every image of the collection and no path that is missing."""
        if self.format_version < 2:
            return
        names = ["raw", *(n for n in self.images() if n != leave_out)]
        ome = self.group.require_group("OME")
        ome.attrs["ome"] = {"version": "0.5", "series": names}

    def image_group(self, name: str) -> zarr.Group | None:
        """The OME-Zarr image group of ``name`` (format 2), None for a format 1 store or an
        image the recording lacks. RecordingError if an array stands where the group belongs."""
        if self.format_version < 2 or name not in self.group:
            return None
        return self._group(name)

    # ------------------------------------------------------------------ metadata
    @property
    def meta(self) -> dict[str, Any]:
        """``attrs["dblink_live"]`` (a copy)."""
        return dict(cast(Mapping[str, Any], self.group.attrs["dblink_live"]))

    @property
    def pixel_size_nm(self) -> float:
        return float(self.meta["pixel_size_nm"])

    @property
    def frame_interval_s(self) -> float:
        return float(self.meta["frame_interval_s"])

    @property
    def camera(self) -> dict[str, Any]:
        return dict(self.meta.get("camera") or {})

    @property
    def config(self) -> dict[str, Any] | None:
        """The stored resolved config (a dict; load with ``config_from_dict``)."""
        return self.meta.get("config")

    @property
    def raw(self) -> zarr.Array:
        """The raw array (may be longer than :attr:`n_frames` after a crash: use read_frames)."""
        return _full(self._array(self._array_path("raw")))

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(Y, X) of a raw frame in pixels."""
        return tuple(self.raw.shape[1:])  # type: ignore[return-value]

    @property
    def n_frames(self) -> int:
        """Number of complete frames."""
        return self._n_frames

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise RecordingError(f"{self.path} is open read-only; open it with mode='r+' to write")

    def update_meta(self, **values: Any) -> None:
        """Set keys of ``attrs["dblink_live"]`` (atomic rewrite)."""
        self._require_writable()
        meta = self.meta
        meta.update(_jsonable(values))
        self.group.attrs["dblink_live"] = meta

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

    def append_localizations(self, locs: Localizations) -> int:
        """Append a :class:`Localizations` table; returns the new row count."""
        if abs(locs.pixel_size_nm - self.pixel_size_nm) > 1e-6 and len(locs):
            log.debug(
                "localizations pixel size %s differs from the recording's", locs.pixel_size_nm
            )
        return self._append_table("localizations", _LOC_DTYPES, locs.columns())

    @property
    def n_localizations(self) -> int:
        """Complete localization rows."""
        if "localizations" not in self.group:
            return 0
        return _attr_int(self.group["localizations"].attrs, "rows_written", 0)

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

    def update_localization_info(self, **values: Any) -> None:
        """Add to how the localizations were made (e.g. the yield check's numbers)."""
        self._require_writable()
        g = self._table("localizations", _LOC_DTYPES)
        info = dict(cast(Mapping[str, Any], g.attrs.get("localizer") or {}))
        info.update(_jsonable(values))
        g.attrs["localizer"] = info

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

    def append_emitters(self, table: EmitterTable) -> int:
        """Append simulated ground-truth emitters to ``gt/emitters``."""
        return self._append_table("gt/emitters", _EMITTER_DTYPES, table.columns())

    def read_emitters(self) -> EmitterTable | None:
        """Ground-truth emitters, or None for a recording that is not simulated."""
        cols = self._read_table("gt/emitters", _EMITTER_DTYPES)
        return None if cols is None else EmitterTable(**cols)

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

    def read_image(self, name: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """(data (T', Y', X'), attrs) of an image, or None if the recording lacks it."""
        arr = self.image_array(name)
        if arr is None:
            return None
        n = min(_attr_int(arr.attrs, "frames_written", arr.shape[0]), arr.shape[0])
        return np.asarray(arr[:n]), dict(arr.attrs)

    def images(self) -> list[str]:
        """Names of the grid images this recording holds."""
        return [n for n in IMAGE_NAMES if n in self.group]

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

    def __repr__(self) -> str:
        return f"Recording({str(self.path)!r}, frames={self.n_frames}, shape={self.frame_shape})"
