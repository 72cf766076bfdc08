"""The entry points :func:`read_localizations` and :func:`write_localizations`: they take the
format from the caller or sniff it from the file (HDF5 or text, then each format's ``sniff`` in
the order below) and hand the file to that format's record in
:mod:`~dblink_live.io.tables.registry`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.errors import FormatError
from dblink_live.io.tables.common import PathLike, existing_file, first_line
from dblink_live.io.tables.csv_plain import CSV
from dblink_live.io.tables.decode import DECODE, DECODE_CSV
from dblink_live.io.tables.hdf5 import H5_ERRORS, HDF5_MAGIC, list_names, open_h5
from dblink_live.io.tables.picasso import PICASSO
from dblink_live.io.tables.rapidstorm import RAPIDSTORM
from dblink_live.io.tables.registry import FORMATS, TableFormat, TableSource
from dblink_live.io.tables.thunderstorm import THUNDERSTORM
from dblink_live.localizations import Localizations

# The registered formats in the order they are listed (importing their modules registers them).
_LISTED = (THUNDERSTORM, CSV, DECODE, DECODE_CSV, PICASSO, RAPIDSTORM)
#: Formats :func:`read_localizations` understands (besides ``"auto"``).
READ_FORMATS = tuple(f.name for f in _LISTED)
#: Formats :func:`write_localizations` writes.
WRITE_FORMATS = tuple(f.name for f in _LISTED if f.write is not None)
# The order "auto" tries the sniffs in. Text: rapidSTORM's XML header line, DECODE's comment
# or frame_ix column, ThunderSTORM's "[unit]" labels, and plain CSV, which takes any text.
_TEXT_SNIFFS = (RAPIDSTORM, DECODE_CSV, THUNDERSTORM, CSV)
_HDF5_SNIFFS = (PICASSO, DECODE)


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
    p = existing_file(path)
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
        return _read(TableSource(p, pixel_size_nm, frame_base), fmt)


def _read(src: TableSource, fmt: str) -> Localizations:
    """Read ``src`` as format ``fmt`` (a registered name, or ``"auto"``)."""
    p = src.path
    chosen = FORMATS.get(fmt)  # None: "auto"
    if (chosen is None or chosen.hdf5) and _is_hdf5(p):
        kind = _sniff_hdf5(p)
        if chosen is not None and chosen is not kind:
            raise FormatError(f"{p}: this HDF5 file holds {kind.holds}, not {fmt} data")
        chosen = kind
    _check_frame_base(src, chosen)
    if chosen is not None and chosen.hdf5:
        return chosen.read(src)

    _ = src.lines  # a text table from here on: read (and check) the text first
    if chosen is None:
        chosen = _sniff_text(src)
        _check_frame_base(src, chosen)
    return chosen.read(src)


def _check_frame_base(src: TableSource, chosen: TableFormat[Any] | None) -> None:
    if src.frame_base is not None and chosen is not None and not chosen.frame_base:
        raise FormatError(
            f"{src.path}: frame_base applies to plain CSV only, not to {chosen.name} files"
        )


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
    chosen = FORMATS.get(fmt)
    if chosen is None or chosen.write is None:
        raise FormatError(
            f"cannot write localization format {format!r}; expected one of "
            + ", ".join(WRITE_FORMATS)
        )
    chosen.write(locs, p)


def _head(p: Path, n: int = 8) -> bytes:
    try:
        with p.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise FormatError(f"{p}: cannot read file ({exc.strerror or exc})") from exc


def _is_hdf5(p: Path) -> bool:
    suffixes = {s for f in _HDF5_SNIFFS for s in f.suffixes}
    return _head(p) == HDF5_MAGIC or p.suffix.lower() in suffixes


def _sniff_text(src: TableSource) -> TableFormat[Any]:
    for fmt in _TEXT_SNIFFS:
        if fmt.sniff(src):
            return fmt
    # not reached: plain CSV, sniffed last, takes every text
    raise FormatError(f"{src.path}: not a localization table of a known format")


def _sniff_hdf5(p: Path) -> TableFormat[Any]:
    try:
        with open_h5(p) as f:
            keys = list(f.keys())
            for fmt in _HDF5_SNIFFS:
                if fmt.sniff(f):
                    return fmt
    except FormatError:
        raise
    except H5_ERRORS as exc:
        raise FormatError(f"{p}: corrupt HDF5 file ({first_line(exc)})") from exc
    raise FormatError(
        f"{p}: HDF5 file is neither a DECODE emitter set (groups data, meta) nor Picasso "
        f"localizations (dataset locs); found: {list_names(keys)}"
    )
