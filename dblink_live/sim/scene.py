"""A simulated field: structure, motion, labels and blinking, with ground truth at any time.

:class:`Scene` is shared by the camera simulator (:mod:`dblink_live.sim.movie`) and the fast
localization-space simulator (:mod:`dblink_live.sim.locspace`). Every random draw comes from
streams spawned from ``simulation.seed``, so a scene is reproducible from its config.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from dblink_live.config import GridConfig, SimulationConfig
from dblink_live.localizations import EmitterTable
from dblink_live.sim.motion import MotionState, anchor_positions, sample_motion
from dblink_live.sim.photophysics import BlinkEvents, blink_events, duty_cycle_for_density
from dblink_live.sim.structures import (
    Anchors,
    Geometry,
    expected_label_density_per_um2,
    generate_structure,
    place_labels,
    sample_centerline,
)

__all__ = ["Scene", "grid_shape", "map_times_s"]

log = logging.getLogger(__name__)


#: A region of the field: x, y of its corner, width, height (nm).
Region = tuple[float, float, float, float]


def grid_shape(fov_nm: tuple[float, float], bin_nm: float) -> tuple[int, int]:
    """(rows, cols) of the reconstruction grid covering a field of ``(width_nm, height_nm)``."""
    return (math.ceil(fov_nm[1] / bin_nm - 1e-9), math.ceil(fov_nm[0] / bin_nm - 1e-9))


def map_times_s(
    n_maps: int, window_frames: int, frame_interval_s: float, first: int = 0
) -> np.ndarray:
    """Mid-time (s) of maps ``first .. first + n_maps - 1``, each summing W frames.

    Frame f is exposed over ``[f, f + 1) * frame_interval_s``; map k covers frames
    ``[k W, (k + 1) W)`` so its mid-time is ``(k W + W / 2) * frame_interval_s``.
    """
    k = np.arange(first, first + n_maps)
    return (k * window_frames + window_frames / 2) * frame_interval_s


class Scene:
    """Structure + motion + labels + blinking of one simulated field.

    Parameters
    ----------
    sim
        Simulation config (the camera section gives the field of view and pixel size).
    n_frames
        Movie length in frames (``sim.n_frames`` if None).
    seed
        Overrides ``sim.seed`` (used to draw many training scenes from one config).
    """

    def __init__(self, sim: SimulationConfig, n_frames: int | None = None, seed: int | None = None):
        self.sim = sim
        self.n_frames = int(n_frames if n_frames is not None else sim.n_frames)
        self.seed = int(sim.seed if seed is None else seed)
        streams = np.random.SeedSequence(self.seed).spawn(5)
        rng_struct, rng_motion, rng_labels, rng_blink, self._rng_extra = (
            np.random.default_rng(s) for s in streams
        )
        cam = sim.camera
        self.pixel_size_nm = float(cam.pixel_size_nm)
        self.fov_nm = (cam.width_px * self.pixel_size_nm, cam.height_px * self.pixel_size_nm)
        m = sim.margin_nm
        area = (-m, -m, self.fov_nm[0] + m, self.fov_nm[1] + m)
        self.duration_s = self.n_frames * sim.frame_interval_s
        self.geometry: Geometry = generate_structure(
            sim.structure, area, self.duration_s, rng_struct
        )
        self.motion: MotionState = sample_motion(
            sim.motion, self.geometry, (self.fov_nm[0] / 2, self.fov_nm[1] / 2), rng_motion
        )
        self.labels: Anchors = place_labels(sim.structure, self.geometry, rng_labels)
        # The duty cycle is a property of dye and buffer, the same in every field: it is set
        # from the *expected* label density of the structure config, so the target density holds
        # on average over fields while each field keeps its natural variation.
        label_density = expected_label_density_per_um2(sim.structure)
        self.duty_cycle, capped = duty_cycle_for_density(sim.photophysics, label_density, 1.0)
        if capped and sim.photophysics.density_per_um2 is not None:
            log.warning(
                "%.0f labels/um^2 expected: density %.2f/um^2 needs a duty cycle above %.2f; "
                "capped (raise labels_per_um / labels_per_um2 or lower density_per_um2)",
                label_density,
                sim.photophysics.density_per_um2,
                sim.photophysics.max_duty_cycle,
            )
        self.duty_capped = capped
        self.events: BlinkEvents = blink_events(
            sim.photophysics, len(self.labels), self.n_frames, self.duty_cycle, rng_blink
        )

    # ------------------------------------------------------------------ geometry helpers
    @property
    def fov_area_um2(self) -> float:
        return self.fov_nm[0] * self.fov_nm[1] / 1e6

    def in_fov(self, x_nm: np.ndarray, y_nm: np.ndarray) -> np.ndarray:
        """Boolean mask of positions inside the camera field."""
        return (x_nm >= 0) & (x_nm < self.fov_nm[0]) & (y_nm >= 0) & (y_nm < self.fov_nm[1])

    def frame_time_s(self, frame: np.ndarray) -> np.ndarray:
        """Mid-exposure time (s) of frames."""
        return (np.asarray(frame, float) + 0.5) * self.sim.frame_interval_s

    # ------------------------------------------------------------------ emitters
    def emitters(self, start: int, stop: int, fov_only: bool = True) -> EmitterTable:
        """Lit fluorophores in frames ``[start, stop)`` with their true positions and photons."""
        sl = self.events.frame_range(start, stop)
        frame = self.events.frame[sl]
        who = self.events.emitter[sl]
        anchors = Anchors(self.labels.segment[who], self.labels.u[who], self.labels.offset_nm[who])
        x, y = anchor_positions(self.geometry, self.motion, anchors, self.frame_time_s(frame))
        table = EmitterTable(frame, x, y, self.events.photons[sl], who, self.events.on_fraction[sl])
        return table.select(self.in_fov(x, y)) if fov_only else table

    # ------------------------------------------------------------------ ground truth
    def _segments_near_fov(
        self, t_s: float, reach_nm: float, region_nm: Region | None = None
    ) -> np.ndarray:
        """Indices of segments that come within ``reach_nm`` of the field (or of ``region_nm``,
        x, y, width, height in nm) at time ``t_s``."""
        s, _, _ = self.geometry.segment_vectors()
        n = len(s)
        idx = np.arange(n)
        ends = Anchors(np.r_[idx, idx], np.r_[np.zeros(n), np.ones(n)], np.zeros(2 * n))
        x, y = anchor_positions(self.geometry, self.motion, ends, t_s)
        # wobble bends a segment off its chord by at most its amplitude
        wobble = self.motion.wobble_amplitude_nm
        pad = reach_nm + (wobble.max() if len(wobble) else 0.0) + 1.0
        x0, x1 = np.minimum(x[:n], x[n:]), np.maximum(x[:n], x[n:])
        y0, y1 = np.minimum(y[:n], y[n:]), np.maximum(y[:n], y[n:])
        left, top, w, h = region_nm or (0.0, 0.0, *self.fov_nm)
        near = (x1 >= left - pad) & (x0 <= left + w + pad) & (y1 >= top - pad)
        near &= y0 <= top + h + pad
        return idx[near]

    def ground_truth(
        self, t_s: float, grid: GridConfig, region_nm: Region | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Structure at time ``t_s`` on the reconstruction grid: of the whole field, or of the
        region ``region_nm`` (x, y, width, height in nm from the field's corner; its bins start
        at its corner), e.g. the camera region a live run reconstructs.

        Returns
        -------
        skeleton : (Y', X') uint8
            1 in every bin the centre line passes through (1 bin thin).
        structure : (Y', X') float32
            Fraction of each bin covered by the structure at its true width, in [0, 1]
            (computed on ``grid.supersample``-times finer sub-bins).
        """
        bin_nm, ss = grid.bin_nm, grid.supersample
        left, top, w, h = region_nm or (0.0, 0.0, *self.fov_nm)
        ny, nx = grid_shape((w, h), bin_nm)
        skeleton = np.zeros((ny, nx), np.uint8)
        structure = np.zeros((ny, nx), np.float32)
        if self.geometry.n_objects == 0:
            return skeleton, structure
        sub = bin_nm / ss
        reach = self.geometry.object_width_nm.max()
        segments = self._segments_near_fov(t_s, reach_nm=reach, region_nm=region_nm)
        if len(segments) == 0:
            return skeleton, structure
        samples = sample_centerline(self.geometry, min(sub, bin_nm / 4), segments)
        x, y = anchor_positions(self.geometry, self.motion, samples, t_s)
        ix = np.floor((x - left) / bin_nm).astype(np.int64)
        iy = np.floor((y - top) / bin_nm).astype(np.int64)
        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        skeleton[iy[ok], ix[ok]] = 1

        structure = self._coverage(segments, t_s, (ny, nx), bin_nm, ss, (left, top))
        return skeleton, structure

    def _coverage(
        self,
        segments: np.ndarray,
        t_s: float,
        shape: tuple[int, int],
        bin_nm: float,
        ss: int,
        corner_nm: tuple[float, float] = (0.0, 0.0),
    ) -> np.ndarray:
        """Fraction of every bin inside the structure (true width), on ``ss x ss`` sub-bins.

        Each object is the union of discs of its width centred on its (moved) centre line,
        sampled densely enough that the union's boundary is within ~2 nm of the true outline;
        only the sub-bins near each sample are evaluated (no full-grid distance transform).
        """
        ny, nx = shape
        sub = bin_nm / ss
        sy, sx = ny * ss, nx * ss
        inside = np.zeros(sy * sx, bool)
        geom = self.geometry
        seg_width = geom.object_width_nm[geom.vertex_object[geom.segment_start[segments]]]
        for width in np.unique(seg_width):
            group = segments[seg_width == width]
            # disc spacing: fine for thin objects, ~r/4 for wide ones (boundary dip < 2 nm)
            spacing = max(sub / 2, width / 8)
            samples = sample_centerline(geom, spacing, group)
            x, y = anchor_positions(geom, self.motion, samples, t_s)
            x, y = x - corner_nm[0], y - corner_nm[1]
            r = width / 2
            k = np.arange(-int(np.ceil(r / sub)) - 1, int(np.ceil(r / sub)) + 2)
            jx = np.floor(x / sub).astype(np.int64)[:, None] + k[None, :]  # (N, K)
            jy = np.floor(y / sub).astype(np.int64)[:, None] + k[None, :]
            dx2 = ((jx + 0.5) * sub - x[:, None]) ** 2
            dy2 = ((jy + 0.5) * sub - y[:, None]) ** 2
            hit = dy2[:, :, None] + dx2[:, None, :] <= r * r  # (N, K, K)
            hit &= ((jy >= 0) & (jy < sy))[:, :, None] & ((jx >= 0) & (jx < sx))[:, None, :]
            n_i, a_i, b_i = np.nonzero(hit)
            inside[jy[n_i, a_i] * sx + jx[n_i, b_i]] = True
        return inside.reshape(ny, ss, nx, ss).mean(axis=(1, 3)).astype(np.float32)

    def ground_truth_maps(
        self,
        grid: GridConfig,
        first: int = 0,
        n_maps: int | None = None,
        region_nm: Region | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground truth at the mid-time of maps ``first ..``: (times (T',), skeleton, structure),
        of the whole field or of ``region_nm`` (see :meth:`ground_truth`)."""
        total = self.n_frames // grid.window_frames
        n = total - first if n_maps is None else n_maps
        times = map_times_s(n, grid.window_frames, self.sim.frame_interval_s, first)
        size = (region_nm[2], region_nm[3]) if region_nm else self.fov_nm
        ny, nx = grid_shape(size, grid.bin_nm)
        skel = np.zeros((n, ny, nx), np.uint8)
        struct = np.zeros((n, ny, nx), np.float32)
        for i, t in enumerate(times):
            skel[i], struct[i] = self.ground_truth(float(t), grid, region_nm)
        return times, skel, struct
