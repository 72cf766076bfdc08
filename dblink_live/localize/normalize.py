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
  spots are too few to move a median.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["BLOCK_PX", "FrameNorm", "normalize_frames"]

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


def normalize_frames(adu: torch.Tensor, block_px: int = BLOCK_PX) -> tuple[torch.Tensor, FrameNorm]:
    """Normalize (T, Y, X) raw frames (any numeric dtype, ADU) for the network.

    Returns
    -------
    z : (T, Y, X) float32
        ``(adu - background) / noise``.
    norm : FrameNorm
        The background map and noise used, to turn network outputs back into ADU.
    """
    x = adu.to(torch.float32)
    norm = FrameNorm(_background_map(x, block_px), _robust_noise(x))
    return norm.apply(x), norm
