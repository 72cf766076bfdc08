"""Readers and writers of foreign localization tables and of raw TIFF stacks.

Everything is converted at the edge to :class:`dblink_live.localizations.Localizations`:
positions in nm in the camera frame with pixel column ``c`` spanning
``[c, c + 1) * pixel_size_nm`` (a pixel centre sits at ``(c + 0.5) * pixel_size_nm``), frames
0-based. Malformed input raises :class:`dblink_live.errors.FormatError` with one message naming
the file and, where it applies, the line or entry and the column.

Formats and the conventions this module assumes (with where they were checked)
-------------------------------------------------------------------------------
``thunderstorm``
    ThunderSTORM CSV (also its tab-separated ``.xls``): header ``"name [unit]"``, frames
    1-based, positions in nm with the ImageJ origin (pixel ``i`` spans ``[i, i + 1)`` px, so no
    shift is needed). Source: ThunderSTORM ``MultipleLocationsImageFitting.java`` sets
    ``x = fit + xInt + 0.5`` (zitmen/thunderstorm). Real exports sometimes quote the whole header
    as one field with doubled quotes (Locan test data); that is unwrapped. Columns used:
    ``frame``, ``x``, ``y`` (unit nm, um or px), ``intensity`` -> photons and ``offset`` ->
    background (only when the unit is photon; an ADU value is not photons and gives NaN),
    ``uncertainty`` or ``uncertainty_xy`` (nm, um or px) and, if present, ``score``.
``csv``
    Plain CSV: optional ``#`` comment lines, then a header naming at least ``frame``, ``x``,
    ``y`` (nm); optional ``photons``, ``background``, ``uncertainty`` and ``score`` (a few common
    aliases are accepted, e.g. ``int``/``intensity``, ``bg``, ``x_nm``). Frames are 0-based
    unless ``frame_base`` says otherwise; a Rieslab/vLUME export (a ``#LUME`` comment line, as
    in the PYME test set ``u2os_microtubules_rieslab.csv``) is 1-based. Positions are taken as
    they are. The writer adds a ``# dblink_live localizations: pixel_size_nm=...
    n_frames=... frame_base=0`` line that the reader uses.
``decode``
    DECODE EmitterSet in HDF5 (groups ``meta``, ``decode``, ``data``; layout from
    ``decode/utils/emitter_io.py::save_h5``, TuragaLab/DECODE). ``data/xyz`` (N, 3) is in pixels
    when ``meta.attrs['xy_unit'] == 'px'``, with ``meta.attrs['px_size'] = [px_x, px_y]``;
    ``frame_ix`` is 0-based. DECODE simulates frames over the extent ``[-0.5, W - 0.5]``
    (``reference.yaml``), i.e. pixel centres at integer coordinates, so
    ``x_nm = (x_px + 0.5) * px_x``; an ``'nm'`` table is DECODE's ``px * px_size`` and gets the
    same half-pixel shift. ``phot`` -> photons, ``bg`` -> background, ``prob`` -> score,
    ``xyz_sig`` (else ``sqrt(xyz_cr)``) -> uncertainty. Caveat: DECODE's x runs along the first
    image axis (rows; TuragaLab/DECODE issue #42, open), so tables fitted by DECODE itself may
    appear transposed; this reader keeps DECODE's names (x -> x) and does not swap.
``decode_csv``
    DECODE's CSV export (``save_csv``): ``# DECODE EmitterSet`` and two JSON comment lines (the
    second holds ``xy_unit`` and ``px_size``), then columns ``x, y, z, phot, frame_ix, id,
    prob, bg, ..., x_sig, y_sig, ...`` with empty cells for NaN. Without the JSON line the
    coordinates are assumed to be in pixels and ``pixel_size_nm`` is required. Not checked
    against a real DECODE export (none available); the layout follows the source above.
``picasso``
    Picasso HDF5 (dataset ``/locs``, a structured array: ``frame`` 0-based, ``x``, ``y``,
    ``lpx``, ``lpy`` in camera pixels with pixel centres at integer coordinates (Picasso
    ``gausslq.locs_from_fits`` adds the fit offset to the integer box centre), ``photons``,
    ``bg``) plus its YAML sidecar (same stem, ``.yaml``, multi-document; ``Frames`` in the first
    document, ``Pixelsize`` in nm written by Picasso Localize in a later one and absent in older
    files). ``x_nm = (x + 0.5) * Pixelsize``. Unknown YAML tags (Picasso writes with PyYAML's
    unsafe dumper) are read as plain data.
``rapidstorm``
    rapidSTORM text: a ``# <localizations ...>`` XML header line naming the fields, then
    whitespace-separated rows. ``Position-0-0``/``Position-1-0`` (x, y; nm, um, m or px),
    ``ImageNumber-0-0`` (frame, 0-based: ``min="0 fr"``), ``Amplitude-0-0`` and
    ``LocalBackground-0-0`` (used only when in photons; usually A/D counts -> NaN),
    ``Position-*-uncertainty``. Nested (tracked) localizations are not supported.

Missing optional columns are filled with NaN (photons, background, uncertainty) and 1.0
(score). The lateral uncertainty of formats with separate x and y values is their quadratic
mean ``sqrt((ux**2 + uy**2) / 2)``. Where a file does not record the pixel size, the
``pixel_size_nm`` argument is stored (default 100 nm, the container's default), and the number
of frames is ``max(frame) + 1`` unless the file records it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tifffile
import yaml

from dblink_live import __version__
from dblink_live.errors import FormatError
from dblink_live.localizations import Localizations

_log = logging.getLogger(__name__)
__all__ = [
    "READ_FORMATS",
    "WRITE_FORMATS",
    "read_localizations",
    "read_stack",
    "write_localizations",
]

#: Formats :func:`read_localizations` understands (besides ``"auto"``).
READ_FORMATS = ("thunderstorm", "csv", "decode", "decode_csv", "picasso", "rapidstorm")
#: Formats :func:`write_localizations` writes.
WRITE_FORMATS = ("thunderstorm", "csv", "decode", "picasso")

PathLike = str | os.PathLike[str]
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_OUR_TAG = "dblink_live localizations:"
_UINT16_MAX = 65535
# What h5py raises for damaged files (HDF5 errors map to OSError, RuntimeError, KeyError, ...).
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)

# Length factors to nm; None marks camera pixels (needs the pixel size).
_LENGTH_UNITS: dict[str, float | None] = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "px": None,
    "pixel": None,
    "pixels": None,
}
_PHOTON_UNITS = ("", "photon", "photons")

# Plain-CSV column aliases (lower case, compared after stripping).
_PLAIN_ALIASES: dict[str, tuple[str, ...]] = {
    "frame": ("frame", "frames", "frame_ix", "t"),
    "x": ("x", "x_nm", "xnm", "x_nano", "xnano"),
    "y": ("y", "y_nm", "ynm", "y_nano", "ynano"),
    "photons": ("photons", "photon", "phot", "intensity", "int"),
    "background": ("background", "bg", "offset"),
    "uncertainty": ("uncertainty", "uncertainty_nm", "uncertainty_xy", "precision", "lp"),
    "score": ("score", "prob", "probability", "confidence"),
}


# ------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------


def read_localizations(
    path: PathLike,
    *,
    format: str = "auto",
    pixel_size_nm: float | None = None,
    frame_base: int | None = None,
) -> Localizations:
    """Read a localization table written by another tool (or by :func:`write_localizations`).

    Parameters
    ----------
    path
        The table file. For Picasso, the ``.hdf5`` file (its ``.yaml`` sidecar is found by
        stem).
    format
        ``"auto"`` (default: from the content, then the extension) or one of
        :data:`READ_FORMATS`: ``"thunderstorm"``, ``"csv"``, ``"decode"``, ``"decode_csv"``,
        ``"picasso"``, ``"rapidstorm"``.
    pixel_size_nm
        Camera pixel size in nm. Used only where the file does not record it: needed to convert
        pixel coordinates (Picasso without ``Pixelsize``, DECODE without ``px_size``,
        ThunderSTORM ``x [px]``); otherwise just stored in the result (default 100 nm).
    frame_base
        Plain CSV only: the number of the first frame in the file (0 or 1). ``None``: 0, or 1
        for a Rieslab/vLUME export (a ``#LUME`` comment line), or what a dblink_live-written
        file says.

    Returns
    -------
    Localizations
        Positions in nm (camera frame, pixel centres at ``(c + 0.5) * pixel_size_nm``), 0-based
        frames. Missing photons/background/uncertainty are NaN, a missing score is 1.0.

    Raises
    ------
    FormatError
        The file is missing, empty, of an unknown kind, or malformed; the message names the
        file and, where it applies, the line (or entry) and the column.
    """
    p = _existing_file(path)
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
    if frame_base is not None and frame_base not in (0, 1):
        raise ValueError(f"frame_base must be 0 or 1, got {frame_base!r}")
    fmt = format.lower()
    if fmt != "auto" and fmt not in READ_FORMATS:
        raise FormatError(
            f"unknown localization format {format!r}; expected 'auto' or one of "
            + ", ".join(READ_FORMATS)
        )

    # Overflow/invalid values in foreign files become inf/NaN (checked where they matter)
    # instead of RuntimeWarnings.
    with np.errstate(all="ignore"):
        return _read(p, fmt, pixel_size_nm, frame_base)


def _read(p: Path, fmt: str, pixel_size_nm: float | None, frame_base: int | None) -> Localizations:
    if fmt in ("auto", "decode", "picasso") and _is_hdf5(p):
        kind = _sniff_hdf5(p)
        if fmt != "auto" and fmt != kind:
            raise FormatError(f"{p}: this HDF5 file holds {_KIND_NAMES[kind]}, not {fmt} data")
        fmt = kind
    if frame_base is not None and fmt not in ("auto", "csv"):
        raise FormatError(f"{p}: frame_base applies to plain CSV only, not to {fmt} files")

    if fmt == "decode":
        return _read_decode_h5(p, pixel_size_nm)
    if fmt == "picasso":
        return _read_picasso(p, pixel_size_nm)

    lines = _read_lines(p)
    if fmt == "auto":
        fmt = _sniff_text(p, lines)
        if frame_base is not None and fmt != "csv":
            raise FormatError(f"{p}: frame_base applies to plain CSV only, not to {fmt} files")
    if fmt == "thunderstorm":
        return _read_thunderstorm(p, lines, pixel_size_nm)
    if fmt == "csv":
        return _read_plain_csv(p, lines, pixel_size_nm, frame_base)
    if fmt == "decode_csv":
        return _read_decode_csv(p, lines, pixel_size_nm)
    return _read_rapidstorm(p, lines, pixel_size_nm)


def write_localizations(locs: Localizations, path: PathLike, *, format: str) -> None:
    """Write localizations in a format other tools read; :func:`read_localizations` reads it back.

    Parameters
    ----------
    locs
        The table (positions in nm, 0-based frames).
    path
        Output file; overwritten. For ``"picasso"`` a ``.yaml`` sidecar with the same stem is
        written too.
    format
        One of :data:`WRITE_FORMATS`:

        ``"thunderstorm"``
            CSV with header ``"id","frame","x [nm]","y [nm]","intensity [photon]",
            "offset [photon]","uncertainty [nm]","score"``, 1-based frames, NaN as ``NaN``.
            The pixel size and trailing empty frames are not stored.
        ``"csv"``
            Plain CSV ``frame,x_nm,y_nm,photons,background,uncertainty_nm,score`` (0-based
            frames) after a comment line with pixel size and number of frames.
        ``"decode"``
            DECODE EmitterSet HDF5, ``xy_unit='px'``, ``px_size=[p, p]``, ``z = 0``,
            ``xyz_sig = uncertainty / p`` in x and y; ``n_frames`` in a root attribute that
            DECODE ignores.
        ``"picasso"``
            Picasso ``/locs`` (frame, x, y, photons, bg, lpx, lpy, score; pixels, centres at
            integers) and a two-document YAML sidecar (``Frames``, ``Width``, ``Height`` from
            the data extent, ``Pixelsize``). Every row passes Picasso's sanity filter (all
            fields finite, ``0 < x < Width``, ``0 < y < Height``, ``lpx, lpy > 0``): a table
            with localizations in the outer half pixel is shifted by whole pixels (stated in
            the YAML and undone by :func:`read_localizations`); missing photons, background or
            score are written as 0 and a missing precision as 1 pixel (counted in the YAML,
            with a warning).

    Raises
    ------
    FormatError
        Unknown format, or values the format cannot hold.
    """
    if not isinstance(locs, Localizations):
        raise TypeError(f"locs must be a Localizations, got {type(locs).__name__}")
    fmt = format.lower()
    p = Path(path)
    if fmt == "thunderstorm":
        _write_thunderstorm(locs, p)
    elif fmt == "csv":
        _write_plain_csv(locs, p)
    elif fmt == "decode":
        _write_decode_h5(locs, p)
    elif fmt == "picasso":
        _write_picasso(locs, p)
    else:
        raise FormatError(
            f"cannot write localization format {format!r}; expected one of "
            + ", ".join(WRITE_FORMATS)
        )


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
    p = _existing_file(path)
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


# ------------------------------------------------------------------------------------------
# Common helpers
# ------------------------------------------------------------------------------------------

_KIND_NAMES = {"decode": "a DECODE emitter set", "picasso": "Picasso localizations"}


def _existing_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{p}: no such file")
    if not p.is_file():
        raise FormatError(f"{p}: not a file")
    return p


def _head(p: Path, n: int = 8) -> bytes:
    try:
        with p.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise FormatError(f"{p}: cannot read file ({exc.strerror or exc})") from exc


def _is_hdf5(p: Path) -> bool:
    return _head(p) == _HDF5_MAGIC or p.suffix.lower() in _H5_SUFFIXES


def _read_lines(p: Path) -> list[str]:
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise FormatError(f"{p}: file is empty")
    if raw.startswith(_TIFF_MAGICS):
        raise FormatError(f"{p}: is a TIFF image, not a localization table (use read_stack)")
    if raw.startswith(_HDF5_MAGIC):
        raise FormatError(f"{p}: is an HDF5 file, not a text table (use format='decode')")
    if b"\x00" in raw[:8192]:
        raise FormatError(f"{p}: not a text file (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _header_index(p: Path, lines: Sequence[str]) -> int:
    """Index of the first line that is neither blank nor a ``#`` comment."""
    for i, line in enumerate(lines):
        if line.strip() and not _is_comment(line):
            return i
    raise FormatError(f"{p}: no header line (only comments or blank lines)")


def _guess_delimiter(line: str) -> str | None:
    if "\t" in line and "," not in line:
        return "\t"
    if "," in line:
        return ","
    if ";" in line:
        return ";"
    return None  # whitespace


def _split_fields(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


def _split_header(line: str, delimiter: str | None) -> list[str]:
    """Column names; unwraps a header quoted as one field (``"id,""frame"",...""``)."""
    fields = _split_fields(line, delimiter)
    for _ in range(3):
        if len(fields) == 1 and delimiter is not None and delimiter in fields[0]:
            fields = _split_fields(fields[0], delimiter)
        else:
            break
    return [f.strip().strip('"').strip() for f in fields]


def _looks_numeric(names: Sequence[str]) -> bool:
    try:
        [float(n) for n in names]
    except ValueError:
        return False
    return bool(names)


_UNIT_RE = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<unit>[^\]]*)\])?\s*$")


def _name_unit(label: str) -> tuple[str, str]:
    m = _UNIT_RE.match(label)
    assert m is not None  # the pattern matches every string
    return m.group("name").strip().lower(), (m.group("unit") or "").strip().lower()


def _length_factor(
    p: Path, label: str, unit: str, pixel_size_nm: float | None, what: str = "column"
) -> float:
    """Factor from ``unit`` to nm; pixels use ``pixel_size_nm`` (ImageJ origin, no shift)."""
    if unit == "":
        return 1.0
    if unit not in _LENGTH_UNITS:
        raise FormatError(
            f"{p}: {what} {label!r} has an unknown length unit {unit!r} (expected nm, um or px)"
        )
    factor = _LENGTH_UNITS[unit]
    if factor is None:
        if pixel_size_nm is None:
            raise FormatError(f"{p}: {what} {label!r} is in pixels; pass pixel_size_nm")
        return float(pixel_size_nm)
    return factor


class _Table:
    """Numeric columns parsed from a text table, with row -> line lookup for messages."""

    def __init__(self, p: Path, lines: Sequence[str], start: int, arrays: dict[str, np.ndarray]):
        self.p, self.lines, self.start, self.arrays = p, lines, start, arrays
        self._line_nos: list[int] | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def get(self, key: str) -> np.ndarray | None:
        return self.arrays.get(key)

    def locate(self, row: int) -> str:
        if self._line_nos is None:
            self._line_nos = [
                i + 1
                for i in range(self.start, len(self.lines))
                if self.lines[i].strip() and not _is_comment(self.lines[i])
            ]
        return f"{self.p}:{self._line_nos[row]}"


def _parse_columns(
    p: Path,
    lines: Sequence[str],
    start: int,
    delimiter: str | None,
    header: Sequence[str],
    wanted: dict[str, int],
) -> _Table:
    """Parse the wanted columns (key -> column index) of ``lines[start:]`` as float64.

    A fast vectorized pass (numpy.loadtxt); on any problem a slow pass that reads empty cells
    as NaN and reports the first bad cell by line and column name.
    """
    body = lines[start:]
    if not any(line.strip() and not _is_comment(line) for line in body):
        return _Table(p, lines, start, {k: np.zeros(0) for k in wanted})
    usecols = sorted(set(wanted.values()))
    try:
        data = np.loadtxt(
            body,
            dtype=np.float64,
            delimiter=delimiter,
            comments="#",
            usecols=usecols,
            ndmin=2,
            quotechar='"',
        )
    except ValueError:
        return _parse_columns_slowly(p, lines, start, delimiter, header, wanted)
    pos = {c: j for j, c in enumerate(usecols)}
    arrays = {k: np.ascontiguousarray(data[:, pos[c]]) for k, c in wanted.items()}
    return _Table(p, lines, start, arrays)


def _parse_columns_slowly(
    p: Path,
    lines: Sequence[str],
    start: int,
    delimiter: str | None,
    header: Sequence[str],
    wanted: dict[str, int],
) -> _Table:
    values: dict[str, list[float]] = {k: [] for k in wanted}
    needed = max(wanted.values()) + 1
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.strip() or _is_comment(line):
            continue
        try:
            fields = _split_fields(line, delimiter)
        except csv.Error as exc:
            raise FormatError(f"{p}:{i + 1}: cannot split the line ({exc})") from exc
        if len(fields) < needed:
            raise FormatError(f"{p}:{i + 1}: expected {len(header)} fields, found {len(fields)}")
        for key, col in wanted.items():
            cell = fields[col].strip().strip('"').strip()
            if cell == "":
                values[key].append(math.nan)
                continue
            try:
                values[key].append(float(cell))
            except ValueError:
                raise FormatError(
                    f"{p}:{i + 1}: column {header[col]!r} is not a number: {cell!r}"
                ) from None
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    return _Table(p, lines, start, arrays)


def _build(
    locate: Callable[[int], str],
    frame: np.ndarray,
    x_nm: np.ndarray,
    y_nm: np.ndarray,
    *,
    photons: np.ndarray | None = None,
    background: np.ndarray | None = None,
    uncertainty_nm: np.ndarray | None = None,
    score: np.ndarray | None = None,
    frame_base: int = 0,
    pixel_size_nm: float | None = None,
    n_frames: int = 0,
    frame_label: str = "frame",
    x_label: str = "x",
    y_label: str = "y",
) -> Localizations:
    """Validate and assemble; ``locate(row)`` names a row in error messages."""
    frame = np.asarray(frame, dtype=np.float64).reshape(-1)
    n = len(frame)
    bad = ~np.isfinite(frame) | (frame != np.floor(frame)) | (np.abs(frame) > 2.0**53)
    if bad.any():
        i = int(np.argmax(bad))
        raise FormatError(
            f"{locate(i)}: column {frame_label!r} is not a whole frame number: {frame[i]!r}"
        )
    low = frame < frame_base
    if low.any():
        i = int(np.argmax(low))
        raise FormatError(
            f"{locate(i)}: column {frame_label!r} is {frame[i]:g}, below {frame_base} "
            f"(frames in this file are {frame_base}-based)"
        )
    x_nm, y_nm = _f32(x_nm), _f32(y_nm)
    for label, arr in ((x_label, x_nm), (y_label, y_nm)):
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            raise FormatError(f"{locate(i)}: column {label!r} is missing or not finite")

    def opt(a: np.ndarray | None, fill: float) -> np.ndarray:
        return np.full(n, fill, np.float32) if a is None else _f32(a)

    kwargs: dict[str, Any] = {"n_frames": n_frames}
    if pixel_size_nm is not None:
        kwargs["pixel_size_nm"] = float(pixel_size_nm)
    return Localizations(
        frame=frame.astype(np.int64) - frame_base,
        x_nm=x_nm,
        y_nm=y_nm,
        photons=opt(photons, math.nan),
        background=opt(background, math.nan),
        uncertainty_nm=opt(uncertainty_nm, math.nan),
        score=opt(score, 1.0),
        **kwargs,
    )


def _f32(a: np.ndarray) -> np.ndarray:
    """float32 copy; values beyond float32's range become +-inf without a warning."""
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.float64).reshape(-1).astype(np.float32)


def _lateral(ux: np.ndarray | None, uy: np.ndarray | None) -> np.ndarray | None:
    """Quadratic mean of the x and y uncertainties (either alone if the other is absent)."""
    if ux is None and uy is None:
        return None
    if ux is None or uy is None:
        return ux if uy is None else uy
    return np.sqrt((np.square(ux) + np.square(uy)) / 2.0)


# ------------------------------------------------------------------------------------------
# Sniffing
# ------------------------------------------------------------------------------------------


def _sniff_text(p: Path, lines: Sequence[str]) -> str:
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("#") and "<localizations" in first:
        return "rapidstorm"
    leading = [line.strip() for line in lines[:20] if _is_comment(line)]
    if any(c.lstrip("#").strip().lower() == "decode emitterset" for c in leading):
        return "decode_csv"
    h = _header_index(p, lines)
    delimiter = _guess_delimiter(lines[h])
    names = [_name_unit(label)[0] for label in _split_header(lines[h], delimiter)]
    if "frame_ix" in names:
        return "decode_csv"
    if any("[" in label for label in _split_header(lines[h], delimiter)):
        return "thunderstorm"
    return "csv"


def _sniff_hdf5(p: Path) -> str:
    try:
        with _open_h5(p) as f:
            keys = list(f.keys())
            if "locs" in f:
                return "picasso"
            if "data" in f and "meta" in f:
                return "decode"
    except FormatError:
        raise
    except _H5_ERRORS as exc:
        raise FormatError(f"{p}: corrupt HDF5 file ({_first_line(exc)})") from exc
    raise FormatError(
        f"{p}: HDF5 file is neither a DECODE emitter set (groups data, meta) nor Picasso "
        f"localizations (dataset locs); found: {_names(keys)}"
    )


def _open_h5(p: Path) -> h5py.File:
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(
            f"{p}: not a readable HDF5 file (truncated or corrupt?): {_first_line(exc)}"
        ) from exc


def _names(keys: Any) -> str:
    """Comma-separated names for messages (HDF5 names of damaged files may be bytes)."""
    out = [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in keys]
    return ", ".join(out) or "nothing"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------
# ThunderSTORM
# ------------------------------------------------------------------------------------------


def _read_thunderstorm(p: Path, lines: Sequence[str], pixel_size_nm: float | None) -> Localizations:
    h = _header_index(p, lines)
    delimiter = _guess_delimiter(lines[h])
    header = _split_header(lines[h], delimiter)
    if _looks_numeric(header):
        raise FormatError(f'{p}: no header line (expected column names like "x [nm]")')
    parsed = [_name_unit(label) for label in header]
    index: dict[str, int] = {}
    for i, (name, _unit) in enumerate(parsed):
        index.setdefault(name, i)

    def need(name: str) -> int:
        if name not in index:
            raise FormatError(f"{p}: no {name} column; found columns: {', '.join(header)}")
        return index[name]

    wanted = {"frame": need("frame"), "x": need("x"), "y": need("y")}
    optional = {
        "photons": "intensity",
        "background": "offset",
        "uncertainty": "uncertainty_xy",
        "score": "score",
    }
    for key, name in optional.items():
        if name in index:
            wanted[key] = index[name]
    if "uncertainty" not in wanted and "uncertainty" in index:
        wanted["uncertainty"] = index["uncertainty"]
    for key in ("photons", "background"):  # only photon counts are photons
        if key in wanted and parsed[wanted[key]][1] not in _PHOTON_UNITS:
            del wanted[key]

    fx = _length_factor(p, header[wanted["x"]], parsed[wanted["x"]][1], pixel_size_nm)
    fy = _length_factor(p, header[wanted["y"]], parsed[wanted["y"]][1], pixel_size_nm)
    fu = 1.0
    if "uncertainty" in wanted:
        c = wanted["uncertainty"]
        fu = _length_factor(p, header[c], parsed[c][1], pixel_size_nm)

    t = _parse_columns(p, lines, h + 1, delimiter, header, wanted)
    unc = t.get("uncertainty")
    return _build(
        t.locate,
        t["frame"],
        t["x"] * fx,
        t["y"] * fy,
        photons=t.get("photons"),
        background=t.get("background"),
        uncertainty_nm=None if unc is None else unc * fu,
        score=t.get("score"),
        frame_base=1,
        pixel_size_nm=pixel_size_nm,
        frame_label=header[wanted["frame"]],
        x_label=header[wanted["x"]],
        y_label=header[wanted["y"]],
    )


def _write_thunderstorm(locs: Localizations, p: Path) -> None:
    header = (
        "id",
        "frame",
        "x [nm]",
        "y [nm]",
        "intensity [photon]",
        "offset [photon]",
        "uncertainty [nm]",
        "score",
    )
    n = len(locs)
    table = np.column_stack(
        [
            np.arange(1, n + 1, dtype=np.float64),
            locs.frame.astype(np.float64) + 1,
            locs.x_nm,
            locs.y_nm,
            locs.photons,
            locs.background,
            locs.uncertainty_nm,
            locs.score,
        ]
    ).astype(np.float64)
    fmt = ["%d", "%d"] + ["%.9g"] * 6
    _write_text_table(p, ",".join(f'"{h}"' for h in header), table, fmt, nan="NaN")


def _write_text_table(
    p: Path, head: str, table: np.ndarray, fmt: list[str], nan: str = "nan"
) -> None:
    buf = io.StringIO()
    if len(table):
        np.savetxt(buf, table.reshape(len(table), -1), fmt=fmt, delimiter=",")
    body = buf.getvalue()
    if nan != "nan":
        body = body.replace("nan", nan)
    with p.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(head + "\n")
        fh.write(body)


# ------------------------------------------------------------------------------------------
# Plain CSV
# ------------------------------------------------------------------------------------------


def _our_metadata(lines: Sequence[str], h: int) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in lines[:h]:
        text = line.strip().lstrip("#").strip()
        if text.startswith(_OUR_TAG):
            for item in text[len(_OUR_TAG) :].split():
                key, _, value = item.partition("=")
                meta[key] = value
    return meta


def _read_plain_csv(
    p: Path, lines: Sequence[str], pixel_size_nm: float | None, frame_base: int | None
) -> Localizations:
    h = _header_index(p, lines)
    delimiter = _guess_delimiter(lines[h])
    header = _split_header(lines[h], delimiter)
    if _looks_numeric(header):
        raise FormatError(f"{p}: no header line (expected column names such as frame, x, y)")
    lower = [label.lower() for label in header]
    wanted: dict[str, int] = {}
    for key, aliases in _PLAIN_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                wanted[key] = lower.index(alias)
                break
    for key in ("frame", "x", "y"):
        if key not in wanted:
            raise FormatError(f"{p}: no {key} column; found columns: {', '.join(header)}")

    ours = _our_metadata(lines, h)
    lume = any(line.lstrip().lstrip("#").strip().upper().startswith("LUME") for line in lines[:h])
    if frame_base is None:
        frame_base = 1 if lume else 0
        if "frame_base" in ours:
            frame_base = _meta_number(p, ours, "frame_base", int)
    px = pixel_size_nm
    if px is None and "pixel_size_nm" in ours:
        px = _meta_number(p, ours, "pixel_size_nm", float)
    n_frames = _meta_number(p, ours, "n_frames", int) if "n_frames" in ours else 0

    t = _parse_columns(p, lines, h + 1, delimiter, header, wanted)
    return _build(
        t.locate,
        t["frame"],
        t["x"],
        t["y"],
        photons=t.get("photons"),
        background=t.get("background"),
        uncertainty_nm=t.get("uncertainty"),
        score=t.get("score"),
        frame_base=frame_base,
        pixel_size_nm=px,
        n_frames=n_frames,
        frame_label=header[wanted["frame"]],
        x_label=header[wanted["x"]],
        y_label=header[wanted["y"]],
    )


def _meta_number(p: Path, meta: dict[str, str], key: str, kind: type) -> Any:
    try:
        return kind(meta[key])
    except ValueError:
        raise FormatError(f"{p}: header comment has a bad {key}: {meta[key]!r}") from None


def _write_plain_csv(locs: Localizations, p: Path) -> None:
    head = (
        f"# {_OUR_TAG} pixel_size_nm={float(locs.pixel_size_nm)!r} "
        f"n_frames={int(locs.n_frames)} frame_base=0\n"
        + ",".join(("frame", "x_nm", "y_nm", "photons", "background", "uncertainty_nm", "score"))
    )
    table = np.column_stack(
        [locs.frame.astype(np.float64)]
        + [getattr(locs, c).astype(np.float64) for c in Localizations.COLUMNS[1:]]
    )
    _write_text_table(p, head, table, ["%d"] + ["%.9g"] * 6)


# ------------------------------------------------------------------------------------------
# rapidSTORM
# ------------------------------------------------------------------------------------------


def _read_rapidstorm(p: Path, lines: Sequence[str], pixel_size_nm: float | None) -> Localizations:
    h = next((i for i, line in enumerate(lines) if line.strip()), 0)
    xml_text = lines[h].strip().lstrip("#").strip()
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise FormatError(f"{p}:{h + 1}: rapidSTORM XML header is malformed ({exc})") from None
    if root.tag != "localizations":
        raise FormatError(f"{p}:{h + 1}: expected a <localizations> header, found <{root.tag}>")
    fields = []
    for child in root:
        if child.tag == "localizations":
            raise FormatError(
                f"{p}:{h + 1}: nested (tracked) rapidSTORM localizations are not supported"
            )
        if child.tag == "field":
            fields.append(child.attrib)
    ids = [f.get("identifier", "") for f in fields]
    units = [f.get("unit", "").strip().lower() for f in fields]

    def col(identifier: str) -> int | None:
        return ids.index(identifier) if identifier in ids else None

    wanted: dict[str, int] = {}
    for key, ident in (("x", "Position-0-0"), ("y", "Position-1-0"), ("frame", "ImageNumber-0-0")):
        c = col(ident)
        if c is None:
            raise FormatError(f"{p}: no {ident} field; found fields: {', '.join(ids)}")
        wanted[key] = c
    for key, ident in (("photons", "Amplitude-0-0"), ("background", "LocalBackground-0-0")):
        c = col(ident)
        if c is not None and units[c] in _PHOTON_UNITS[1:]:
            wanted[key] = c
    for key, ident in (("ux", "Position-0-0-uncertainty"), ("uy", "Position-1-0-uncertainty")):
        c = col(ident)
        if c is not None:
            wanted[key] = c

    factors = {
        k: _length_factor(p, ids[c], units[c], pixel_size_nm, what="field")
        for k, c in wanted.items()
        if k in ("x", "y", "ux", "uy")
    }
    t = _parse_columns(p, lines, h + 1, None, ids, wanted)
    ux = t.get("ux")
    uy = t.get("uy")
    return _build(
        t.locate,
        t["frame"],
        t["x"] * factors["x"],
        t["y"] * factors["y"],
        photons=t.get("photons"),
        background=t.get("background"),
        uncertainty_nm=_lateral(
            None if ux is None else ux * factors["ux"], None if uy is None else uy * factors["uy"]
        ),
        frame_base=0,
        pixel_size_nm=pixel_size_nm,
        frame_label=ids[wanted["frame"]],
        x_label=ids[wanted["x"]],
        y_label=ids[wanted["y"]],
    )


# ------------------------------------------------------------------------------------------
# DECODE
# ------------------------------------------------------------------------------------------


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
    return _build(
        locate,
        frame,
        x_nm,
        y_nm,
        photons=phot,
        background=bg,
        uncertainty_nm=_lateral(ux, uy),
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


def _read_decode_h5(p: Path, pixel_size_nm: float | None) -> Localizations:
    try:
        with _open_h5(p) as f:
            if "data" not in f or "meta" not in f:
                raise FormatError(
                    f"{p}: not a DECODE emitter set (needs groups data and meta); found: "
                    + _names(f.keys())
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
    except _H5_ERRORS as exc:
        raise FormatError(f"{p}: cannot read DECODE HDF5 data ({_first_line(exc)})") from exc


def _read_decode_csv(p: Path, lines: Sequence[str], pixel_size_nm: float | None) -> Localizations:
    h = _header_index(p, lines)
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
    delimiter = _guess_delimiter(lines[h])
    header = _split_header(lines[h], delimiter)
    lower = [label.lower() for label in header]
    wanted: dict[str, int] = {}
    for key in ("frame_ix", "x", "y"):
        if key not in lower:
            raise FormatError(f"{p}: no {key} column; found columns: {', '.join(header)}")
        wanted[key] = lower.index(key)
    for key in ("phot", "bg", "prob", "x_sig", "y_sig", "x_cr", "y_cr"):
        if key in lower:
            wanted[key] = lower.index(key)
    t = _parse_columns(p, lines, h + 1, delimiter, header, wanted)

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


# ------------------------------------------------------------------------------------------
# Picasso
# ------------------------------------------------------------------------------------------


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
        raise FormatError(f"{y}: invalid YAML ({_first_line(exc)})") from None


def _read_picasso(p: Path, pixel_size_nm: float | None) -> Localizations:
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
        with _open_h5(p) as f:
            if "locs" not in f or not isinstance(f["locs"], h5py.Dataset):
                raise FormatError(f"{p}: no /locs dataset; found: {_names(f.keys())}")
            ds = f["locs"]
            _check_record_type(p, ds.dtype)
            if ds.ndim != 1:
                raise FormatError(f"{p}: /locs has shape {ds.shape}, expected one row per entry")
            locs = ds[()]
            filled = f[_MISSING_DATASET][()] if _MISSING_DATASET in f else None
    except FormatError:
        raise
    except _H5_ERRORS as exc:
        raise FormatError(f"{p}: cannot read Picasso /locs ({_first_line(exc)})") from exc
    names = locs.dtype.names or ()
    for field in ("frame", "x", "y"):
        if field not in names:
            raise FormatError(f"{p}: /locs has no {field!r} field; found fields: {_names(names)}")

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
    return _build(
        lambda i: f"{p}: /locs entry {i}",
        num("frame"),  # present: checked above
        (num("x") - shift[0] + 0.5) * px,
        (num("y") - shift[1] + 0.5) * px,
        photons=photons,
        background=bg,
        uncertainty_nm=_lateral(
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


# ------------------------------------------------------------------------------------------
# TIFF stacks
# ------------------------------------------------------------------------------------------


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
