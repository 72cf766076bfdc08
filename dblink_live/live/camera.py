"""The camera calibration of a live run, measured on its first frames when the camera does not
state its offset and e-/ADU (photons only: the CNN's detections do not depend on it)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.localize import CameraCalibration

__all__ = ["LiveCalibration"]

log = logging.getLogger("dblink_live.pipeline")

#: Frames a stack must hold to measure the camera on.
MIN_FRAMES = 8
_STORED = ("baseline_adu", "e_per_adu", "em_gain", "qe", "pixel_size_nm", "psf_sigma_nm")


class LiveCalibration:
    """The calibration in use now, refined once from the frames when the camera did not say it.

    Parameters
    ----------
    camera
        The source's camera description (``baseline_adu``, ``e_per_adu``, ``em_gain``, ``qe``,
        ``model``; missing or None where unknown).
    pixel_size_nm
        Camera pixel size (nm).
    recording
        Where the estimate is written (the localizations' info at once; the camera metadata
        with the summary, from :attr:`camera_meta`).
    """

    def __init__(self, camera: dict[str, Any], pixel_size_nm: float, recording: Recording):
        self.camera = dict(camera)
        self.calibration = CameraCalibration.from_camera(
            {**self.camera, "pixel_size_nm": pixel_size_nm}
        )
        self.recording = recording
        self.pending = any(self.camera.get(k) is None for k in ("baseline_adu", "e_per_adu"))
        self.estimate: Any = None
        #: the camera metadata with the estimate, for the recording (None: nothing measured)
        self.camera_meta: dict[str, Any] | None = None

    def current(self) -> CameraCalibration:
        """The calibration to localize with now."""
        return self.calibration

    def on_frames(self, frames: np.ndarray) -> None:
        """Measure on the first stack (n, Y, X) of at least :data:`MIN_FRAMES` frames."""
        if self.pending and len(frames) >= MIN_FRAMES:
            self.measure(frames)

    def measure(self, frames: np.ndarray) -> None:
        """Estimate offset and gain from ``frames`` (n, Y, X; ADU); the estimate is logged, used
        for photons from now on and stored in the recording."""
        from dblink_live.localize import estimate_camera

        self.pending = False
        cam = self.camera
        model = str(cam.get("model") or "")
        try:
            est = estimate_camera(
                frames,
                camera=model if model in ("emccd", "scmos") else None,
                em_gain=cam.get("em_gain"),
                baseline_adu=cam.get("baseline_adu"),
            )
        except DblinkError as exc:
            log.warning("camera calibration not estimated (%s); photons use the defaults", exc)
            return
        fill = {
            k: v
            for k, v in est.calibration(em_gain=cam.get("em_gain")).items()
            if cam.get(k) is None or k == "e_per_adu"
        }
        self.calibration = replace(self.calibration, **fill)
        self.estimate = est
        log.warning("%s", est.summary())
        self.camera_meta = {**cam, **fill, "estimated": est.to_dict()}
        self.recording.update_localization_info(
            calibration={k: getattr(self.calibration, k) for k in _STORED},
            camera_estimate=est.to_dict(),
        )
