"""HDF5 access the HDF5 table formats (DECODE, Picasso) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

from dblink_live.errors import FormatError
from dblink_live.io.tables.common import first_line

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# What h5py raises for damaged files (HDF5 errors map to OSError, RuntimeError, KeyError, ...).
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)


def open_h5(p: Path) -> h5py.File:
    """``p`` opened read-only with h5py; FormatError when it cannot be opened."""
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(
            f"{p}: not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}"
        ) from exc


def list_names(keys: Any) -> str:
    """Comma-separated names for messages (HDF5 names of damaged files may be bytes)."""
    out = [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in keys]
    return ", ".join(out) or "nothing"
