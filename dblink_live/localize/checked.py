"""The CNN localizer, checked against what the frames plainly show.

A network trained on simulated frames can miss most molecules of a camera it has never seen
and say nothing. :class:`CheckedLocalizer` runs the CNN and, over the first frames, compares its
detections with the *bright* spots an independent, training-free detector finds: local maxima
of the band-passed frame (difference of Gaussians) above ``reference_snr`` times its robust
noise. Any working localizer must find those. Once ``probe_spots`` of them have been seen:

- the fraction the CNN found (within 1.5 camera pixels, same frame) is its *bright-spot
  recall*, logged and kept in :attr:`CheckedLocalizer.report`;
- below ``min_recall`` it warns with the numbers; with ``fallback`` (``--localizer auto``) the
  classic localizer takes over.

Offline workflows call :meth:`CheckedLocalizer.probe` on the first frames before localizing,
so the whole output comes from the localizer chosen. A live stream is judged on its first
blocks as they arrive; a switch applies from the next block on (the frames before it keep the
CNN's localizations; ``reprocess`` can localize them again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig
from dblink_live.localizations import Localizations
from dblink_live.localize.base import CameraCalibration, FrameStack, FrameStackLocalizer
from dblink_live.localize.classic import ClassicLocalizer, dog_maxima
from dblink_live.localize.cnn import CNNLocalizer

__all__ = ["CheckedLocalizer", "bright_spots"]

log = logging.getLogger(__name__)

#: Distance (camera pixels) within which a localization counts as finding a bright spot.
MATCH_PX = 1.5


def bright_spots(frames: np.ndarray, sigma_px: float, snr: float) -> np.ndarray:
    """Bright spots of (T, Y, X) raw frames as an (N, 3) array of (frame, row, col): the
    classic localizer's candidates (:func:`~dblink_live.localize.classic.dog_maxima`) at
    ``snr``, away from the edge (2 px). Raw counts suffice: the threshold is relative."""
    x = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    t, r, c = dog_maxima(x, sigma_px, snr, edge_px=2)
    return torch.stack([t, r, c], 1).numpy()


def spot_recall(spots: np.ndarray, locs: Localizations, first_frame: int, px: float) -> int:
    """How many (frame, row, col) spots have a localization within :data:`MATCH_PX`."""
    if len(spots) == 0 or len(locs) == 0:
        return 0
    found = 0
    frame = locs.frame - first_frame
    for t in np.unique(spots[:, 0]):
        sel = frame == t
        if not sel.any():
            continue
        tree = cKDTree(np.column_stack([locs.y_nm[sel] / px - 0.5, locs.x_nm[sel] / px - 0.5]))
        pts = spots[spots[:, 0] == t][:, 1:].astype(float)
        d, _ = tree.query(pts, k=1)
        found += int((d <= MATCH_PX).sum())
    return found


class CheckedLocalizer(FrameStackLocalizer):
    """The CNN localizer with a bright-spot yield check (see the module docstring).

    Parameters
    ----------
    config
        The CNN's config (weights, threshold, and the check's ``reference_snr``,
        ``probe_spots``, ``min_recall``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    fallback
        The classic localizer's config: switch to it when the CNN's yield is too low
        (``--localizer auto``); None only warns.
    """

    takes_context = True

    def __init__(
        self,
        config: CNNLocalizerConfig | None = None,
        device: str = "auto",
        fallback: ClassicLocalizerConfig | None = None,
    ):
        self.cnn = CNNLocalizer(config, device)
        self.config = self.cnn.config
        self.fallback = ClassicLocalizer(fallback, device) if fallback is not None else None
        self.name = "cnn"  # what produced the localizations: "classic" after a fallback
        self.active: Any = self.cnn
        self.spots = 0
        self.found = 0
        self.frames_probed = 0
        self.decided = False
        self.warning: str | None = None
        #: frames/s each localizer sustained on the camera's frame size (live ``auto`` only)
        self.throughput: dict[str, Any] | None = None

    @property
    def model_id(self) -> dict[str, str]:
        """Name and SHA-256 of the CNN's checkpoint."""
        return self.cnn.model_id

    @property
    def device(self) -> Any:
        """The torch device the localizer runs on."""
        return self.cnn.device

    @property
    def report(self) -> dict[str, Any]:
        """The check's numbers (JSON-able), stored with the localizations."""
        return {
            "reference_snr": self.config.reference_snr,
            "bright_spots": self.spots,
            "found_by_cnn": self.found,
            "bright_spot_recall": self.found / self.spots if self.spots else None,
            "frames_probed": self.frames_probed,
            "decided": self.decided,
            "localizer_used": self.active.name,
            "warning": self.warning,
            "throughput": self.throughput,
        }

    def choose_for_rate(
        self,
        frame_shape: tuple[int, int],
        calibration: CameraCalibration,
        frames_per_s: float,
        block: int = 16,
    ) -> dict[str, Any] | None:
        """``--localizer auto`` on a live camera: keep the CNN if it sustains the camera's rate
        on this device, else take the faster localizer (and say so).

        Both are timed on ``block`` frames of the camera's size (shot noise around the
        baseline; after a warm-up block, the best of up to 3 blocks); the CNN is kept when it
        runs at least 1.2x the camera's ``frames_per_s``. The classic localizer slows with the
        number of spots, so its rate here is an upper bound. Returns the numbers (also in
        :attr:`report`); None without a fallback or a rate.
        """
        import time

        if self.fallback is None or frames_per_s <= 0 or self.decided:
            return None
        rng = np.random.default_rng(0)
        shape = (block, int(frame_shape[0]), int(frame_shape[1]))
        frames = (calibration.baseline_adu + rng.poisson(20.0, shape)).astype(np.uint16)
        rates: dict[str, float] = {}
        for loc in (self.cnn, self.fallback):
            loc.localize(frames, calibration, 0)  # warm-up (allocation, first kernels)
            best, spent = 0.0, 0.0
            for _ in range(3):  # the best of up to 3 timed blocks (a noisy machine)
                t0 = time.perf_counter()
                loc.localize(frames, calibration, 0)
                dt = max(time.perf_counter() - t0, 1e-9)
                best, spent = max(best, block / dt), spent + dt
                if spent > 1.0:
                    break
            rates[loc.name] = best
        cnn, classic = rates["cnn"], rates[self.fallback.name]
        size = f"{shape[1]}x{shape[2]}"
        keeps_up = cnn >= 1.2 * frames_per_s
        self.throughput = {
            "frame_shape": list(shape[1:]),
            "camera_frames_per_s": float(frames_per_s),
            "cnn_frames_per_s": cnn,
            "classic_frames_per_s": classic,
            "cnn_keeps_up": keeps_up,
        }
        if keeps_up:
            log.info(
                "the CNN localizes %.0f frames/s of %s here, the camera delivers %.0f/s: CNN",
                cnn,
                size,
                frames_per_s,
            )
            return self.throughput
        msg = (
            f"the CNN localizes {cnn:.0f} frames/s of {size} on {self.device}, the camera "
            f"delivers {frames_per_s:.0f}/s"
        )
        if classic > cnn:
            self.active, self.name, self.decided = self.fallback, self.fallback.name, True
            msg += f": the classic localizer ({classic:.0f} frames/s) is used instead"
            if classic < frames_per_s:
                msg += "; it does not keep up either: whole maps will be skipped"
        else:
            msg += (
                f"; the classic localizer is slower ({classic:.0f}/s): whole maps will be skipped"
            )
        self.warning = msg + " (`reprocess` localizes and reconstructs them later)"
        log.warning("%s", self.warning)
        return self.throughput

    def _judge(self) -> None:
        recall = self.found / self.spots
        self.decided = True
        msg = (
            f"the CNN localizer found {self.found} of {self.spots} bright spots "
            f"({100 * recall:.0f} %) in the first {self.frames_probed} frames"
        )
        if recall >= self.config.min_recall:
            log.info("%s", msg)
            return
        if self.fallback is not None:
            self.warning = f"{msg}: switched to the classic localizer"
            self.active = self.fallback
            self.name = self.fallback.name
        else:
            self.warning = (
                f"{msg}: its localizations are incomplete; try --localizer auto or classic, "
                "or check the camera calibration"
            )
        log.warning("%s", self.warning)

    def _check(self, frames: np.ndarray, locs: Localizations, cal: CameraCalibration, first: int):
        px = cal.pixel_size_nm
        spots = bright_spots(frames, cal.psf_sigma_nm / px, self.config.reference_snr)
        self.spots += len(spots)
        self.found += spot_recall(spots, locs, first, px)
        self.frames_probed += len(frames)
        if self.spots >= self.config.probe_spots:
            self._judge()

    def _localize_stack(self, stack: FrameStack, calibration: CameraCalibration) -> Localizations:
        """Localize (T, Y, X) ADU frames (as :meth:`CNNLocalizer.localize`), checking the yield
        until it is judged."""
        frames, first_frame = stack.frames, stack.first_frame
        if self.active is not self.cnn:
            return self.active.localize(frames, calibration, first_frame)
        locs = self.cnn.localize(
            frames, calibration, first_frame, stack.context_before, stack.context_after
        )
        if not self.decided and len(frames):
            self._check(frames, locs, calibration, first_frame)
        return locs

    def probe(
        self,
        blocks: Iterable[tuple[int, np.ndarray]],
        calibration: CameraCalibration,
        max_frames: int = 1000,
    ) -> None:
        """Judge the CNN on the first frames of ``blocks`` ((first_frame, frames) pairs),
        before the real run, reading at most ``max_frames``; judged on what was seen if the
        bright spots are fewer than ``probe_spots``."""
        for first, frames in blocks:
            if self.decided or self.frames_probed >= max_frames:
                break
            locs = self.cnn.localize(frames, calibration, first)
            self._check(np.asarray(frames), locs, calibration, first)
        self.finish()

    def finish(self) -> None:
        """Judge on what was seen when the input ended before ``probe_spots`` bright spots."""
        if not self.decided and self.spots:
            self._judge()
