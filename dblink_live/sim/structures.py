"""Structures as geometry in nanometres: polylines with a width, and labels anchored on them.

A :class:`Geometry` holds every object of a field as polylines (reference shape at t = 0). Points
on the structure, fluorophore labels as well as the samples used to render ground truth, are
*anchors*: (segment, fraction along it, lateral offset). :mod:`dblink_live.sim.motion` maps
anchors to positions at any time, so labels and ground truth move together exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dblink_live.config import CountConfig, FilamentsConfig, MitochondriaConfig, StructureConfig

__all__ = [
    "Anchors",
    "Geometry",
    "draw_count",
    "expected_label_density_per_um2",
    "generate_structure",
    "place_labels",
    "sample_centerline",
]


@dataclass(eq=False)
class Geometry:
    """Polylines of all objects of one field (reference shape, nm).

    Attributes
    ----------
    vertices_nm : (V, 2) float64
        Polyline vertices (x, y), objects stored one after the other.
    vertex_object : (V,) int64
        Object index of every vertex.
    arclen_nm : (V,) float64
        Arc length of every vertex along its own object.
    object_width_nm : (O,) float64
        True width of every object.
    object_group : (O,) int64
        Objects of one group move rigidly together (the two halves of a fission/fusion).
    object_center_nm : (O, 2) float64
        Centre of rotation of every object (the centre of its group).
    separation_dir : (O, 2) float64
        Unit direction in which a fission/fusion half moves (zero if none).
    separation_speed_nm_per_s : (O,) float64
        Speed of that half (zero if none).
    event_time_s : (O,) float64
        Fission (halves separate after it) or fusion (halves meet at it) time.
    event_sign : (O,) int64
        +1 fission, -1 fusion, 0 none.
    kind : str
        ``"filaments"`` or ``"mitochondria"``.
    """

    vertices_nm: np.ndarray
    vertex_object: np.ndarray
    arclen_nm: np.ndarray
    object_width_nm: np.ndarray
    object_group: np.ndarray
    object_center_nm: np.ndarray
    separation_dir: np.ndarray
    separation_speed_nm_per_s: np.ndarray
    event_time_s: np.ndarray
    event_sign: np.ndarray
    kind: str

    @property
    def n_objects(self) -> int:
        return len(self.object_width_nm)

    @property
    def segment_start(self) -> np.ndarray:
        """(S,) vertex index of the first vertex of every segment."""
        v = self.vertex_object
        return np.flatnonzero(v[:-1] == v[1:])

    def segment_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start index (S,), direction vectors (S, 2) and lengths (S,) of all segments."""
        s = self.segment_start
        d = self.vertices_nm[s + 1] - self.vertices_nm[s]
        return s, d, np.hypot(d[:, 0], d[:, 1])

    def object_lengths_nm(self) -> np.ndarray:
        """(O,) length of every object polyline."""
        s, _, length = self.segment_vectors()
        return np.bincount(self.vertex_object[s], weights=length, minlength=self.n_objects)


@dataclass(eq=False)
class Anchors:
    """Points attached to the structure: segment (S,), fraction ``u`` in [0, 1], offset (nm)."""

    segment: np.ndarray
    u: np.ndarray
    offset_nm: np.ndarray

    def __len__(self) -> int:
        return len(self.segment)


def draw_count(cfg: CountConfig, area_um2: float, rng: np.random.Generator) -> int:
    """Number of objects for an area, from the configured law (per (10 um)^2), never truncated."""
    scale = area_um2 / 100.0
    if cfg.distribution == "poisson":
        return int(rng.poisson(cfg.mean * scale))
    if cfg.distribution == "uniform":
        # an integer uniform in [low, high] per (10 um)^2, scaled to the area with stochastic
        # rounding (unbiased; exact for an area of (10 um)^2)
        return int(np.floor(rng.integers(cfg.low, cfg.high + 1) * scale + rng.random()))
    return round(cfg.mean * scale)


def _random_walks(
    n: int,
    lengths_nm: np.ndarray,
    step_range: tuple[float, float],
    max_turn_deg: float,
    area: tuple[float, float, float, float],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """``n`` random walks (vectorized over walks), each a (K, 2) array of vertices."""
    if n == 0:
        return []
    x0, y0, x1, y1 = area
    k_max = int(np.ceil(lengths_nm.max() / step_range[0])) + 1
    step = rng.uniform(step_range[0], step_range[1], size=(n, k_max))
    turn = np.deg2rad(rng.uniform(-max_turn_deg, max_turn_deg, size=(n, k_max)))
    heading = rng.uniform(0, 2 * np.pi, size=(n, 1)) + np.cumsum(turn, axis=1)
    start = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    dx = np.cumsum(step * np.cos(heading), axis=1)
    dy = np.cumsum(step * np.sin(heading), axis=1)
    pts = np.concatenate(
        [start[:, None, :], start[:, None, :] + np.stack([dx, dy], axis=-1)], axis=1
    )
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(step, axis=1)], axis=1)
    walks = []
    for i in range(n):  # per object (not per emitter): cut each walk at its exact length
        k = int(np.searchsorted(cum[i], lengths_nm[i]))
        k = min(max(k, 1), k_max)
        p = pts[i, : k + 1].copy()
        # shorten the last step so the walk has exactly the drawn length
        over = cum[i, k] - lengths_nm[i]
        if over > 0:
            seg = p[-1] - p[-2]
            p[-1] = p[-2] + seg * (1 - over / max(np.hypot(*seg), 1e-9))
        walks.append(p)
    return walks


def _chaikin(p: np.ndarray, iterations: int) -> np.ndarray:
    """Corner cutting; keeps the end points."""
    for _ in range(iterations):
        if len(p) < 3:
            return p
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        mid = np.empty((2 * (len(p) - 1), 2))
        mid[0::2], mid[1::2] = q, r
        p = np.concatenate([p[:1], mid[1:-1], p[-1:]])
    return p


def _vertex_normals(p: np.ndarray) -> np.ndarray:
    d = np.gradient(p, axis=0)
    n = np.column_stack([-d[:, 1], d[:, 0]])
    return n / np.maximum(np.hypot(n[:, 0], n[:, 1]), 1e-12)[:, None]


def _assemble(
    polylines: list[np.ndarray],
    widths: list[float],
    groups: list[int],
    kind: str,
    sep_dir: list[np.ndarray] | None = None,
    sep_speed: list[float] | None = None,
    event_time: list[float] | None = None,
    event_sign: list[int] | None = None,
) -> Geometry:
    n = len(polylines)
    if n == 0:
        z2 = np.zeros((0, 2))
        zi = np.zeros(0, np.int64)
        return Geometry(
            z2, zi, np.zeros(0), np.zeros(0), zi, z2, z2, np.zeros(0), np.zeros(0), zi, kind
        )
    verts = np.concatenate(polylines)
    obj = np.repeat(np.arange(n), [len(p) for p in polylines])
    arcs: list[np.ndarray] = []
    for i, p in enumerate(polylines):
        seg = np.hypot(*np.diff(p, axis=0).T)
        start = 0.0
        # the second half of a split tubule continues the arc length (and so the wobble phase)
        # of the first, so the two halves join smoothly until they separate
        if i > 0 and groups[i] == groups[i - 1] and kind == "mitochondria":
            start = arcs[-1][-1]
        arcs.append(start + np.concatenate([[0.0], np.cumsum(seg)]))
    groups_a = np.asarray(groups, np.int64)
    centers = np.zeros((n, 2))
    for g in np.unique(groups_a):
        members = np.flatnonzero(groups_a == g)
        c = np.concatenate([polylines[m] for m in members]).mean(axis=0)
        centers[members] = c
    return Geometry(
        vertices_nm=verts,
        vertex_object=obj,
        arclen_nm=np.concatenate(arcs),
        object_width_nm=np.asarray(widths, float),
        object_group=groups_a,
        object_center_nm=centers,
        separation_dir=np.asarray(sep_dir if sep_dir else np.zeros((n, 2)), float).reshape(n, 2),
        separation_speed_nm_per_s=np.asarray(sep_speed if sep_speed else np.zeros(n), float),
        event_time_s=np.asarray(event_time if event_time else np.zeros(n), float),
        event_sign=np.asarray(event_sign if event_sign else np.zeros(n), np.int64),
        kind=kind,
    )


def _expand(
    area: tuple[float, float, float, float], by: float
) -> tuple[float, float, float, float]:
    return (area[0] - by, area[1] - by, area[2] + by, area[3] + by)


def _reaches(p: np.ndarray, area: tuple[float, float, float, float]) -> bool:
    inside = (
        (p[:, 0] >= area[0]) & (p[:, 0] <= area[2]) & (p[:, 1] >= area[1]) & (p[:, 1] <= area[3])
    )
    return bool(inside.any())


def _walks_over(
    cfg: FilamentsConfig | MitochondriaConfig,
    area: tuple[float, float, float, float],
    smoothing: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Walks that start anywhere a walk could reach ``area`` from, kept if they reach it.

    Starting points cover ``area`` grown by the longest walk, so the density of structure is
    the same everywhere inside ``area`` (no thinning towards its edges).
    """
    start_area = _expand(area, cfg.length_um[1] * 1e3)
    area_um2 = (start_area[2] - start_area[0]) * (start_area[3] - start_area[1]) / 1e6
    n = draw_count(cfg.count, area_um2, rng)
    lengths = rng.uniform(cfg.length_um[0], cfg.length_um[1], n) * 1e3
    walks = _random_walks(n, lengths, cfg.step_nm, cfg.max_turn_deg, start_area, rng)
    keep_area = _expand(area, 1000.0)  # bundles and widths reach a little further
    return [_chaikin(w, smoothing) for w in walks if _reaches(w, keep_area)]


def expected_label_density_per_um2(cfg: StructureConfig) -> float:
    """Mean fluorophores per um^2 of field implied by the structure config (an expectation).

    Filaments: ``count / 100 um^2 * E[length] * labels_per_um * E[filaments per bundle]``.
    Mitochondria: ``count / 100 um^2 * E[length] * pi E[width] * labels_per_um2``.
    """
    c = cfg.count
    mean_count = {"poisson": c.mean, "fixed": round(c.mean), "uniform": (c.low + c.high) / 2}
    per_um2 = mean_count[c.distribution] / 100.0
    length_um = sum(cfg.length_um) / 2
    if cfg.kind == "filaments":
        bundle = 1 + cfg.bundle_probability * (sum(cfg.bundle_size) / 2 - 1)
        return per_um2 * length_um * cfg.labels_per_um * bundle
    width_um = sum(cfg.width_nm) / 2 / 1e3
    return float(per_um2 * length_um * np.pi * width_um * cfg.labels_per_um2)


def _filaments(
    cfg: FilamentsConfig, area: tuple[float, float, float, float], rng: np.random.Generator
) -> Geometry:
    walks = _walks_over(cfg, area, cfg.smoothing_iterations, rng)
    polylines: list[np.ndarray] = []
    for w in walks:
        polylines.append(w)
        if rng.random() < cfg.bundle_probability:
            k = int(rng.integers(cfg.bundle_size[0], cfg.bundle_size[1] + 1))
            spacing = rng.uniform(*cfg.bundle_spacing_nm)
            normals = _vertex_normals(w)
            polylines.extend(w + j * spacing * normals for j in range(1, k))
    m = len(polylines)
    return _assemble(polylines, [cfg.width_nm] * m, list(range(m)), "filaments")


def _mitochondria(
    cfg: MitochondriaConfig,
    area: tuple[float, float, float, float],
    duration_s: float,
    rng: np.random.Generator,
) -> Geometry:
    walks = _walks_over(cfg, area, 1, rng)
    polylines, widths, groups, sdir, sspeed, etime, esign = [], [], [], [], [], [], []
    for g, w in enumerate(walks):
        width = rng.uniform(*cfg.width_nm)
        r = rng.random()
        sign = (
            1
            if r < cfg.fission_probability
            else (-1 if r < cfg.fission_probability + cfg.fusion_probability else 0)
        )
        if sign != 0 and len(w) >= 4:
            k = int(rng.integers(len(w) // 3, max(len(w) // 3 + 1, 2 * len(w) // 3)))
            k = min(max(k, 1), len(w) - 2)
            tangent = w[k + 1] - w[k - 1]
            tangent /= max(np.hypot(*tangent), 1e-9)
            speed = rng.uniform(*cfg.separation_speed_nm_per_s) / 2
            t_event = rng.uniform(0.2, 0.8) * duration_s
            for part, direction in ((w[: k + 1], -tangent), (w[k:], tangent)):
                polylines.append(part)
                widths.append(width)
                groups.append(g)
                sdir.append(direction)
                sspeed.append(speed)
                etime.append(t_event)
                esign.append(sign)
        else:
            polylines.append(w)
            widths.append(width)
            groups.append(g)
            sdir.append(np.zeros(2))
            sspeed.append(0.0)
            etime.append(0.0)
            esign.append(0)
    return _assemble(polylines, widths, groups, "mitochondria", sdir, sspeed, etime, esign)


def generate_structure(
    cfg: StructureConfig,
    area_nm: tuple[float, float, float, float],
    duration_s: float,
    rng: np.random.Generator,
) -> Geometry:
    """Draw the objects of one field.

    Parameters
    ----------
    cfg
        Structure config (filaments or mitochondria).
    area_nm
        ``(x0, y0, x1, y1)`` in nm to fill with structure (the FOV plus a margin). Objects
        start anywhere they could reach it from; those that never enter it are dropped.
    duration_s
        Movie duration, used to place fission/fusion events in time.
    rng
        Random generator (the only source of randomness).
    """
    if cfg.kind == "filaments":
        return _filaments(cfg, area_nm, rng)
    return _mitochondria(cfg, area_nm, duration_s, rng)


def place_labels(cfg: StructureConfig, geom: Geometry, rng: np.random.Generator) -> Anchors:
    """Fluorophore positions on the structure, as anchors (vectorized over segments).

    Filaments: ``labels_per_um`` per um of length, spread uniformly across the width.
    Mitochondria: ``labels_per_um2`` on the surface of a cylinder of the tubule's width,
    projected (lateral offset ``r cos(theta)``, theta uniform), so edges look brighter.
    """
    s, _, length = geom.segment_vectors()
    if len(s) == 0:
        z = np.zeros(0)
        return Anchors(np.zeros(0, np.int64), z, z)
    width = geom.object_width_nm[geom.vertex_object[s]]
    if cfg.kind == "filaments":
        lam = cfg.labels_per_um * length / 1e3
    else:
        lam = cfg.labels_per_um2 * np.pi * width * length / 1e6
    counts = rng.poisson(lam)
    seg_idx = np.repeat(np.arange(len(s)), counts)
    n = len(seg_idx)
    u = rng.random(n)
    w = width[seg_idx]
    if cfg.kind == "filaments":
        offset = (rng.random(n) - 0.5) * w
    else:
        offset = 0.5 * w * np.cos(rng.uniform(0, 2 * np.pi, n))
    return Anchors(seg_idx.astype(np.int64), u, offset)


def sample_centerline(
    geom: Geometry, spacing_nm: float, segments: np.ndarray | None = None
) -> Anchors:
    """Anchors every ``spacing_nm`` (or closer) along centre lines, offset 0.

    ``segments`` restricts the sampling to those segment indices (default: all).
    """
    _, _, length = geom.segment_vectors()
    seg = np.arange(len(length)) if segments is None else np.asarray(segments, np.int64)
    per = np.maximum(np.ceil(length[seg] / spacing_nm).astype(np.int64), 1) + 1
    seg_idx = np.repeat(seg, per)
    start = np.repeat(np.cumsum(per) - per, per)
    u = (np.arange(len(seg_idx)) - start) / np.repeat(per - 1, per)
    return Anchors(seg_idx.astype(np.int64), u, np.zeros(len(seg_idx)))
