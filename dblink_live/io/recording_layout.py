"""Layout of a recording store: names, dtypes, chunking, OME-Zarr metadata, creation and the
checks made on opening (format, version, required attributes). The format itself is described
in :mod:`dblink_live.io.recording`; :class:`RecordingBase` holds what both the readers
(:mod:`~dblink_live.io.recording_read`) and the appenders (:mod:`~dblink_live.io.recording_append`)
need: where each array lives in either layout, and the run's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr

from dblink_live import __version__
from dblink_live.errors import RecordingError
from dblink_live.io.outputs import check_writable
from dblink_live.localizations import Localizations

__all__ = [
    "DIMENSION_NAMES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_NAMES",
    "LEVEL",
    "STAGED_SUFFIX",
    "RecordingBase",
    "create_store",
    "image_metadata",
    "open_store",
]

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


def create_store(
    path: Path,
    *,
    frame_shape: tuple[int, int],
    pixel_size_nm: float,
    frame_interval_s: float,
    camera: Mapping[str, Any] | None,
    config: Any,
    chunk_frames: int,
    overwrite: bool,
    extra: Mapping[str, Any] | None,
) -> zarr.Group:
    """Check the arguments of :meth:`Recording.create <dblink_live.io.recording.Recording.create>`
    and write an empty store at ``path`` in the current layout: an empty (0, Y, X) uint16
    ``raw`` image chunked by ``chunk_frames`` frames, empty localization columns and the root
    attributes. Returns its root group (the caller lists the image series)."""
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
    return group


def open_store(path: Path, mode: str) -> tuple[zarr.Group, int]:
    """Open the store at ``path`` and check that it is a dblink_live recording this version
    reads (see :meth:`Recording.open <dblink_live.io.recording.Recording.open>` for what raises
    :class:`~dblink_live.errors.RecordingError`). Returns (root group, format version)."""
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
    if not path.exists():
        raise RecordingError(f"no recording at {path}")
    if path.is_file():
        raise RecordingError(f"{path} is a file, not a recording (a recording is a *.zarr folder)")
    if not (path / "zarr.json").exists():
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            raise RecordingError(f"{path} is a zarr v2 store; dblink_live recordings are zarr v3")
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
    return group, version


class RecordingBase:
    """What every part of a :class:`~dblink_live.io.recording.Recording` uses: the store, its
    layout (where each array lives) and the run's metadata."""

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

    def images(self) -> list[str]:
        """Names of the grid images this recording holds."""
        return [n for n in IMAGE_NAMES if n in self.group]

    def _checked_raw(self) -> zarr.Array:
        """The ``raw`` array (not set to write every chunk), checked to be (T, Y, X) uint16."""
        where = self._array_path("raw")
        try:
            raw = self.group[where]
        except KeyError:
            raise RecordingError(f"{self.path} has no 'raw' array; the store is damaged") from None
        if not isinstance(raw, zarr.Array) or raw.ndim != 3 or raw.dtype != np.uint16:
            raise RecordingError(f"{self.path}/{where} must be a (T, Y, X) uint16 array")
        return raw
