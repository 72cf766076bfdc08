"""The outputs of ``dblink-live reprocess``: reconstruction and confidence blocks appended to
the staged images of the target recording, and the optional TIFF stack and GIF preview.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.errors import RecordingError
from dblink_live.io.recording import Recording

__all__ = ["export_gif_preview", "export_tiff_stack"]


def _write_outputs(
    target: Recording, blocks: Iterable[tuple[int, np.ndarray, np.ndarray | None]]
) -> tuple[int, int]:
    """Append reconstruction and confidence blocks to the staged images; returns (maps
    written, maps with no localization in their window)."""
    n = empty = 0
    for _, recon, conf in blocks:
        target.append_image("reconstruction", recon, staged=True)
        if conf is not None:
            target.append_image("confidence", conf, staged=True)
            empty += int((conf.reshape(len(conf), -1).max(axis=1) == 0).sum())
        n += len(recon)
    return n, empty


def _set_image_attr(target: Recording, name: str, key: str, value: Any) -> None:
    """Set ``attrs[key]`` of image ``name`` just written (RecordingError if it is not there)."""
    arr = target.image_array(name)
    if arr is None:
        raise RecordingError(f"{target.path} has no {name} after writing it")
    arr.attrs[key] = value


def _export_reconstruction(
    target: Recording, bin_nm: float, interval_s: float, tiff: bool, gif: bool
) -> list[Path]:
    """Write the reconstruction of ``target`` beside it as ``NAME_reconstruction.tif``
    (``tiff``) and ``NAME_preview.gif`` (``gif``); ``interval_s``: time (s) between maps.
    Returns the paths written."""
    if not (tiff or gif):
        return []
    exports: list[Path] = []
    written = target.read_image("reconstruction")
    if written is None:
        raise RecordingError(f"{target.path} has no reconstruction after writing it")
    data = written[0]
    base = target.path.with_suffix("")
    if tiff:
        exports.append(
            export_tiff_stack(
                data,
                base.with_name(base.name + "_reconstruction.tif"),
                bin_nm,
                interval_s,
            )
        )
    if gif:
        exports.append(
            export_gif_preview(data, base.with_name(base.name + "_preview.gif"), interval_s)
        )
    return exports


def export_tiff_stack(data: np.ndarray, path: Path, bin_nm: float, interval_s: float) -> Path:
    """(T', Y', X') float32 stack as an ImageJ TIFF with the pixel size (um) and frame interval."""
    import tifffile

    tifffile.imwrite(
        path,
        data.astype(np.float32)[:, None, None],
        imagej=True,
        resolution=(1e3 / bin_nm, 1e3 / bin_nm),
        metadata={"axes": "TZCYX", "unit": "um", "finterval": interval_s},
    )
    return path


def export_gif_preview(
    data: np.ndarray, path: Path, interval_s: float, max_side: int = 512
) -> Path:
    """An 8-bit GIF of the reconstruction (each frame min-max scaled), real-time or >= 50 ms."""
    from PIL import Image

    frames = []
    for img in data:
        lo, hi = float(img.min()), float(img.max())
        u8 = ((img - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8)
        im = Image.fromarray(u8)
        if max(im.size) > max_side:
            im = im.resize(
                (max_side * im.size[0] // max(im.size), max_side * im.size[1] // max(im.size))
            )
        frames.append(im)
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        loop=0,
        duration=max(50, int(interval_s * 1000)),
    )
    return path
