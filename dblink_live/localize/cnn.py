"""CNN localizer: DECODE-style per-pixel outputs on the camera grid.

The network reads three consecutive frames (t-1, t, t+1, in photons / ``input_scale``) and
predicts, for every pixel of frame t: the probability that an emitter's centre lies in it, its
sub-pixel offset (dx, dy in pixels from the pixel centre), the offset uncertainties, its photons
and the background. Detections are the local maxima (3x3) of the probability above a threshold.

Architecture (``LocalizerNet``): a two-level U-Net, ``channels`` wide at full resolution and
``2 x channels`` at half resolution, 3x3 convolutions with ReLU, a 1x1 head with 7 outputs.
Checkpoints describe themselves (architecture, input scale, training config, version), so
loading needs nothing but the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dblink_live import __version__
from dblink_live.checkpoints import file_sha256, read_checkpoint, shipped_or_path
from dblink_live.config import CNNLocalizerConfig
from dblink_live.localizations import Localizations
from dblink_live.localize.base import (
    CameraCalibration,
    FrameStack,
    FrameStackLocalizer,
    join_localizations,
    resolve_device,
)
from dblink_live.localize.normalize import calibrated_noise_cap, normalize_frames

__all__ = [
    "CHECKPOINT_FORMAT",
    "CNNLocalizer",
    "LocalizerNet",
    "LocalizerOutputs",
    "load_localizer_checkpoint",
    "resolve_weights",
]

CHECKPOINT_FORMAT = "dblink-live-localizer"
CHECKPOINT_VERSION = 2  # 2: input_norm "robust" (version-1 files load as "calibrated")
CONTEXT = 1  # frames of context on each side


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


@dataclass
class LocalizerOutputs:
    """Per-pixel outputs, each (B, Y, X): probability logit, offsets (px), offset sigmas (px),
    photons, background (photons per pixel)."""

    logit: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor
    sigma_x: torch.Tensor
    sigma_y: torch.Tensor
    photons: torch.Tensor
    background: torch.Tensor


class LocalizerNet(nn.Module):
    """Two-level U-Net with a 7-channel per-pixel head (see the module docstring).

    Parameters
    ----------
    channels
        Width at full resolution.
    in_frames
        Frames read per output frame (3: t-1, t, t+1).
    photon_scale, background_scale
        Output scales: photons are ``softplus(raw) * photon_scale``; the background is
        ``softplus(raw) * background_scale`` (photons per pixel) with ``input_norm``
        "calibrated", and ``raw * background_scale`` (the signed difference from the
        normalizer's background map, in units of the frame noise) with "robust".
    input_norm
        "robust": inputs are frames normalized by their own background and noise
        (:mod:`dblink_live.localize.normalize`), photons come out in units of the frame noise
        (ADU noise x photons per ADU gives photons); "calibrated": inputs are photons / 100
        from the user's calibration (checkpoints of format version 1).
    """

    def __init__(
        self,
        channels: int = 24,
        in_frames: int = 3,
        photon_scale: float = 1000.0,
        background_scale: float = 100.0,
        input_norm: str = "calibrated",
    ):
        super().__init__()
        c = channels
        self.enc = nn.Sequential(_conv(in_frames, c), _conv(c, c))
        self.mid = nn.Sequential(_conv(c, 2 * c), _conv(2 * c, 2 * c))
        self.up = _conv(2 * c, c)
        self.dec = _conv(2 * c, c)
        self.head = nn.Conv2d(c, 7, 1)
        self.photon_scale = photon_scale
        self.background_scale = background_scale
        if input_norm not in ("robust", "calibrated"):
            raise ValueError(f"input_norm must be robust or calibrated, got {input_norm!r}")
        self.input_norm = input_norm

    def forward(self, x: torch.Tensor) -> LocalizerOutputs:
        """x: (B, in_frames, Y, X) normalized photons; Y and X need not be even."""
        h, w = x.shape[-2:]
        ph, pw = h % 2, w % 2
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e = self.enc(x)
        m = self.mid(F.max_pool2d(e, 2))
        u = self.up(_upsample2(m))
        o = self.head(self.dec(torch.cat([e, u], 1)))[:, :, :h, :w]
        return LocalizerOutputs(
            logit=o[:, 0],
            dx=torch.tanh(o[:, 1]),
            dy=torch.tanh(o[:, 2]),
            sigma_x=F.softplus(o[:, 3]) + 0.01,
            sigma_y=F.softplus(o[:, 4]) + 0.01,
            photons=F.softplus(o[:, 5]) * self.photon_scale,
            background=(
                o[:, 6] * self.background_scale
                if self.input_norm == "robust"
                else F.softplus(o[:, 6]) * self.background_scale
            ),
        )


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling of (B, C, H, W) as a broadcast copy: identical to
    ``F.interpolate(x, scale_factor=2, mode="nearest")``, about twice as fast on CPU."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def resolve_weights(weights: str | Path) -> Path:
    """A checkpoint path from a shipped name (``dblink_live/weights/NAME.pt``) or a path."""
    return shipped_or_path(
        weights,
        "localizer",
        "a name shipped in dblink_live/weights (train one with `dblink-live train-localizer`)",
    )


def load_localizer_checkpoint(
    weights: str | Path, device: torch.device | str = "cpu"
) -> tuple[LocalizerNet, dict[str, Any]]:
    """Load a self-describing localizer checkpoint; returns (model in eval mode, checkpoint).

    Raises
    ------
    DblinkError
        if the file is missing, not a dblink_live localizer checkpoint, or newer than this
        version.
    """
    path = resolve_weights(weights)
    ckpt = read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "localizer", device)
    model = LocalizerNet(**ckpt["architecture"])
    model.load_state_dict(ckpt["model_state"])
    model.to(device).eval()
    return model, ckpt


def make_checkpoint(
    model: LocalizerNet,
    architecture: dict[str, Any],
    input_scale: float,
    training: dict[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict saved by the trainer (everything needed to rebuild and resume)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "package_version": __version__,
        "architecture": architecture,
        "input_scale": input_scale,
        "input_norm": architecture.get("input_norm", "calibrated"),
        "context_frames": CONTEXT,
        "training": training,
        "step": step,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "metrics": metrics or {},
    }


def with_context(photons: torch.Tensor, context: int = CONTEXT) -> torch.Tensor:
    """(T, Y, X) -> (T, 2c+1, Y, X): each frame with its neighbours (edges replicated)."""
    t = photons.shape[0]
    idx = torch.arange(t, device=photons.device)[:, None] + torch.arange(
        -context, context + 1, device=photons.device
    )
    return photons[idx.clamp(0, t - 1)]


def extract(out: LocalizerOutputs, threshold: float) -> tuple[torch.Tensor, ...]:
    """Detections as (t, row, col, p, dx, dy, sx, sy, photons, background) tensors.

    An emitter near a pixel corner spreads its probability over up to four pixels, each
    below the threshold, so a detection is a local maximum (3x3) of the probability whose
    3x3 neighbourhood sums to more than ``threshold`` (the sum, capped at 1, is its score;
    after DECODE's merging of neighbouring probabilities). Position, photons and background
    come from the maximum's pixel.
    """
    p = torch.sigmoid(out.logit)
    p4 = p[:, None]
    local = F.avg_pool2d(p4, 3, stride=1, padding=1, count_include_pad=True)[:, 0] * 9.0
    peak = (p == F.max_pool2d(p4, 3, stride=1, padding=1)[:, 0]) & (local > threshold)
    peak &= p > 0.1 * threshold  # a sum of many faint pixels is not a spot
    t, r, c = torch.nonzero(peak, as_tuple=True)
    return (
        t,
        r,
        c,
        local[t, r, c].clamp(max=1.0),
        out.dx[t, r, c],
        out.dy[t, r, c],
        out.sigma_x[t, r, c],
        out.sigma_y[t, r, c],
        out.photons[t, r, c],
        out.background[t, r, c],
    )


class CNNLocalizer(FrameStackLocalizer):
    """Localize with a trained :class:`LocalizerNet` (CUDA when present, mixed precision there).

    Parameters
    ----------
    config
        Checkpoint name/path, detection threshold, batch size.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    """

    name = "cnn"
    takes_context = True  # localize() accepts context_before / context_after

    def __init__(self, config: CNNLocalizerConfig | None = None, device: str = "auto"):
        self.config = config or CNNLocalizerConfig()
        self.device = resolve_device(device)
        self.model, self.checkpoint = load_localizer_checkpoint(self.config.weights, self.device)
        # channels-last convolutions are ~17 % faster on CPU for this network (same results
        # to float rounding); CUDA keeps the default layout
        self._memory_format = (
            torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        )
        # torch's stub omits Module.to's memory_format keyword, which it accepts at runtime
        self.model = self.model.to(memory_format=self._memory_format)  # type: ignore[call-overload]
        self.input_scale = float(self.checkpoint["input_scale"])
        self.context = int(self.checkpoint.get("context_frames", CONTEXT))

    @property
    def model_id(self) -> dict[str, str]:
        """Name and SHA-256 of the checkpoint file, stored with results."""
        path = Path(self.checkpoint["path"])
        return {"name": path.stem, "sha256": file_sha256(path)}

    @torch.no_grad()
    def _localize_stack(self, stack: FrameStack, calibration: CameraCalibration) -> Localizations:
        """Localize (T, Y, X) ADU frames; ``frame`` counts from ``first_frame``.

        ``context_before`` / ``context_after`` (one frame each) let a streaming caller give the
        neighbours of the first and last frame; without them edges are replicated.
        """
        frames, first_frame = stack.frames, stack.first_frame
        context_before, context_after = stack.context_before, stack.context_after
        px = calibration.pixel_size_nm
        padded = [frames]
        if context_before is not None:
            padded.insert(0, np.asarray(context_before).reshape(-1, *frames.shape[1:])[-1:])
        if context_after is not None:
            padded.append(np.asarray(context_after).reshape(-1, *frames.shape[1:])[:1])
        adu = torch.as_tensor(np.concatenate(padded).astype(np.float32, copy=False))
        adu = adu.to(self.device)
        robust = self.model.input_norm == "robust"
        if robust:
            cap = calibrated_noise_cap(
                calibration.baseline_adu,
                calibration.em_gain / calibration.e_per_adu,
                calibration.excess_noise_factor_sq,
            )
            z, norm = normalize_frames(adu, noise_cap=cap)
            full = z / self.input_scale
            ph_per_adu = calibration.e_per_adu / calibration.em_gain / calibration.qe
        else:
            full = calibration.to_photons(adu) / self.input_scale
        lo = 1 if context_before is not None else 0
        ctx = with_context(full, self.context)[lo : lo + len(frames)]
        parts = []
        use_amp = self.device.type == "cuda"
        for start in range(0, len(ctx), self.config.batch_frames):
            batch = ctx[start : start + self.config.batch_frames].contiguous(
                memory_format=self._memory_format
            )
            with torch.autocast(self.device.type, enabled=use_amp, dtype=torch.float16):
                out = self.model(batch)
            out = LocalizerOutputs(*(v.float() for v in vars(out).values()))
            t, r, c, p, dx, dy, sx, sy, nph, bg = extract(out, self.config.detection_threshold)
            if robust:
                # network units -> photons: noise units x frame noise (ADU) x photons per ADU
                ti = t + start + lo
                noise = norm.noise[ti]
                nph = nph * noise * ph_per_adu
                bg = (norm.background[ti, r, c] + bg * noise - calibration.baseline_adu) * (
                    ph_per_adu
                )
            parts.append(
                Localizations(
                    frame=(t + start + first_frame).cpu().numpy(),
                    x_nm=((c.float() + 0.5 + dx) * px).cpu().numpy(),
                    y_nm=((r.float() + 0.5 + dy) * px).cpu().numpy(),
                    photons=nph.cpu().numpy(),
                    background=bg.cpu().numpy(),
                    uncertainty_nm=(torch.sqrt((sx**2 + sy**2) / 2) * px).cpu().numpy(),
                    score=p.cpu().numpy(),
                    pixel_size_nm=px,
                )
            )
        return join_localizations(parts, px, first_frame + len(frames))
