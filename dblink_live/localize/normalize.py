"""Calibration-free input normalization for the CNN localizer.

A camera's counts depend on its offset, gain and EM gain, which users often know only roughly.
What decides whether a spot is an emitter does not: it is the spot's height over the local
background in units of the pixel noise. So the network reads

    ``z = (adu - B) / sigma``

where ``B`` (Y, X) is a smooth robust estimate of each frame's background level (ADU) and
``sigma`` the frame's robust pixel noise (ADU), both measured on the frame itself. Neither the
gain nor the offset enters: giving a wrong calibration (or none) changes the photon numbers the
localizer reports, never which emitters it finds or where.

- ``B``: the median of every ``block_px`` x ``block_px`` block (robust to the few pixels that
  hold spots), bilinearly interpolated back to full size, so a structured or non-uniform
  background is removed too.
- ``sigma``: 1.4826 x the median absolute deviation of horizontal and vertical differences of
  neighbouring pixels, divided by sqrt(2): smooth background cancels in a difference, and
  spots are too few to move a median. In a field so dense that emitters cover most pixels
  (the 6/um^2 Deep-STORM demo), the differences measure the emitters instead; at inference the
  camera model then bounds it (:func:`calibrated_noise_cap`, 1.3 x the predicted shot noise),
  for frames denser than the training's densest only, so elsewhere no calibration, right or
  wrong, changes the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["BLOCK_PX", "FrameNorm", "calibrated_noise_cap", "normalize_frames"]

#: Side of the blocks whose medians give the background map (pixels).
BLOCK_PX = 8
_MAD = 1.4826


class FrameNorm:
    """The normalization of a stack: ``background`` (T, Y, X) ADU and ``noise`` (T,) ADU."""

    def __init__(self, background: torch.Tensor, noise: torch.Tensor):
        self.background = background
        self.noise = noise

    def apply(self, adu: torch.Tensor) -> torch.Tensor:
        """(T, Y, X) ADU -> (T, Y, X) background-subtracted counts in units of the noise."""
        return (adu - self.background) / self.noise[:, None, None]


def _robust_noise(x: torch.Tensor) -> torch.Tensor:
    """(T, Y, X) -> (T,) pixel noise from neighbour differences (see the module docstring)."""
    dx = (x[:, :, 1:] - x[:, :, :-1]).flatten(1)
    dy = (x[:, 1:, :] - x[:, :-1, :]).flatten(1)
    d = torch.cat([dx, dy], 1)
    med = d.median(dim=1, keepdim=True).values
    mad = (d - med).abs().median(dim=1).values
    # integer ADU with tiny noise can give MAD 0: fall back to the RMS of the differences
    rms = d.std(dim=1)
    sigma = torch.where(mad > 0, _MAD * mad, rms) / math.sqrt(2.0)
    return sigma.clamp_min(0.5)


def _background_map(x: torch.Tensor, block_px: int) -> torch.Tensor:
    """(T, Y, X) -> (T, Y, X): block medians interpolated bilinearly to every pixel."""
    t, h, w = x.shape
    by, bx = max(1, round(h / block_px)), max(1, round(w / block_px))
    # crop/pad to a whole number of blocks of (nearly) block_px; replicate edges
    ph, pw = math.ceil(h / by) * by - h, math.ceil(w / bx) * bx - w
    xp = F.pad(x[:, None], (0, pw, 0, ph), mode="replicate")[:, 0] if ph or pw else x
    sy, sx = xp.shape[1] // by, xp.shape[2] // bx
    blocks = xp.reshape(t, by, sy, bx, sx).permute(0, 1, 3, 2, 4).reshape(t, by, bx, sy * sx)
    med = blocks.median(dim=-1).values  # (T, by, bx)
    if by == 1 and bx == 1:
        return med.expand(t, h, w).clone()
    full = F.interpolate(med[:, None], size=xp.shape[1:], mode="bilinear", align_corners=False)[
        :, 0
    ]
    return full[:, :h, :w].contiguous()


def normalize_frames(
    adu: torch.Tensor,
    block_px: int = BLOCK_PX,
    noise_cap: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, FrameNorm]:
    """Normalize (T, Y, X) raw frames (any numeric dtype, ADU) for the network.

    ``noise_cap`` maps the background map (T, Y, X) to an upper bound (T,) on the noise, used
    for frames with more than :data:`DENSE_FRACTION` of their pixels 3 noise units above the
    background: in fields so dense, neighbour differences measure the emitters, not the noise,
    and the camera's noise model (:func:`calibrated_noise_cap`) bounds it. Sparser frames keep
    the measured noise whatever the calibration says.

    Returns
    -------
    z : (T, Y, X) float32
        ``(adu - background) / noise``.
    norm : FrameNorm
        The background map and noise used, to turn network outputs back into ADU.
    """
    x = adu.to(torch.float32)
    background = _background_map(x, block_px)
    noise = _robust_noise(x)
    if noise_cap is not None:
        # only where the field is denser than any trained on: there the measurement fails,
        # elsewhere a wrong calibration must not move the input
        above = ((x - background) > 3.0 * noise[:, None, None]).flatten(1).float().mean(1)
        dense = above > DENSE_FRACTION
        noise = torch.where(dense, torch.minimum(noise, noise_cap(background)), noise)
    norm = FrameNorm(background, noise)
    return norm.apply(x), norm


#: A frame with more than this fraction of pixels 3 noise units above its background is denser
#: than the training's densest fields (3 emitters/um^2: 14 %); only there the model bounds the
#: noise.
DENSE_FRACTION = 0.15
#: How far above the camera model's noise a measured noise may be before the model bounds it.
NOISE_CAP_FACTOR = 1.3


def calibrated_noise_cap(
    baseline_adu: float, adu_per_electron: float, excess_sq: float, qe: float = 1.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Upper bound on the noise (ADU) from a camera model: ``1.3 x`` the shot noise of each
    frame's median background level, ``sqrt(F^2 g (B - offset))`` with ``g`` ADU per
    photoelectron. A calibration 30 % off still leaves the measured noise in charge in all
    but the densest fields (where the measurement itself fails)."""

    def cap(background: torch.Tensor) -> torch.Tensor:
        level = background.flatten(1).median(dim=1).values - baseline_adu
        var = excess_sq * adu_per_electron * level.clamp_min(1.0)
        return NOISE_CAP_FACTOR * torch.sqrt(var).clamp_min(0.5)

    return cap
