"""Configuration: one pydantic model per stage, composed into :class:`RunConfig`.

Every model forbids unknown keys, bounds its numbers and puts units in field names
(``_nm``, ``_s``, ``_per_um2``...). Strategies that can be swapped (structure kind, camera model)
are tagged unions with a ``kind`` literal. YAML files in ``configs/`` load with
:func:`load_config` and are written back with :func:`save_config`; a bad file gives one
:class:`~dblink_live.errors.ConfigError` that names the file, the key and (where known) the line.

Example
-------
>>> cfg = RunConfig()
>>> cfg.simulation.camera.kind
'emccd'
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from dblink_live.errors import ConfigError

__all__ = [
    "AutoLocalizerConfig",
    "CNNLocalizerConfig",
    "CameraConfig",
    "ClassicLocalizerConfig",
    "CountConfig",
    "EMCCDCameraConfig",
    "FilamentsConfig",
    "GridConfig",
    "LiveConfig",
    "LocalizationSpaceConfig",
    "LocalizerConfig",
    "LocalizerTrainingConfig",
    "MitochondriaConfig",
    "MotionConfig",
    "OpticsConfig",
    "PhotophysicsConfig",
    "ReconModelConfig",
    "ReconTrainingConfig",
    "RunConfig",
    "SCMOSCameraConfig",
    "SimulationConfig",
    "StructureConfig",
    "config_from_dict",
    "load_config",
    "save_config",
]

CONFIG_VERSION: Final = 1


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"range must be (low, high) with low <= high, got ({lo}, {hi})")
    return value


#: A closed interval ``(low, high)`` from which a value is drawn uniformly per sample.
Range = Annotated[tuple[float, float], AfterValidator(_ordered)]
NonNegRange = Annotated[
    tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]], AfterValidator(_ordered)
]
PosRange = Annotated[
    tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]], AfterValidator(_ordered)
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------------- structures
class CountConfig(_Model):
    """How many objects a field of view holds (drawn anew for every simulated movie).

    ``poisson`` draws from a Poisson law with ``mean`` (no upper cut-off), ``uniform`` draws an
    integer in ``[low, high]``, ``fixed`` always gives ``round(mean)``. Counts are per
    ``(10 um)^2`` of simulated area so that the same config serves any field of view.
    """

    distribution: Literal["poisson", "uniform", "fixed"] = "poisson"
    mean: float = Field(8.0, ge=0, le=10_000, description="mean count per (10 um)^2")
    low: int = Field(0, ge=0, description="lowest count per (10 um)^2 (uniform only)")
    high: int = Field(16, ge=0, description="highest count per (10 um)^2 (uniform only)")

    @model_validator(mode="after")
    def _check(self) -> CountConfig:
        if self.distribution == "uniform" and self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class FilamentsConfig(_Model):
    """Filaments (microtubules, actin) as random walks after Shariff et al. 2010.

    Each filament starts at a uniform random point of the simulated area with a uniform random
    heading and takes steps of ``step_nm`` length, turning by at most ``max_turn_deg`` per step,
    until it is ``length_um`` long. Optional parallel bundles copy a filament side by side.
    """

    kind: Literal["filaments"] = "filaments"
    count: CountConfig = CountConfig(mean=8.0)
    length_um: PosRange = (3.0, 10.0)
    step_nm: PosRange = (500.0, 750.0)
    max_turn_deg: float = Field(32.0, ge=0, le=180)
    smoothing_iterations: int = Field(
        2, ge=0, le=5, description="Chaikin corner-cutting passes (0 keeps the raw walk)"
    )
    width_nm: float = Field(25.0, gt=0, le=500, description="true filament width")
    labels_per_um: float = Field(
        250.0, gt=0, le=100_000, description="fluorophores per um of filament length"
    )
    bundle_probability: float = Field(0.1, ge=0, le=1)
    bundle_size: tuple[int, int] = Field((2, 3), description="filaments per bundle (low, high)")
    bundle_spacing_nm: PosRange = (50.0, 120.0)

    @model_validator(mode="after")
    def _check(self) -> FilamentsConfig:
        lo, hi = self.bundle_size
        if not 2 <= lo <= hi <= 10:
            raise ValueError(f"bundle_size must satisfy 2 <= low <= high <= 10, got {lo}, {hi}")
        return self


class MitochondriaConfig(_Model):
    """Mitochondria-like tubules: wobbly rods labelled on their outer membrane.

    The centre line is a random walk with small turns; the tubule is ``width_nm`` wide and the
    labels sit on its (3-D cylindrical) surface, so the projection shows the characteristic
    brighter edges. Fission splits a tubule in two pieces that drift apart; fusion is the reverse.
    """

    kind: Literal["mitochondria"] = "mitochondria"
    count: CountConfig = CountConfig(mean=6.0)
    length_um: PosRange = (0.5, 5.0)
    width_nm: PosRange = (250.0, 700.0)
    step_nm: PosRange = (200.0, 300.0)
    max_turn_deg: float = Field(20.0, ge=0, le=180)
    labels_per_um2: float = Field(
        400.0, gt=0, le=1_000_000, description="fluorophores per um^2 of membrane surface"
    )
    fission_probability: float = Field(0.2, ge=0, le=1, description="per tubule and movie")
    fusion_probability: float = Field(0.1, ge=0, le=1, description="per tubule and movie")
    separation_speed_nm_per_s: NonNegRange = (100.0, 400.0)

    @model_validator(mode="after")
    def _check(self) -> MitochondriaConfig:
        if self.fission_probability + self.fusion_probability > 1:
            raise ValueError("fission_probability + fusion_probability must not exceed 1")
        return self


def _kind_or(default: str) -> Any:
    """Discriminator that reads ``kind`` and falls back to ``default`` when it is omitted."""

    def pick(value: Any) -> str:
        if isinstance(value, dict):
            return value.get("kind", default)
        return getattr(value, "kind", default)

    return Discriminator(pick)


StructureConfig = Annotated[
    Annotated[FilamentsConfig, Tag("filaments")]
    | Annotated[MitochondriaConfig, Tag("mitochondria")],
    _kind_or("filaments"),
]


# ------------------------------------------------------------------------------------ motion
class MotionConfig(_Model):
    """Smooth, time-varying motion applied to the geometry (never to images).

    Global motion is an affine transform about the field centre: drift (a velocity whose
    magnitude is modulated sinusoidally by ``drift_modulation`` with a period drawn from
    ``modulation_period_s``), rotation, shear and isotropic scaling. Per-object motion translates
    and rotates each object about its own centre; ``wobble`` bends objects with a travelling
    wave along their length. Every speed is drawn uniformly from its range per movie and object;
    the sign of rotations is random.
    """

    drift_speed_nm_per_s: NonNegRange = (0.0, 100.0)
    drift_modulation: float = Field(0.5, ge=0, le=1, description="relative speed modulation")
    modulation_period_s: PosRange = (2.0, 20.0)
    rotation_deg_per_s: NonNegRange = (0.0, 2.0)
    shear_per_s: NonNegRange = (0.0, 0.0)
    scale_per_s: NonNegRange = (0.0, 0.0)
    object_speed_nm_per_s: NonNegRange = (0.0, 0.0)
    object_rotation_deg_per_s: NonNegRange = (0.0, 0.0)
    wobble_amplitude_nm: NonNegRange = (0.0, 0.0)
    wobble_frequency_hz: NonNegRange = (0.1, 1.0)
    wobble_wavelength_nm: float = Field(2000.0, gt=0)


# ------------------------------------------------------------------------------ photophysics
class PhotophysicsConfig(_Model):
    """Blinking, bleaching and brightness of the fluorophores.

    Blinking is a two-state process in continuous time with exponential on-times (mean
    ``on_time_frames``) and exponential off-times set by the duty cycle. Give either the target
    ``density_per_um2`` (active emitters per um^2 in each frame; the duty cycle follows from the
    number of labels) or a fixed ``duty_cycle``. Each switch-off is a bleaching event with
    probability ``bleach_probability``. Photons per fully-on frame are log-normal with mean
    ``photons_mean`` and coefficient of variation ``photons_cv``; partly-on frames get the
    on-fraction of that.
    """

    density_per_um2: float | None = Field(0.5, gt=0, le=20)
    duty_cycle: float | None = Field(None, gt=0, lt=1)
    max_duty_cycle: float = Field(0.5, gt=0, lt=1)
    on_time_frames: float = Field(2.0, gt=0, le=1000)
    bleach_probability: float = Field(0.05, ge=0, le=1)
    photons_mean: float = Field(3000.0, gt=0, le=1e6)
    photons_cv: float = Field(0.5, ge=0, le=5)

    @model_validator(mode="after")
    def _check(self) -> PhotophysicsConfig:
        if (self.density_per_um2 is None) == (self.duty_cycle is None):
            raise ValueError(
                "set exactly one of density_per_um2 and duty_cycle (the other must be null)"
            )
        return self


class OpticsConfig(_Model):
    """Microscope optics: a Gaussian PSF integrated over each camera pixel.

    The PSF standard deviation is ``sigma_nm`` when set, else ``0.21 * wavelength_nm / na``
    (Gaussian approximation of the in-focus widefield PSF, Zhang et al. 2007).
    """

    na: float = Field(1.49, gt=0, le=1.7)
    wavelength_nm: float = Field(660.0, ge=300, le=1200)
    sigma_nm: float | None = Field(None, gt=0, le=2000)

    @property
    def psf_sigma_nm(self) -> float:
        """PSF standard deviation in nm."""
        return self.sigma_nm if self.sigma_nm is not None else 0.21 * self.wavelength_nm / self.na


# ------------------------------------------------------------------------------------ camera
class _CameraBase(_Model):
    width_px: int = Field(64, ge=8, le=4096)
    height_px: int = Field(64, ge=8, le=4096)
    pixel_size_nm: float = Field(160.0, ge=20, le=1000)
    background_photons: float = Field(
        50.0, ge=0, le=1e5, description="mean background photons per pixel per frame"
    )
    background_kind: Literal["uniform", "smooth"] = "uniform"
    background_variation: float = Field(
        0.3, ge=0, le=1, description="smooth background: relative peak-to-mean variation"
    )
    background_scale_nm: float = Field(3000.0, gt=0, description="smooth background: length")


class EMCCDCameraConfig(_CameraBase):
    """EMCCD: Poisson photons, QE, gamma-distributed EM gain (excess noise), read noise.

    Defaults are the SMLM-2016 challenge camera (QE 0.9, EM gain 300, read noise 74.4 e-,
    45 e-/ADU, baseline 100 ADU).
    """

    kind: Literal["emccd"] = "emccd"
    qe: float = Field(0.9, gt=0, le=1)
    em_gain: float = Field(300.0, ge=1, le=10_000)
    read_noise_e: float = Field(74.4, ge=0, le=1000)
    e_per_adu: float = Field(45.0, gt=0, le=1000)
    baseline_adu: float = Field(100.0, ge=0, le=60_000)


class SCMOSCameraConfig(_CameraBase):
    """sCMOS: Poisson photons, QE, per-pixel offset, gain and read noise maps.

    Per-pixel maps are drawn once per camera (seeded): read noise log-normal around
    ``read_noise_e`` with spread ``read_noise_spread``, gain around ``e_per_adu`` with relative
    spread ``gain_spread`` and offsets around ``baseline_adu`` with spread ``offset_spread_adu``.
    """

    kind: Literal["scmos"] = "scmos"
    qe: float = Field(0.8, gt=0, le=1)
    read_noise_e: float = Field(1.6, ge=0, le=100)
    read_noise_spread: float = Field(0.3, ge=0, le=2)
    e_per_adu: float = Field(0.5, gt=0, le=100)
    gain_spread: float = Field(0.02, ge=0, le=0.5)
    baseline_adu: float = Field(100.0, ge=0, le=60_000)
    offset_spread_adu: float = Field(2.0, ge=0, le=1000)
    camera_seed: int = Field(1, ge=0, description="seed of the per-pixel maps (one camera)")


CameraConfig = Annotated[
    Annotated[EMCCDCameraConfig, Tag("emccd")] | Annotated[SCMOSCameraConfig, Tag("scmos")],
    _kind_or("emccd"),
]


class LocalizationSpaceConfig(_Model):
    """The fast localization-space simulator (no camera): how a localizer would see emitters.

    A blink with ``N`` photons is detected with probability
    ``max_detection_efficiency / (1 + (detection_photons_50 / N) ** 2)``; its position error is
    Gaussian with the Mortensen et al. 2010 precision for the configured PSF, pixel, background
    and camera excess noise, times ``precision_scale``. False positives appear uniformly at
    ``false_positives_per_um2`` per frame.
    """

    max_detection_efficiency: float = Field(0.95, gt=0, le=1)
    detection_photons_50: float = Field(250.0, ge=0)
    false_positives_per_um2: float = Field(0.005, ge=0, le=10)
    precision_scale: float = Field(1.0, gt=0, le=10)


class SimulationConfig(_Model):
    """A simulated SMLM movie: structure, motion, photophysics, optics and camera."""

    seed: int = Field(0, ge=0)
    n_frames: int = Field(1000, ge=1, le=10_000_000)
    frame_interval_s: float = Field(0.01, gt=0, le=100)
    margin_nm: float = Field(
        1500.0, ge=0, le=100_000, description="structures also fill this margin around the FOV"
    )
    structure: StructureConfig = FilamentsConfig()
    motion: MotionConfig = MotionConfig()
    photophysics: PhotophysicsConfig = PhotophysicsConfig()
    optics: OpticsConfig = OpticsConfig()
    camera: CameraConfig = EMCCDCameraConfig()
    localization_space: LocalizationSpaceConfig = LocalizationSpaceConfig()


class GridConfig(_Model):
    """The reconstruction grid: bins in nm (independent of the camera pixel) and time windows."""

    bin_nm: float = Field(40.0, ge=2, le=500)
    window_frames: int = Field(10, ge=1, le=10_000, description="raw frames summed per map (W)")
    supersample: int = Field(
        4, ge=1, le=16, description="sub-bins per bin edge when rendering width-true GT"
    )


# --------------------------------------------------------------------------------- localizer
class ClassicLocalizerConfig(_Model):
    """Classic localizer: difference-of-Gaussians band-pass, local maxima, Gaussian LSQ fit.

    Needs no training. A pixel is a candidate when its band-passed value exceeds
    ``threshold_snr`` times the robust (MAD) noise of the band-passed frame; each candidate is
    fitted with a pixel-integrated Gaussian of the camera's PSF width (or a free width).
    """

    kind: Literal["classic"] = "classic"
    threshold_snr: float = Field(5.0, gt=0, le=100)
    roi_radius_px: int = Field(3, ge=2, le=10, description="fit window is 2r+1 pixels wide")
    fit_iterations: int = Field(15, ge=1, le=200)
    fit_sigma: bool = Field(False, description="fit the PSF width too (else fixed)")
    batch_frames: int = Field(64, ge=1, le=100_000)


class CNNLocalizerConfig(_Model):
    """CNN localizer (DECODE-style per-pixel outputs) loaded from a shipped or trained checkpoint.

    ``weights`` is a name in ``dblink_live/weights`` (without ``.pt``) or a path to a checkpoint
    written by ``dblink-live train-localizer``.
    """

    kind: Literal["cnn"] = "cnn"
    weights: str = Field("localizer", min_length=1)
    detection_threshold: float = Field(0.5, gt=0, lt=1)
    reference_snr: float = Field(
        10.0, gt=0, le=1000, description="yield check: bright spots are maxima above this SNR"
    )
    probe_spots: int = Field(
        50, ge=1, description="yield check: bright spots to see before judging the CNN's yield"
    )
    min_recall: float = Field(
        0.7, ge=0, le=1, description="yield check: warn (auto: fall back) below this recall"
    )
    batch_frames: int = Field(
        16, ge=1, le=100_000, description="frames per forward pass (16 was fastest on 2 CPU cores)"
    )


class AutoLocalizerConfig(_Model):
    """The CNN, checked against a count of bright spots, with the classic localizer as fallback.

    While the first frames are localized, the CNN's detections are compared with the bright
    spots a simple detector finds (local maxima of the band-passed frame above
    ``reference_snr`` times its robust noise). Once ``probe_spots`` such spots have been seen,
    if the CNN found fewer than ``min_recall`` of them, the classic localizer takes over (and
    says so); ``kind: cnn`` runs the same check and only warns.
    """

    kind: Literal["auto"] = "auto"
    cnn: CNNLocalizerConfig = CNNLocalizerConfig()
    classic: ClassicLocalizerConfig = ClassicLocalizerConfig()


LocalizerConfig = Annotated[
    Annotated[CNNLocalizerConfig, Tag("cnn")]
    | Annotated[ClassicLocalizerConfig, Tag("classic")]
    | Annotated[AutoLocalizerConfig, Tag("auto")],
    _kind_or("cnn"),
]


class LocalizerTrainingConfig(_Model):
    """Training of the CNN localizer on simulated frames generated on the fly.

    Every sample draws its pixel size, PSF width and astigmatism, out-of-focus emitters, emitter
    density, brightness, background (uniform or structured) and camera (EMCCD or sCMOS, with
    gain, offset and read noise drawn over the ranges below; sCMOS with per-pixel maps) from
    these ranges, so that one checkpoint serves the cameras people have. ``input_norm``
    ``robust`` (the default) feeds the network frames normalized by their own background and
    noise (see :mod:`dblink_live.localize.normalize`), so detection does not depend on the
    calibration the user gives; ``calibrated`` is the older photons / 100 input.
    Ranges drawn log-uniformly: density, photons, background, gains and e-/ADU.
    """

    steps: int = Field(20_000, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=1, le=4096)
    patch_px: int = Field(40, ge=16, le=512)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    lr_decay_start: int | None = Field(
        None,
        ge=0,
        description="from this step on, the learning rate falls linearly to a tenth at `steps` "
        "(the plateau scheduler then stops); None: plateau scheduling only",
    )
    channels: int = Field(24, ge=4, le=256, description="base width of the network")
    seed: int = Field(0, ge=0)
    pixel_size_nm: PosRange = (100.0, 160.0)
    psf_sigma_nm: PosRange = (90.0, 160.0)
    density_per_um2: PosRange = (0.05, 2.5)
    photons_mean: PosRange = (500.0, 6000.0)
    background_photons: NonNegRange = (10.0, 150.0)
    on_time_frames: PosRange = (1.0, 3.0)
    cameras: list[Literal["emccd", "scmos"]] = Field(["emccd", "scmos"], min_length=1)
    min_photons: float = Field(
        100.0, ge=0, description="emitters with fewer photons in a frame are not targets"
    )
    min_snr: float = Field(
        0.0,
        ge=0,
        description="emitters below this matched-filter SNR are not targets (robust input only)",
    )
    input_norm: Literal["robust", "calibrated"] = "robust"
    astigmatism: NonNegRange = Field(
        (0.0, 0.0), description="relative x/y PSF width difference, drawn per sample (0.2: +-20 %)"
    )
    out_of_focus_fraction: NonNegRange = Field(
        (0.0, 0.0), description="fraction of emitters defocused (PSF 1.6-3.5x wider; not targets)"
    )
    smooth_background_probability: float = Field(0.3, ge=0, le=1)
    background_variation: NonNegRange = (0.0, 0.5)
    emccd_em_gain: PosRange = (100.0, 300.0)
    emccd_e_per_adu: PosRange = (45.0, 45.0)
    emccd_read_noise_e: NonNegRange = (74.4, 74.4)
    scmos_e_per_adu: PosRange = (0.5, 0.5)
    scmos_read_noise_e: NonNegRange = (1.6, 1.6)
    baseline_adu: NonNegRange = (100.0, 100.0)
    validate_every: int = Field(500, ge=1)
    validation_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(500, ge=1)


# ---------------------------------------------------------------------------- reconstruction
class ReconModelConfig(_Model):
    """ConvBiLSTM architecture (built with ``ConvBiLSTM(**cfg.model_dump())``).

    Presets: ``light`` (the default: hidden 8, 3x3 kernels, head 16-32-32-1, ~54 k parameters,
    fast enough for a live CPU demo) and ``dblink_paper`` (2 layers, hidden 4, 5x5 kernels, head
    8-128-256-64-1, ~1.27 M parameters: the published model). A preset fills the fields it names;
    ``custom`` takes the fields as given.
    """

    preset: Literal["light", "dblink_paper", "custom"] = "light"
    hidden_channels: int = Field(8, ge=1, le=256)
    layers: int = Field(2, ge=1, le=8)
    kernel_size: int = Field(3, ge=1, le=9)
    head_channels: list[int] = Field([16, 32, 32], min_length=1, max_length=8)
    head_kernel_size: int = Field(3, ge=1, le=9)
    confidence: bool = Field(True, description="second head: probability the output is right")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "light")
        values = _RECON_PRESETS.get(preset)
        if values is None:
            return data
        for key, fixed in values.items():
            given = data.get(key, fixed)
            if isinstance(fixed, list):
                given = list(given)
            if given != fixed:
                raise ValueError(
                    f"preset {preset!r} fixes {key} = {fixed}; set preset: custom to change it"
                )
        return {**data, **values}

    @model_validator(mode="after")
    def _odd(self) -> ReconModelConfig:
        if self.kernel_size % 2 == 0 or self.head_kernel_size % 2 == 0:
            raise ValueError("kernel sizes must be odd")
        return self


_RECON_PRESETS: dict[str, dict[str, Any]] = {
    "light": {
        "hidden_channels": 8,
        "layers": 2,
        "kernel_size": 3,
        "head_channels": [16, 32, 32],
        "head_kernel_size": 3,
    },
    "dblink_paper": {
        "hidden_channels": 4,
        "layers": 2,
        "kernel_size": 5,
        "head_channels": [128, 256, 64],
        "head_kernel_size": 5,
    },
}


class ReconTrainingConfig(_Model):
    """Training of the ConvBiLSTM on simulations generated on the fly.

    Data (``train_data``, ``validation_data``): localization-space sequences (fast, the bulk of
    training) or camera + localizer sequences (raw frames localized as in use: validation and
    fine-tuning); see ``dblink_live.recon.data``.

    Loss: BCE (``pos_weight``) against the thin ground-truth skeleton + ``temporal_weight`` x
    L1 between consecutive outputs + ``tv_weight`` x total variation + ``confidence_weight`` x
    BCE of the confidence head against "the thresholded output is right here (1-bin tolerance
    for predicted structure)".
    """

    steps: int = Field(6000, ge=1, le=10_000_000)
    target: Literal["skeleton", "structure"] = Field(
        "skeleton",
        description="ground truth to learn: the thin skeleton (filaments) or the width-true "
        "structure, covered > 50 % (wide objects such as mitochondria)",
    )
    loss: Literal["bce", "mse"] = Field(
        "bce", description="bce (with pos_weight; better on thin structures) or mse (the paper's)"
    )
    batch_size: int = Field(4, ge=1, le=1024)
    tile_bins: int = Field(64, ge=16, le=1024)
    sequence_maps: int = Field(16, ge=2, le=1024)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    betas: tuple[float, float] = (0.99, 0.999)
    pos_weight: float = Field(3.0, gt=0, le=1000)
    temporal_weight: float = Field(0.01, ge=0)
    tv_weight: float = Field(0.0, ge=0)
    confidence_weight: float = Field(0.2, ge=0)
    density_per_um2: PosRange = (0.2, 1.0)
    window_frames: tuple[int, int] = Field((10, 10), description="W drawn per sequence (low, high)")
    background_fraction: NonNegRange = Field(
        (0.0, 0.0),
        description="locspace: fraction of all localizations that are background, drawn per "
        "sequence (uniform over the tile, or clustered like out-of-focus emitters)",
    )
    background_probability: float = Field(
        1.0,
        ge=0,
        le=1,
        description="locspace: share of sequences given background localizations (drawn from "
        "background_fraction); the others are clean, so a model learns both",
    )
    clustered_background_probability: float = Field(
        0.0, ge=0, le=1, description="locspace: share of sequences whose background is clustered"
    )
    precision_scale: PosRange = Field(
        (1.0, 1.0),
        description="locspace: factor on the Mortensen precision, drawn log-uniformly per sequence",
    )
    seed: int = Field(0, ge=0)
    validate_every: int = Field(250, ge=1)
    validation_sequences: int = Field(16, ge=1)
    plateau_patience: int = Field(3, ge=1)
    early_stopping_patience: int = Field(8, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    train_data: Literal["locspace", "camera"] = Field(
        "locspace",
        description="training sequences: locspace (fast localization-space simulation, for bulk "
        "training) or camera (raw frames simulated with the simulation section's PSF, blinking "
        "and camera noise, localized by the localizer section's localizer: for fine-tuning)",
    )
    validation_data: Literal["locspace", "camera", "both"] = Field(
        "locspace",
        description="validation sequences: locspace, camera (camera + localizer, as in use) or "
        "both (same seeds; the camera loss selects the best weights and drives the learning "
        "rate and early stopping, the locspace loss is reported beside it)",
    )


class LiveConfig(_Model):
    """Live acquisition and streaming (``live``, ``replay``, ``demo``); command-line options
    override these."""

    frames: int = Field(1000, ge=1, description="frames to acquire")
    interval_s: float = Field(0.0, ge=0, description="time between frames (0: camera speed)")
    exposure_ms: float | None = Field(None, gt=0, description="camera exposure, when set")
    roi: tuple[int, int, int, int] | None = Field(
        None, description="camera region of interest: x, y, width, height (pixels)"
    )
    keep_in_micromanager: bool = Field(
        True, description="let Micro-Manager store each frame too (off: our recording only)"
    )
    micromanager_config: str | None = Field(None, description="hardware config (.cfg), headless")
    adapter_path: str | None = Field(None, description="Micro-Manager device adapter folder")
    delay_maps: int = Field(
        4,
        ge=0,
        le=1000,
        description="trailing delay D (maps); 4 keeps 99 % of the full-context Jaccard "
        "(scripts/bench_delay.py)",
    )
    ring_seconds: float = Field(4.0, gt=0, le=3600, description="ring buffer length (s of frames)")
    latency_budget_s: float | None = Field(
        None,
        gt=0,
        description="how far the live path may fall behind the camera before it skips whole "
        "maps to catch up (None: the look-ahead, D x W frames, plus 0.5 s); the recorder "
        "still writes every frame and `reprocess` fills the skipped maps in",
    )
    queue_blocks: int = Field(8, ge=1, le=10_000, description="localized blocks buffered")
    recon_worker: Literal["auto", "thread", "process"] = Field(
        "auto",
        description="where the streaming reconstruction runs: a child process (auto on CPU: "
        "it then does not compete with the acquisition threads for the GIL) or a thread",
    )
    recon_roi: tuple[int, int, int, int] | Literal["auto", "full"] = Field(
        "auto",
        description="camera region reconstructed live: x, y, width, height (pixels), 'full', "
        "or 'auto' (the full frame where the device reconstructs it at the camera's rate, "
        "else a centred region that it does, said at start-up); the full frame is always "
        "recorded and localized, and `reprocess` reconstructs all of it",
    )

    @model_validator(mode="after")
    def _check(self) -> LiveConfig:
        v = self.recon_roi
        if isinstance(v, tuple) and (v[0] < 0 or v[1] < 0 or v[2] < 1 or v[3] < 1):
            raise ValueError("recon_roi needs x, y >= 0 and width, height >= 1 (pixels)")
        return self


class RunConfig(_Model):
    """Everything one run needs; stored resolved in every output so it describes itself."""

    version: Literal[1] = CONFIG_VERSION
    name: str = Field("default", min_length=1, max_length=200)
    simulation: SimulationConfig = SimulationConfig()
    grid: GridConfig = GridConfig()
    localizer: LocalizerConfig = CNNLocalizerConfig()
    localizer_training: LocalizerTrainingConfig = LocalizerTrainingConfig()
    recon_model: ReconModelConfig = ReconModelConfig()
    recon_training: ReconTrainingConfig = ReconTrainingConfig()
    live: LiveConfig = LiveConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict of the resolved config."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """YAML text of the resolved config (round-trips through :func:`load_config`)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def updated(self, **changes: Any) -> RunConfig:
        """A copy with nested changes, e.g. ``updated(simulation={"n_frames": 10})``, validated."""
        return config_from_dict(_deep_merge(self.to_dict(), changes))


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # a changed tagged-union kind replaces the whole section
            if "kind" in value and value["kind"] != out[key].get("kind"):
                out[key] = value
            else:
                out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------ load / save
def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest existing key), if any."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            continue  # tagged-union tags appear in loc but not in the file
    return line


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a (possibly Annotated / tagged) annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_union_members(arg))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and not found:
        found.extend(_union_members(origin))
    return found


def _walk(loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """Field path without union tags, and the model that holds the last key of ``loc``."""
    model: type[BaseModel] | None = RunConfig
    candidates: list[type[BaseModel]] = [RunConfig]
    path: list[str] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if len(candidates) > 1:  # a tagged union: this part is the tag
            tagged = [m for m in candidates if m.model_fields["kind"].default == part]
            if tagged:
                model, candidates = tagged[0], tagged[:1]
                continue
        model = candidates[0] if candidates else None
        path.append(str(part))
        if last or model is None or part not in model.model_fields:
            break
        candidates = _union_members(model.model_fields[part].annotation)
    return path, model


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    _, model = _walk(loc)
    return sorted(model.model_fields) if model is not None else []


def _format_errors(err: ValidationError, source: str, text: str | None) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(_walk(loc)[0])
        where = source
        if text is not None and (line := _yaml_line(text, loc)) is not None:
            where = f"{source}:{line}"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{where}: unknown key '{key}'{hint}")
        elif e["type"] == "union_tag_invalid":
            tags = e.get("ctx", {}).get("expected_tags", "")
            lines.append(
                f"{where}: {key}.kind: unknown kind {e['input'].get('kind')!r}; use one of {tags}"
            )
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{where}: {key}: {e['msg']}{got_s}")
    return "invalid config: " + "; ".join(lines)


def config_from_dict(
    data: dict[str, Any], source: str = "<dict>", text: str | None = None
) -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig`.

    Raises
    ------
    ConfigError
        naming ``source``, the offending key and, when ``text`` (the YAML) is given, its line.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a config must be a mapping of keys, got {type(data).__name__}"
        )
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, text)) from None


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a YAML run config.

    Parameters
    ----------
    path
        A YAML file such as ``configs/filaments.yaml``. Missing keys take their defaults.

    Raises
    ------
    ConfigError
        if the file is missing, is not valid YAML, has an unknown key or an out-of-range value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not a text (YAML) config file: byte {exc.start} is not UTF-8 text"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if "\x00" in text:
        raise ConfigError(f"{path} is not a text (YAML) config file: it holds NUL bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    return config_from_dict(data, source=str(path), text=text)


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML; returns the path written."""
    path = Path(path)
    path.write_text(config.to_yaml(), encoding="utf-8")
    return path
