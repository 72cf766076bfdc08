"""ThunderSTORM CSV (also its tab-separated ``.xls``); conventions in
:mod:`dblink_live.io.tables`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dblink_live.errors import FormatError
from dblink_live.io.tables.common import build_localizations
from dblink_live.io.tables.registry import TableFormat, TableSource, register
from dblink_live.io.tables.text import (
    PHOTON_UNITS,
    find_header,
    length_factor,
    looks_numeric,
    name_unit,
    parse_columns,
    write_text_table,
)
from dblink_live.localizations import Localizations


def _read_thunderstorm(src: TableSource) -> Localizations:
    p, lines, pixel_size_nm = src.path, src.lines, src.pixel_size_nm
    h, delimiter, header = find_header(p, lines)
    if looks_numeric(header):
        raise FormatError(f'{p}: no header line (expected column names like "x [nm]")')
    parsed = [name_unit(label) for label in header]
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
        if key in wanted and parsed[wanted[key]][1] not in PHOTON_UNITS:
            del wanted[key]

    fx = length_factor(p, header[wanted["x"]], parsed[wanted["x"]][1], pixel_size_nm)
    fy = length_factor(p, header[wanted["y"]], parsed[wanted["y"]][1], pixel_size_nm)
    fu = 1.0
    if "uncertainty" in wanted:
        c = wanted["uncertainty"]
        fu = length_factor(p, header[c], parsed[c][1], pixel_size_nm)

    t = parse_columns(p, lines, h + 1, delimiter, header, wanted)
    unc = t.get("uncertainty")
    return build_localizations(
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
    write_text_table(p, ",".join(f'"{h}"' for h in header), table, fmt, nan="NaN")


THUNDERSTORM = register(
    TableFormat[TableSource](
        name="thunderstorm",
        suffixes=(".csv", ".xls"),
        sniff=lambda src: any("[" in label for label in src.header_labels),
        read=_read_thunderstorm,
        write=_write_thunderstorm,
    )
)
