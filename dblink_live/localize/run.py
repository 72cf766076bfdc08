"""Workflows behind ``dblink-live localize`` and ``dblink-live evaluate-localizer``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig, LocalizerConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localizations import EmitterTable, Localizations
from dblink_live.localize import CNNLocalizer, make_localizer
from dblink_live.localize.base import CameraCalibration, Localizer
from dblink_live.metrics import score_localizations

__all__ = ["LocalizeResult", "evaluate_localizers", "localize", "open_input"]

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]
_STACK_SUFFIXES = {".tif", ".tiff"}


@dataclass
class InputMovie:
    """A raw movie to localize: frames come in blocks; calibration and ground truth if known."""

    path: Path
    n_frames: int
    calibration: CameraCalibration
    blocks: Callable[[int], Iterator[tuple[int, np.ndarray]]]
    recording: Recording | None = None
    ground_truth: EmitterTable | None = None


def open_input(
    path: str | Path,
    pixel_size_nm: float | None = None,
    writable: bool = False,
    **calibration: float | None,
) -> InputMovie:
    """Open a recording (``*.zarr``) or a TIFF stack as a movie to localize.

    ``calibration`` overrides (``baseline_adu``, ``e_per_adu``, ``em_gain``, ``qe``,
    ``psf_sigma_nm``) replace what the recording says; a TIFF carries none of them, so the
    SMLM-2016 EMCCD defaults are assumed (and said so) for those not given.
    """
    path = Path(path)
    if path.suffix.lower() in _STACK_SUFFIXES:
        from dblink_live.io.tables import read_stack

        frames, meta = read_stack(path)
        px = pixel_size_nm or meta.get("pixel_size_nm")
        if px is None:
            raise DblinkError(f"{path} does not say its pixel size: pass --pixel-size-nm")
        missing = [
            k for k in ("baseline_adu", "e_per_adu", "em_gain", "qe") if calibration.get(k) is None
        ]
        if missing:
            log.warning(
                "%s: no camera calibration for %s; assuming the SMLM-2016 EMCCD values",
                path.name,
                ", ".join(missing),
            )
        cal = CameraCalibration.from_camera({}, px, **calibration)

        def blocks(size: int) -> Iterator[tuple[int, np.ndarray]]:
            for s in range(0, len(frames), size):
                yield s, frames[s : s + size]

        return InputMovie(path, len(frames), cal, blocks)
    rec = Recording.open(path, mode="r+" if writable else "r")
    cal = CameraCalibration.from_camera(
        rec.camera, pixel_size_nm or rec.pixel_size_nm, **calibration
    )

    def rec_blocks(size: int) -> Iterator[tuple[int, np.ndarray]]:
        for s in range(0, rec.n_frames, size):
            yield s, rec.read_frames(s, s + size)

    return InputMovie(path, rec.n_frames, cal, rec_blocks, rec, rec.read_emitters())


def _run(
    localizer: Localizer,
    movie: InputMovie,
    chunk_frames: int,
    progress: Progress | None,
    sink: Callable[[Localizations], None],
) -> tuple[int, float]:
    """Localize a movie block by block (with one frame of context across blocks for the CNN)."""
    n = 0
    t0 = time.perf_counter()
    blocks = movie.blocks(chunk_frames)
    prev_last: np.ndarray | None = None
    current = next(blocks, None)
    while current is not None:
        start, frames = current
        nxt = next(blocks, None)
        if isinstance(localizer, CNNLocalizer):
            locs = localizer.localize(
                frames,
                movie.calibration,
                start,
                context_before=prev_last,
                context_after=None if nxt is None else nxt[1][:1],
            )
        else:
            locs = localizer.localize(frames, movie.calibration, start)
        sink(locs)
        n += len(locs)
        prev_last = frames[-1:]
        if progress is not None:
            progress(start + len(frames), movie.n_frames, "localize")
        current = nxt
    return n, time.perf_counter() - t0


@dataclass
class LocalizeResult:
    """What :func:`localize` did."""

    localizations: int
    frames: int
    seconds: float
    written_to: Path
    localizer: dict[str, Any]

    @property
    def per_frame(self) -> float:
        return self.localizations / max(self.frames, 1)

    @property
    def frames_per_s(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def _describe(
    localizer: Localizer, config: LocalizerConfig, cal: CameraCalibration
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": localizer.name,
        "config": config.model_dump(mode="json"),
        "calibration": {k: getattr(cal, k) for k in cal.__dataclass_fields__},
    }
    if isinstance(localizer, CNNLocalizer):
        info["model"] = localizer.model_id
    return info


def localize(
    input_path: str | Path,
    *,
    config: LocalizerConfig | None = None,
    output: str | Path | None = None,
    output_format: str = "auto",
    device: str = "auto",
    pixel_size_nm: float | None = None,
    overwrite: bool = False,
    chunk_frames: int = 256,
    progress: Progress | None = None,
    **calibration: float | None,
) -> LocalizeResult:
    """Localize a recording or TIFF stack.

    With a recording and no ``output``, the localizations are appended to the recording (its
    ``localizations`` table must be empty, or ``overwrite``). Otherwise they go to ``output``:
    a table (ThunderSTORM/plain CSV, DECODE h5, Picasso hdf5; see :mod:`dblink_live.io.tables`)
    or a new recording (``*.zarr``, raw frames included).
    """
    config = config or CNNLocalizerConfig()
    input_path = Path(input_path)
    in_place = output is None or Path(output).resolve() == input_path.resolve()
    if in_place and input_path.suffix.lower() in _STACK_SUFFIXES:
        raise DblinkError(
            f"{input_path} is a TIFF: give -o/--output (a table or a .zarr recording)"
        )
    if not in_place and Path(output).suffix != ".zarr" and output_format == "auto":
        by_suffix = {".csv": "thunderstorm", ".h5": "decode", ".hdf5": "picasso"}
        output_format = by_suffix.get(Path(output).suffix.lower(), "")
        if not output_format:
            raise DblinkError(
                f"cannot tell the table format of {Path(output).name}: use .csv (ThunderSTORM), "
                ".h5 (DECODE), .hdf5 (Picasso) or .zarr, or give --format"
            )
    movie = open_input(input_path, pixel_size_nm, writable=in_place, **calibration)
    localizer = make_localizer(config, device)
    info = _describe(localizer, config, movie.calibration)

    if in_place:
        rec = movie.recording
        assert rec is not None
        if rec.n_localizations and not overwrite:
            raise DblinkError(
                f"{input_path} already has {rec.n_localizations:,} localizations; pass --overwrite "
                "to replace them"
            )
        rec.clear_localizations(info)
        n, dt = _run(localizer, movie, chunk_frames, progress, rec.append_localizations)
        return LocalizeResult(n, movie.n_frames, dt, input_path, info)

    output = Path(output)  # type: ignore[arg-type]
    if output.exists() and not overwrite:
        raise DblinkError(f"{output} already exists; pass --overwrite to replace it")
    if output.suffix == ".zarr":
        frames_shape = next(movie.blocks(1))[1].shape[1:]
        rec = Recording.create(
            output,
            frame_shape=frames_shape,
            pixel_size_nm=movie.calibration.pixel_size_nm,
            frame_interval_s=(movie.recording.frame_interval_s if movie.recording else 0.01),
            camera={
                k: getattr(movie.calibration, k) for k in movie.calibration.__dataclass_fields__
            },
            overwrite=overwrite,
            extra={"source": str(input_path)},
        )
        rec.clear_localizations(info)

        def sink(locs: Localizations) -> None:
            rec.append_localizations(locs)

        def copying_blocks(size: int) -> Iterator[tuple[int, np.ndarray]]:
            for s, f in movie.blocks(size):
                rec.append_frames(f)
                yield s, f

        movie = InputMovie(movie.path, movie.n_frames, movie.calibration, copying_blocks)
        n, dt = _run(localizer, movie, chunk_frames, progress, sink)
        return LocalizeResult(n, movie.n_frames, dt, output, info)

    from dblink_live.io.tables import write_localizations

    parts: list[Localizations] = []
    n, dt = _run(localizer, movie, chunk_frames, progress, parts.append)
    table = (
        Localizations.concatenate(parts)
        if parts
        else Localizations.empty(movie.calibration.pixel_size_nm)
    )
    table.n_frames = movie.n_frames
    write_localizations(table, output, format=output_format)
    return LocalizeResult(n, movie.n_frames, dt, output, info)


def evaluate_localizers(
    input_path: str | Path,
    *,
    ground_truth: str | Path | None = None,
    localizers: tuple[str, ...] = ("cnn", "classic"),
    weights: str | None = None,
    tolerance_nm: float = 250.0,
    method: str = "greedy",
    device: str = "auto",
    pixel_size_nm: float | None = None,
    min_photons: float = 0.0,
    progress: Progress | None = None,
    **calibration: float | None,
) -> dict[str, Any]:
    """Score localizers against ground truth (SMLM-2016 metrics); returns a JSON-able report.

    Ground truth is the simulated ``gt/emitters`` of a recording, or a table given with
    ``ground_truth`` (e.g. ThunderSTORM CSV). ``min_photons`` drops dimmer true emitters (and
    predictions matched to nothing near them are still false positives).
    """
    movie = open_input(input_path, pixel_size_nm, **calibration)
    if ground_truth is not None:
        from dblink_live.io.tables import read_localizations

        gt = read_localizations(ground_truth, pixel_size_nm=movie.calibration.pixel_size_nm)
        gt_frame, gt_x, gt_y, gt_ph = gt.frame, gt.x_nm, gt.y_nm, gt.photons
    elif movie.ground_truth is not None:
        em = movie.ground_truth
        gt_frame, gt_x, gt_y, gt_ph = em.frame, em.x_nm, em.y_nm, em.photons
    else:
        raise DblinkError(
            f"{input_path} has no ground truth: give --ground-truth TABLE or a simulated recording"
        )
    if min_photons > 0:
        keep = ~(np.asarray(gt_ph) < min_photons)  # NaN photons are kept
        gt_frame, gt_x, gt_y = gt_frame[keep], gt_x[keep], gt_y[keep]
    report: dict[str, Any] = {
        "input": str(input_path),
        "frames": movie.n_frames,
        "pixel_size_nm": movie.calibration.pixel_size_nm,
        "ground_truth_emitters": len(gt_frame),
        "ground_truth_per_frame": len(gt_frame) / max(movie.n_frames, 1),
        "tolerance_nm": tolerance_nm,
        "matching": method,
        "min_photons": min_photons,
        "results": {},
    }
    for name in localizers:
        if name == "cnn":
            cfg: LocalizerConfig = CNNLocalizerConfig(**({"weights": weights} if weights else {}))
        elif name == "classic":
            cfg = ClassicLocalizerConfig()
        else:
            raise DblinkError(f"unknown localizer {name!r}; use cnn or classic")
        loc = make_localizer(cfg, device)
        parts: list[Localizations] = []
        n, dt = _run(loc, movie, 256, progress, parts.append)
        pred = Localizations.concatenate(parts) if parts else Localizations.empty()
        s = score_localizations(
            gt_frame, gt_x, gt_y, pred.frame, pred.x_nm, pred.y_nm, tolerance_nm, method
        )  # type: ignore[arg-type]
        report["results"][name] = {
            **s.to_dict(),
            "localizations": n,
            "frames_per_s": movie.n_frames / max(dt, 1e-9),
            "localizer": _describe(loc, cfg, movie.calibration),
        }
    return report
