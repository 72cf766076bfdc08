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

Package layout
--------------
:mod:`~dblink_live.io.tables.api` holds the entry points, which look formats up in
:mod:`~dblink_live.io.tables.registry` (one :class:`~dblink_live.io.tables.registry.TableFormat`
record per format: how to sniff, read and write it). Each format module registers its records:
:mod:`~dblink_live.io.tables.thunderstorm`, :mod:`~dblink_live.io.tables.csv_plain`,
:mod:`~dblink_live.io.tables.decode` (``decode`` and ``decode_csv``),
:mod:`~dblink_live.io.tables.picasso` and :mod:`~dblink_live.io.tables.rapidstorm`. Text
parsing they share is in :mod:`~dblink_live.io.tables.text`, HDF5 access in
:mod:`~dblink_live.io.tables.hdf5`, the rest in :mod:`~dblink_live.io.tables.common`; TIFF
stacks are read in :mod:`~dblink_live.io.tables.tiff`.
"""

from dblink_live.io.tables.api import (
    READ_FORMATS,
    WRITE_FORMATS,
    read_localizations,
    write_localizations,
)
from dblink_live.io.tables.common import PathLike as PathLike
from dblink_live.io.tables.picasso import PICASSO_SHIFT_KEY as PICASSO_SHIFT_KEY
from dblink_live.io.tables.tiff import read_stack

__all__ = [
    "READ_FORMATS",
    "WRITE_FORMATS",
    "read_localizations",
    "read_stack",
    "write_localizations",
]
