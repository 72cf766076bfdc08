"""Picasso HDF5 localizations (``/locs``) with their YAML sidecar; conventions in
:mod:`dblink_live.io.tables`."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from dblink_live import __version__
from dblink_live.errors import FormatError
from dblink_live.io.tables.common import build_localizations, first_line, lateral
from dblink_live.io.tables.hdf5 import H5_ERRORS, list_names, open_h5
from dblink_live.io.tables.registry import TableFormat, TableSource, register
from dblink_live.localizations import Localizations

_log = logging.getLogger(__package__)  # "dblink_live.io.tables", as before the split


class _LenientYamlLoader(yaml.SafeLoader):
    """Safe loader that reads unknown tags (Picasso dumps Python objects) as plain data."""


def _construct_untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_LenientYamlLoader.add_multi_constructor("", _construct_untagged)


#: Key of the whole-pixel (x, y) shift our Picasso writer applies (see ``_write_picasso``).
PICASSO_SHIFT_KEY = "dblink_live shift (px)"
#: Beside Picasso's /locs: per row, which values our writer filled in (bit flags below).
_MISSING_DATASET = "dblink_live_missing"
_MISSING_PHOTONS, _MISSING_BG, _MISSING_PRECISION, _MISSING_SCORE = 1, 2, 4, 8


def _picasso_yaml_path(p: Path) -> Path:
    return p.with_suffix(".yaml")


def _load_yaml_docs(y: Path) -> list[Any]:
    try:
        text = y.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{y}: cannot read Picasso metadata ({exc})") from exc
    try:
        return [d for d in yaml.load_all(text, Loader=_LenientYamlLoader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{y}:{mark.line + 1}" if mark is not None else str(y)
        raise FormatError(f"{where}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise FormatError(f"{y}: invalid YAML ({first_line(exc)})") from None


def _read_picasso(src: TableSource) -> Localizations:
    p, pixel_size_nm = src.path, src.pixel_size_nm
    y = _picasso_yaml_path(p)
    if not y.is_file():
        raise FormatError(
            f"{p}: Picasso localizations need their metadata file {y.name} beside them (not found)"
        )
    docs = _load_yaml_docs(y)
    found: dict[str, float] = {}  # "Camera.Pixelsize" (the movie's) and "Pixelsize" (Localize)
    n_frames = 0
    shift = (0.0, 0.0)  # our writer's whole-pixel shift, undone here
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        if PICASSO_SHIFT_KEY in doc:
            value = doc[PICASSO_SHIFT_KEY]
            try:
                if not isinstance(value, list | tuple) or len(value) != 2:
                    raise TypeError
                shift = (float(value[0]), float(value[1]))
            except (TypeError, ValueError):
                raise FormatError(
                    f"{y}: {PICASSO_SHIFT_KEY} is not two numbers: {value!r}"
                ) from None
        if i == 0 and isinstance(doc.get("Frames"), int):
            n_frames = int(doc["Frames"])
        for key, value in doc.items():
            k = str(key).replace(" ", "").lower()
            if k in ("pixelsize", "camera.pixelsize"):
                try:
                    found.setdefault(k, float(value))
                except (TypeError, ValueError):
                    raise FormatError(f"{y}: {key} is not a number: {value!r}") from None
    # the camera's own pixel size (written with the movie) wins over Localize's setting
    px = found.get("camera.pixelsize", found.get("pixelsize"))
    if len(found) == 2 and found["camera.pixelsize"] != found["pixelsize"]:
        _log.warning(
            "%s: Camera.Pixelsize is %g nm but Localize's Pixelsize is %g nm; using the "
            "camera's %g nm (give pixel_size_nm / --pixel-size-nm to override)",
            y.name,
            found["camera.pixelsize"],
            found["pixelsize"],
            found["camera.pixelsize"],
        )
    if px is None:
        px = pixel_size_nm
    if px is None:
        raise FormatError(
            f"{p}: pixel size unknown: {y.name} has no Pixelsize entry; pass pixel_size_nm"
        )
    if not (math.isfinite(px) and px > 0):
        raise FormatError(f"{y}: Pixelsize must be a positive number, got {px!r}")

    try:
        with open_h5(p) as f:
            if "locs" not in f or not isinstance(f["locs"], h5py.Dataset):
                raise FormatError(f"{p}: no /locs dataset; found: {list_names(f.keys())}")
            ds = f["locs"]
            _check_record_type(p, ds.dtype)
            if ds.ndim != 1:
                raise FormatError(f"{p}: /locs has shape {ds.shape}, expected one row per entry")
            locs = ds[()]
            filled = f[_MISSING_DATASET][()] if _MISSING_DATASET in f else None
    except FormatError:
        raise
    except H5_ERRORS as exc:
        raise FormatError(f"{p}: cannot read Picasso /locs ({first_line(exc)})") from exc
    names = locs.dtype.names or ()
    for field in ("frame", "x", "y"):
        if field not in names:
            raise FormatError(
                f"{p}: /locs has no {field!r} field; found fields: {list_names(names)}"
            )

    def num(name: str) -> np.ndarray:
        """The numeric field ``name`` (present) as float64."""
        if locs.dtype[name].kind not in "uif" or locs.dtype[name].shape:
            raise FormatError(f"{p}: /locs field {name!r} is not numeric ({locs.dtype[name]})")
        with np.errstate(all="ignore"):
            return np.asarray(locs[name], np.float64)

    def fld(name: str) -> np.ndarray | None:
        """The numeric field ``name`` as float64, or None where the table lacks it."""
        return num(name) if name in names else None

    lpx, lpy = fld("lpx"), fld("lpy")
    photons, bg, score = fld("photons"), fld("bg"), fld("score")
    if filled is not None and len(filled) == len(locs):  # values our writer filled in
        flags = np.asarray(filled, np.uint8)
        for arr, bit in ((photons, _MISSING_PHOTONS), (bg, _MISSING_BG), (score, _MISSING_SCORE)):
            if arr is not None:
                arr[(flags & bit) > 0] = np.nan
        for arr in (lpx, lpy):
            if arr is not None:
                arr[(flags & _MISSING_PRECISION) > 0] = np.nan
    return build_localizations(
        lambda i: f"{p}: /locs entry {i}",
        num("frame"),  # present: checked above
        (num("x") - shift[0] + 0.5) * px,
        (num("y") - shift[1] + 0.5) * px,
        photons=photons,
        background=bg,
        uncertainty_nm=lateral(
            None if lpx is None else lpx * px, None if lpy is None else lpy * px
        ),
        score=score,
        frame_base=0,
        pixel_size_nm=px,
        n_frames=n_frames,
    )


def _check_record_type(p: Path, dtype: np.dtype) -> None:
    """Reject damaged compound types before reading (overlapping fields crash h5py)."""
    fields = dtype.fields  # None exactly when names is
    if dtype.names is None or fields is None:
        raise FormatError(f"{p}: /locs is not a table of records (dtype {dtype})")
    spans = sorted((int(off), int(off) + dt.itemsize) for dt, off, *_ in fields.values())
    ends_ok = all(lo >= 0 and hi <= dtype.itemsize for lo, hi in spans)
    if not ends_ok or any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        raise FormatError(f"{p}: /locs has a damaged record type (overlapping fields)")


def _write_picasso(locs: Localizations, p: Path) -> None:
    px = float(locs.pixel_size_nm)
    n = len(locs)
    if n and int(locs.frame.max()) > np.iinfo(np.uint32).max:
        raise FormatError(f"{p}: frame numbers beyond uint32 do not fit Picasso's frame field")
    dtype = [
        ("frame", "u4"),
        ("x", "f4"),
        ("y", "f4"),
        ("photons", "f4"),
        ("bg", "f4"),
        ("lpx", "f4"),
        ("lpy", "f4"),
        ("score", "f4"),
    ]
    rec = np.zeros(n, dtype=dtype)
    x = locs.x_nm.astype(np.float64) / px - 0.5  # Picasso: pixel centres at integers
    y = locs.y_nm.astype(np.float64) / px - 0.5
    if n and not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise FormatError(f"{p}: positions that are not finite cannot be written for Picasso")
    # Picasso's sanity filter (picasso.lib.ensure_sanity) keeps only rows with every field
    # finite, 0 < x < Width, 0 < y < Height and lpx, lpy > 0. Localizations in the outer half
    # pixel of the frame (x < 0.5 px in our convention) would be dropped: shift the table by
    # whole pixels instead, say so in the YAML, and undo it when reading back.
    shift = [math.floor(-float(a.min())) + 1 if n and float(a.min()) <= 0 else 0 for a in (x, y)]
    rec["frame"] = locs.frame
    rec["x"] = x + shift[0]
    rec["y"] = y + shift[1]
    photons = np.asarray(locs.photons, np.float64)
    bg = np.asarray(locs.background, np.float64)
    lp = np.asarray(locs.uncertainty_nm, np.float64) / px
    missing = (
        (~np.isfinite(photons)).astype(np.uint8) * _MISSING_PHOTONS
        | (~np.isfinite(bg)).astype(np.uint8) * _MISSING_BG
        | (~(np.isfinite(lp) & (lp > 0))).astype(np.uint8) * _MISSING_PRECISION
        | (~np.isfinite(np.asarray(locs.score, np.float64))).astype(np.uint8) * _MISSING_SCORE
    )
    unknown = missing > 0
    rec["photons"] = np.where(np.isfinite(photons), photons, 0.0)
    rec["bg"] = np.where(np.isfinite(bg), bg, 0.0)
    rec["lpx"] = np.where(np.isfinite(lp) & (lp > 0), lp, 1.0)
    rec["lpy"] = rec["lpx"]
    rec["score"] = np.where(np.isfinite(locs.score), locs.score, 0.0)
    if unknown.any():
        _log.warning(
            "%s: %d localizations lack photons, background, precision or score, which Picasso "
            "requires: written for Picasso with 0 photons/background/score and a precision of "
            "1 pixel (counted in the YAML as 'dblink_live rows filled'; our reader restores "
            "them as unknown)",
            p.name,
            int(unknown.sum()),
        )

    def extent(a: np.ndarray) -> int:  # an integer above every value (x < Width)
        return max(1, math.floor(float(a.max())) + 1) if a.size else 1

    movie = {
        "Byte Order": "<",
        "Data Type": "uint16",
        "Frames": int(locs.n_frames),
        "Height": extent(rec["y"]),
        "Width": extent(rec["x"]),
    }
    localize: dict[str, Any] = {
        "Generated by": f"dblink_live {__version__} write_localizations",
        "Pixelsize": px,
    }
    if any(shift):
        localize[PICASSO_SHIFT_KEY] = shift
        localize["dblink_live note"] = (
            f"x and y are shifted by {shift} pixels so that every localization passes "
            "Picasso's sanity filter (x, y > 0); subtract them for camera pixels"
        )
    if unknown.any():
        localize["dblink_live rows filled"] = int(unknown.sum())
    with h5py.File(p, "w") as f:
        f.create_dataset("locs", data=rec)
        if unknown.any():  # which values were filled in (Picasso reads /locs only)
            f.create_dataset(_MISSING_DATASET, data=missing)
    with _picasso_yaml_path(p).open("w", encoding="utf-8") as fh:
        yaml.safe_dump_all([movie, localize], fh, default_flow_style=False, sort_keys=False)


PICASSO = register(
    TableFormat[h5py.File](
        name="picasso",
        suffixes=(".hdf5", ".h5"),
        sniff=lambda f: "locs" in f,
        read=_read_picasso,
        write=_write_picasso,
        hdf5=True,
        holds="Picasso localizations",
    )
)
