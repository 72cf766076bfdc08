"""Shared parsing of text tables: reading the lines, finding and splitting the header,
column names with ``[unit]`` suffixes and their length units, and the numeric columns."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dblink_live.errors import FormatError
from dblink_live.io.tables.hdf5 import HDF5_MAGIC

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# Length factors to nm; None marks camera pixels (needs the pixel size).
LENGTH_UNITS: dict[str, float | None] = {
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
PHOTON_UNITS = ("", "photon", "photons")


def read_lines(p: Path) -> list[str]:
    """The lines of text file ``p`` (UTF-8, else Latin-1); FormatError for empty or binary files."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise FormatError(f"{p}: file is empty")
    if raw.startswith(_TIFF_MAGICS):
        raise FormatError(f"{p}: is a TIFF image, not a localization table (use read_stack)")
    if raw.startswith(HDF5_MAGIC):
        raise FormatError(f"{p}: is an HDF5 file, not a text table (use format='decode')")
    if b"\x00" in raw[:8192]:
        raise FormatError(f"{p}: not a text file (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def is_comment(line: str) -> bool:
    """Whether ``line`` is a ``#`` comment."""
    return line.lstrip().startswith("#")


def data_rows(lines: Sequence[str], start: int) -> Iterator[tuple[int, str]]:
    """``(index, line)`` of the lines from ``start`` on that are neither blank nor comments."""
    for i in range(start, len(lines)):
        line = lines[i]
        if line.strip() and not is_comment(line):
            yield i, line


def header_index(p: Path, lines: Sequence[str]) -> int:
    """Index of the first line that is neither blank nor a ``#`` comment."""
    for i, line in enumerate(lines):
        if line.strip() and not is_comment(line):
            return i
    raise FormatError(f"{p}: no header line (only comments or blank lines)")


def find_header(p: Path, lines: Sequence[str]) -> tuple[int, str | None, list[str]]:
    """The header line's index, its delimiter (see :func:`guess_delimiter`) and its labels."""
    h = header_index(p, lines)
    delimiter = guess_delimiter(lines[h])
    return h, delimiter, split_header(lines[h], delimiter)


def guess_delimiter(line: str) -> str | None:
    """The field delimiter of a header line: tab, comma, semicolon, or None for whitespace."""
    if "\t" in line and "," not in line:
        return "\t"
    if "," in line:
        return ","
    if ";" in line:
        return ";"
    return None  # whitespace


def split_fields(line: str, delimiter: str | None) -> list[str]:
    """The fields of one line (CSV quoting; ``delimiter=None`` splits on whitespace)."""
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


def split_header(line: str, delimiter: str | None) -> list[str]:
    """Column names; unwraps a header quoted as one field (``"id,""frame"",...""``)."""
    fields = split_fields(line, delimiter)
    for _ in range(3):
        if len(fields) == 1 and delimiter is not None and delimiter in fields[0]:
            fields = split_fields(fields[0], delimiter)
        else:
            break
    return [f.strip().strip('"').strip() for f in fields]


def looks_numeric(names: Sequence[str]) -> bool:
    """Whether a would-be header is a row of numbers (i.e. the file has no header)."""
    try:
        [float(n) for n in names]
    except ValueError:
        return False
    return bool(names)


_UNIT_RE = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<unit>[^\]]*)\])?\s*$")


def name_unit(label: str) -> tuple[str, str]:
    """``"x [nm]"`` -> ``("x", "nm")``, both lower case; the unit is ``""`` when absent."""
    m = _UNIT_RE.match(label)
    assert m is not None  # the pattern matches every string
    return m.group("name").strip().lower(), (m.group("unit") or "").strip().lower()


def length_factor(
    p: Path, label: str, unit: str, pixel_size_nm: float | None, what: str = "column"
) -> float:
    """Factor from ``unit`` to nm; pixels use ``pixel_size_nm`` (ImageJ origin, no shift)."""
    if unit == "":
        return 1.0
    if unit not in LENGTH_UNITS:
        raise FormatError(
            f"{p}: {what} {label!r} has an unknown length unit {unit!r} (expected nm, um or px)"
        )
    factor = LENGTH_UNITS[unit]
    if factor is None:
        if pixel_size_nm is None:
            raise FormatError(f"{p}: {what} {label!r} is in pixels; pass pixel_size_nm")
        return float(pixel_size_nm)
    return factor


class TextTable:
    """Numeric columns parsed from a text table, with row -> line lookup for messages."""

    def __init__(
        self, p: Path, lines: Sequence[str], start: int, arrays: dict[str, np.ndarray]
    ) -> None:
        self.p, self.lines, self.start, self.arrays = p, lines, start, arrays
        self._line_nos: list[int] | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def get(self, key: str) -> np.ndarray | None:
        return self.arrays.get(key)

    def locate(self, row: int) -> str:
        """``path:line`` of data row ``row`` (0-based), for messages."""
        if self._line_nos is None:
            self._line_nos = [i + 1 for i, _ in data_rows(self.lines, self.start)]
        return f"{self.p}:{self._line_nos[row]}"


def parse_columns(
    p: Path,
    lines: Sequence[str],
    start: int,
    delimiter: str | None,
    header: Sequence[str],
    wanted: dict[str, int],
) -> TextTable:
    """Parse the wanted columns (key -> column index) of ``lines[start:]`` as float64.

    A fast vectorized pass (numpy.loadtxt); on any problem a slow pass that reads empty cells
    as NaN and reports the first bad cell by line and column name.
    """
    if next(data_rows(lines, start), None) is None:
        return TextTable(p, lines, start, {k: np.zeros(0) for k in wanted})
    usecols = sorted(set(wanted.values()))
    try:
        data = np.loadtxt(
            lines[start:],
            dtype=np.float64,
            delimiter=delimiter,
            comments="#",
            usecols=usecols,
            ndmin=2,
            quotechar='"',
        )
    except ValueError:
        arrays = _parse_rows_slowly(p, data_rows(lines, start), delimiter, header, wanted)
    else:
        pos = {c: j for j, c in enumerate(usecols)}
        arrays = {k: np.ascontiguousarray(data[:, pos[c]]) for k, c in wanted.items()}
    return TextTable(p, lines, start, arrays)


def _parse_rows_slowly(
    p: Path,
    rows: Iterator[tuple[int, str]],
    delimiter: str | None,
    header: Sequence[str],
    wanted: dict[str, int],
) -> dict[str, np.ndarray]:
    values: dict[str, list[float]] = {k: [] for k in wanted}
    needed = max(wanted.values()) + 1
    for i, line in rows:
        try:
            fields = split_fields(line, delimiter)
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
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}


def write_text_table(
    p: Path, head: str, table: np.ndarray, fmt: list[str], nan: str = "nan"
) -> None:
    """Write ``head`` and the (N, C) ``table`` as CSV (``fmt`` per column, NaN as ``nan``)."""
    buf = io.StringIO()
    if len(table):
        np.savetxt(buf, table.reshape(len(table), -1), fmt=fmt, delimiter=",")
    body = buf.getvalue()
    if nan != "nan":
        body = body.replace("nan", nan)
    with p.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(head + "\n")
        fh.write(body)
