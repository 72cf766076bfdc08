"""The command-line options that several commands share.

Single options are ``Annotated`` types (one line in a command's signature); options that
always travel together are option groups: a frozen dataclass whose fields are the options,
handed to the command as one object by :func:`option_groups`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML run config (e.g. configs/filaments.yaml); options given here override it.",
        exists=False,
        dir_okay=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present, else CPU), cpu or cuda[:N].")
]

# training
OutputPt = Annotated[
    Path, typer.Option("--output", "-o", help="Checkpoint to write (.pt); a .yaml beside it.")
]
StepsOpt = Annotated[int | None, typer.Option(min=1, help="Training steps (default: config).")]
ResumeOpt = Annotated[
    Path | None, typer.Option(help="Continue from this checkpoint (same config).")
]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads for torch.")]

# localization
LocalizerOpt = Annotated[
    str | None,
    typer.Option(
        "--localizer",
        help="cnn (default, shipped weights; warns when it misses bright spots), auto (the CNN, "
        "falling back to classic when it misses them) or classic (no training).",
    ),
]
CnnWeightsOpt = Annotated[str | None, typer.Option(help="CNN checkpoint: shipped name or path.")]
PixelOpt = Annotated[
    float | None,
    typer.Option(
        "--pixel-size-nm", min=1, help="Camera pixel size, for inputs that lack it (TIFF)."
    ),
]
BaselineOpt = Annotated[float | None, typer.Option("--baseline-adu", help="Camera offset (ADU).")]
EPerAduOpt = Annotated[float | None, typer.Option("--e-per-adu", help="Electrons per ADU.")]
GainOpt = Annotated[float | None, typer.Option("--em-gain", help="EM gain (1 for sCMOS/CCD).")]
QeOpt = Annotated[float | None, typer.Option("--qe", help="Quantum efficiency (0-1).")]
SigmaOpt = Annotated[float | None, typer.Option("--psf-sigma-nm", help="PSF sigma (classic fit).")]

# offline reconstruction
StrideOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Output every S raw frames (S divides W; default W)."),
]
WindowOpt = Annotated[
    int | None, typer.Option(min=1, help="Frames per map W (default: the model's).")
]

# live runs
RecordingOut = Annotated[Path, typer.Option("--output", "-o", help="Recording to write.")]
FramesOpt = Annotated[
    int | None, typer.Option("--frames", "-n", min=1, help="Frames to acquire (default 1000).")
]
HeadlessOpt = Annotated[
    bool,
    typer.Option(
        "--headless", help="No viewer: print the live status, write a summary PNG and JSON."
    ),
]
DelayOpt = Annotated[
    int | None,
    typer.Option(
        "--delay-maps",
        min=0,
        help="Trailing delay D: maps of look-ahead before a reconstruction is shown "
        "(default: config live.delay_maps, 4).",
    ),
]
ReconWeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="Reconstruction model (shipped name or .pt); auto: by structure; none: record and "
        "localize only.",
    ),
]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing output recording.")]
ReconRoiOpt = Annotated[
    str | None,
    typer.Option(
        "--recon-roi",
        help="Camera region reconstructed live: x,y,width,height (pixels), full, or auto "
        "(default: the full frame if the device keeps up, else a centred region that does). "
        "Every frame is recorded and localized in full.",
    ),
]


@dataclass(frozen=True)
class CameraOptions:
    """The camera calibration options (``localize``, ``evaluate-localizer``, ``live``)."""

    pixel_size_nm: PixelOpt = None
    baseline_adu: BaselineOpt = None
    e_per_adu: EPerAduOpt = None
    em_gain: GainOpt = None
    qe: QeOpt = None

    def as_kwargs(self) -> dict[str, Any]:
        """All five as keyword arguments (None: not given)."""
        return {
            "pixel_size_nm": self.pixel_size_nm,
            "baseline_adu": self.baseline_adu,
            "e_per_adu": self.e_per_adu,
            "em_gain": self.em_gain,
            "qe": self.qe,
        }

    def calibration(self) -> dict[str, float]:
        """The given counts-to-photons calibration (offset ADU, e-/ADU, EM gain, QE 0-1)."""
        given = self.as_kwargs()
        del given["pixel_size_nm"]
        return {k: v for k, v in given.items() if v is not None}


@dataclass(frozen=True)
class LiveOptions:
    """The options every live run takes (``demo``, ``replay``, ``live``)."""

    localizer: LocalizerOpt = None
    weights: ReconWeightsOpt = "auto"
    delay_maps: DelayOpt = None
    recon_roi: ReconRoiOpt = None
    device: DeviceOpt = "auto"
    headless: HeadlessOpt = False
    overwrite: OverwriteOpt = False
    quiet: QuietOpt = False


def option_groups(**groups: type) -> Callable[[F], F]:
    """Decorator for a command: each parameter named in ``groups`` (keyword-only, typed as its
    group) stands on the command line for the fields of that group's dataclass, at that place
    in the options and the help, and the command receives them as one instance.

    >>> @option_groups(run=LiveOptions)
    ... def demo(fps: float = 100.0, *, run: LiveOptions) -> None: ...
    """

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        if unknown := set(groups) - set(signature.parameters):
            raise TypeError(f"{command.__name__} has no parameter {', '.join(sorted(unknown))}")
        params: list[inspect.Parameter] = []
        fields: dict[str, list[str]] = {}
        for p in signature.parameters.values():
            if p.name not in groups:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            members = inspect.signature(groups[p.name], eval_str=True).parameters.values()
            fields[p.name] = [q.name for q in members]
            params += [q.replace(kind=inspect.Parameter.KEYWORD_ONLY) for q in members]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            for name, group in groups.items():
                kwargs[name] = group(**{k: kwargs.pop(k) for k in fields[name]})
            return command(**kwargs)

        # what typer reads: the group fields in place of the group (a name twice raises here)
        run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return cast(F, run)

    return decorate
