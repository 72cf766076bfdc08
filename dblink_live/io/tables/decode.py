"""DECODE emitter sets: the HDF5 file (``"decode"``, read and written) and the CSV export
(``"decode_csv"``, read only); conventions in :mod:`dblink_live.io.tables`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dblink_live import __version__
from dblink_live.errors import FormatError
from dblink_live.io.tables.common import build_localizations, first_line, lateral
from dblink_live.io.tables.hdf5 import H5_ERRORS, list_names, open_h5
from dblink_live.io.tables.registry import TableFormat, TableSource, register
from dblink_live.io.tables.text import find_header, is_comment, name_unit, parse_columns
from dblink_live.localizations import Localizations

#: File-name endings of HDF5 files (any of them marks a file as HDF5 without its signature).
H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


def _sniff_decode_csv(src: TableSource) -> bool:
    """A ``# DECODE EmitterSet`` comment among the first lines, or a ``frame_ix`` column."""
    leading = [line.strip() for line in src.lines[:20] if is_comment(line)]
    if any(c.lstrip("#").strip().lower() == "decode emitterset" for c in leading):
        return True
    return "frame_ix" in [name_unit(label)[0] for label in src.header_labels]


def _decode_px_size(p: Path, px_size: Any, pixel_size_nm: float | None) -> tuple[float, float]:
    if px_size is None:
        if pixel_size_nm is None:
            raise FormatError(f"{p}: DECODE table has no px_size; pass pixel_size_nm")
        return float(pixel_size_nm), float(pixel_size_nm)
    try:
        arr = np.asarray(px_size, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FormatError(f"{p}: DECODE px_size is not numeric: {px_size!r}") from None
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise FormatError(f"{p}: DECODE px_size must be [px_x, px_y] > 0, got {arr.tolist()}")
    return float(arr[0]), float(arr[1])


def _from_decode(
    p: Path,
    locate: Callable[[int], str],
    *,
    frame: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    xy_unit: str,
    px_size: Any,
    pixel_size_nm: float | None,
    phot: np.ndarray | None,
    bg: np.ndarray | None,
    prob: np.ndarray | None,
    sx: np.ndarray | None,
    sy: np.ndarray | None,
    n_frames: int = 0,
    labels: tuple[str, str, str] = ("frame_ix", "x", "y"),
) -> Localizations:
    unit = xy_unit.strip().lower()
    if unit not in ("px", "nm"):
        raise FormatError(f"{p}: DECODE xy_unit must be 'px' or 'nm', got {xy_unit!r}")
    px_x, px_y = _decode_px_size(p, px_size, pixel_size_nm)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if unit == "px":
        x_nm, y_nm = (x + 0.5) * px_x, (y + 0.5) * px_y
        ux = None if sx is None else np.asarray(sx, np.float64) * px_x
        uy = None if sy is None else np.asarray(sy, np.float64) * px_y
    else:  # DECODE's nm are px * px_size: pixel centres still at integer multiples
        x_nm, y_nm = x + 0.5 * px_x, y + 0.5 * px_y
        ux, uy = sx, sy
    return build_localizations(
        locate,
        frame,
        x_nm,
        y_nm,
        photons=phot,
        background=bg,
        uncertainty_nm=lateral(ux, uy),
        score=prob,
        frame_base=0,
        pixel_size_nm=px_x,
        n_frames=n_frames,
        frame_label=labels[0],
        x_label=labels[1],
        y_label=labels[2],
    )


def _sqrt_var(v: np.ndarray) -> np.ndarray:
    """Standard deviation from a (Cramer-Rao) variance; negative variances give NaN."""
    v = np.asarray(v, np.float64)
    return np.sqrt(np.where(v >= 0, v, np.nan))


def _h5_array(p: Path, group: h5py.Group, name: str, n: int | None) -> np.ndarray | None:
    """A dataset as float64/int array, None when absent or DECODE's empty (all-NaN) marker."""
    if name not in group:
        return None
    ds = group[name]
    if not isinstance(ds, h5py.Dataset):
        raise FormatError(f"{p}: {group.name}/{name} is not a dataset")
    if ds.shape is None:  # h5py.Empty: DECODE writes all-NaN columns this way
        return None
    arr = np.asarray(ds[()])
    if arr.dtype.kind not in "uif":
        raise FormatError(f"{p}: {ds.name} is not numeric (dtype {arr.dtype})")
    if n is not None and (arr.ndim == 0 or arr.shape[0] != n):
        raise FormatError(f"{p}: {ds.name} has shape {arr.shape}, expected {n} rows")
    return arr


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _attr_str(value.reshape(-1)[0])
    return str(value)


def _read_decode_h5(src: TableSource) -> Localizations:
    p, pixel_size_nm = src.path, src.pixel_size_nm
    try:
        with open_h5(p) as f:
            if "data" not in f or "meta" not in f:
                raise FormatError(
                    f"{p}: not a DECODE emitter set (needs groups data and meta); found: "
                    + list_names(f.keys())
                )
            g = f["data"]
            xyz = _h5_array(p, g, "xyz", None)
            if xyz is None:
                raise FormatError(f"{p}: DECODE file has no data/xyz")
            if xyz.ndim != 2 or xyz.shape[1] not in (2, 3):
                raise FormatError(f"{p}: data/xyz has shape {xyz.shape}, expected (N, 3)")
            n = xyz.shape[0]
            frame = _h5_array(p, g, "frame_ix", n)
            if frame is None:
                raise FormatError(f"{p}: DECODE file has no data/frame_ix")
            sig = _h5_array(p, g, "xyz_sig", n)
            var = _h5_array(p, g, "xyz_cr", n) if sig is None else None
            sigma = sig if sig is not None else (None if var is None else _sqrt_var(var))
            meta = f["meta"].attrs
            xy_unit = _attr_str(meta["xy_unit"]) if "xy_unit" in meta else "px"
            px_size = meta.get("px_size")
            n_frames = int(f.attrs.get("dblink_live.n_frames", 0))
            return _from_decode(
                p,
                lambda i: f"{p}: entry {i}",
                frame=frame,
                x=xyz[:, 0],
                y=xyz[:, 1],
                xy_unit=xy_unit,
                px_size=px_size,
                pixel_size_nm=pixel_size_nm,
                phot=_h5_array(p, g, "phot", n),
                bg=_h5_array(p, g, "bg", n),
                prob=_h5_array(p, g, "prob", n),
                sx=None if sigma is None else sigma[:, 0],
                sy=None if sigma is None else sigma[:, 1],
                n_frames=n_frames,
            )
    except FormatError:
        raise
    except H5_ERRORS as exc:
        raise FormatError(f"{p}: cannot read DECODE HDF5 data ({first_line(exc)})") from exc


def _read_decode_csv(src: TableSource) -> Localizations:
    p, lines, pixel_size_nm = src.path, src.lines, src.pixel_size_nm
    h, delimiter, header = find_header(p, lines)
    meta: dict[str, Any] = {}
    for line in lines[:h]:
        text = line.strip().lstrip("#").strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and ("xy_unit" in obj or "px_size" in obj):
                meta.update(obj)
    lower = [label.lower() for label in header]
    wanted: dict[str, int] = {}
    for key in ("frame_ix", "x", "y"):
        if key not in lower:
            raise FormatError(f"{p}: no {key} column; found columns: {', '.join(header)}")
        wanted[key] = lower.index(key)
    for key in ("phot", "bg", "prob", "x_sig", "y_sig", "x_cr", "y_cr"):
        if key in lower:
            wanted[key] = lower.index(key)
    t = parse_columns(p, lines, h + 1, delimiter, header, wanted)

    def sigma(axis: str) -> np.ndarray | None:
        s = t.get(f"{axis}_sig")
        if s is not None and np.isfinite(s).any():
            return s
        v = t.get(f"{axis}_cr")
        return None if v is None else _sqrt_var(v)

    xy_unit = meta.get("xy_unit") or "px"
    return _from_decode(
        p,
        t.locate,
        frame=t["frame_ix"],
        x=t["x"],
        y=t["y"],
        xy_unit=str(xy_unit),
        px_size=meta.get("px_size"),
        pixel_size_nm=pixel_size_nm,
        phot=t.get("phot"),
        bg=t.get("bg"),
        prob=t.get("prob"),
        sx=sigma("x"),
        sy=sigma("y"),
        labels=(header[wanted["frame_ix"]], header[wanted["x"]], header[wanted["y"]]),
    )


def _write_decode_h5(locs: Localizations, p: Path) -> None:
    px = float(locs.pixel_size_nm)
    n = len(locs)
    xyz = np.zeros((n, 3), np.float32)
    xyz[:, 0] = locs.x_nm.astype(np.float64) / px - 0.5
    xyz[:, 1] = locs.y_nm.astype(np.float64) / px - 0.5
    unc_px = locs.uncertainty_nm.astype(np.float64) / px
    with h5py.File(p, "w") as f:
        f.attrs["dblink_live.n_frames"] = int(locs.n_frames)
        m = f.create_group("meta")
        m.attrs["xy_unit"] = "px"
        m.attrs["px_size"] = np.array([px, px], np.float64)
        d = f.create_group("decode")
        d.attrs["version"] = f"dblink_live {__version__}"
        g = f.create_group("data")

        def volatile(name: str, arr: np.ndarray) -> None:
            if arr.size == 0 or np.isnan(arr).all():
                g.create_dataset(name, data=h5py.Empty("f"))
            else:
                g.create_dataset(name, data=arr.astype(np.float32))

        g.create_dataset("xyz", data=xyz)
        sig = np.full((n, 3), np.nan, np.float32)
        sig[:, 0] = unc_px
        sig[:, 1] = unc_px
        volatile("xyz_sig", sig)
        g.create_dataset("xyz_cr", data=h5py.Empty("f"))
        g.create_dataset("phot", data=locs.photons.astype(np.float32))
        g.create_dataset("phot_cr", data=h5py.Empty("f"))
        g.create_dataset("phot_sig", data=h5py.Empty("f"))
        g.create_dataset("frame_ix", data=locs.frame.astype(np.int64))
        g.create_dataset("id", data=np.full(n, -1, np.int64))
        g.create_dataset("prob", data=locs.score.astype(np.float32))
        g.create_dataset("bg", data=locs.background.astype(np.float32))
        g.create_dataset("bg_cr", data=h5py.Empty("f"))
        g.create_dataset("bg_sig", data=h5py.Empty("f"))


DECODE = register(
    TableFormat[h5py.File](
        name="decode",
        suffixes=H5_SUFFIXES,
        sniff=lambda f: "data" in f and "meta" in f,
        read=_read_decode_h5,
        write=_write_decode_h5,
        hdf5=True,
        holds="a DECODE emitter set",
    )
)
DECODE_CSV = register(
    TableFormat[TableSource]("decode_csv", (".csv",), _sniff_decode_csv, _read_decode_csv)
)
