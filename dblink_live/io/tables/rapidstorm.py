"""rapidSTORM text tables (read only); conventions in :mod:`dblink_live.io.tables`."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dblink_live.errors import FormatError
from dblink_live.io.tables.common import build_localizations, lateral
from dblink_live.io.tables.registry import TableFormat, TableSource, register
from dblink_live.io.tables.text import PHOTON_UNITS, length_factor, parse_columns
from dblink_live.localizations import Localizations


def _sniff_rapidstorm(src: TableSource) -> bool:
    """Whether the first non-blank line is a ``# <localizations ...>`` XML header."""
    first = next((line.strip() for line in src.lines if line.strip()), "")
    return first.startswith("#") and "<localizations" in first


def _read_rapidstorm(src: TableSource) -> Localizations:
    p, lines, pixel_size_nm = src.path, src.lines, src.pixel_size_nm
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
        if c is not None and units[c] in PHOTON_UNITS[1:]:
            wanted[key] = c
    for key, ident in (("ux", "Position-0-0-uncertainty"), ("uy", "Position-1-0-uncertainty")):
        c = col(ident)
        if c is not None:
            wanted[key] = c

    factors = {
        k: length_factor(p, ids[c], units[c], pixel_size_nm, what="field")
        for k, c in wanted.items()
        if k in ("x", "y", "ux", "uy")
    }
    t = parse_columns(p, lines, h + 1, None, ids, wanted)
    ux = t.get("ux")
    uy = t.get("uy")
    return build_localizations(
        t.locate,
        t["frame"],
        t["x"] * factors["x"],
        t["y"] * factors["y"],
        photons=t.get("photons"),
        background=t.get("background"),
        uncertainty_nm=lateral(
            None if ux is None else ux * factors["ux"], None if uy is None else uy * factors["uy"]
        ),
        frame_base=0,
        pixel_size_nm=pixel_size_nm,
        frame_label=ids[wanted["frame"]],
        x_label=ids[wanted["x"]],
        y_label=ids[wanted["y"]],
    )


RAPIDSTORM = register(
    TableFormat[TableSource]("rapidstorm", (".txt",), _sniff_rapidstorm, _read_rapidstorm)
)
