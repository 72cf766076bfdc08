"""What every localizer shares: camera calibration (ADU -> photons), the interface, devices."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from dblink_live.errors import DblinkError
from dblink_live.localizations import Localizations

__all__ = [
    "CameraCalibration",
    "FrameStack",
    "FrameStackLocalizer",
    "Localizer",
    "join_localizations",
    "resolve_device",
]


@dataclass(frozen=True)
class CameraCalibration:
    """How to turn camera counts into photons, and the optics a localizer assumes.

    ``photons = (adu - baseline_adu) * e_per_adu / em_gain / qe``.

    Attributes
    ----------
    pixel_size_nm : float
    baseline_adu, e_per_adu, em_gain, qe : float
        Offset (ADU), conversion (electrons per ADU), EM gain (1 for sCMOS/CCD), quantum
        efficiency.
    psf_sigma_nm : float
        Standard deviation of the Gaussian approximation of the PSF.
    """

    pixel_size_nm: float
    baseline_adu: float = 100.0
    e_per_adu: float = 45.0
    em_gain: float = 300.0
    qe: float = 0.9
    psf_sigma_nm: float = 130.0

    @property
    def excess_noise_factor_sq(self) -> float:
        """F^2: 2 for an EM-multiplying camera (gain > 1), 1 otherwise."""
        return 2.0 if self.em_gain > 1.0 else 1.0

    @classmethod
    def from_camera(
        cls, camera: Mapping[str, Any], pixel_size_nm: float | None = None, **overrides: float
    ) -> CameraCalibration:
        """From a recording's ``camera`` metadata (see ``sim.camera.camera_metadata``).

        Missing keys take the SMLM-2016 EMCCD defaults; ``pixel_size_nm`` is required either in
        ``camera`` or as an argument.
        """
        px = pixel_size_nm if pixel_size_nm is not None else camera.get("pixel_size_nm")
        if px is None:
            raise DblinkError(
                "the camera pixel size is unknown: pass --pixel-size-nm (e.g. 100 or 160)"
            )
        keys = ("baseline_adu", "e_per_adu", "em_gain", "qe", "psf_sigma_nm")
        values = {k: float(camera[k]) for k in keys if camera.get(k) is not None}
        values.update({k: float(v) for k, v in overrides.items() if v is not None})
        return cls(pixel_size_nm=float(px), **values)

    def to_photons(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(T, Y, X) ADU -> float32 photons (same device as a tensor input)."""
        x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
        x = x.to(torch.float32)
        return (x - self.baseline_adu) * (self.e_per_adu / self.em_gain / self.qe)


class Localizer(Protocol):
    """Turns raw frames into localizations; stateless between calls, so it can stream.

    ``localize(frames, calibration, first_frame)`` takes (T, Y, X) uint16 ADU frames and returns
    :class:`Localizations` whose ``frame`` column counts from ``first_frame``.

    A localizer that reads a frame's neighbours (the CNN reads t-1, t, t+1) says so with
    ``takes_context``: a streaming caller then passes the frame before a block and the frame
    after it (``context_before`` / ``context_after``, (1, Y, X) each, None at the ends of the
    data), and holds a block's last frame back until its successor has arrived. One that does
    not (a per-frame fit) ignores them.
    """

    name: str
    takes_context: bool

    def localize(
        self,
        frames: np.ndarray,
        calibration: CameraCalibration,
        first_frame: int = 0,
        context_before: np.ndarray | None = None,
        context_after: np.ndarray | None = None,
    ) -> Localizations: ...


@dataclass(frozen=True)
class FrameStack:
    """What :meth:`Localizer.localize` was given, with the frames as one (T, Y, X) array.

    Attributes
    ----------
    frames : np.ndarray
        (T, Y, X) ADU frames (one (Y, X) frame passed to ``localize`` becomes (1, Y, X)).
    first_frame : int
        Number of ``frames[0]`` in the whole acquisition.
    context_before, context_after : np.ndarray or None
        The frame before ``frames[0]`` and the one after ``frames[-1]`` ((1, Y, X) each),
        None at the ends of the data or when the caller gives none.
    """

    frames: np.ndarray
    first_frame: int = 0
    context_before: np.ndarray | None = None
    context_after: np.ndarray | None = None


class FrameStackLocalizer(ABC):
    """Base of the package's localizers: :meth:`localize` as :class:`Localizer` asks.

    It turns its arguments into a :class:`FrameStack` and hands that to
    :meth:`_localize_stack`, which subclasses implement.
    """

    name: str
    takes_context: bool

    def localize(
        self,
        frames: np.ndarray,
        calibration: CameraCalibration,
        first_frame: int = 0,
        context_before: np.ndarray | None = None,
        context_after: np.ndarray | None = None,
    ) -> Localizations:
        """Localize (T, Y, X) (or one (Y, X)) ADU frames; ``frame`` counts from ``first_frame``.

        ``context_before`` / ``context_after``: the neighbours of the first and last frame,
        (1, Y, X) each, for a localizer that ``takes_context`` (others ignore them).
        """
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        stack = FrameStack(frames, first_frame, context_before, context_after)
        return self._localize_stack(stack, calibration)

    @abstractmethod
    def _localize_stack(self, stack: FrameStack, cal: CameraCalibration) -> Localizations:
        """Localize ``stack.frames`` (see :meth:`localize`)."""


def join_localizations(
    parts: list[Localizations], pixel_size_nm: float, n_frames: int
) -> Localizations:
    """One table of per-batch ``parts`` (an empty one when there are none).

    ``pixel_size_nm``: the camera pixel (nm) it is given; its ``n_frames`` becomes at least
    ``n_frames`` (the frames localized, counted from frame 0, even when the last had none).
    """
    out = Localizations.concatenate(parts) if parts else Localizations.empty(pixel_size_nm)
    out.pixel_size_nm = pixel_size_nm
    out.n_frames = max(out.n_frames, n_frames)
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device (checked)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DblinkError(
            f"device {device!r} requested but CUDA is not available; use --device cpu"
        )
    return dev
