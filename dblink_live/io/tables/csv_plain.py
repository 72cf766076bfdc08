"""Plain CSV, including Rieslab/vLUME exports and our own ``"csv"`` output; conventions in
:mod:`dblink_live.io.tables`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.errors import FormatError
from dblink_live.io.tables.common import build_localizations
from dblink_live.io.tables.registry import TableFormat, TableSource, register
from dblink_live.io.tables.text import find_header, looks_numeric, parse_columns, write_text_table
from dblink_live.localizations import Localizations

_OUR_TAG = "dblink_live localizations:"

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


def _our_metadata(lines: Sequence[str], h: int) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in lines[:h]:
        text = line.strip().lstrip("#").strip()
        if text.startswith(_OUR_TAG):
            for item in text[len(_OUR_TAG) :].split():
                key, _, value = item.partition("=")
                meta[key] = value
    return meta


def _read_plain_csv(src: TableSource) -> Localizations:
    p, lines, pixel_size_nm, frame_base = src.path, src.lines, src.pixel_size_nm, src.frame_base
    h, delimiter, header = find_header(p, lines)
    if looks_numeric(header):
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

    t = parse_columns(p, lines, h + 1, delimiter, header, wanted)
    return build_localizations(
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
    write_text_table(p, head, table, ["%d"] + ["%.9g"] * 6)


CSV = register(
    TableFormat[TableSource](
        name="csv",
        suffixes=(".csv", ".txt"),
        sniff=lambda src: True,  # the fallback, sniffed after every other text format
        read=_read_plain_csv,
        write=_write_plain_csv,
        frame_base=True,
    )
)
