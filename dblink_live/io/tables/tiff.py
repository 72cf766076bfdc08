"""Raw camera stacks from TIFF files (ImageJ hyperstacks, OME-TIFF, plain multi-page TIFF)."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from dblink_live.errors import FormatError
from dblink_live.io.tables.common import PathLike, existing_file

_UINT16_MAX = 65535


def read_stack(path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a raw camera stack from a (multi-page or single-page) TIFF file.

    Parameters
    ----------
    path
        A TIFF file (ImageJ hyperstack, OME-TIFF or plain multi-page TIFF). A 2-D image becomes
        a one-frame stack; leading singleton axes are dropped.

    Returns
    -------
    frames : (T, Y, X) uint16 ndarray
        Camera counts (ADU). Other integer (or integral floating-point) data are converted when
        every value fits in ``[0, 65535]``.
    metadata : dict
        ``path``, ``shape``, ``source_dtype`` (dtype in the file), ``axes`` (tifffile's axes
        string), ``n_pages``, ``pixel_size_nm`` (from ImageJ or OME calibration, else None),
        ``imagej`` (ImageJ metadata dict or None), ``description`` (first page's
        ImageDescription or None).

    Raises
    ------
    FormatError
        Missing, unreadable, truncated or damaged file (tifffile's warnings about missing pages
        count as damage), colour or >3-D data, or values that do not fit in uint16.
    """
    p = existing_file(path)
    log = _TiffLog()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(log)
    try:
        with tifffile.TiffFile(p) as tif:
            if not tif.series or not tif.pages:
                raise FormatError(f"{p}: TIFF file holds no image data")
            series = tif.series[0]
            offset = getattr(series, "dataoffset", None)
            size = p.stat().st_size
            if offset is not None and offset + series.nbytes > size:
                raise FormatError(
                    f"{p}: truncated TIFF file: pixel data end at byte {offset + series.nbytes}, "
                    f"the file has {size} bytes"
                )
            data = series.asarray()
            axes = str(series.axes)
            imagej = tif.imagej_metadata
            ome = tif.ome_metadata
            n_pages = len(tif.pages)
            page0 = tif.pages.first
            description = page0.description or None
            xres = page0.tags.get("XResolution")
            xres_value = xres.value if xres is not None else None
    except FormatError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many exception types for malformed files
        raise FormatError(f"{p}: not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    finally:
        tiff_logger.removeHandler(log)
    if log.damage:
        raise FormatError(f"{p}: truncated or corrupt TIFF file (tifffile: {log.damage[0]})")

    source_dtype = data.dtype
    frames = _as_tyx(p, data, axes)
    frames = _to_uint16(p, frames)
    metadata: dict[str, Any] = {
        "path": str(p),
        "shape": tuple(int(n) for n in frames.shape),
        "source_dtype": str(source_dtype),
        "axes": axes,
        "n_pages": n_pages,
        "pixel_size_nm": _tiff_pixel_size_nm(imagej, ome, xres_value),
        "imagej": dict(imagej) if imagej else None,
        "description": description,
    }
    return frames, metadata


class _TiffLog(logging.Handler):
    """Collects tifffile's warnings that mean pages or pixel data are missing or damaged.

    tifffile logs (rather than raises) when it skips damaged pages, and would then return a
    shorter stack.
    """

    _DAMAGE = re.compile(
        r"invalid page offset|truncat|corrupt|missing required tags|invalid (data type|value)",
        re.IGNORECASE,
    )

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.damage: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self._DAMAGE.search(message):
            self.damage.append(message.strip().splitlines()[0] if message.strip() else message)


def _as_tyx(p: Path, data: np.ndarray, axes: str) -> np.ndarray:
    if "S" in axes and data.shape[axes.index("S")] > 1:
        raise FormatError(
            f"{p}: colour/multi-sample image (shape {data.shape}, axes {axes}) is not a "
            "camera stack"
        )
    if data.ndim < 2:
        raise FormatError(f"{p}: expected a 2-D image or a (T, Y, X) stack, found {data.shape}")
    if len(axes) == data.ndim and data.ndim >= 2 and axes[-2:] != "YX":
        raise FormatError(
            f"{p}: the last two axes are {axes[-2:]!r}, expected image rows and columns (YX)"
        )
    lead = data.shape[:-2]
    if sum(1 for n in lead if n != 1) > 1:
        raise FormatError(
            f"{p}: expected a 2-D image or a (T, Y, X) stack; found shape {data.shape} "
            f"(axes {axes})"
        )
    return data.reshape((math.prod(lead), *data.shape[-2:]))


def _to_uint16(p: Path, data: np.ndarray) -> np.ndarray:
    kind = data.dtype.kind
    if data.dtype == np.uint16:
        return np.ascontiguousarray(data)
    if kind not in "buif":
        raise FormatError(f"{p}: pixel type {data.dtype} cannot be read as camera counts")
    if data.size:
        if kind == "f":
            finite = np.isfinite(data)
            if not finite.all() or np.any(data != np.round(data)):
                raise FormatError(
                    f"{p}: floating-point stack with non-integer values cannot be converted "
                    "to uint16 without loss"
                )
        lo, hi = data.min(), data.max()
        if lo < 0 or hi > _UINT16_MAX:
            raise FormatError(
                f"{p}: {data.dtype} values span [{lo}, {hi}], outside uint16 [0, 65535]; "
                "cannot convert without loss"
            )
    return np.ascontiguousarray(data.astype(np.uint16))


_UNIT_TO_NM = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3}


def _tiff_pixel_size_nm(imagej: Any, ome: str | None, xres: Any) -> float | None:
    if ome:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', ome)
        if m:
            u = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome)
            factor = _UNIT_TO_NM.get(u.group(1) if u else "µm")
            if factor is not None:
                return float(m.group(1)) * factor
    if imagej and xres:
        unit = str(imagej.get("unit", "")).replace("\\u00B5", "µ").replace("\\u00b5", "µ")
        factor = _UNIT_TO_NM.get(unit.strip().lower())
        try:
            num, den = xres
            if factor is not None and num > 0:
                return float(den) / float(num) * factor
        except (TypeError, ValueError):
            return None
    return None
