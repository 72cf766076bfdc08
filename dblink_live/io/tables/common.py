"""Helpers every table format shares: file checks, message text, and the final validation
that turns parsed columns into :class:`~dblink_live.localizations.Localizations`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.errors import FormatError
from dblink_live.localizations import Localizations

PathLike = str | os.PathLike[str]


def existing_file(path: PathLike) -> Path:
    """``path`` as a Path; FormatError unless it names an existing regular file."""
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{p}: no such file")
    if not p.is_file():
        raise FormatError(f"{p}: not a file")
    return p


def build_localizations(
    locate: Callable[[int], str],
    frame: np.ndarray,
    x_nm: np.ndarray,
    y_nm: np.ndarray,
    *,
    photons: np.ndarray | None = None,
    background: np.ndarray | None = None,
    uncertainty_nm: np.ndarray | None = None,
    score: np.ndarray | None = None,
    frame_base: int = 0,
    pixel_size_nm: float | None = None,
    n_frames: int = 0,
    frame_label: str = "frame",
    x_label: str = "x",
    y_label: str = "y",
) -> Localizations:
    """Validate and assemble; ``locate(row)`` names a row in error messages."""
    frame = np.asarray(frame, dtype=np.float64).reshape(-1)
    n = len(frame)
    bad = ~np.isfinite(frame) | (frame != np.floor(frame)) | (np.abs(frame) > 2.0**53)
    if bad.any():
        i = int(np.argmax(bad))
        raise FormatError(
            f"{locate(i)}: column {frame_label!r} is not a whole frame number: {frame[i]!r}"
        )
    low = frame < frame_base
    if low.any():
        i = int(np.argmax(low))
        raise FormatError(
            f"{locate(i)}: column {frame_label!r} is {frame[i]:g}, below {frame_base} "
            f"(frames in this file are {frame_base}-based)"
        )
    x_nm, y_nm = _f32(x_nm), _f32(y_nm)
    for label, arr in ((x_label, x_nm), (y_label, y_nm)):
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            raise FormatError(f"{locate(i)}: column {label!r} is missing or not finite")

    def opt(a: np.ndarray | None, fill: float) -> np.ndarray:
        return np.full(n, fill, np.float32) if a is None else _f32(a)

    kwargs: dict[str, Any] = {"n_frames": n_frames}
    if pixel_size_nm is not None:
        kwargs["pixel_size_nm"] = float(pixel_size_nm)
    return Localizations(
        frame=frame.astype(np.int64) - frame_base,
        x_nm=x_nm,
        y_nm=y_nm,
        photons=opt(photons, math.nan),
        background=opt(background, math.nan),
        uncertainty_nm=opt(uncertainty_nm, math.nan),
        score=opt(score, 1.0),
        **kwargs,
    )


def _f32(a: np.ndarray) -> np.ndarray:
    """float32 copy; values beyond float32's range become +-inf without a warning."""
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.float64).reshape(-1).astype(np.float32)


def lateral(ux: np.ndarray | None, uy: np.ndarray | None) -> np.ndarray | None:
    """Quadratic mean of the x and y uncertainties (either alone if the other is absent)."""
    if ux is None and uy is None:
        return None
    if ux is None or uy is None:
        return ux if uy is None else uy
    return np.sqrt((np.square(ux) + np.square(uy)) / 2.0)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
