"""The registry of localization-table formats: one :class:`TableFormat` record per format,
filled by the format modules (:func:`register`) and used by
:func:`~dblink_live.io.tables.api.read_localizations` and
:func:`~dblink_live.io.tables.api.write_localizations` to recognise, read and write files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from dblink_live.io.tables.text import find_header, read_lines
from dblink_live.localizations import Localizations

#: What a format's ``sniff`` looks at: a :class:`TableSource` (text formats) or the open
#: ``h5py.File`` (HDF5 formats).
Probe = TypeVar("Probe")


class TableSource:
    """One table file to read and the caller's options; its text is read on first use.

    ``pixel_size_nm`` (nm, or None) and ``frame_base`` (0, 1 or None) are the arguments of
    :func:`~dblink_live.io.tables.api.read_localizations`.
    """

    def __init__(self, path: Path, pixel_size_nm: float | None, frame_base: int | None) -> None:
        self.path = path
        self.pixel_size_nm = pixel_size_nm
        self.frame_base = frame_base

    @cached_property
    def lines(self) -> list[str]:
        """The file's text lines (FormatError for empty, binary, TIFF or HDF5 files)."""
        return read_lines(self.path)

    @cached_property
    def header_labels(self) -> list[str]:
        """The header line's column labels (FormatError when there is no header line)."""
        return find_header(self.path, self.lines)[2]


@dataclass(frozen=True)
class TableFormat(Generic[Probe]):
    """How to recognise, read and (optionally) write one localization-table format.

    Attributes
    ----------
    name
        The ``format=`` name.
    suffixes
        Usual file-name endings (lower case). Those of HDF5 formats make a file count as HDF5
        without the HDF5 signature.
    sniff
        Whether a file of unknown format is of this one, given a :class:`TableSource` (text
        formats) or the open ``h5py.File`` (HDF5 formats); may raise FormatError. The order
        the sniffs are tried in is :mod:`~dblink_live.io.tables.api`'s.
    read
        Reads a :class:`TableSource` into Localizations (positions in nm, 0-based frames).
    write
        Writes Localizations to a path, or None for a format that is only read.
    hdf5
        Whether the format is an HDF5 file (else a text table).
    holds
        What an HDF5 file of this format holds, for messages ("a DECODE emitter set").
    frame_base
        Whether ``read`` honours the ``frame_base`` option (plain CSV only).
    """

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Probe], bool]
    read: Callable[[TableSource], Localizations]
    write: Callable[[Localizations, Path], None] | None = None
    hdf5: bool = False
    holds: str = ""
    frame_base: bool = False


#: Every registered format by name.
FORMATS: dict[str, TableFormat[Any]] = {}


def register(fmt: TableFormat[Probe]) -> TableFormat[Probe]:
    """Add ``fmt`` to :data:`FORMATS` (ValueError when its name is taken) and return it."""
    if fmt.name in FORMATS:
        raise ValueError(f"localization format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt
