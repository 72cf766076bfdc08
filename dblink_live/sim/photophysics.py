"""Blinking and bleaching in continuous time, turned into per-frame emission events.

Each fluorophore alternates between *on* (exponential duration, mean ``on_time_frames``) and
*off* (exponential, mean ``on_time_frames * (1 - d) / d`` for duty cycle ``d``), starting from
the stationary state; every switch-off bleaches it for good with probability
``bleach_probability``. The loop below runs over *half-cycles* (a handful), vectorized over all
fluorophores. An on-interval that covers part of a frame emits that fraction of the frame's
photons, so on-times shorter than a frame and blinks straddling two frames look as in real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dblink_live.config import PhotophysicsConfig

__all__ = ["BlinkEvents", "blink_events", "duty_cycle_for_density"]


@dataclass(eq=False)
class BlinkEvents:
    """One row per (fluorophore, frame) with light, sorted by frame.

    Attributes
    ----------
    frame : (N,) int64
    emitter : (N,) int64
        Index into the label anchors.
    on_fraction : (N,) float64
        Fraction of the exposure the fluorophore was on (0, 1].
    photons : (N,) float64
        Photons emitted in that frame.
    """

    frame: np.ndarray
    emitter: np.ndarray
    on_fraction: np.ndarray
    photons: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def frame_range(self, start: int, stop: int) -> slice:
        """Slice of rows with ``start <= frame < stop`` (rows are sorted by frame)."""
        lo, hi = np.searchsorted(self.frame, [start, stop])
        return slice(int(lo), int(hi))


def duty_cycle_for_density(
    cfg: PhotophysicsConfig, n_labels: float, area_um2: float
) -> tuple[float, bool]:
    """Duty cycle giving the target density over an area, and whether it had to be capped.

    The density counts fluorophores *lit in a frame* (for any part of it). An on-interval of
    mean length ``tau`` frames at a random phase touches ``tau + 1`` frames on average, so the
    fraction of labels lit per frame is ``q = d (tau + 1) / tau``; with ``density_per_um2``
    set, ``q = density * area / n_labels`` and ``d = q tau / (tau + 1)`` (capped at
    ``max_duty_cycle``). With ``duty_cycle`` set, that value.
    """
    if cfg.duty_cycle is not None:
        return cfg.duty_cycle, False
    if cfg.density_per_um2 is None:  # the config's validator requires one of the two
        raise ValueError("set exactly one of density_per_um2 and duty_cycle (both are null)")
    if n_labels <= 0:
        return cfg.max_duty_cycle, True
    q = cfg.density_per_um2 * area_um2 / n_labels
    d = q * cfg.on_time_frames / (cfg.on_time_frames + 1.0)
    return (min(d, cfg.max_duty_cycle), d > cfg.max_duty_cycle)


def _lognormal(rng: np.random.Generator, mean: float, cv: float, n: int) -> np.ndarray:
    if cv == 0:
        return np.full(n, mean)
    s2 = np.log1p(cv**2)
    return rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n)


def blink_events(
    cfg: PhotophysicsConfig,
    n_emitters: int,
    n_frames: int,
    duty_cycle: float,
    rng: np.random.Generator,
) -> BlinkEvents:
    """Simulate blinking of ``n_emitters`` over ``n_frames`` and list the lit frames.

    Parameters
    ----------
    cfg
        Photophysics (on-time, bleaching, photons).
    n_emitters, n_frames
        Number of fluorophores and of frames.
    duty_cycle
        Fraction of time a (non-bleached) fluorophore is on, in (0, 1).
    rng
        Random generator.
    """
    tau_on = cfg.on_time_frames
    tau_off = tau_on * (1.0 - duty_cycle) / duty_cycle
    t = np.zeros(n_emitters)
    on = rng.random(n_emitters) < duty_cycle
    idx = np.arange(n_emitters)
    starts, ends, owners = [], [], []
    while len(idx):
        # memoryless: the first (residual) duration has the same law as every later one
        dur = np.where(on, rng.exponential(tau_on, len(idx)), rng.exponential(tau_off, len(idx)))
        t_end = t + dur
        if on.any():
            starts.append(t[on])
            ends.append(np.minimum(t_end[on], n_frames))
            owners.append(idx[on])
        bleached = on & (rng.random(len(idx)) < cfg.bleach_probability)
        keep = (t_end < n_frames) & ~bleached
        idx, t, on = idx[keep], t_end[keep], ~on[keep]
    if not starts:
        z = np.zeros(0)
        return BlinkEvents(np.zeros(0, np.int64), np.zeros(0, np.int64), z, z)
    s, e, who = np.concatenate(starts), np.concatenate(ends), np.concatenate(owners)
    first = np.floor(s).astype(np.int64)
    last = np.minimum(np.ceil(e).astype(np.int64) - 1, n_frames - 1)
    last = np.maximum(last, first)
    count = last - first + 1
    row = np.repeat(np.arange(len(s)), count)
    frame = first[row] + (np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count))
    frac = np.minimum(e[row], frame + 1.0) - np.maximum(s[row], frame.astype(float))
    keep = frac > 1e-6
    frame, row, frac = frame[keep], row[keep], frac[keep]
    photons = _lognormal(rng, cfg.photons_mean, cfg.photons_cv, len(row)) * frac
    order = np.argsort(frame, kind="stable")
    return BlinkEvents(frame[order], who[row][order], frac[order], photons[order])
