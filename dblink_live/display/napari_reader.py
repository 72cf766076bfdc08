"""napari reader for dblink_live recordings (npe2 contribution ``dblink-live.read_recording``).

Opens a recording as layers in world coordinates (seconds, nanometres), with each layer's scale
and translation taken from the recording's OME-Zarr metadata, so raw frames, reconstruction,
confidence and localizations overlay as they do in any OME-Zarr viewer:

- ``raw``: (T, Y, X) camera frames, read lazily chunk by chunk;
- ``reconstruction``, ``confidence`` (and the simulated ``gt/skeleton``, ``gt/structure``,
  hidden): (T', Y', X') maps on the reconstruction grid;
- ``localizations``: a Points layer, one point per localization at (frame, y_nm, x_nm), with the
  frame as the time axis (scale: the frame interval), so each raw frame shows its own
  localizations; photons, background, uncertainty and score as point features.

This module imports neither Qt nor napari: it returns napari's layer-data tuples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from dblink_live.errors import DblinkError
from dblink_live.io.recording import FORMAT_NAME, Recording

__all__ = ["get_reader", "is_recording", "read_recording", "world_transform"]

LayerData = tuple[Any, dict[str, Any], str]

#: Layers made from the grid images: (image name, colormap, visible).
_GRID_LAYERS = (
    ("reconstruction", "magma", True),
    ("confidence", "viridis", False),
    ("gt/skeleton", "gray", False),
    ("gt/structure", "gray", False),
)
_UNITS = ("second", "nanometer", "nanometer")
_AXES = ("t", "y", "x")


def is_recording(path: str | Path) -> bool:
    """Whether ``path`` is a dblink_live recording (reads one small JSON file)."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes") or {}
    except (OSError, ValueError):
        return False
    return (attrs.get("dblink_live") or {}).get("format") == FORMAT_NAME


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: :func:`read_recording` for a recording folder (or a sequence of
    folders that are all recordings), else None (so napari asks its other readers)."""
    if isinstance(path, (str, os.PathLike)):
        return read_recording if is_recording(path) else None
    if not path or not all(is_recording(p) for p in path):
        return None
    return read_recording


def world_transform(ome: dict[str, Any]) -> tuple[list[float], list[float]]:
    """``(scale, translate)`` of a single-level image from its OME-Zarr ``attrs["ome"]``:
    napari places element 0 at ``translate`` and element ``k`` at ``translate + k * scale``,
    the OME-Zarr convention for the element's centre."""
    transforms = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    scale = next(t["scale"] for t in transforms if t["type"] == "scale")
    shift = next((t["translation"] for t in transforms if t["type"] == "translation"), None)
    return [float(v) for v in scale], [float(v) for v in (shift or [0.0] * len(scale))]


class _Prefix:
    """The first ``n`` elements along axis 0 of an array (a zarr array that a crash left longer
    than its counter), read lazily: what napari needs of an array (shape, dtype, indexing)."""

    def __init__(self, array: Any, n: int):
        self.array, self.n = array, int(n)
        self.shape = (self.n, *array.shape[1:])
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key else slice(None)
        if isinstance(first, slice):
            first = slice(*first.indices(self.n))
        elif isinstance(first, (int, np.integer)):
            first = int(first) + self.n if first < 0 else int(first)
            if not 0 <= first < self.n:
                raise IndexError(f"index {first} out of range for {self.n} elements")
        else:
            first = np.asarray(first)
            if first.dtype == bool:
                first = np.flatnonzero(first)
            if (first >= self.n).any():
                raise IndexError(f"index out of range for {self.n} elements")
        return np.asarray(self.array[(first, *key[1:])])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _ome(rec: Recording, name: str, fallback: dict[str, Any] | None) -> dict[str, Any]:
    group = rec.image_group(name)
    if group is not None:
        return dict(cast(Mapping[str, Any], group.attrs["ome"]))
    if fallback is not None:  # format 1 kept the block on the array, with element corners
        return fallback
    raise DblinkError(f"{rec.path}: {name} has no OME-Zarr metadata")


def _v1_ome(rec: Recording, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Format 1 stores translated element corners (and 0 for raw): rebuild the centres from
    the grid facts, as format 2 writes them."""
    from dblink_live.io.recording import _map_metadata, _raw_metadata

    if name == "raw":
        return _raw_metadata(rec.frame_interval_s, rec.pixel_size_nm)
    origin = attrs.get("origin_nm") or [0.0, 0.0]
    return _map_metadata(
        name,
        rec.frame_interval_s,
        float(attrs["bin_nm"]),
        int(attrs["window_frames"]),
        int(attrs.get("stride_frames") or attrs["window_frames"]),
        int(attrs.get("first_frame", 0)),
        (float(origin[0]), float(origin[1])),
    )


def _contrast(data: Any, n: int) -> list[float]:
    """Contrast limits from the middle element (reading the whole lazy array would be slow)."""
    if n == 0:
        return [0.0, 1.0]
    sample = np.asarray(data[n // 2], dtype=np.float32)
    lo, hi = np.percentile(sample, [0.5, 99.8])
    return [float(lo), float(max(hi, lo + 1.0))]


def _image_kwargs(name: str, scale: list[float], translate: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "scale": scale,
        "translate": translate,
        "units": _UNITS,
        "axis_labels": _AXES,
        "metadata": {"dblink_live_image": name},
    }


def read_recording(path: str | Path | Sequence[str | Path]) -> list[LayerData]:
    """Layers of one recording (or several): see the module docstring.

    Raises :class:`~dblink_live.errors.DblinkError` (a
    :class:`~dblink_live.errors.RecordingError`) with a one-line reason for a damaged store.
    """
    if not isinstance(path, (str, os.PathLike)):
        return [layer for p in path for layer in read_recording(p)]
    rec = Recording.open(path)
    layers: list[LayerData] = []

    raw = _Prefix(rec.raw, rec.n_frames)
    scale, translate = world_transform(_ome(rec, "raw", _v1_ome(rec, "raw", {})))
    kw = _image_kwargs("raw", scale, translate)
    kw.update(colormap="gray", contrast_limits=_contrast(raw, rec.n_frames))
    layers.append((raw, kw, "image"))

    for name, colormap, visible in _GRID_LAYERS:
        arr = rec.image_array(name)
        if arr is None:
            continue
        attrs: dict[str, Any] = dict(arr.attrs)
        n = min(int(attrs.get("frames_written", arr.shape[0])), arr.shape[0])
        if n == 0:
            continue
        scale, translate = world_transform(_ome(rec, name, _v1_ome(rec, name, attrs)))
        kw = _image_kwargs(name, scale, translate)
        limits = [0.0, 1.0] if name in ("reconstruction", "confidence") else None
        kw.update(
            colormap=colormap,
            visible=visible,
            blending="additive",
            contrast_limits=limits or _contrast(_Prefix(arr, n), n),
        )
        layers.append((_Prefix(arr, n), kw, "image"))

    locs = rec.read_localizations()
    if len(locs):
        dt = rec.frame_interval_s
        points = np.column_stack([locs.frame, locs.y_nm, locs.x_nm]).astype(np.float64)
        finite = np.isfinite(locs.uncertainty_nm)
        size = float(np.median(locs.uncertainty_nm[finite])) * 2.0 if finite.any() else 40.0
        features = {
            c: getattr(locs, c) for c in ("photons", "background", "uncertainty_nm", "score")
        }
        layers.append(
            (
                points,
                {
                    "name": "localizations",
                    "scale": [dt, 1.0, 1.0],
                    "units": _UNITS,
                    "axis_labels": _AXES,
                    "size": max(size, 5.0),
                    "features": features,
                    "face_color": "cyan",
                    "border_width": 0.0,
                    "visible": False,
                    "out_of_slice_display": False,
                    "metadata": {"dblink_live_image": "localizations"},
                },
                "points",
            )
        )
    return layers
