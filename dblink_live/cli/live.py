"""The live commands: ``demo`` (the virtual microscope), ``replay`` (a recording streamed
again), ``live`` (a Micro-Manager camera) and ``view`` (browse a recording).

The run itself (pipeline, viewer or headless status, summary) is
:mod:`dblink_live.live.session`; these commands parse the options, make the frame source and
print.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dblink_live.cli.common import (
    PROGRESS_LINE_S,
    _four_ints,
    _load,
    _with_localizer,
    _with_recon_roi,
    console,
    log,
    out,
)
from dblink_live.cli.options import (
    CameraOptions,
    ConfigOpt,
    FramesOpt,
    LiveOptions,
    RecordingOut,
    option_groups,
)
from dblink_live.errors import DblinkError
from dblink_live.io.outputs import check_writable

if TYPE_CHECKING:
    from dblink_live.acquire.base import FrameSource
    from dblink_live.config import RunConfig
    from dblink_live.pipeline_types import PipelineStatus


def _status_printer(every_s: float | None = None) -> Callable[[PipelineStatus], None]:
    """A live-status callback: a status line every second on a terminal (every
    :data:`PROGRESS_LINE_S` in a log file, and whenever the state changes), and each warning
    once, when it first appears or
    its text changes (the numbers in it are not a change)."""
    if every_s is None:
        every_s = 1.0 if console.is_terminal else PROGRESS_LINE_S
    last: list = [float("-inf"), None]  # time of the last line, state then
    said: set[str] = set()

    def show(st: PipelineStatus) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or st.state is not last[1]:  # and when the state changes
            last[0], last[1] = now, st.state
            console.print(st.line(), highlight=False)
        for w in st.warnings:
            kind = re.sub(r"[0-9][0-9.,%]*", "#", w)
            if kind not in said:
                said.add(kind)
                console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)

    return show


def _live_config(cfg: RunConfig, run: LiveOptions) -> RunConfig:
    """The config with the live options --localizer and --recon-roi applied."""
    return _with_recon_roi(_with_localizer(cfg, run.localizer), run.recon_roi)


def _run_live(source: FrameSource, output: Path, cfg: RunConfig, run: LiveOptions) -> None:
    """Run a live pipeline on ``source`` to the end (viewer or headless status), then print
    its summary (:func:`dblink_live.live.session.run_session`)."""
    from dblink_live.live.session import build_pipeline, run_session

    pipe = build_pipeline(
        source,
        output,
        cfg,
        recon=run.weights,
        delay_maps=run.delay_maps,
        device=run.device,
        overwrite=run.overwrite,
    )
    report = run_session(pipe, run.headless, None if run.quiet else _status_printer())
    out.print(report.describe())


def _micromanager_paths(adapter_path: Path, mm_config: Path) -> tuple[Path, Path]:
    """Absolute adapter folder and config file; a relative config is looked for in the
    current folder (then in the adapter folder, as Micro-Manager itself would, said)."""
    adapter_path = adapter_path.expanduser().absolute()
    if not adapter_path.is_dir():
        raise DblinkError(f"--adapter-path {adapter_path} is not a folder of device adapters")
    given = mm_config.expanduser()
    found = given.absolute()
    if not found.is_file() and not given.is_absolute() and (adapter_path / given).is_file():
        found = adapter_path / given
        log.info("Micro-Manager config %s taken from the adapter folder: %s", given, found)
    if not found.is_file():
        where = [str(Path.cwd())]
        if not given.is_absolute() and adapter_path != Path.cwd():
            where.append(str(adapter_path))
        raise DblinkError(
            f"Micro-Manager config file not found: {given} (looked in {' and '.join(where)})"
        )
    return adapter_path, found


@option_groups(run=LiveOptions)
def demo(
    output: RecordingOut = Path("demo.zarr"),
    frames: FramesOpt = None,
    fps: Annotated[float, typer.Option(min=0.1, help="Camera frame rate (Hz).")] = 100.0,
    config: ConfigOpt = None,
    seed: Annotated[int | None, typer.Option(help="Simulation seed (default: config).")] = None,
    *,
    run: LiveOptions,
) -> None:
    """Live DBlink on the virtual microscope: a simulated moving sample seen by a Micro-Manager
    camera device (pymmcore-plus), acquired through the same pycromanager hook as a real one.

    Writes the recording (raw, localizations, reconstruction, confidence, ground truth); with
    --headless also OUT_summary.png and OUT_summary.json with scores against the ground truth.
    """
    from dblink_live.acquire.virtual import VirtualMicroscopeSource

    cfg = _live_config(_load(config), run)
    if output.exists() and not run.overwrite:
        raise DblinkError(f"{output} already exists; pass --overwrite or choose another -o")
    check_writable(output)
    src = VirtualMicroscopeSource(
        cfg, n_frames=frames or cfg.live.frames, frame_rate_hz=fps, seed=seed
    )
    _run_live(src, output, src.config, run)  # as dblink_live.pipeline.demo_pipeline does


@option_groups(run=LiveOptions)
def replay(
    input_path: Annotated[Path, typer.Argument(help="A recording (*.zarr) to stream.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="New recording (default IN_replay.zarr).")
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0, help="Playback speed (2 = twice as fast; 0 = unpaced).")
    ] = 1.0,
    config: ConfigOpt = None,
    *,
    run: LiveOptions,
) -> None:
    """Stream a recording through the live pipeline at its recorded rate (or --speed x)."""
    from dblink_live.acquire.replay import ReplaySource
    from dblink_live.config import config_from_dict
    from dblink_live.io.recording import Recording

    src = ReplaySource(input_path, speed=speed)
    if config is not None:
        cfg = _load(config)
    else:
        stored = Recording.open(input_path).config
        cfg = config_from_dict(stored) if stored else _load(None)
    cfg = _live_config(cfg, run)
    base = input_path.with_suffix("")
    output = output or base.with_name(base.name + "_replay.zarr")
    check_writable(output)
    _run_live(src, output, cfg, run)


@option_groups(camera=CameraOptions, run=LiveOptions)
def live(
    output: RecordingOut = Path("live.zarr"),
    frames: FramesOpt = None,
    interval_s: Annotated[
        float | None,
        typer.Option(min=0, help="Time between frames (default 0: as fast as the camera runs)."),
    ] = None,
    exposure_ms: Annotated[float | None, typer.Option(min=0, help="Camera exposure.")] = None,
    roi: Annotated[
        str | None, typer.Option(help="Camera ROI as x,y,width,height (pixels).")
    ] = None,
    mm_config: Annotated[
        Path | None,
        typer.Option(help="Micro-Manager hardware config (.cfg); headless Python backend."),
    ] = None,
    adapter_path: Annotated[
        Path | None, typer.Option(help="Folder of the Micro-Manager device adapters.")
    ] = None,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect", help="Use a running Micro-Manager (Java backend, ZMQ server on)."
        ),
    ] = False,
    mda: Annotated[
        Path | None,
        typer.Option(
            help="A useq MDA sequence (.yaml/.json, a time series) run by pymmcore-plus on a "
            "headless core instead of pycromanager; it sets the frames and interval."
        ),
    ] = None,
    keep_in_micromanager: Annotated[
        bool | None,
        typer.Option(help="Also let Micro-Manager store each frame (default on)."),
    ] = None,
    *,
    camera: CameraOptions,
    config: ConfigOpt = None,
    run: LiveOptions,
) -> None:
    """Live DBlink on a Micro-Manager camera through pycromanager (or pymmcore-plus: --mda).

    Headless: --mm-config and --adapter-path start Micro-Manager's core in this process;
    --connect uses a running Micro-Manager instead; --mda SEQ.yaml runs a useq MDA sequence
    with pymmcore-plus on that headless core. Give the camera calibration (offset, e-/ADU,
    EM gain, QE) so photon counts are right. Every option can also come from the config's
    `live` section (the command line wins).
    """
    from dblink_live.acquire.micromanager import MicroManagerSource

    cfg = _live_config(_load(config), run)
    lc = cfg.live
    mm_config = mm_config or (Path(lc.micromanager_config) if lc.micromanager_config else None)
    adapter_path = adapter_path or (Path(lc.adapter_path) if lc.adapter_path else None)
    if not connect and not (mm_config and adapter_path):
        raise DblinkError(
            "give --mm-config and --adapter-path (headless Micro-Manager) or --connect"
        )
    if not connect:
        assert mm_config is not None and adapter_path is not None
        adapter_path, mm_config = _micromanager_paths(adapter_path, mm_config)
    check_writable(output)
    roi_t = lc.roi
    if roi:
        parts = _four_ints(roi)
        if parts is None:
            raise DblinkError(f"--roi must be x,y,width,height in pixels, got {roi!r}")
        roi_t = parts
    pixel_size_nm, calibration = camera.pixel_size_nm, camera.calibration()
    src: Any
    if mda is not None:
        from dblink_live.acquire.mda import MDASource, load_sequence

        if connect:
            raise DblinkError("--mda runs its own headless core: it does not take --connect")
        if frames is not None or interval_s is not None:
            raise DblinkError("--mda: the sequence's time_plan sets the frames and interval")
        src = MDASource(
            load_sequence(mda),
            adapter_path=str(adapter_path),
            config_file=str(mm_config),
            pixel_size_nm=pixel_size_nm,
            camera=calibration,
            roi=roi_t,
            exposure_ms=exposure_ms or lc.exposure_ms,
        )
    else:
        src = MicroManagerSource(
            n_frames=frames or lc.frames,
            interval_s=lc.interval_s if interval_s is None else interval_s,
            exposure_ms=exposure_ms or lc.exposure_ms,
            adapter_path=str(adapter_path) if adapter_path else None,
            config_file=str(mm_config) if mm_config else None,
            headless=not connect,
            keep_in_micromanager=(
                lc.keep_in_micromanager if keep_in_micromanager is None else keep_in_micromanager
            ),
            pixel_size_nm=pixel_size_nm,
            camera=calibration,
            roi=roi_t,
        )
    _run_live(src, output, cfg, run)


def view(
    input_path: Annotated[Path, typer.Argument(help="A recording (*.zarr) to browse.")],
) -> None:
    """Open a recording in the viewer (raw frames, localizations, reconstruction, confidence)."""
    from dblink_live.io.recording import Recording
    from dblink_live.live.session import display_available

    Recording.open(input_path)  # a clear error for a path that is not a recording
    if not display_available():
        raise DblinkError(
            "no display is available (no DISPLAY or WAYLAND_DISPLAY): run `view` on a desktop "
            "session or over ssh -X, or use `info` / `evaluate` here; live runs take --headless"
        )
    try:
        from dblink_live.display import run_viewer
    except ImportError as exc:
        raise DblinkError(f"the viewer cannot start ({exc})") from None
    raise typer.Exit(run_viewer(recording=input_path))
