"""Input maps for the ConvBiLSTM, their normalization, and simulated training sequences.

Normalization: counts are divided by ``NORM_FACTOR`` times the count a bin would hold if the
localizations were spread evenly, ``W x rate x bin area`` (rate: localizations per frame per
um^2 over the field of view). Counts grow linearly with the window W and with the blinking
density, and so does that expectation, so the normalized input keeps its scale when either
changes (the reference code fed raw counts and only worked at W = 10). Offline the rate is
measured over the whole recording; a streaming caller passes the rate measured so far. In
training the rate is the configured density times the detected fraction of the sequence (a
small tile's own count would be far too noisy).

Two kinds of simulated training sequence, both generated on the fly and returned in the same
form (normalized maps, ground truth), so the trainer can use either (``DataMode``):

* ``"locspace"`` (:func:`training_sequence`): the fast localization-space simulator (no
  camera); the bulk of training.
* ``"camera"`` (:func:`camera_sequence`): raw camera frames of the tile simulated with
  :class:`~dblink_live.sim.movie.MovieSimulator` (PSF, blinking, EMCCD/sCMOS noise from the
  ``simulation`` section) and localized by the configured localizer (the shipped CNN by
  default): what the reconstruction sees in use; for validation and fine-tuning.

With the same seed both modes simulate the same scene (structure, motion, blinks), so they
have identical ground truth and differ only in how the localizations were made. Their
normalizations agree: the rate is the configured density times the localizations per true
lit emitter observed in the sequence (in ``"locspace"``: the detected fraction plus the
configured false-positive rate, which is the same quantity in expectation).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError
from dblink_live.localizations import Localizations, count_maps
from dblink_live.localize import CameraCalibration, Localizer, make_localizer
from dblink_live.sim.locspace import simulate_localizations
from dblink_live.sim.movie import MovieSimulator

__all__ = [
    "DATA_MODES",
    "NORM_FACTOR",
    "DataMode",
    "camera_sequence",
    "count_maps_torch",
    "make_sequence",
    "map_scale",
    "normalize_maps",
    "training_sequence",
]

#: How a training sequence is simulated (see the module docstring).
DataMode = Literal["locspace", "camera"]
DATA_MODES: tuple[str, ...] = ("locspace", "camera")

#: Detected fraction assumed when a sequence holds too few true emitters to measure it.
_FALLBACK_DETECTED = 0.9
_MIN_EMITTERS = 20

#: A bin holding NORM_FACTOR x the even-spread expectation gets the value 1.
NORM_FACTOR = 100.0


def map_scale(rate_per_um2_frame: float, window_frames: int, bin_nm: float) -> float:
    """The scalar :func:`normalize_maps` divides by (see the module docstring).

    Parameters
    ----------
    rate_per_um2_frame
        Localizations per frame per um^2 of the field of view.
    window_frames, bin_nm
        Map window W and bin size.
    """
    expected = max(rate_per_um2_frame, 1e-3) * window_frames * (bin_nm / 1e3) ** 2
    return NORM_FACTOR * expected


def normalize_maps(counts: np.ndarray | torch.Tensor, scale: float) -> torch.Tensor:
    """(T, Y, X) counts -> float32 tensor (T, Y, X) / scale."""
    return (
        torch.as_tensor(
            np.asarray(counts) if not torch.is_tensor(counts) else counts, dtype=torch.float32
        )
        / scale
    )


def _tile_config(
    config: RunConfig,
    tile_bins: int,
    window_frames: int,
    density_per_um2: float,
    precision_scale: float | None = None,
) -> RunConfig:
    """The config of one training sequence: a camera field just covering the tile."""
    px = config.simulation.camera.pixel_size_nm
    size_px = math.ceil(tile_bins * config.grid.bin_nm / px)
    sim: dict[str, Any] = {
        "camera": {"width_px": size_px, "height_px": size_px},
        "photophysics": {"density_per_um2": density_per_um2, "duty_cycle": None},
    }
    if precision_scale is not None:
        sim["localization_space"] = {"precision_scale": precision_scale}
    return config.updated(simulation=sim, grid={"window_frames": window_frames})


def _domain_draws(config: RunConfig, seed: int) -> tuple[float, bool, float | None]:
    """(background fraction, clustered?, precision scale) of one sequence, drawn from the
    ``recon_training`` ranges with a generator of its own seeded by the scene seed (so the
    sequence's other draws, and sequences without randomization, stay as they were)."""
    t = config.recon_training
    rng = np.random.default_rng([seed, 0xB6])
    lo, hi = t.background_fraction
    fraction = float(rng.uniform(lo, hi)) if hi > 0 else 0.0
    clustered = bool(rng.random() < t.clustered_background_probability)
    if t.background_probability < 1.0:  # a draw of its own: the others stay as they were
        clean = np.random.default_rng([seed, 0xB8]).random() >= t.background_probability
        fraction = 0.0 if clean else fraction
    plo, phi = t.precision_scale
    scale = (
        None if plo == phi == 1.0 else float(math.exp(rng.uniform(math.log(plo), math.log(phi))))
    )
    return fraction, clustered, scale


def add_background(
    locs: Localizations,
    fraction: float,
    field_nm: float,
    n_frames: int,
    clustered: bool,
    rng: np.random.Generator,
) -> Localizations:
    """``locs`` plus background localizations making up ``fraction`` of the result: uniform
    over the ``field_nm`` square and frames, or in clusters (300 nm, ~20 localizations over up
    to 5 frames) like out-of-focus emitters and non-specific binding."""
    if fraction <= 0 or len(locs) == 0:
        return locs
    n_bg = round(len(locs) * fraction / (1 - fraction))
    if n_bg == 0:
        return locs
    if clustered:
        n_cl = max(1, n_bg // 20)
        centres = rng.uniform(0, field_nm, (n_cl, 2))
        birth = rng.integers(0, n_frames, n_cl)
        which = rng.integers(0, n_cl, n_bg)
        frame = np.clip(birth[which] + rng.integers(0, 5, n_bg), 0, n_frames - 1)
        xy = centres[which] + rng.normal(0, 300.0, (n_bg, 2))
    else:
        frame = rng.integers(0, n_frames, n_bg)
        xy = rng.uniform(0, field_nm, (n_bg, 2))
    keep = (xy >= 0).all(1) & (xy < field_nm).all(1)
    k = int(keep.sum())
    nan = np.full(k, np.nan, np.float32)
    bg = Localizations(
        frame[keep],
        xy[keep, 0],
        xy[keep, 1],
        nan,
        nan,
        nan,
        np.ones(k, np.float32),
        pixel_size_nm=locs.pixel_size_nm,
        n_frames=locs.n_frames,
    )
    return Localizations.concatenate([locs, bg])


def _facts(n_locs: int, n_emitters: int, rate: float) -> dict[str, Any]:
    """``localizations`` (in the field), ``true_emitters`` (lit emitter-frames in the field) and
    ``rate_per_um2_frame`` (the normalization's rate)."""
    return {"localizations": n_locs, "true_emitters": n_emitters, "rate_per_um2_frame": rate}


def _truth(skeleton: np.ndarray, structure: np.ndarray, tile_bins: int, target: str) -> np.ndarray:
    if target == "structure":
        return (structure[:, :tile_bins, :tile_bins] > 0.5).astype(np.float32)
    return skeleton[:, :tile_bins, :tile_bins].astype(np.float32)


def training_sequence(
    config: RunConfig,
    seed: int,
    tile_bins: int,
    n_maps: int,
    window_frames: int,
    density_per_um2: float,
    target: str = "skeleton",
    info: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One simulated training sequence in localization space (``"locspace"`` mode).

    Parameters
    ----------
    config
        Run config (``simulation`` and ``grid`` sections); the camera is resized to a field of
        ``ceil(tile_bins x bin_nm / pixel_size_nm)`` pixels.
    seed
        Scene seed (the same seed gives the same scene as :func:`camera_sequence`).
    tile_bins, n_maps, window_frames
        Tile side (bins), number of maps and raw frames per map W.
    density_per_um2
        Lit emitters per um^2 per frame.
    target
        ``"skeleton"`` or ``"structure"``.
    info
        If given, filled with ``localizations`` (in the simulated field), ``true_emitters``
        (lit emitter-frames in the field) and ``rate_per_um2_frame`` (the normalization's rate).

    Returns
    -------
    maps : (n_maps, tile, tile) float32 normalized counts
    truth : (n_maps, tile, tile) float32 0/1: the thin skeleton, or the structure covering more
        than half of a bin (``target="structure"``)
    """
    bin_nm = config.grid.bin_nm
    fraction, clustered, precision = _domain_draws(config, seed)
    cfg = _tile_config(config, tile_bins, window_frames, density_per_um2, precision)
    n_frames = n_maps * window_frames
    seq = simulate_localizations(cfg, n_frames=n_frames, seed=seed)
    locs = seq.localizations
    if fraction > 0:
        rng = np.random.default_rng([seed, 0xB7])
        locs = add_background(locs, fraction, tile_bins * bin_nm, n_frames, clustered, rng)
    counts = count_maps(locs, bin_nm, (tile_bins, tile_bins), window_frames, n_maps)
    truth = _truth(seq.gt_skeleton, seq.gt_structure, tile_bins, target)
    n_true = int(seq.is_true.sum())
    detected = (
        n_true / len(seq.emitters) if len(seq.emitters) >= _MIN_EMITTERS else _FALLBACK_DETECTED
    )
    ls = cfg.simulation.localization_space
    rate = density_per_um2 * detected + ls.false_positives_per_um2
    if fraction > 0 and len(seq.localizations):  # the rate counts the background too
        rate *= len(locs) / len(seq.localizations)
    if info is not None:
        info.update(_facts(len(locs), len(seq.emitters), rate))
    return (counts / map_scale(rate, window_frames, bin_nm)).astype(np.float32), truth


def camera_sequence(
    config: RunConfig,
    seed: int,
    tile_bins: int,
    n_maps: int,
    window_frames: int,
    density_per_um2: float,
    target: str = "skeleton",
    localizer: Localizer | None = None,
    device: str = "auto",
    info: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One simulated training sequence through camera and localizer (``"camera"`` mode).

    Raw frames of a field just covering the tile (``ceil(tile_bins x bin_nm / pixel_size_nm)``
    pixels square) are simulated with :class:`~dblink_live.sim.movie.MovieSimulator` (the
    config's structure, motion, blinking, PSF and EMCCD/sCMOS camera), localized with
    ``localizer`` (default: ``make_localizer(config.localizer, device)``, the shipped CNN unless
    the config names another) using the simulated camera's calibration, and binned. The rate in
    the normalization is ``density_per_um2 x`` (localizations / true lit emitters) of the
    sequence, the camera-mode counterpart of :func:`training_sequence`'s.

    Parameters
    ----------
    config, seed, tile_bins, n_maps, window_frames, density_per_um2, target
        As in :func:`training_sequence`; the same arguments simulate the same scene, so the
        ground truth is identical.
    localizer
        A localizer to reuse (building one loads its checkpoint; pass one when making many
        sequences).
    device
        Device of the localizer built when ``localizer`` is None.
    info
        As in :func:`training_sequence`.

    Returns
    -------
    maps : (n_maps, tile, tile) float32 normalized counts
    truth : (n_maps, tile, tile) float32 0/1, as in :func:`training_sequence`
    """
    bin_nm = config.grid.bin_nm
    cfg = _tile_config(config, tile_bins, window_frames, density_per_um2)
    sim = MovieSimulator(cfg, n_frames=n_maps * window_frames, seed=seed)
    raw, emitters = sim.frames(0, sim.n_frames)
    if localizer is None:
        localizer = make_localizer(cfg.localizer, device)
    calibration = CameraCalibration.from_camera(sim.metadata()["camera"])
    locs = localizer.localize(raw, calibration, first_frame=0)
    counts = count_maps(locs, bin_nm, (tile_bins, tile_bins), window_frames, n_maps)
    _, skeleton, structure = sim.ground_truth_maps(0, n_maps)
    truth = _truth(skeleton, structure, tile_bins, target)
    per_emitter = (
        len(locs) / len(emitters) if len(emitters) >= _MIN_EMITTERS else _FALLBACK_DETECTED
    )
    rate = density_per_um2 * per_emitter
    if info is not None:
        info.update(_facts(len(locs), len(emitters), rate))
    return (counts / map_scale(rate, window_frames, bin_nm)).astype(np.float32), truth


def make_sequence(
    mode: str,
    config: RunConfig,
    seed: int,
    tile_bins: int,
    n_maps: int,
    window_frames: int,
    density_per_um2: float,
    target: str = "skeleton",
    localizer: Localizer | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`training_sequence` (``mode="locspace"``) or :func:`camera_sequence` (``"camera"``).

    ``localizer`` is used by the camera mode only. Returns (maps, truth), each
    (n_maps, tile, tile) float32.
    """
    args = (config, seed, tile_bins, n_maps, window_frames, density_per_um2, target)
    if mode == "locspace":
        return training_sequence(*args, info=info)
    if mode == "camera":
        return camera_sequence(*args, localizer=localizer, info=info)
    raise DblinkError(f"unknown training data mode {mode!r}: use one of {', '.join(DATA_MODES)}")


def localization_maps(
    locs: Localizations,
    bin_nm: float,
    shape_yx: tuple[int, int],
    window_frames: int,
    first_frame: int = 0,
    n_maps: int | None = None,
) -> np.ndarray:
    """Count maps (T', Y', X') of a table (thin wrapper of ``count_maps`` for this stage)."""
    return count_maps(locs, bin_nm, shape_yx, window_frames, n_maps, first_frame)


def count_maps_torch(
    locs: Localizations,
    bin_nm: float,
    shape_yx: tuple[int, int],
    window_frames: int,
    n_maps: int,
    first_frame: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """:func:`~dblink_live.localizations.count_maps` on a torch device (the GPU when present).

    Returns (n_maps, Y', X') float32 counts on ``device``; identical to the numpy version.
    """
    ny, nx = shape_yx
    dev = torch.device(device)
    f = torch.as_tensor(locs.frame, device=dev)
    x = torch.as_tensor(locs.x_nm, device=dev, dtype=torch.float64)
    y = torch.as_tensor(locs.y_nm, device=dev, dtype=torch.float64)
    k = torch.div(f - first_frame, window_frames, rounding_mode="floor")
    ix = torch.floor(x / bin_nm).long()
    iy = torch.floor(y / bin_nm).long()
    ok = (k >= 0) & (k < n_maps) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flat = (k[ok] * ny + iy[ok]) * nx + ix[ok]
    counts = torch.bincount(flat, minlength=n_maps * ny * nx)
    return counts.view(n_maps, ny, nx).to(torch.float32)
