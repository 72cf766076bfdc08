"""Export what a recording stores for other tools: its localizations as a table, and its
reconstruction as a TIFF stack or GIF preview.

The localizations are the ones the recording holds (a live run's, or those of ``localize``),
exported as they are: nothing is localized again. Every export is read back with our own
reader and compared with what was written, so a table that lost a row is an error, never a
silent success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dblink_live.errors import DblinkError
from dblink_live.io.outputs import check_writable
from dblink_live.io.recording import Recording
from dblink_live.io.tables import read_localizations, write_localizations

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_recording", "format_for"]

#: Export formats: name -> (what it is, default file suffix).
EXPORT_FORMATS = {
    "thunderstorm": ("ThunderSTORM CSV", ".csv"),
    "csv": ("plain CSV (dblink_live columns, 0-based frames)", ".csv"),
    "decode": ("DECODE emitter set (HDF5)", ".h5"),
    "picasso": ("Picasso localizations (HDF5 + YAML)", ".hdf5"),
}
_BY_SUFFIX = {".csv": "thunderstorm", ".h5": "decode", ".hdf5": "picasso"}


def format_for(path: Path, given: str | None) -> str:
    """The export format: ``given``, else from the suffix (.csv ThunderSTORM, .h5 DECODE,
    .hdf5 Picasso)."""
    if given is not None:
        fmt = given.lower()
        if fmt not in EXPORT_FORMATS:
            raise DblinkError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {given!r}")
        return fmt
    by_suffix = _BY_SUFFIX.get(path.suffix.lower())
    if by_suffix is None:
        raise DblinkError(
            f"cannot tell the format of {path.name} from its suffix: use .csv (ThunderSTORM), "
            ".h5 (DECODE) or .hdf5 (Picasso), or give --format"
        )
    return by_suffix


@dataclass
class ExportResult:
    """What :func:`export_recording` wrote."""

    table: Path | None
    format: str
    rows: int
    frames: int
    exports: list[Path] = field(default_factory=list)


def export_recording(
    recording: str | Path,
    output: str | Path | None,
    *,
    format: str | None = None,
    overwrite: bool = False,
    tiff: bool = False,
    gif: bool = False,
) -> ExportResult:
    """Write the recording's localizations to ``output`` (and optionally its reconstruction
    beside it as ``<stem>_reconstruction.tif`` / ``_preview.gif``).

    Raises
    ------
    DblinkError
        No localizations (or no reconstruction for ``tiff``/``gif``), an existing output
        without ``overwrite``, an unwritable output, or a table that does not read back whole.
    """
    rec = Recording.open(recording)
    exports: list[Path] = []
    table: Path | None = None
    fmt = ""
    rows = 0
    if output is None and not (tiff or gif):
        raise DblinkError("give -o/--output FILE (or --tiff / --gif)")
    if output is not None:
        table = Path(output)
        fmt = format_for(table, format)
        if table.exists() and not overwrite:
            raise DblinkError(f"{table} already exists; pass --overwrite to replace it")
        check_writable(table)
        locs = rec.read_localizations()
        if len(locs) == 0:
            raise DblinkError(
                f"{rec.path} holds no localizations: run `dblink-live localize {rec.path}` first"
            )
        write_localizations(locs, table, format=fmt)
        back = read_localizations(table, pixel_size_nm=locs.pixel_size_nm)
        if len(back) != len(locs):
            raise DblinkError(
                f"{table}: {len(back)} of {len(locs)} localizations read back; the export is "
                "incomplete"
            )
        # positions must survive the format (float32 pixels in Picasso and DECODE)
        err = float(np.max(np.abs(np.sort(back.x_nm) - np.sort(locs.x_nm)), initial=0.0))
        if err > 1e-3 * locs.pixel_size_nm + 1e-3:
            raise DblinkError(f"{table}: positions read back differ by up to {err:.3g} nm")
        rows = len(locs)
    if tiff or gif:
        exports = _export_images(rec, Path(output) if output else Path(rec.path), tiff, gif)
    return ExportResult(table, fmt, rows, rec.n_frames, exports)


def _export_images(rec: Recording, near: Path, tiff: bool, gif: bool) -> list[Path]:
    from dblink_live.recon.reprocess import export_gif_preview, export_tiff_stack

    found = rec.read_image("reconstruction")
    if found is None:
        raise DblinkError(f"{rec.path} holds no reconstruction: run `dblink-live reprocess` first")
    data, attrs = found
    stride = int(attrs.get("stride_frames", attrs.get("window_frames", 1)))
    interval = stride * float(rec.frame_interval_s)
    base = near.with_suffix("")
    out = []
    if tiff:
        path = base.with_name(base.name + "_reconstruction.tif")
        out.append(export_tiff_stack(data, path, float(attrs.get("bin_nm", 40.0)), interval))
    if gif:
        out.append(export_gif_preview(data, base.with_name(base.name + "_preview.gif"), interval))
    return out
