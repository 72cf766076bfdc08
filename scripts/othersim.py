"""A second generator of moving-filament localization data, written apart from dblink_live.sim.

The reconstruction is trained on ``dblink_live.sim``; scoring it only there rewards a model
for matching one simulator's habits. This generator shares no code or assumptions with it:

- **structure**: worm-like chains (a persistence length of 1-10 um, 10 nm segments whose
  direction diffuses), 2-8 um long, started uniformly over a field larger than the view
  (so they cross and leave the field's edges); optional bundles of 2-3 parallel chains;
- **motion**: every chain translates at its own constant velocity plus a common drift that
  reverses direction halfway (nm per frame);
- **labels and blinking**: labels every ``1 / label_density`` um along each chain; each label
  is a two-state Markov chain per frame (on-time ``on_frames``, duty cycle set so the field
  shows the requested density of true localizations);
- **localization**: each on label gives one localization displaced by a Gaussian of a
  precision drawn per localization (log-uniform over ``precision_nm``);
- **background localizations**: a fraction of all localizations, uniform over the field or
  clustered (out-of-focus blobs of 300 nm that live for a few frames);
- **ground truth**: the chains at the middle frame of every map, drawn as a 1-bin skeleton on
  the reconstruction grid.

Used by ``scripts/bench_robustness.py`` and the tests; never by training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dblink_live.localizations import Localizations

__all__ = ["Field", "OtherSimConfig", "generate"]


@dataclass(frozen=True)
class OtherSimConfig:
    """One stress condition (all lengths in nm, times in frames)."""

    field_nm: float = 5120.0
    n_frames: int = 300
    window_frames: int = 10
    bin_nm: float = 40.0
    chains_per_um2: float = 0.25
    length_nm: tuple[float, float] = (2000.0, 8000.0)
    persistence_nm: tuple[float, float] = (1000.0, 10000.0)
    bundle_probability: float = 0.0
    label_density_per_um: float = 200.0
    true_density_per_um2: float = 0.4  # true localizations per um^2 per frame
    on_frames: float = 2.0
    precision_nm: tuple[float, float] = (10.0, 20.0)
    background_fraction: float = 0.0
    clustered_background: bool = False
    speed_nm_per_frame: float = 0.5
    seed: int = 0


@dataclass
class Field:
    """A generated field: localizations (nm from the view's corner) and the truth maps."""

    localizations: Localizations
    skeleton: np.ndarray  # (T', Y', X') bool, map k at frame k W + W / 2
    config: OtherSimConfig


def _chain(rng: np.random.Generator, cfg: OtherSimConfig, margin: float) -> np.ndarray:
    """(N, 2) points every 10 nm of a worm-like chain."""
    length = rng.uniform(*cfg.length_nm)
    lp = np.exp(rng.uniform(np.log(cfg.persistence_nm[0]), np.log(cfg.persistence_nm[1])))
    step = 10.0
    n = max(2, int(length / step))
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, np.sqrt(step / lp), n))
    start = rng.uniform(-margin, cfg.field_nm + margin, 2)
    pts = start + np.cumsum(np.column_stack([np.cos(angle), np.sin(angle)]) * step, axis=0)
    return pts


def _bundle(rng: np.random.Generator, pts: np.ndarray) -> list[np.ndarray]:
    """2-3 chains parallel to ``pts`` at 60-120 nm spacing."""
    d = np.gradient(pts, axis=0)
    normal = np.column_stack([-d[:, 1], d[:, 0]]) / (np.linalg.norm(d, axis=1)[:, None] + 1e-9)
    k = int(rng.integers(2, 4))
    gap = rng.uniform(60, 120)
    return [pts + normal * gap * (i - (k - 1) / 2) for i in range(k)]


def generate(cfg: OtherSimConfig) -> Field:
    """Generate one field (see the module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    margin = 2000.0
    area_um2 = ((cfg.field_nm + 2 * margin) / 1e3) ** 2
    chains: list[np.ndarray] = []
    for _ in range(rng.poisson(cfg.chains_per_um2 * area_um2)):
        pts = _chain(rng, cfg, margin)
        chains += _bundle(rng, pts) if rng.random() < cfg.bundle_probability else [pts]
    if not chains:
        chains = [_chain(rng, cfg, 0.0)]
    velocity = [rng.normal(0, 1, 2) for _ in chains]
    velocity = [v / (np.linalg.norm(v) + 1e-9) * cfg.speed_nm_per_frame for v in velocity]
    drift_dir = rng.normal(0, 1, 2)
    drift_dir *= cfg.speed_nm_per_frame / (np.linalg.norm(drift_dir) + 1e-9)

    vel = np.array(velocity)

    def drift_at(t: float) -> np.ndarray:
        """Common drift (2,) at frame t, reversing at mid-run."""
        half = cfg.n_frames / 2
        return (t if t < half else 2 * half - t) * drift_dir

    # labels and their blinking
    spacing = 1e3 / cfg.label_density_per_um
    labels, owner = [], []
    for i, pts in enumerate(chains):
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.arange(rng.uniform(0, spacing), s[-1], spacing)
        labels.append(np.column_stack([np.interp(at, s, pts[:, 0]), np.interp(at, s, pts[:, 1])]))
        owner.append(np.full(len(at), i))
    lab = np.concatenate(labels)
    own = np.concatenate(owner)
    view = cfg.field_nm**2 / 1e6
    # fraction of labels inside the view on average ~ their share of all labels there
    inside = np.mean((lab >= 0).all(1) & (lab < cfg.field_nm).all(1))
    n_view = max(inside * len(lab), 1.0)
    duty = min(0.5, cfg.true_density_per_um2 * view / n_view)
    p_off = 1.0 / max(cfg.on_frames, 1.0)  # on -> off per frame
    p_on = duty * p_off / max(1 - duty, 1e-9)  # off -> on, stationary duty
    state = rng.random(len(lab)) < duty
    frames, xs, ys = [], [], []
    for t in range(cfg.n_frames):
        on = np.flatnonzero(state)
        if len(on):
            pos = lab[on] + t * vel[own[on]] + drift_at(t)
            prec = np.exp(rng.uniform(*np.log(cfg.precision_nm), len(on)))
            pos = pos + rng.normal(0, 1, pos.shape) * prec[:, None]
            keep = (pos >= 0).all(1) & (pos < cfg.field_nm).all(1)
            frames.append(np.full(int(keep.sum()), t))
            xs.append(pos[keep, 0])
            ys.append(pos[keep, 1])
        flip = rng.random(len(lab))
        state = np.where(state, flip >= p_off, flip < p_on)
    frame = np.concatenate(frames) if frames else np.zeros(0, int)
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    # background localizations: a fraction of the total
    f = cfg.background_fraction
    n_bg = round(len(frame) * f / (1 - f)) if f < 1 else 0
    if n_bg:
        bf = rng.integers(0, cfg.n_frames, n_bg)
        if cfg.clustered_background:
            n_cl = max(1, n_bg // 20)
            cx = rng.uniform(0, cfg.field_nm, (n_cl, 2))
            birth = rng.integers(0, cfg.n_frames, n_cl)
            which = rng.integers(0, n_cl, n_bg)
            bf = np.clip(birth[which] + rng.integers(0, 5, n_bg), 0, cfg.n_frames - 1)
            bxy = cx[which] + rng.normal(0, 300.0, (n_bg, 2))
        else:
            bxy = rng.uniform(0, cfg.field_nm, (n_bg, 2))
        ok = (bxy >= 0).all(1) & (bxy < cfg.field_nm).all(1)
        frame = np.concatenate([frame, bf[ok]])
        x = np.concatenate([x, bxy[ok, 0]])
        y = np.concatenate([y, bxy[ok, 1]])
    order = np.argsort(frame, kind="stable")
    n = len(order)
    one = np.ones(n, np.float32)
    locs = Localizations(
        frame[order],
        x[order],
        y[order],
        one * 1000,
        one * 50,
        one * 15,
        one,
        pixel_size_nm=100.0,
        n_frames=cfg.n_frames,
    )
    # truth: the chains at every map's middle frame, 1-bin skeleton
    nb = round(cfg.field_nm / cfg.bin_nm)
    n_maps = cfg.n_frames // cfg.window_frames
    skel = np.zeros((n_maps, nb, nb), bool)
    for k in range(n_maps):
        t = k * cfg.window_frames + cfg.window_frames / 2
        for j, pts in enumerate(chains):
            p = pts + t * vel[j] + drift_at(t)
            ix = np.floor(p[:, 0] / cfg.bin_nm).astype(int)
            iy = np.floor(p[:, 1] / cfg.bin_nm).astype(int)
            ok = (ix >= 0) & (ix < nb) & (iy >= 0) & (iy < nb)
            skel[k, iy[ok], ix[ok]] = True
    return Field(locs, skel, cfg)
