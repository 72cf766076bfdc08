"""One live run from start to end, as the live commands (``demo``, ``replay``, ``live``) make it:
:func:`build_pipeline` on a frame source, then :func:`run_session` (in the viewer, or headless
with a status callback) up to the summary of :func:`dblink_live.report.finish_run`.

Nothing heavy is imported here at module level: the command line imports this module without
paying for torch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dblink_live.errors import DblinkError

if TYPE_CHECKING:
    from dblink_live.acquire.base import FrameSource
    from dblink_live.config import RunConfig
    from dblink_live.pipeline import Pipeline
    from dblink_live.pipeline_types import PipelineStatus
    from dblink_live.recon.inference import LoadedModel
    from dblink_live.report import RunReport

__all__ = ["build_pipeline", "display_available", "run_session"]

log = logging.getLogger(__name__)


def display_available() -> bool:
    """Whether a window can be shown (a desktop session, or Qt told to draw offscreen)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def build_pipeline(
    source: FrameSource,
    output: str | Path,
    config: RunConfig,
    *,
    recon: LoadedModel | str | Path | None = "auto",
    delay_maps: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> Pipeline:
    """The live :class:`~dblink_live.pipeline.Pipeline` of a run, not started.

    Parameters
    ----------
    source
        Where the frames come from (Micro-Manager, MDA, virtual microscope, replay).
    output
        The new recording (``*.zarr``).
    config
        The run config, with the command line's choices (localizer, live region) applied.
    recon
        Reconstruction model: a loaded one, a shipped name or ``.pt``, ``"auto"`` (by the
        config's structure), or None / ``"none"`` to record and localize only.
    delay_maps
        Trailing delay D in maps (default: ``config.live.delay_maps``).
    device
        ``auto``, ``cpu`` or ``cuda[:N]``.
    overwrite
        Replace an existing recording.
    """
    from dblink_live.pipeline import Pipeline

    return Pipeline(
        source,
        output,
        config=config,
        recon=recon,
        delay_maps=delay_maps,
        device=device,
        overwrite=overwrite,
    )


def run_session(
    pipeline: Pipeline,
    headless: bool,
    on_status: Callable[[PipelineStatus], None] | None = None,
) -> RunReport:
    """Run a pipeline to the end, then write its summary (:func:`dblink_live.report.finish_run`).

    In the viewer, or headless (asked for, or no display found: said in the log) with
    ``on_status`` called with each live status (None: nothing is said).

    Raises
    ------
    DblinkError
        when the viewer cannot start, or the run failed (see ``finish_run``).
    """
    from dblink_live.report import finish_run

    if not headless and not display_available():
        log.warning("no display found: running headless (the summary PNG shows the result)")
        headless = True
    if headless:
        status = pipeline.run(on_status=on_status)
    else:
        try:
            from dblink_live.display import run_viewer
        except ImportError as exc:
            raise DblinkError(f"the viewer cannot start ({exc}); use --headless") from None
        run_viewer(pipeline=pipeline, start=True)  # the window opens at once, then starts it
        pipeline.stop()
        status = pipeline.wait()
    return finish_run(pipeline, status)
