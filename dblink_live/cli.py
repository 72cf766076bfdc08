"""The ``dblink-live`` command line: one command per workflow, each a thin layer over a function.

Errors in the user's input (a bad config, a foreign store...) are printed as one line and exit
with status 2; every long command shows a progress bar and ends with a one-line summary.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dblink_live import __version__
from dblink_live.errors import DblinkError, RecordingError

__all__ = ["app", "main"]

app = typer.Typer(
    name="dblink-live",
    help="Live and offline DBlink super-resolved video reconstruction for SMLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
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


def _version(value: bool) -> None:
    if value:
        out.print(f"dblink-live {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )


@contextmanager
def _progress(description: str, quiet: bool = False):  # type: ignore[no-untyped-def]
    """A rich progress bar; yields ``update(done, total, stage)``."""
    if quiet:
        yield lambda done, total, stage=None: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, stage: str | None = None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    from dblink_live.config import RunConfig, load_config

    return load_config(config) if config is not None else RunConfig()


@app.command()
def simulate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Recording to write (*.zarr).")
    ] = Path("sim.zarr"),
    config: ConfigOpt = None,
    frames: Annotated[
        int | None,
        typer.Option("--frames", "-n", min=1, help="Number of frames (default: config)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random seed (default: config).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing recording.")] = False,
    chunk_frames: Annotated[
        int, typer.Option(min=1, max=4096, help="Frames per block and per raw chunk.")
    ] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Simulate an SMLM movie with ground truth and write it as a recording.

    Writes raw camera frames (uint16), the true emitters of every frame, and the true structure
    on the reconstruction grid (thin skeleton and width-true) once per map of W frames.
    """
    from dblink_live.sim.record import simulate_recording

    cfg = _load(config)
    if output.exists() and not overwrite:
        raise RecordingError(f"{output} already exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    with _progress("simulate", quiet) as update:
        rec = simulate_recording(
            cfg,
            output,
            n_frames=frames,
            seed=seed,
            chunk_frames=chunk_frames,
            overwrite=overwrite,
            progress=update,
        )
    s = rec.summary()
    h, w = s["frame_shape_px"]
    area = h * w * (s["pixel_size_nm"] / 1e3) ** 2
    dens = (s["gt_emitters"] or 0) / max(s["frames"], 1) / area
    maps = s["images"].get("gt/skeleton", {}).get("maps", 0)
    out.print(
        f"wrote {output}: {s['frames']:,} frames {w}x{h} px ({s['pixel_size_nm']:g} nm), "
        f"{s['gt_emitters']:,} true emitters ({dens:.2f}/um^2/frame), {maps} ground-truth maps at "
        f"{cfg.grid.bin_nm:g} nm in {time.perf_counter() - t0:.1f} s"
    )


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A recording (*.zarr).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Summarize a recording: frames, camera, localizations, reconstructions, ground truth."""
    from dblink_live.io.recording import Recording

    s = Recording.open(path).summary()
    if as_json:
        out.print_json(json.dumps(s))
        return
    table = Table(title=str(path), show_header=False, box=None)
    table.add_row(
        "frames", f"{s['frames']:,} x {s['frame_shape_px'][1]}x{s['frame_shape_px'][0]} px"
    )
    table.add_row("pixel size", f"{s['pixel_size_nm']:g} nm")
    table.add_row(
        "frame interval", f"{s['frame_interval_s'] * 1e3:g} ms ({s['duration_s']:.2f} s total)"
    )
    cam = s.get("camera") or {}
    if cam:
        table.add_row("camera", ", ".join(f"{k}={v}" for k, v in cam.items()))
    table.add_row(
        "localizations", f"{s['localizations']:,} ({s['localizations_per_frame']:.2f}/frame)"
    )
    if s["gt_emitters"] is not None:
        table.add_row("true emitters", f"{s['gt_emitters']:,}")
    for name, im in s["images"].items():
        table.add_row(
            name,
            f"{im['maps']} maps {im['shape_yx'][1]}x{im['shape_yx'][0]} at {im['bin_nm']:g} nm, "
            f"W={im['window_frames']}, stride {im['stride_frames']}",
        )
    table.add_row("format", f"v{s['format_version']} (dblink_live {s['package_version']})")
    out.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user-input errors into one line and exit status 2."""
    try:
        app(args=argv, prog_name="dblink-live")  # standalone: usage errors exit with status 2
    except DblinkError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
