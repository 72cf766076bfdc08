"""Workflows behind ``dblink-live localize`` and ``dblink-live evaluate-localizer``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig, LocalizerConfig
from dblink_live.errors import DblinkError
from dblink_live.io.outputs import check_writable
from dblink_live.io.recording import Recording, UnreadableFramesError, format_ranges
from dblink_live.localizations import EmitterTable, Localizations
from dblink_live.localize import make_localizer
from dblink_live.localize.base import CameraCalibration, Localizer, join_localizations
from dblink_live.localize.camera_estimate import CameraEstimate, estimate_camera
from dblink_live.metrics import score_localizations

__all__ = [
    "LocalizeResult",
    "describe_localizer",
    "evaluate_localizers",
    "localize",
    "localize_missing",
    "open_input",
]

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]
_STACK_SUFFIXES = {".tif", ".tiff"}


@dataclass
class InputMovie:
    """A raw movie to localize: frames come in blocks; calibration and ground truth if known.

    ``camera_estimate`` is set when (part of) the calibration was measured from the frames
    (:func:`~dblink_live.localize.camera_estimate.estimate_camera`) because nobody gave it.
    """

    path: Path
    n_frames: int
    calibration: CameraCalibration
    blocks: Callable[..., Iterator[tuple[int, np.ndarray]]]
    recording: Recording | None = None
    ground_truth: EmitterTable | None = None
    camera_estimate: CameraEstimate | None = None
    #: ``[a, b)`` frame ranges skipped because they cannot be read (damaged chunks)
    unreadable: list[tuple[int, int]] = field(default_factory=list)

    def skip_unreadable(self, a: int, b: int) -> None:
        """Note frames ``[a, b)`` as unreadable (merged with the ranges noted before)."""
        if self.unreadable and self.unreadable[-1][1] >= a:
            self.unreadable[-1] = (self.unreadable[-1][0], max(b, self.unreadable[-1][1]))
        else:
            self.unreadable.append((a, b))


#: The calibration keys without which photons cannot be computed; estimated when absent.
_GAIN_KEYS = ("baseline_adu", "e_per_adu")


def _given(calibration: dict[str, float | None]) -> dict[str, float]:
    """The calibration values the user gave (None: not given, the camera's value is kept)."""
    return {k: v for k, v in calibration.items() if v is not None}


def _calibrate(
    known: dict[str, Any], px: float, sample: np.ndarray, given: dict[str, float | None]
) -> tuple[CameraCalibration, CameraEstimate | None]:
    """The calibration from what is known (metadata, then the user's values); the offset and
    gain estimated from ``sample`` frames when neither says them."""
    merged = {**known, **{k: v for k, v in given.items() if v is not None}}
    if all(merged.get(k) is not None for k in _GAIN_KEYS):
        return CameraCalibration.from_camera(known, px, **_given(given)), None
    model = str(known.get("model") or "")
    kind = "scmos" if model == "scmos" else "emccd" if model == "emccd" else None
    est = estimate_camera(
        sample,
        camera=kind,
        em_gain=merged.get("em_gain"),
        baseline_adu=merged.get("baseline_adu"),
    )
    fill = est.calibration(em_gain=merged.get("em_gain"))
    for k, v in fill.items():
        if merged.get(k) is None or (k == "e_per_adu" and given.get(k) is None):
            merged[k] = v
    cal = CameraCalibration.from_camera({**known, **merged}, px)
    return cal, est


def _sample_frames(read: Callable[[int, int], np.ndarray], n: int, k: int = 200) -> np.ndarray:
    """Up to ``k`` frames spread over a movie of ``n`` (contiguous runs of 8, for temporal
    statistics)."""
    if n <= k:
        runs = [(0, n)]
    else:
        runs = [(int(s), int(s) + 8) for s in np.linspace(0, n - 8, k // 8).astype(int)]
    parts = []
    for a, b in runs:
        try:
            parts.append(read(a, b))
        except UnreadableFramesError:  # a damaged chunk: sample around it
            continue
    if not parts:
        raise DblinkError("no frame of the movie can be read (every sampled chunk is damaged)")
    return np.concatenate(parts)


def open_input(
    path: str | Path,
    pixel_size_nm: float | None = None,
    writable: bool = False,
    **calibration: float | None,
) -> InputMovie:
    """Open a recording (``*.zarr``) or a TIFF stack as a movie to localize.

    ``calibration`` overrides (``baseline_adu``, ``e_per_adu``, ``em_gain``, ``qe``,
    ``psf_sigma_nm``) replace what the recording says. When neither the recording nor the
    user gives the offset and e-/ADU (a bare TIFF, a Micro-Manager recording of an
    uncalibrated camera), they are estimated from the frames (photon transfer, see
    :mod:`dblink_live.localize.camera_estimate`) and the estimate is logged and returned.
    """
    path = Path(path)
    if path.suffix.lower() in _STACK_SUFFIXES:
        from dblink_live.io.tables import read_stack

        frames, meta = read_stack(path)
        px = pixel_size_nm or meta.get("pixel_size_nm")
        if px is None:
            raise DblinkError(f"{path} does not say its pixel size: pass --pixel-size-nm")
        cal, est = _calibrate(
            {}, px, _sample_frames(lambda a, b: frames[a:b], len(frames)), calibration
        )

        def blocks(size: int, on_unreadable: object = None) -> Iterator[tuple[int, np.ndarray]]:
            for s in range(0, len(frames), size):
                yield s, frames[s : s + size]

        movie = InputMovie(path, len(frames), cal, blocks, camera_estimate=est)
    else:
        rec = Recording.open(path, mode="r+" if writable else "r")
        px = pixel_size_nm or rec.pixel_size_nm
        if rec.n_frames:
            sample = _sample_frames(rec.read_frames, rec.n_frames)
            cal, est = _calibrate(dict(rec.camera), px, sample, calibration)
        else:
            cal, est = CameraCalibration.from_camera(rec.camera, px, **_given(calibration)), None

        def rec_blocks(
            size: int, on_unreadable: Callable[[int, int], None] | None = None
        ) -> Iterator[tuple[int, np.ndarray]]:
            yield from rec.iter_frames(0, rec.n_frames, size, on_unreadable)

        movie = InputMovie(path, rec.n_frames, cal, rec_blocks, rec, rec.read_emitters(), est)
    if movie.camera_estimate is not None:
        log.warning("%s: %s", path.name, movie.camera_estimate.summary())
    return movie


def _run(
    localizer: Localizer,
    movie: InputMovie,
    chunk_frames: int,
    progress: Progress | None,
    sink: Callable[[Localizations], object],
    on_frames: Callable[[np.ndarray], object] | None = None,
    mark: Callable[[int, int], None] | None = None,
) -> tuple[int, float]:
    """Localize a movie block by block (with one frame of context across blocks for the CNN);
    ``on_frames`` sees every block first (to copy the frames into a new recording)."""
    n = 0
    t0 = time.perf_counter()
    # damaged chunks are skipped (and said), unless the frames are being copied: a copy with a
    # gap would renumber every later frame
    skip = movie.skip_unreadable if on_frames is None else None
    if hasattr(localizer, "probe"):  # the CNN's yield check, judged before the real run
        localizer.probe(movie.blocks(chunk_frames, None if skip is None else lambda a, b: None),
                        movie.calibration)  # fmt: skip
    blocks = movie.blocks(chunk_frames, skip)
    prev: tuple[int, np.ndarray] | None = None  # (first frame after it, its last frame)
    current = next(blocks, None)
    while current is not None:
        start, frames = current
        if on_frames is not None:
            on_frames(frames)
        nxt = next(blocks, None)
        locs = localizer.localize(
            frames,
            movie.calibration,
            start,
            context_before=prev[1] if prev is not None and prev[0] == start else None,
            context_after=nxt[1][:1] if nxt is not None and nxt[0] == start + len(frames) else None,
        )
        sink(locs)
        if mark is not None:
            mark(start, start + len(frames))
        n += len(locs)
        prev = (start + len(frames), frames[-1:])
        if progress is not None:
            progress(start + len(frames), movie.n_frames, "localize")
        current = nxt
    if movie.unreadable:
        skipped = sum(b - a for a, b in movie.unreadable)
        log.warning(
            "%s: raw frames %s (%d frames) are unreadable (damaged chunks): skipped, not "
            "localized; maps over them get no confidence",
            movie.path.name,
            format_ranges(movie.unreadable),
            skipped,
        )
    return n, time.perf_counter() - t0


@dataclass
class LocalizeResult:
    """What :func:`localize` did."""

    localizations: int
    frames: int
    seconds: float
    written_to: Path
    localizer: dict[str, Any]
    camera_estimate: CameraEstimate | None = None

    @property
    def per_frame(self) -> float:
        return self.localizations / max(self.frames, 1)

    @property
    def frames_per_s(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def describe_localizer(
    localizer: Localizer, config: LocalizerConfig, cal: CameraCalibration
) -> dict[str, Any]:
    """What is stored with localizations: the localizer's name, its config, the camera
    calibration used and the weights' identity (CNN)."""
    info: dict[str, Any] = {
        "name": localizer.name,
        "config": config.model_dump(mode="json"),
        "calibration": {k: getattr(cal, k) for k in cal.__dataclass_fields__},
    }
    model_id = getattr(localizer, "model_id", None)
    if model_id is not None:
        info["model"] = model_id
    return info


def _record_check(localizer: Localizer, info: dict[str, Any], rec: Recording | None = None) -> None:
    """What the run learned about the localizer (the yield check, and who localized), into
    ``info`` and the recording's localization attributes."""
    report = getattr(localizer, "report", None)
    if not report:
        return
    learned = {"yield_check": report, "name": localizer.name}
    info.update(learned)
    if rec is not None:
        rec.update_localization_info(**learned)


def _localize_into(
    rec: Recording,
    written_to: Path,
    localizer: Localizer,
    movie: InputMovie,
    info: dict[str, Any],
    chunk_frames: int,
    progress: Progress | None,
    *,
    copy_frames: bool = False,
) -> LocalizeResult:
    """Localize ``movie`` into ``rec`` (at ``written_to``), replacing its localizations (stored
    with ``info``, which learns the unreadable frames and the yield check) and marking the
    frames done; ``copy_frames`` also appends the raw frames (a new recording)."""
    rec.clear_localizations(info)
    sink, mark = rec.append_localizations, rec.mark_localized
    copy = rec.append_frames if copy_frames else None
    n, dt = _run(localizer, movie, chunk_frames, progress, sink, copy, mark)
    if movie.unreadable:  # skipped only when the frames are not copied (see _run)
        info["unreadable_frames"] = [list(r) for r in movie.unreadable]
        rec.update_localization_info(unreadable_frames=info["unreadable_frames"])
    _record_check(localizer, info, rec)
    return LocalizeResult(n, movie.n_frames, dt, written_to, info, movie.camera_estimate)


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
    output_path = input_path if output is None else Path(output)
    in_place = output is None or output_path.resolve() == input_path.resolve()
    if in_place and input_path.suffix.lower() in _STACK_SUFFIXES:
        raise DblinkError(
            f"{input_path} is a TIFF: give -o/--output (a table or a .zarr recording)"
        )
    if not in_place and output_path.suffix != ".zarr" and output_format == "auto":
        by_suffix = {".csv": "thunderstorm", ".h5": "decode", ".hdf5": "picasso"}
        output_format = by_suffix.get(output_path.suffix.lower(), "")
        if not output_format:
            raise DblinkError(
                f"cannot tell the table format of {output_path.name}: use .csv (ThunderSTORM), "
                ".h5 (DECODE), .hdf5 (Picasso) or .zarr, or give --format"
            )
    if not in_place:
        check_writable(output_path)  # before the work, not after it
    movie = open_input(input_path, pixel_size_nm, writable=in_place, **calibration)
    localizer = make_localizer(config, device)
    info = describe_localizer(localizer, config, movie.calibration)
    if movie.camera_estimate is not None:
        info["camera_estimate"] = movie.camera_estimate.to_dict()

    if in_place:
        rec = movie.recording
        assert rec is not None
        if rec.n_localizations and not overwrite:
            raise DblinkError(
                f"{input_path} already has {rec.n_localizations:,} localizations; pass --overwrite "
                "to replace them"
            )
        return _localize_into(rec, input_path, localizer, movie, info, chunk_frames, progress)

    output = output_path  # not in place: the path given
    if output.exists() and not overwrite:
        raise DblinkError(f"{output} already exists; pass --overwrite to replace it")
    if output.suffix == ".zarr":
        frames_shape = next(movie.blocks(1))[1].shape[1:]
        camera: dict[str, Any] = (
            dict(movie.recording.camera) if movie.recording is not None else {"model": "unknown"}
        )
        camera.update(
            {k: getattr(movie.calibration, k) for k in movie.calibration.__dataclass_fields__}
        )
        if movie.camera_estimate is not None:
            camera["estimated"] = movie.camera_estimate.to_dict()
        rec = Recording.create(
            output,
            frame_shape=frames_shape,
            pixel_size_nm=movie.calibration.pixel_size_nm,
            frame_interval_s=(movie.recording.frame_interval_s if movie.recording else 0.01),
            camera=camera,
            overwrite=overwrite,
            extra={"source": str(input_path)},
        )
        return _localize_into(
            rec, output, localizer, movie, info, chunk_frames, progress, copy_frames=True
        )

    from dblink_live.io.tables import write_localizations

    parts: list[Localizations] = []
    n, dt = _run(localizer, movie, chunk_frames, progress, parts.append)
    table = join_localizations(parts, movie.calibration.pixel_size_nm, movie.n_frames)
    write_localizations(table, output, format=output_format)
    _record_check(localizer, info)
    return LocalizeResult(n, movie.n_frames, dt, output, info, movie.camera_estimate)


def localize_missing(
    rec: Recording,
    ranges: list[tuple[int, int]],
    config: LocalizerConfig | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> tuple[Localizations, list[tuple[int, int]]]:
    """Localize the raw frames of ``ranges`` of ``rec`` (frames that were never localized);
    the CNN gets the neighbouring frames as context. Returns their localizations and the
    ranges localized (unreadable frames, from damaged chunks, are skipped and said)."""
    movie = open_input(rec.path)
    localizer = make_localizer(config or CNNLocalizerConfig(), device)
    parts: list[Localizations] = []
    localized: list[tuple[int, int]] = []
    total = sum(b - a for a, b in ranges)
    done = 0

    def context(a: int, b: int) -> np.ndarray | None:
        if a < 0 or b > rec.n_frames:
            return None
        try:
            return rec.read_frames(a, b)
        except UnreadableFramesError:
            return None

    for a, b in ranges:
        for s, frames in rec.iter_frames(a, b, 256, movie.skip_unreadable):
            e = s + len(frames)
            before, after = (
                (context(s - 1, s), context(e, e + 1)) if localizer.takes_context else (None, None)
            )
            parts.append(localizer.localize(frames, movie.calibration, s, before, after))
            localized.append((s, e))
            done += e - s
            if progress is not None:
                progress(done, total, "localize")
    if movie.unreadable:
        log.warning(
            "%s: raw frames %s are unreadable (damaged chunks): not localized; maps over them "
            "get no confidence",
            rec.path.name,
            format_ranges(movie.unreadable),
        )
    out = Localizations.concatenate(parts) if parts else Localizations.empty(rec.pixel_size_nm)
    out.pixel_size_nm = rec.pixel_size_nm
    return out, localized


def evaluate_localizers(
    input_path: str | Path,
    *,
    ground_truth: str | Path | None = None,
    localizers: tuple[str, ...] = ("cnn", "classic"),
    weights: str | None = None,
    tolerance_nm: float = 250.0,
    method: Literal["greedy", "hungarian"] = "greedy",
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
    movie = open_input(input_path, pixel_size_nm, writable=False, **calibration)
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
        )
        report["results"][name] = {
            **s.to_dict(),
            "localizations": n,
            "frames_per_s": movie.n_frames / max(dt, 1e-9),
            "localizer": describe_localizer(loc, cfg, movie.calibration),
        }
    return report
