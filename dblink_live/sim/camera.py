"""Image formation: pixel-integrated Gaussian PSF, background, shot noise and camera noise.

Pixel ``(row, col)`` covers ``[col, col + 1) * pixel_size_nm`` in x and the same in y, so a
position ``x_nm`` sits at ``x_px = x_nm / pixel_size_nm - 0.5`` in pixel-centre coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from dblink_live.config import CameraConfig, EMCCDCameraConfig, OpticsConfig

__all__ = ["Camera", "camera_metadata", "render_expected_photons"]


def render_expected_photons(
    frame_idx: np.ndarray,
    x_nm: np.ndarray,
    y_nm: np.ndarray,
    photons: np.ndarray,
    n_frames: int,
    shape: tuple[int, int],
    pixel_size_nm: float,
    sigma_nm: float | np.ndarray,
    sigma_y_nm: float | np.ndarray | None = None,
) -> np.ndarray:
    """Expected signal photons per pixel, the Gaussian PSF integrated over every pixel.

    Parameters
    ----------
    frame_idx : (N,) int
        Frame of each emitter, ``0 <= frame_idx < n_frames`` (relative to the block).
    x_nm, y_nm, photons : (N,) float
        Position (nm) and photons of each emitter in that frame.
    n_frames : int
        Number of frames in the block.
    shape : (H, W)
        Image size in pixels.
    pixel_size_nm : float
        Camera pixel.
    sigma_nm : float or (N,) float
        PSF standard deviation (in x when ``sigma_y_nm`` is given), one for all emitters or
        one per emitter (defocus).
    sigma_y_nm : float or (N,) float, optional
        PSF standard deviation in y (astigmatism); ``sigma_nm`` when not given.

    Returns
    -------
    (n_frames, H, W) float64
    """
    h, w = shape
    n = len(np.asarray(x_nm))
    sx = np.broadcast_to(np.asarray(sigma_nm, float), (n,)) / pixel_size_nm
    sy = sx if sigma_y_nm is None else np.broadcast_to(np.asarray(sigma_y_nm, float), (n,))
    if sigma_y_nm is not None:
        sy = sy / pixel_size_nm
    s_max = float(max(sx.max(initial=0.0), sy.max(initial=0.0), 1e-3))
    r = int(np.ceil(4 * s_max)) + 1
    xp = np.asarray(x_nm) / pixel_size_nm - 0.5
    yp = np.asarray(y_nm) / pixel_size_nm - 0.5
    cx, cy = np.round(xp).astype(np.int64), np.round(yp).astype(np.int64)
    inside = (cx >= -r) & (cx < w + r) & (cy >= -r) & (cy < h + r)
    xp, yp, cx, cy = xp[inside], yp[inside], cx[inside], cy[inside]
    ph, f = np.asarray(photons)[inside], np.asarray(frame_idx)[inside]
    sx, sy = sx[inside], sy[inside]
    p = 2 * r  # padding: a PSF centred up to r pixels outside still lands in the array
    padded = (n_frames, h + 2 * p, w + 2 * p)
    if len(xp) == 0:
        return np.zeros((n_frames, h, w))
    k = np.arange(-r, r + 1)

    def integrated(center: np.ndarray, pos: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        scale = (1.0 / (np.sqrt(2) * sigma))[:, None]
        edges = center[:, None] + k[None, :]  # pixel indices (N, K)
        lo = erf((edges - 0.5 - pos[:, None]) * scale)
        hi = erf((edges + 0.5 - pos[:, None]) * scale)
        return 0.5 * (hi - lo)

    px, py = integrated(cx, xp, sx), integrated(cy, yp, sy)
    patch = ph[:, None, None] * py[:, :, None] * px[:, None, :]
    rows = (cy[:, None] + k[None, :] + p)[:, :, None]
    cols = (cx[:, None] + k[None, :] + p)[:, None, :]
    flat = ((f[:, None, None] * padded[1] + rows) * padded[2] + cols).ravel()
    size = padded[0] * padded[1] * padded[2]
    out = np.bincount(flat, weights=patch.ravel(), minlength=size).reshape(padded)
    return out[:, p:-p, p:-p]


@dataclass(eq=False)
class Camera:
    """A camera model that turns expected photons into uint16 ADU frames.

    Build it with :meth:`from_config`; per-pixel sCMOS maps and the smooth background are drawn
    once (seeded) so that all frames of one movie share them.
    """

    config: CameraConfig
    sigma_nm: float
    background: np.ndarray  # (H, W) expected background photons per pixel
    offset_map: np.ndarray  # (H, W) ADU
    gain_map: np.ndarray  # (H, W) e-/ADU
    read_noise_map: np.ndarray  # (H, W) e- rms

    @classmethod
    def from_config(
        cls, cfg: CameraConfig, optics: OpticsConfig, rng: np.random.Generator
    ) -> Camera:
        shape = (cfg.height_px, cfg.width_px)
        bg = np.full(shape, float(cfg.background_photons))
        if cfg.background_kind == "smooth" and cfg.background_variation > 0:
            field = gaussian_filter(
                rng.standard_normal(shape), cfg.background_scale_nm / cfg.pixel_size_nm, mode="wrap"
            )
            field -= field.mean()
            peak = np.abs(field).max()
            if peak > 0:
                bg = bg * (1 + cfg.background_variation * field / peak)
        if isinstance(cfg, EMCCDCameraConfig):
            offset = np.full(shape, cfg.baseline_adu)
            gain = np.full(shape, cfg.e_per_adu)
            noise = np.full(shape, cfg.read_noise_e)
        else:
            crng = np.random.default_rng(cfg.camera_seed)
            offset = cfg.baseline_adu + cfg.offset_spread_adu * crng.standard_normal(shape)
            gain = cfg.e_per_adu * (1 + cfg.gain_spread * crng.standard_normal(shape))
            gain = np.maximum(gain, 1e-3)
            noise = cfg.read_noise_e * np.exp(
                cfg.read_noise_spread * crng.standard_normal(shape) - cfg.read_noise_spread**2 / 2
            )
        return cls(cfg, optics.psf_sigma_nm, bg, offset, gain, noise)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.config.height_px, self.config.width_px)

    def expose(self, signal_photons: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        """Add background and noise to expected signal photons; one generator per frame.

        Parameters
        ----------
        signal_photons : (T, H, W) float
            Expected signal photons per pixel.
        rngs : list of T generators
            Frame-wise generators, so a frame is the same whatever the chunking.

        Returns
        -------
        (T, H, W) uint16 ADU
        """
        cfg = self.config
        out = np.empty(signal_photons.shape, np.uint16)
        for i, rng in enumerate(rngs):
            lam = (signal_photons[i] + self.background) * cfg.qe
            electrons = rng.poisson(lam).astype(np.float64)
            if isinstance(cfg, EMCCDCameraConfig):
                lit = electrons > 0
                electrons[lit] = rng.gamma(electrons[lit], cfg.em_gain)
            electrons += self.read_noise_map * rng.standard_normal(self.shape)
            adu = np.rint(electrons / self.gain_map + self.offset_map)
            out[i] = np.clip(adu, 0, 65535).astype(np.uint16)
        return out


def camera_metadata(cfg: CameraConfig, sigma_nm: float) -> dict[str, float | str | int]:
    """What a localizer needs to turn ADU into photons, stored in every recording.

    ``photons = (adu - baseline_adu) * e_per_adu / em_gain / qe`` (``em_gain`` 1 for sCMOS).
    """
    return {
        "model": cfg.kind,
        "width_px": cfg.width_px,
        "height_px": cfg.height_px,
        "pixel_size_nm": cfg.pixel_size_nm,
        "qe": cfg.qe,
        "em_gain": getattr(cfg, "em_gain", 1.0),
        "e_per_adu": cfg.e_per_adu,
        "baseline_adu": cfg.baseline_adu,
        "read_noise_e": cfg.read_noise_e,
        "psf_sigma_nm": sigma_nm,
    }
