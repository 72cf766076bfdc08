"""Export the reconstruction of a recording as a video: a TIFF stack or an animated GIF.

Qt-free. Maps are read one chunk at a time, so a long recording does not have to fit in
memory for TIFF; the GIF holds the (small, 8-bit) frames it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile

from dblink_live.display.imaging import blend, confidence_tint, to_rgb
from dblink_live.display.source import RecordingSource
from dblink_live.errors import DblinkError

__all__ = ["VIDEO_SUFFIXES", "export_video"]

VIDEO_SUFFIXES = (".tif", ".tiff", ".gif")

Progress = Callable[[int, int], bool]


def _maps(source: RecordingSource, name: str, block: int = 16) -> Iterator[np.ndarray]:
    arr = source.recording.image_array(name)
    assert arr is not None, name
    n = source.n_outputs
    for start in range(0, n, block):
        yield from np.asarray(arr[start : min(start + block, n)], dtype=np.float32)


def export_video(
    source: RecordingSource,
    path: str | Path,
    *,
    levels: tuple[float, float] = (0.0, 1.0),
    lut: str = "inferno",
    tint_threshold: float | None = None,
    fps: float = 10.0,
    progress: Progress | None = None,
) -> int:
    """Write the reconstruction of ``source`` as a video; returns the number of frames.

    Parameters
    ----------
    source
        The recording (must hold a ``reconstruction``).
    path
        ``*.tif``/``*.tiff``: float32 (T', Y', X') ImageJ stack of the reconstruction values
        with the grid's pixel size (``bin_nm``) and frame interval. ``*.gif``: the
        reconstruction through ``levels`` and colour table ``lut``, low-confidence pixels
        tinted when ``tint_threshold`` is set, at ``fps`` frames per second.
    progress
        Called as ``progress(done, total)``; returning False cancels (the partial file is
        removed).

    Raises
    ------
    DblinkError
        when the recording has no reconstruction or the suffix is not supported.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise DblinkError(f"cannot export {path.name}: use one of {', '.join(VIDEO_SUFFIXES)}")
    total = source.n_outputs
    if total == 0:
        raise DblinkError(
            f"{source.path} has no reconstruction to export; run `dblink-live reprocess` first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    try:
        if suffix == ".gif":
            done = _write_gif(source, path, levels, lut, tint_threshold, fps, progress)
        else:
            done = _write_tiff(source, path, progress)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if done < total:  # cancelled
        path.unlink(missing_ok=True)
    return done


class _Cancelled(Exception):
    pass


def _write_tiff(source: RecordingSource, path: Path, progress: Progress | None) -> int:
    total = source.n_outputs
    um_per_bin = source.bin_nm / 1e3
    interval = source.stride_frames * source.frame_interval_s
    done = 0

    def frames() -> Iterator[np.ndarray]:
        nonlocal done
        for image in _maps(source, "reconstruction"):
            yield image
            done += 1
            if progress is not None and progress(done, total) is False:
                raise _Cancelled

    try:
        with tifffile.TiffWriter(path, imagej=True) as tif:
            tif.write(
                frames(),  # one page per map, read lazily
                shape=(total, *source.grid_shape),
                dtype="float32",
                resolution=(1 / um_per_bin, 1 / um_per_bin),
                metadata={"axes": "TYX", "unit": "um", "finterval": interval},
            )
    except _Cancelled:
        return done
    return total


def _write_gif(
    source: RecordingSource,
    path: Path,
    levels: tuple[float, float],
    lut: str,
    tint_threshold: float | None,
    fps: float,
    progress: Progress | None,
) -> int:
    from PIL import Image

    total = source.n_outputs
    conf_iter = _maps(source, "confidence") if source.has_confidence and tint_threshold else None
    frames = []
    for image in _maps(source, "reconstruction"):
        rgb = to_rgb(image, levels, lut)
        if conf_iter is not None:
            conf = next(conf_iter, None)
            if conf is not None:
                rgb = blend(rgb, confidence_tint(conf, tint_threshold or 0.0))
        frames.append(Image.fromarray(rgb))
        if progress is not None and progress(len(frames), total) is False:
            return len(frames)
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=max(20, round(1000 / max(fps, 0.1))),
        loop=0,
    )
    return len(frames)
