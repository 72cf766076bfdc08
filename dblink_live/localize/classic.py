"""Classic localizer: band-pass, local maxima, vectorized Gaussian least-squares fit.

1. frames are converted to photons and band-passed with a difference of Gaussians (sigma of the
   PSF minus 2.5x that), which removes the background and suppresses pixel noise;
2. candidates are local maxima (3x3) above ``threshold_snr`` times the frame's robust noise
   (1.4826 x median absolute deviation of the band-passed frame);
3. a (2r+1)^2 window around every candidate is fitted with a pixel-integrated Gaussian
   ``N Ex(x) Ey(y) + b`` by Levenberg-Marquardt, all windows at once (one batched 4x4 or 5x5
   solve per iteration), on the CPU or the GPU;
4. the precision is the Mortensen et al. (2010) expression for the fitted photons and background
   (times the EMCCD excess noise factor), and the score grows with the fit's signal-to-noise.

No training, no state: it is the CPU fallback and the baseline the CNN must beat.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dblink_live.config import ClassicLocalizerConfig
from dblink_live.localizations import Localizations
from dblink_live.localize.base import (
    CameraCalibration,
    FrameStack,
    FrameStackLocalizer,
    join_localizations,
    resolve_device,
)

__all__ = ["ClassicLocalizer", "dog_maxima", "gaussian_blur", "mortensen_precision_nm"]

_SQRT2 = math.sqrt(2.0)


def _kernel1d(sigma: float, device: torch.device) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (T, 1, Y, X) with reflect padding."""
    k = _kernel1d(sigma, x.device)
    r = len(k) // 2
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1))


def dog_maxima(
    frames: torch.Tensor, sigma_px: float, snr: float, edge_px: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, row, col) of the local maxima (3x3) of the difference-of-Gaussians band-pass
    (sigma, 2.5 sigma) of (T, Y, X) frames above ``snr`` x its robust noise (1.4826 MAD per
    frame); maxima within ``edge_px`` of the border are left out. The threshold is relative,
    so frames in photons or raw counts give the same maxima."""
    x = frames[:, None]
    s = max(float(sigma_px), 0.5)
    dog = gaussian_blur(x, s) - gaussian_blur(x, 2.5 * s)
    flat = dog.flatten(1)
    med = flat.median(dim=1, keepdim=True).values
    mad = (flat - med).abs().median(dim=1, keepdim=True).values * 1.4826
    thr = (med + snr * mad.clamp_min(1e-3)).view(-1, 1, 1, 1)
    peak = (dog == F.max_pool2d(dog, 3, stride=1, padding=1)) & (dog > thr)
    if edge_px:
        peak[..., :edge_px, :] = False
        peak[..., -edge_px:, :] = False
        peak[..., :, :edge_px] = False
        peak[..., :, -edge_px:] = False
    t, _, r, c = torch.nonzero(peak, as_tuple=True)
    return t, r, c


def mortensen_precision_nm(
    photons: torch.Tensor,
    background: torch.Tensor,
    sigma_nm: float | torch.Tensor,
    pixel_nm: float,
    excess_sq: float,
) -> torch.Tensor:
    """Lateral precision (1 sigma, nm), Mortensen et al. 2010, for detected photons."""
    n = photons.clamp_min(1.0)
    sa2 = sigma_nm**2 + pixel_nm**2 / 12.0
    var = (
        sa2 / n * (16.0 / 9.0 + 8.0 * math.pi * sa2 * background.clamp_min(0.0) / (n * pixel_nm**2))
    )
    return torch.sqrt(excess_sq * var)


def _integrated(pos: torch.Tensor, grid: torch.Tensor, sigma: torch.Tensor):
    """Pixel-integrated 1-D Gaussian and its derivatives w.r.t. position and sigma.

    pos (N,), grid (K,) pixel centres, sigma (N,) -> E, dE/dpos, dE/dsigma: (N, K)
    """
    s = sigma[:, None]
    hi = (grid[None, :] + 0.5 - pos[:, None]) / s
    lo = (grid[None, :] - 0.5 - pos[:, None]) / s
    e = 0.5 * (torch.erf(hi / _SQRT2) - torch.erf(lo / _SQRT2))
    ghi = torch.exp(-0.5 * hi**2) / math.sqrt(2 * math.pi)
    glo = torch.exp(-0.5 * lo**2) / math.sqrt(2 * math.pi)
    d_pos = -(ghi - glo) / s
    d_sigma = -(ghi * hi - glo * lo) / s
    return e, d_pos, d_sigma


class ClassicLocalizer(FrameStackLocalizer):
    """Band-pass + local maxima + batched Gaussian fit (see the module docstring).

    Parameters
    ----------
    config
        Thresholds and fit settings.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    """

    name = "classic"
    takes_context = False  # each frame is fitted alone

    def __init__(self, config: ClassicLocalizerConfig | None = None, device: str = "auto"):
        self.config = config or ClassicLocalizerConfig()
        self.device = resolve_device(device)

    # ------------------------------------------------------------------ detection
    def _candidates(self, photons: torch.Tensor, sigma_px: float):
        """(t, row, col) of local maxima above threshold in a (T, Y, X) photon stack."""
        return dog_maxima(photons, sigma_px, self.config.threshold_snr)

    # ------------------------------------------------------------------ fitting
    def _fit(self, rois: torch.Tensor, sigma0: float):
        """LM fit of (x, y, N, b[, sigma]) to (N, K, K) photon windows; coordinates in window
        pixels (centre of the window is 0)."""
        n, k, _ = rois.shape
        r = (k - 1) / 2
        grid = torch.arange(k, device=rois.device, dtype=torch.float32) - r
        border = torch.cat([rois[:, 0], rois[:, -1], rois[:, 1:-1, 0], rois[:, 1:-1, -1]], 1)
        b = border.median(dim=1).values
        sig = rois - b[:, None, None]
        sig_c = sig.clamp_min(0)
        total = sig_c.sum((1, 2)).clamp_min(1e-3)
        x = (sig_c.sum(1) * grid).sum(1) / total
        y = (sig_c.sum(2) * grid).sum(1) / total
        nph = sig.sum((1, 2)).clamp_min(1.0)
        sigma = torch.full((n,), sigma0, device=rois.device)
        fit_sigma = self.config.fit_sigma
        n_par = 5 if fit_sigma else 4
        lam = torch.full((n,), 1e-2, device=rois.device)
        eye = torch.eye(n_par, device=rois.device)

        def model(x, y, nph, b, sigma):
            ex, dex, dsx = _integrated(x, grid, sigma)
            ey, dey, dsy = _integrated(y, grid, sigma)
            mu = nph[:, None, None] * ey[:, :, None] * ex[:, None, :] + b[:, None, None]
            jac = [
                nph[:, None, None] * ey[:, :, None] * dex[:, None, :],
                nph[:, None, None] * dey[:, :, None] * ex[:, None, :],
                ey[:, :, None] * ex[:, None, :],
                torch.ones_like(mu),
            ]
            if fit_sigma:
                jac.append(
                    nph[:, None, None]
                    * (dsy[:, :, None] * ex[:, None, :] + ey[:, :, None] * dsx[:, None, :])
                )
            return mu, torch.stack([j.flatten(1) for j in jac], 2)

        mu, jac = model(x, y, nph, b, sigma)
        cost = ((rois - mu) ** 2).flatten(1).sum(1)
        for _ in range(self.config.fit_iterations):
            res = (rois - mu).flatten(1)
            jtj = jac.transpose(1, 2) @ jac
            jtr = (jac.transpose(1, 2) @ res[:, :, None])[:, :, 0]
            damp = jtj + lam[:, None, None] * (jtj * eye).clamp_min(1e-6)
            # solve_ex: a singular system (a flat or saturated spot in a large field) fails only
            # its own candidate, which keeps its values and gets more damping, not the whole run
            step, info = torch.linalg.solve_ex(damp, jtr)
            failed = (info != 0) | ~torch.isfinite(step).all(1)
            step = torch.where(failed[:, None], torch.zeros_like(step), step)
            step[:, :2] = step[:, :2].clamp(-1.0, 1.0)
            nx, ny = x + step[:, 0], y + step[:, 1]
            nn, nb = (nph + step[:, 2]).clamp_min(1.0), b + step[:, 3]
            ns = (sigma + step[:, 4]).clamp(0.3, 5.0) if fit_sigma else sigma
            nmu, njac = model(nx, ny, nn, nb, ns)
            ncost = ((rois - nmu) ** 2).flatten(1).sum(1)
            better = (ncost < cost) & ~failed
            lam = torch.where(better, lam * 0.3, lam * 4.0).clamp(1e-6, 1e6)
            sel = better[:, None]
            x, y = torch.where(better, nx, x), torch.where(better, ny, y)
            nph, b = torch.where(better, nn, nph), torch.where(better, nb, b)
            sigma = torch.where(better, ns, sigma)
            mu = torch.where(sel[:, :, None], nmu, mu)
            jac = torch.where(sel[:, :, None], njac, jac)
            cost = torch.where(better, ncost, cost)
        return x, y, nph, b, sigma

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def _localize_stack(self, stack: FrameStack, cal: CameraCalibration) -> Localizations:
        """Localize emitters in (T, Y, X) ADU frames; ``frame`` counts from ``first_frame``.

        Each frame is fitted on its own: ``context_before`` / ``context_after`` are ignored.
        """
        frames, first_frame = stack.frames, stack.first_frame
        parts = []
        for start in range(0, len(frames), self.config.batch_frames):
            block = frames[start : start + self.config.batch_frames]
            parts.append(self._localize_block(block, cal, first_frame + start))
        return join_localizations(parts, cal.pixel_size_nm, first_frame + len(frames))

    def _localize_block(
        self, frames: np.ndarray, cal: CameraCalibration, first_frame: int
    ) -> Localizations:
        px = cal.pixel_size_nm
        sigma_px = cal.psf_sigma_nm / px
        photons = cal.to_photons(frames).to(self.device)
        t, r, c = self._candidates(photons, sigma_px)
        rad = self.config.roi_radius_px
        padded = F.pad(photons[:, None], (rad, rad, rad, rad), mode="replicate")[:, 0]
        k = torch.arange(-rad, rad + 1, device=self.device)
        rows = (r[:, None] + rad + k[None, :])[:, :, None]
        cols = (c[:, None] + rad + k[None, :])[:, None, :]
        rois = padded[t[:, None, None], rows, cols]
        if len(rois) == 0:
            return Localizations.empty(px, first_frame + len(frames))
        x, y, nph, b, sigma = self._fit(rois, sigma_px)
        ok = (x.abs() <= 1.5) & (y.abs() <= 1.5) & (nph > 1) & torch.isfinite(x) & torch.isfinite(y)
        x_px = c.float() + x
        y_px = r.float() + y
        h, w = frames.shape[1:]
        ok &= (x_px > -0.5) & (x_px < w - 0.5) & (y_px > -0.5) & (y_px < h - 0.5)
        idx = torch.nonzero(ok)[:, 0]
        # two candidates that converged onto one emitter: keep the brighter
        x_px, y_px, nph, b, sigma, t = (v[idx] for v in (x_px, y_px, nph, b, sigma, t))
        keep = _unique_positions(t, x_px, y_px, nph, min_dist_px=0.7)
        x_px, y_px, nph, b, sigma, t = (v[keep] for v in (x_px, y_px, nph, b, sigma, t))
        det_n, det_b = nph * cal.qe, b * cal.qe
        unc = mortensen_precision_nm(det_n, det_b, sigma * px, px, cal.excess_noise_factor_sq)
        noise = torch.sqrt(nph + 4 * math.pi * (sigma**2) * b.clamp_min(0))
        snr2 = (nph / noise) ** 2
        score = snr2 / (snr2 + 25.0)
        return Localizations(
            frame=(t + first_frame).cpu().numpy(),
            x_nm=((x_px + 0.5) * px).cpu().numpy(),
            y_nm=((y_px + 0.5) * px).cpu().numpy(),
            photons=nph.cpu().numpy(),
            background=b.cpu().numpy(),
            uncertainty_nm=unc.cpu().numpy(),
            score=score.cpu().numpy(),
            pixel_size_nm=px,
            n_frames=first_frame + len(frames),
        )


def _unique_positions(
    t: torch.Tensor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, min_dist_px: float
) -> torch.Tensor:
    """Indices to keep so that no two kept points of a frame are closer than ``min_dist_px``
    (the heavier of a close pair wins). Exact for pairs; chains are resolved greedily."""
    n = len(t)
    if n < 2:
        return torch.arange(n, device=t.device)
    order = torch.argsort(weight, descending=True)
    keep = torch.ones(n, dtype=torch.bool, device=t.device)
    ts, xs, ys = t[order], x[order], y[order]
    # candidates are at least 1 px apart before fitting: compare each to the few heavier ones
    # of the same frame via a sort on (frame, x) and a short window
    key = ts.double() * 1e6 + xs.double()
    srt = torch.argsort(key)
    for shift in range(1, 6):
        a, bidx = srt[:-shift], srt[shift:]
        close = (ts[a] == ts[bidx]) & (
            (xs[a] - xs[bidx]) ** 2 + (ys[a] - ys[bidx]) ** 2 < min_dist_px**2
        )
        lighter = torch.maximum(a, bidx)  # larger index in `order` = lighter
        keep[lighter[close]] = False
    return order[keep]
