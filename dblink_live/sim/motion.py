"""Smooth, time-varying motion of the geometry, evaluated analytically at any time.

Position of an anchor at time ``t`` (s), in this order:

1. reference point on its segment plus ``(offset + wobble(t, s))`` along the segment normal,
   where wobble is a travelling wave ``A sin(2 pi f t - 2 pi s / lambda + phi)`` of arc length s;
2. per-object rigid motion: rotation about the object's (group) centre by ``omega t`` and
   translation ``v t``, plus the fission/fusion separation of its half;
3. global affine about the field centre: ``x -> c + M(t) (x - c) + D(t)`` with
   ``M = [[1 + k t, h t], [0, 1 + k t]] R(theta t)`` and a drift ``D(t)`` whose speed is
   modulated sinusoidally (its integral is taken in closed form).

Because every step is a function of ``t`` only, ground truth is rendered from the moved geometry
without image interpolation, and labels follow exactly the same path as the structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dblink_live.config import MotionConfig
from dblink_live.sim.structures import Anchors, Geometry

__all__ = ["MotionState", "anchor_positions", "sample_motion"]


@dataclass(eq=False)
class MotionState:
    """Motion parameters drawn for one movie (all speeds in nm/s, angles in rad/s).

    ``drift_velocity_nm_per_s`` (2,) is the mean drift; the instantaneous drift is
    ``v (1 + m sin(w t + phi))``. Object arrays have one row per object of the geometry.
    """

    center_nm: np.ndarray
    drift_velocity_nm_per_s: np.ndarray
    drift_modulation: float
    drift_omega_rad_per_s: float
    drift_phase_rad: float
    rotation_rad_per_s: float
    shear_per_s: float
    scale_per_s: float
    object_velocity_nm_per_s: np.ndarray
    object_rotation_rad_per_s: np.ndarray
    wobble_amplitude_nm: np.ndarray
    wobble_omega_rad_per_s: np.ndarray
    wobble_phase_rad: np.ndarray
    wobble_wavelength_nm: float

    def drift_nm(self, t: np.ndarray) -> np.ndarray:
        """Global drift displacement (N, 2) at times ``t`` (N,) s (closed-form integral)."""
        t = np.asarray(t, float)
        w, phi, m = self.drift_omega_rad_per_s, self.drift_phase_rad, self.drift_modulation
        integral = t + (m / w) * (np.cos(phi) - np.cos(w * t + phi))
        return integral[:, None] * self.drift_velocity_nm_per_s[None, :]

    def global_matrix(self, t: np.ndarray) -> np.ndarray:
        """Global linear part M(t) (N, 2, 2) at times ``t`` (N,) s."""
        t = np.asarray(t, float)
        th = self.rotation_rad_per_s * t
        c, s = np.cos(th), np.sin(th)
        k = 1.0 + self.scale_per_s * t
        h = self.shear_per_s * t
        # [[k, h], [0, k]] @ [[c, -s], [s, c]]
        return np.stack(
            [np.stack([k * c + h * s, -k * s + h * c], -1), np.stack([k * s, k * c], -1)], -2
        )


def _range(rng: np.random.Generator, r: tuple[float, float], n: int | None = None) -> np.ndarray:
    return rng.uniform(r[0], r[1], n)


def sample_motion(
    cfg: MotionConfig, geom: Geometry, center_nm: tuple[float, float], rng: np.random.Generator
) -> MotionState:
    """Draw the motion of one movie: global parameters once, per-object ones per group."""
    direction = rng.uniform(0, 2 * np.pi)
    speed = float(_range(rng, cfg.drift_speed_nm_per_s))
    period = float(_range(rng, cfg.modulation_period_s))
    sign = lambda n=None: rng.choice([-1.0, 1.0], n)  # noqa: E731
    groups = geom.object_group
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    g_speed = _range(rng, cfg.object_speed_nm_per_s, n_groups)
    g_dir = rng.uniform(0, 2 * np.pi, n_groups)
    g_vel = np.column_stack([g_speed * np.cos(g_dir), g_speed * np.sin(g_dir)])
    g_rot = np.deg2rad(_range(rng, cfg.object_rotation_deg_per_s, n_groups)) * sign(n_groups)
    g_amp = _range(rng, cfg.wobble_amplitude_nm, n_groups)
    g_omega = 2 * np.pi * _range(rng, cfg.wobble_frequency_hz, n_groups)
    g_phase = rng.uniform(0, 2 * np.pi, n_groups)
    return MotionState(
        center_nm=np.asarray(center_nm, float),
        drift_velocity_nm_per_s=speed * np.array([np.cos(direction), np.sin(direction)]),
        drift_modulation=cfg.drift_modulation,
        drift_omega_rad_per_s=2 * np.pi / period,
        drift_phase_rad=float(rng.uniform(0, 2 * np.pi)),
        rotation_rad_per_s=float(np.deg2rad(_range(rng, cfg.rotation_deg_per_s)) * sign()),
        shear_per_s=float(_range(rng, cfg.shear_per_s) * sign()),
        scale_per_s=float(_range(rng, cfg.scale_per_s) * sign()),
        object_velocity_nm_per_s=g_vel[groups] if n_groups else np.zeros((0, 2)),
        object_rotation_rad_per_s=g_rot[groups] if n_groups else np.zeros(0),
        wobble_amplitude_nm=g_amp[groups] if n_groups else np.zeros(0),
        wobble_omega_rad_per_s=g_omega[groups] if n_groups else np.zeros(0),
        wobble_phase_rad=g_phase[groups] if n_groups else np.zeros(0),
        wobble_wavelength_nm=cfg.wobble_wavelength_nm,
    )


def anchor_positions(
    geom: Geometry, motion: MotionState, anchors: Anchors, t_s: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (nm) of anchors at their own times.

    Parameters
    ----------
    geom, motion
        The field and its motion.
    anchors
        N anchors (labels or ground-truth samples).
    t_s
        (N,) time of each anchor in seconds, or a scalar for all.

    Returns
    -------
    x_nm, y_nm : (N,) float64
    """
    n = len(anchors)
    t = np.broadcast_to(np.asarray(t_s, float), (n,))
    s_idx, seg_d, seg_len = geom.segment_vectors()
    v0 = s_idx[anchors.segment]
    d = seg_d[anchors.segment]
    length = np.maximum(seg_len[anchors.segment], 1e-12)
    normal = np.column_stack([-d[:, 1], d[:, 0]]) / length[:, None]
    obj = geom.vertex_object[v0]
    u = anchors.u
    p = geom.vertices_nm[v0] + u[:, None] * d
    arc = geom.arclen_nm[v0] + u * length
    wobble = motion.wobble_amplitude_nm[obj] * np.sin(
        motion.wobble_omega_rad_per_s[obj] * t
        - 2 * np.pi * arc / motion.wobble_wavelength_nm
        + motion.wobble_phase_rad[obj]
    )
    p = p + (anchors.offset_nm + wobble)[:, None] * normal
    # per-object rigid motion about the group centre
    c = geom.object_center_nm[obj]
    th = motion.object_rotation_rad_per_s[obj] * t
    cos, sin = np.cos(th), np.sin(th)
    rel = p - c
    p = c + np.column_stack([cos * rel[:, 0] - sin * rel[:, 1], sin * rel[:, 0] + cos * rel[:, 1]])
    p = p + motion.object_velocity_nm_per_s[obj] * t[:, None]
    # fission (+1): halves separate after the event; fusion (-1): they meet at the event
    sign = geom.event_sign[obj]
    lag = np.where(
        sign > 0,
        np.maximum(t - geom.event_time_s[obj], 0.0),
        np.where(sign < 0, np.maximum(geom.event_time_s[obj] - t, 0.0), 0.0),
    )
    p = p + (geom.separation_speed_nm_per_s[obj] * lag)[:, None] * geom.separation_dir[obj]
    # global affine about the field centre
    m = motion.global_matrix(t)
    rel = p - motion.center_nm
    p = motion.center_nm + np.einsum("nij,nj->ni", m, rel) + motion.drift_nm(t)
    return p[:, 0], p[:, 1]
