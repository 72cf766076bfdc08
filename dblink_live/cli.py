"""The ``dblink-live`` command line: one command per workflow, each a thin layer over a function.

Errors in the user's input (a bad config, a foreign store...) are printed as one line and exit
with status 2; every long command shows a progress bar and ends with a one-line summary.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

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
from dblink_live.errors import WRITE_ERRNOS, ConfigError, DblinkError, RecordingError
from dblink_live.io.outputs import check_writable

__all__ = ["app", "main"]

app = typer.Typer(
    name="dblink-live",
    help="Live and offline DBlink super-resolved video reconstruction for SMLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("dblink_live")
console = Console(stderr=True)
#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_LINE_S = 30.0
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


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


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
def _progress(description: str, quiet: bool = False):
    """A rich progress bar; yields ``update(done, total, stage)``."""
    if quiet:
        yield lambda done, total, stage=None: None
        return
    if not console.is_terminal:  # a log file (nohup, a cluster job): a plain line now and then
        yield _progress_lines(description)
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


def _progress_lines(description: str, every_s: float = PROGRESS_LINE_S) -> Callable[..., None]:
    """``update(done, total, stage)`` printing a line at most every ``every_s`` s, and at the end:
    done/total, rate and the estimated time left."""
    t0 = time.monotonic()
    last = [t0]

    def update(done: int, total: int, stage: str | None = None) -> None:
        now = time.monotonic()
        total = total or 0
        finished = bool(total) and done >= total
        if now - last[0] < every_s and not finished:
            return
        last[0] = now
        rate = done / max(now - t0, 1e-9)
        left = (total - done) / rate if rate > 0 and total else float("nan")
        eta = f", {left / 60:.1f} min left" if not finished and left == left else ""
        pct = f" ({100 * done / total:.0f} %)" if total else ""
        of = f"/{total:,}" if total else ""
        console.print(f"{description}: {done:,}{of}{pct}, {rate:.3g}/s{eta}", highlight=False)

    return update


def _load(config: Path | None):
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
    quiet: QuietOpt = False,
) -> None:
    """Simulate an SMLM movie with ground truth and write it as a recording.

    Writes raw camera frames (uint16), the true emitters of every frame, and the true structure
    on the reconstruction grid (thin skeleton and width-true) once per map of W frames.
    """
    from dblink_live.sim.record import simulate_recording

    cfg = _load(config)
    if output.exists() and not overwrite:
        raise RecordingError(f"{output} already exists; pass --overwrite to replace it")
    check_writable(output)
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
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Read every chunk of raw frames (and the tables and images) from disk; exit 2 "
            "if any is damaged.",
        ),
    ] = False,
) -> None:
    """Summarize a recording: frames, camera, localizations, reconstructions, ground truth.

    Without --verify only the counters and the last chunk are checked (fast); --verify reads
    everything and names the damaged frames.
    """
    from dblink_live.io.recording import Recording, format_ranges

    rec = Recording.open(path)
    s = rec.summary()
    damage = None
    if verify:
        with _progress("verifying", quiet=as_json) as update:
            damage = rec.verify(lambda d, t: update(d, t))
        s["verified"] = damage
    if as_json:
        out.print_json(json.dumps(s))
    else:
        _print_info(path, s)
    if damage is None:
        return
    bad_raw = damage["unreadable_frames"]
    problems = []
    if bad_raw:
        n_bad = sum(b - a for a, b in bad_raw)
        problems.append(f"raw frames {format_ranges(bad_raw)} ({n_bad} frames) are unreadable")
    problems += [f"{name} is unreadable" for name in damage["unreadable_arrays"]]
    if problems:
        raise RecordingError(
            f"{path} is damaged: " + "; ".join(problems) + " (localize and reprocess skip "
            "unreadable frames and give their maps no confidence)"
        )
    if not as_json:
        out.print(f"verified: every chunk of {s['frames']:,} frames and all tables and images read")


def _print_info(path: Path, s: dict[str, Any]) -> None:
    """The ``info`` table."""
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
        table.add_row("camera", ", ".join(f"{k}={v}" for k, v in cam.items() if k != "estimated"))
    est = cam.get("estimated") if isinstance(cam, dict) else None
    if est:
        how = "measured" if est.get("offset_determined") else "assumed"
        table.add_row(
            "camera estimate",
            f"from {est.get('frames')} frames: offset {est.get('baseline_adu', 0):.1f} ADU "
            f"({how}), {est.get('adu_per_electron', 0):.3g} ADU per photoelectron, "
            f"{est.get('camera')} ({est.get('camera_judged')})",
        )
    by = f", {s['localizer']}" if s.get("localizer") else ""
    table.add_row(
        "localizations",
        f"{s['localizations']:,} ({s['localizations_per_frame']:.2f}/localized frame{by})"
        + (
            f"; {s['unlocalized_frames']:,} frames never localized (`reprocess` localizes them)"
            if s.get("unlocalized_frames")
            else ""
        ),
    )
    if s["gt_emitters"] is not None:
        table.add_row("true emitters", f"{s['gt_emitters']:,}")
    for name, im in s["images"].items():
        table.add_row(
            name,
            f"{im['maps']} maps {im['shape_yx'][1]}x{im['shape_yx'][0]} at {im['bin_nm']:g} nm, "
            f"W={im['window_frames']}, stride {im['stride_frames']}"
            + (f", model {im['model']}" if im.get("model") else "")
            + (
                ", region x={}, y={}, {}x{} px of the frame".format(*im["recon_roi_px"])
                if im.get("recon_roi_px")
                else ""
            ),
        )
    live = s.get("live")
    if live:
        lat = (live.get("latency_s") or {}).get("p50")
        table.add_row(
            "live run",
            f"{live['frames_recorded']:,} frames recorded, {live['dropped_frames']} dropped by "
            f"the live path, {live['recorder_lost']} lost by the recorder, delay D="
            f"{live['delay_maps']} maps"
            + (f", latency p50 {lat:.2f} s" if lat is not None else "")
            + (f"; error: {live['error']}" if live.get("error") else ""),
        )
    table.add_row("format", f"v{s['format_version']} (dblink_live {s['package_version']})")
    out.print(table)


@app.command()
def models(
    weights: Annotated[
        list[str] | None,
        typer.Argument(help="Shipped names or .pt files (default: every shipped model)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List models (shipped or your own): what each is for, its grid and W, compute, training."""
    from dblink_live.models import describe_weights, shipped_weights

    rows = [describe_weights(w) for w in weights] if weights else shipped_weights()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="dblink_live models")
    for col in ("name", "for", "grid", "network", "compute", "trained", "validation"):
        table.add_column(col)
    for r in rows:
        if r["kind"] == "reconstruction":
            a = r["architecture"]
            w_rng = r["trained_window_frames"]
            w_txt = f"W={w_rng[0]}" if w_rng[0] == w_rng[1] else f"W={w_rng[0]}..{w_rng[1]}"
            use = f"{r['structure']} ({r['target']})"
            grid = f"{r['bin_nm']:g} nm bins, {w_txt}"
            net = f"{a['preset']} {a['layers']}x{a['hidden_channels']}, head " + "-".join(
                str(c) for c in a["head_channels"]
            )
            compute = f"{r['gmac_per_128px_map']:.2f} GMAC per 128x128 map"
            trained = f"{r['steps']:,} steps on {r['train_data']} data"
            if r.get("fine_tuned_from"):
                trained += f" after {r['fine_tuned_from_step'] or 0:,} of {r['fine_tuned_from']}"
        else:
            use = "molecules in camera frames"
            px = r.get("trained_pixel_size_nm") or []
            grid = f"{px[0]:g}-{px[1]:g} nm pixels" if len(px) == 2 else "-"
            net = "CNN " + ", ".join(f"{k} {v}" for k, v in r["architecture"].items())
            compute = "-"
            trained = f"{r['steps']:,} steps, " + "/".join(r.get("trained_cameras") or [])
        val = r.get("best_validation")
        table.add_row(
            r["name"],
            use,
            grid,
            f"{net}; {r['parameters']:,} parameters, {r['size_bytes'] / 1e3:,.0f} kB",
            compute,
            trained,
            "-" if val is None else f"{val:.4g}",
        )
    out.print(table)


DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present, else CPU), cpu or cuda[:N].")
]


OutputPt = Annotated[
    Path, typer.Option("--output", "-o", help="Checkpoint to write (.pt); a .yaml beside it.")
]
StepsOpt = Annotated[int | None, typer.Option(min=1, help="Training steps (default: config).")]
ResumeOpt = Annotated[
    Path | None, typer.Option(help="Continue from this checkpoint (same config).")
]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads for torch.")]


def _training_config(
    config: Path | None,
    section: str,
    steps: int | None,
    resume: Path | None,
    output: Path,
    write: bool = True,
):
    """Config with ``section.steps`` overridden, checked resume path, config saved beside."""
    from dblink_live.config import save_config

    cfg = _load(config)
    if steps is not None:
        cfg = cfg.updated(**{section: {"steps": steps}})
    if resume is not None and not resume.exists():
        raise RecordingError(f"checkpoint to resume not found: {resume}")
    if write:
        import contextlib

        with contextlib.suppress(OSError):  # a new folder for checkpoints is fine
            output.parent.mkdir(parents=True, exist_ok=True)
        check_writable(output)
        save_config(cfg, output.with_suffix(".yaml"))
    return cfg


@app.command("train-localizer")
def train_localizer_cmd(
    output: OutputPt = Path("localizer.pt"),
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    resume: ResumeOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the CNN localizer on simulated frames generated on the fly.

    Uses the `localizer_training` section of the config (ranges of pixel size, PSF width,
    density, photons, background and camera models). The checkpoint describes itself
    (architecture, training config, version) and is rewritten regularly, so an interrupted run
    continues with --resume.
    """
    from dblink_live.localize.training import train_localizer

    tcfg = _training_config(config, "localizer_training", steps, resume, output).localizer_training
    t0 = time.perf_counter()
    with _progress("train-localizer", quiet) as update:
        path = train_localizer(
            tcfg,
            output,
            device=device,
            resume=resume,
            threads=threads,
            progress=lambda done, total, parts: update(done, total),
        )
    import torch

    metrics = torch.load(path, map_location="cpu", weights_only=False).get("metrics", {})
    out.print(
        f"wrote {path} ({tcfg.steps} steps, validation loss "
        f"{metrics.get('validation_loss', float('nan')):.4f}) in {time.perf_counter() - t0:.0f} s"
    )


LocalizerOpt = Annotated[
    str | None,
    typer.Option(
        "--localizer",
        help="cnn (default, shipped weights; warns when it misses bright spots), auto (the CNN, "
        "falling back to classic when it misses them) or classic (no training).",
    ),
]
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


def _localizer_config(cfg, localizer: str | None, weights: str | None):
    from dblink_live.config import (
        AutoLocalizerConfig,
        ClassicLocalizerConfig,
        CNNLocalizerConfig,
    )

    lcfg = cfg.localizer
    if localizer is not None:
        kinds = {"cnn": CNNLocalizerConfig, "classic": ClassicLocalizerConfig}
        kinds["auto"] = AutoLocalizerConfig
        if localizer not in kinds:
            raise ConfigError(f"--localizer must be cnn, auto or classic, got {localizer!r}")
        if localizer != lcfg.kind:
            if localizer == "auto" and isinstance(lcfg, CNNLocalizerConfig):
                lcfg = AutoLocalizerConfig(cnn=lcfg)
            elif localizer == "cnn" and isinstance(lcfg, AutoLocalizerConfig):
                lcfg = lcfg.cnn
            else:
                lcfg = kinds[localizer]()
    if weights is not None:
        if lcfg.kind == "cnn":
            lcfg = lcfg.model_copy(update={"weights": weights})
        elif lcfg.kind == "auto":
            lcfg = lcfg.model_copy(update={"cnn": lcfg.cnn.model_copy(update={"weights": weights})})
        else:
            raise ConfigError("--weights only applies to --localizer cnn or auto")
    return lcfg


@app.command()
def localize(
    input_path: Annotated[Path, typer.Argument(help="A recording (*.zarr) or a TIFF stack.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write: a table (.csv ThunderSTORM, .h5 DECODE, .hdf5 Picasso) or a new "
            "recording (.zarr). Default: append to the input recording.",
        ),
    ] = None,
    config: ConfigOpt = None,
    localizer: LocalizerOpt = None,
    weights: Annotated[
        str | None, typer.Option(help="CNN checkpoint: shipped name or path.")
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", help="Table format: auto (by suffix), thunderstorm, csv, decode, picasso."
        ),
    ] = "auto",
    device: DeviceOpt = "auto",
    pixel_size_nm: PixelOpt = None,
    baseline_adu: BaselineOpt = None,
    e_per_adu: EPerAduOpt = None,
    em_gain: GainOpt = None,
    qe: QeOpt = None,
    psf_sigma_nm: SigmaOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing localizations/output.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Localize single molecules in every frame (CNN or classic Gaussian fitting).

    Camera counts are turned into photons with the recording's camera metadata; for a TIFF give
    the pixel size and calibration (--baseline-adu, --e-per-adu, --em-gain, --qe).
    """
    from dblink_live.localize.run import localize as run_localize

    cfg = _load(config)
    lcfg = _localizer_config(cfg, localizer, weights)
    with _progress("localize", quiet) as update:
        res = run_localize(
            input_path,
            config=lcfg,
            output=output,
            output_format=output_format,
            device=device,
            pixel_size_nm=pixel_size_nm,
            overwrite=overwrite,
            progress=update,
            baseline_adu=baseline_adu,
            e_per_adu=e_per_adu,
            em_gain=em_gain,
            qe=qe,
            psf_sigma_nm=psf_sigma_nm,
        )
    used = res.localizer.get("name", lcfg.kind)
    check = res.localizer.get("yield_check") or {}
    if check.get("bright_spot_recall") is not None:
        out.print(
            f"yield check: the CNN found {check['found_by_cnn']} of {check['bright_spots']} bright "
            f"spots ({100 * check['bright_spot_recall']:.0f} %) in {check['frames_probed']} frames"
        )
    out.print(
        f"wrote {res.localizations:,} localizations ({res.per_frame:.1f}/frame, {used}) of "
        f"{res.frames:,} frames to {res.written_to} at {res.frames_per_s:,.0f} frames/s"
    )


@app.command("evaluate-localizer")
def evaluate_localizer(
    input_path: Annotated[Path, typer.Argument(help="A simulated recording or a TIFF stack.")],
    ground_truth: Annotated[
        Path | None,
        typer.Option("--ground-truth", "-g", help="True positions (table) for a TIFF stack."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report as JSON here.")
    ] = None,
    localizer: Annotated[str, typer.Option("--localizer", help="cnn, classic or both.")] = "both",
    weights: Annotated[
        str | None, typer.Option(help="CNN checkpoint: shipped name or path.")
    ] = None,
    tolerance_nm: Annotated[float, typer.Option(min=1, help="Matching radius (nm).")] = 250.0,
    method: Annotated[
        str, typer.Option(help="Matching: greedy (SMLM-2016) or hungarian.")
    ] = "greedy",
    min_photons: Annotated[
        float, typer.Option(min=0, help="Ignore true emitters dimmer than this in a frame.")
    ] = 0.0,
    device: DeviceOpt = "auto",
    pixel_size_nm: PixelOpt = None,
    baseline_adu: BaselineOpt = None,
    e_per_adu: EPerAduOpt = None,
    em_gain: GainOpt = None,
    qe: QeOpt = None,
    psf_sigma_nm: SigmaOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score localizers against ground truth: Jaccard, recall, precision, RMSE, efficiency."""
    from dblink_live.localize.run import evaluate_localizers

    names = ("cnn", "classic") if localizer == "both" else (localizer,)
    if method not in ("greedy", "hungarian"):
        raise ConfigError(f"--method must be greedy or hungarian, got {method!r}")
    with _progress("evaluate", quiet) as update:
        report = evaluate_localizers(
            input_path,
            ground_truth=ground_truth,
            localizers=names,
            weights=weights,
            tolerance_nm=tolerance_nm,
            method=cast(Literal["greedy", "hungarian"], method),  # checked above
            device=device,
            pixel_size_nm=pixel_size_nm,
            min_photons=min_photons,
            progress=update,
            baseline_adu=baseline_adu,
            e_per_adu=e_per_adu,
            em_gain=em_gain,
            qe=qe,
            psf_sigma_nm=psf_sigma_nm,
        )
    table = Table(
        title=f"{input_path} ({report['ground_truth_per_frame']:.1f} true emitters/frame)"
    )
    for col in ("localizer", "JI", "recall", "precision", "RMSE nm", "efficiency", "frames/s"):
        table.add_column(col)
    for name, r in report["results"].items():
        table.add_row(
            name,
            f"{r['jaccard']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['precision']:.3f}",
            f"{r['rmse_lateral_nm']:.1f}",
            f"{r['efficiency']:.1f}",
            f"{r['frames_per_s']:.0f}",
        )
    out.print(table)
    if output is not None:
        check_writable(output)
        output.write_text(json.dumps(report, indent=2))
        out.print(f"wrote {output}")


@app.command()
def train(
    output: OutputPt = Path("recon.pt"),
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    resume: ResumeOpt = None,
    init: Annotated[
        str | None,
        typer.Option(
            metavar="WEIGHTS",
            help="Fine-tune: start from these weights (a shipped name such as recon_filaments, "
            "or a .pt; same architecture) with a fresh optimizer, counting steps from 0.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the ConvBiLSTM reconstruction model on simulated localization sequences.

    Uses the config's simulation (structure, motion, photophysics), grid (bin_nm, W),
    recon_model and recon_training sections (train_data / validation_data: locspace, or camera
    frames localized by the config's localizer). Under `torchrun --nproc_per_node N` it trains
    with DistributedDataParallel (one process per GPU, or gloo on CPUs).
    """
    import os

    from dblink_live.recon.training import train_recon

    rank0 = os.environ.get("RANK", "0") == "0"
    cfg = _training_config(config, "recon_training", steps, resume, output, write=rank0)
    t0 = time.perf_counter()
    with _progress("train", quiet or not rank0) as update:
        path = train_recon(
            cfg,
            output,
            device=device,
            resume=resume,
            init=init,
            threads=threads,
            progress=lambda done, total, parts: update(done, total),
        )
    if rank0:
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        m = ckpt.get("metrics", {})
        nan = float("nan")
        out.print(
            f"wrote {path} (step {ckpt['step']}, validation loss "
            f"{m.get('validation_loss', nan):.4f}, best {m.get('best_validation', nan):.4f})"
            f" in {time.perf_counter() - t0:.0f} s"
        )


@app.command()
def reprocess(
    input_path: Annotated[
        Path, typer.Argument(help="A recording (*.zarr) or a localization table (csv/h5/hdf5).")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="New recording to write (default: into the input)."),
    ] = None,
    weights: Annotated[
        str,
        typer.Option(
            help="Reconstruction model: auto (the shipped model for the structure, from -c or "
            "the recording, and for W), a shipped name (see `dblink-live models`) or a .pt."
        ),
    ] = "auto",
    stride: Annotated[
        int | None,
        typer.Option(min=1, help="Output every S raw frames (S divides W; default W)."),
    ] = None,
    chunk_maps: Annotated[
        int, typer.Option(min=1, help="Maps processed at once (of all phases together).")
    ] = 32,
    window_frames: Annotated[
        int | None, typer.Option(min=1, help="Frames per map W (default: the model's).")
    ] = None,
    config: ConfigOpt = None,
    localizer: LocalizerOpt = None,
    device: DeviceOpt = "auto",
    pixel_size_nm: PixelOpt = None,
    frame_interval_s: Annotated[
        float | None, typer.Option(min=0, help="Frame interval for tables that lack it.")
    ] = None,
    tiff: Annotated[bool, typer.Option("--tiff", help="Also export a TIFF stack.")] = False,
    gif: Annotated[bool, typer.Option("--gif", help="Also export a GIF preview.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing reconstruction.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Reconstruct a whole recording offline with full bidirectional context.

    A recording with raw frames only is localized first. Memory stays bounded by the chunk
    size, whatever the length; --stride S < W gives an output every S frames (the W/S phase
    sequences run as one batch).
    """
    from dblink_live.recon.reprocess import reprocess as run_reprocess

    cfg = _load(config)
    lcfg = _localizer_config(cfg, localizer, None)
    with _progress("reprocess", quiet) as update:
        res = run_reprocess(
            input_path,
            output=output,
            weights=weights,
            stride=stride,
            chunk_maps=chunk_maps,
            device=device,
            localizer=lcfg,
            pixel_size_nm=pixel_size_nm,
            frame_interval_s=frame_interval_s,
            overwrite=overwrite,
            export_tiff=tiff,
            export_gif=gif,
            progress=update,
            window_frames=window_frames,
            structure=cfg.simulation.structure.kind if config is not None else None,
        )
    extra = f"; exported {', '.join(str(p) for p in res.exports)}" if res.exports else ""
    out.print(
        f"wrote {res.outputs} reconstructed frames (every {res.stride_frames} raw frames) with "
        f"confidence to {res.output} in {res.seconds:.1f} s with {res.model}{extra}"
    )


@app.command()
def export(
    recording: Annotated[Path, typer.Argument(help="A recording (*.zarr).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Table to write: .csv (ThunderSTORM), .h5 (DECODE), .hdf5 (Picasso, with "
            "its .yaml).",
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(help="thunderstorm, csv (plain, 0-based frames), decode or picasso."),
    ] = None,
    tiff: Annotated[
        bool, typer.Option("--tiff", help="Also the reconstruction as a TIFF stack.")
    ] = False,
    gif: Annotated[bool, typer.Option("--gif", help="Also a GIF preview of it.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export the localizations a recording stores (nothing is localized again) for other
    tools, and optionally its reconstruction; the table is read back and checked whole."""
    from dblink_live.io.export import EXPORT_FORMATS, export_recording

    res = export_recording(
        recording, output, format=format, overwrite=overwrite, tiff=tiff, gif=gif
    )
    if res.table is not None:
        out.print(
            f"wrote {res.rows} localizations of {res.frames} frames to {res.table} "
            f"({EXPORT_FORMATS[res.format][0]}; read back whole)",
            soft_wrap=True,
        )
    for p in res.exports:
        out.print(f"wrote {p}", soft_wrap=True)


@app.command()
def resolution(
    recording: Annotated[Path, typer.Argument(help="A reconstructed recording (*.zarr).")],
    frc: Annotated[
        bool,
        typer.Option(
            "--frc/--no-frc", help="Also the FRC of alternating blocks (reconstructs twice)."
        ),
    ] = True,
    weights: Annotated[
        str | None,
        typer.Option(help="Model for the FRC's reconstructions (default: the stored one's)."),
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="PNG plot (default: REC_resolution.png beside it).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="JSON report (default: REC_resolution.json)."),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Resolution of a reconstruction without ground truth: FRC of reconstructions from
    alternating W-frame blocks, and decorrelation analysis (with its high-pass refinement) of
    each stored map."""
    from dblink_live.recon.resolution import resolution_report

    stem = recording.with_suffix("")
    figure = figure or stem.with_name(stem.name + "_resolution.png")
    output = output or stem.with_name(stem.name + "_resolution.json")
    rep = resolution_report(
        recording, weights=weights, frc=frc, device=device, figure=figure, output=output
    )
    dec, n_maps = rep["decorrelation_nm"]["median"], len(rep["decorrelation_nm"]["per_map"])
    parts = [
        f"decorrelation {dec:.0f} nm (median of {n_maps} maps)"
        if dec is not None
        else "decorrelation: no map with structure"
    ]
    if "frc_nm" in rep:
        parts.append(f"FRC {rep['frc_nm']['median']:.0f} nm (alternating blocks)")
    out.print(f"{recording}: {'; '.join(parts)}; wrote {figure} and {output}", soft_wrap=True)


@app.command()
def batch(
    recordings: Annotated[
        list[Path], typer.Argument(help="Recordings (*.zarr) to reprocess, each in place.")
    ],
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Address of a running dask scheduler (tcp://host:8786, e.g. started by "
            "dask-jobqueue on SLURM); default: a local cluster on this machine."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Local cluster: worker processes.")] = 2,
    threads_per_worker: Annotated[int, typer.Option(min=1, help="Torch threads in each task.")] = 1,
    retries: Annotated[int, typer.Option(min=0, help="Further attempts of a failed task.")] = 1,
    weights: Annotated[
        str, typer.Option(help="Reconstruction model, as for `reprocess`.")
    ] = "auto",
    stride: Annotated[
        int | None,
        typer.Option(min=1, help="Output every S raw frames (S divides W; default W)."),
    ] = None,
    window_frames: Annotated[
        int | None, typer.Option(min=1, help="Frames per map W (default: the model's).")
    ] = None,
    localizer: LocalizerOpt = None,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace existing reconstructions.")] = False,
) -> None:
    """Reprocess many recordings on a dask.distributed cluster, one task per recording.

    Each task runs exactly what `reprocess REC` runs; a failed task is retried and then
    reported while the others go on (exit status 1 if any failed).
    """
    from dblink_live.recon.batch import reprocess_many

    lcfg = _localizer_config(_load(None), localizer, None)

    def report(o, done: int, total: int) -> None:
        if o.ok:
            r = o.result
            where = f" ({o.worker})" if o.worker else ""
            out.print(
                f"[{done}/{total}] {o.path}: {r['outputs']} reconstructed frames, "
                f"{o.seconds:.1f} s, {r['model']}{where}",
                soft_wrap=True,
            )
            for w in o.warnings:
                out.print(f"    warning: {w}")
        else:
            out.print(f"[{done}/{total}] {o.path}: FAILED: {o.error}", soft_wrap=True)

    outcomes = reprocess_many(
        recordings,
        scheduler=scheduler,
        workers=workers,
        threads_per_worker=threads_per_worker,
        retries=retries,
        progress=report,
        weights=weights,
        stride=stride,
        window_frames=window_frames,
        localizer=lcfg,
        device=device,
        overwrite=overwrite,
    )
    failed = [o for o in outcomes if not o.ok]
    out.print(f"{len(outcomes) - len(failed)} of {len(outcomes)} recordings reprocessed")
    if failed:
        raise typer.Exit(1)


@app.command()
def evaluate(
    input_path: Annotated[Path, typer.Argument(help="A simulated recording, reconstructed.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON report (default REC_eval.json).")
    ] = None,
    figure: Annotated[Path | None, typer.Option(help="PNG figure (default REC_eval.png).")] = None,
    frc: Annotated[
        bool, typer.Option("--frc", help="Also FRC from two half reconstructions.")
    ] = False,
    weights: Annotated[
        str | None, typer.Option(help="Model for --frc (default: the one used).")
    ] = None,
    static: Annotated[
        bool,
        typer.Option(
            "--static",
            help="No ground truth: score a static (or drifting) sample's reconstructions "
            "against the drift-corrected accumulation of all its localizations.",
        ),
    ] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Score a reconstruction against simulated ground truth, with static SMLM baselines
    (or, with --static, against the recording's own accumulated localizations)."""
    from dblink_live.recon.evaluate import evaluate_recording

    base = input_path.with_suffix("")
    if static:
        from dblink_live.recon.static_check import evaluate_static

        output = output or base.with_name(base.name + "_static.json")
        check_writable(output)
        r = evaluate_static(input_path, output=output)
        out.print(
            f"{input_path}: {r['maps']} maps at W={r['window_frames']} against the accumulation "
            f"of {r['localizations']:,} localizations (drift up to {r['drift_nm_max']:.0f} nm): "
            f"hallucination {100 * r['hallucination']:.2f} % of reconstructed structure, FPR "
            f"{100 * r['false_positive_rate']:.2f} %, recall {r['recall']:.3f}"
        )
        q = (r.get("confidence") or {}).get("quartile_hallucination")
        if q:
            out.print(
                "hallucination by confidence quartile (low..high): "
                + ", ".join(f"{100 * v:.2f}%" for v in q)
            )
        out.print(f"wrote {output}")
        return
    output = output or base.with_name(base.name + "_eval.json")
    figure = figure or base.with_name(base.name + "_eval.png")
    check_writable(output)
    check_writable(figure)
    r = evaluate_recording(
        input_path, output=output, figure=figure, weights=weights, frc=frc, device=device
    )
    table = Table(title=f"{input_path}: {r['maps']} maps, W={r['window_frames']}, {r['target']}")
    for col in (
        "",
        "recall",
        "FPR %",
        "precision",
        "Jaccard",
        "recall 1-bin",
        "FPR 1-bin %",
        "Jaccard 1-bin",
    ):
        table.add_column(col)
    rows = [("DBlink", r["reconstruction"])] + [(k, v) for k, v in r["baselines"].items()]
    for name, s in rows:
        a, b = s["tol0"], s["tol1"]
        table.add_row(
            name,
            f"{a['recall']:.3f}",
            f"{100 * a['false_positive_rate']:.2f}",
            f"{a['precision']:.3f}",
            f"{a['jaccard']:.3f}",
            f"{b['recall']:.3f}",
            f"{100 * b['false_positive_rate']:.2f}",
            f"{b['jaccard']:.3f}",
        )
    out.print(table)
    if "confidence" in r:
        q = r["confidence"]["quartile_hallucination"]
        if q:
            out.print(
                f"hallucination by confidence quartile (low..high): "
                f"{', '.join(f'{100 * v:.2f}%' for v in q)}"
            )
    out.print(f"wrote {output} and {figure}")


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


def _with_recon_roi(cfg, recon_roi: str | None):
    """The config with --recon-roi applied (one clear line for a malformed value)."""
    if recon_roi is None:
        return cfg
    value: object = recon_roi.strip().lower()
    if value not in ("auto", "full"):
        try:
            parts = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            parts = ()
        if len(parts) != 4:
            raise DblinkError(
                f"--recon-roi must be x,y,width,height in pixels, full or auto; got {recon_roi!r}"
            )
        value = parts
    return cfg.updated(live={"recon_roi": value})


def _with_localizer(cfg, localizer: str | None):
    """The config with --localizer applied."""
    return cfg.model_copy(update={"localizer": _localizer_config(cfg, localizer, None)})


def _display_available() -> bool:
    """Whether a window can be shown (a desktop session, or Qt told to draw offscreen)."""
    import os

    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _status_printer(every_s: float | None = None):
    """A live-status callback: a status line every second on a terminal (every
    :data:`PROGRESS_LINE_S` in a log file, and whenever the state changes), and each warning
    once, when it first appears or
    its text changes (the numbers in it are not a change)."""
    import re

    if every_s is None:
        every_s = 1.0 if console.is_terminal else PROGRESS_LINE_S
    last: list = [float("-inf"), None]  # time of the last line, state then
    said: set[str] = set()

    def show(st) -> None:
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


def _run_live(pipeline, headless: bool, quiet: bool) -> None:
    """Run a pipeline to the end (viewer or headless status), then write its summary
    (:func:`dblink_live.report.finish_run`)."""
    from dblink_live.report import finish_run

    if not headless and not _display_available():
        log.warning("no display found: running headless (the summary PNG shows the result)")
        headless = True
    if headless:
        status = pipeline.run(on_status=None if quiet else _status_printer())
    else:
        try:
            from dblink_live.display import run_viewer
        except ImportError as exc:
            raise DblinkError(f"the viewer cannot start ({exc}); use --headless") from None
        run_viewer(pipeline=pipeline, start=True)  # the window opens at once, then starts it
        pipeline.stop()
        status = pipeline.wait()
    out.print(finish_run(pipeline, status).describe())


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


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Recording to write.")] = Path(
        "demo.zarr"
    ),
    frames: Annotated[
        int | None, typer.Option("--frames", "-n", min=1, help="Frames to acquire (default 1000).")
    ] = None,
    fps: Annotated[float, typer.Option(min=0.1, help="Camera frame rate (Hz).")] = 100.0,
    config: ConfigOpt = None,
    seed: Annotated[int | None, typer.Option(help="Simulation seed (default: config).")] = None,
    localizer: LocalizerOpt = None,
    weights: ReconWeightsOpt = "auto",
    delay_maps: DelayOpt = None,
    recon_roi: ReconRoiOpt = None,
    device: DeviceOpt = "auto",
    headless: HeadlessOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Live DBlink on the virtual microscope: a simulated moving sample seen by a Micro-Manager
    camera device (pymmcore-plus), acquired through the same pycromanager hook as a real one.

    Writes the recording (raw, localizations, reconstruction, confidence, ground truth); with
    --headless also OUT_summary.png and OUT_summary.json with scores against the ground truth.
    """
    from dblink_live.pipeline import demo_pipeline

    cfg = _with_recon_roi(_with_localizer(_load(config), localizer), recon_roi)
    if output.exists() and not overwrite:
        raise DblinkError(f"{output} already exists; pass --overwrite or choose another -o")
    check_writable(output)
    pipe = demo_pipeline(
        output,
        n_frames=frames or cfg.live.frames,
        fps=fps,
        config=cfg,
        device=device,
        seed=seed,
        delay_maps=delay_maps,
        overwrite=overwrite,
        recon=weights,
    )
    _run_live(pipe, headless, quiet)


@app.command()
def replay(
    input_path: Annotated[Path, typer.Argument(help="A recording (*.zarr) to stream.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="New recording (default IN_replay.zarr).")
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0, help="Playback speed (2 = twice as fast; 0 = unpaced).")
    ] = 1.0,
    config: ConfigOpt = None,
    localizer: LocalizerOpt = None,
    weights: ReconWeightsOpt = "auto",
    delay_maps: DelayOpt = None,
    recon_roi: ReconRoiOpt = None,
    device: DeviceOpt = "auto",
    headless: HeadlessOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stream a recording through the live pipeline at its recorded rate (or --speed x)."""
    from dblink_live.acquire.replay import ReplaySource
    from dblink_live.config import config_from_dict
    from dblink_live.io.recording import Recording
    from dblink_live.pipeline import Pipeline

    src = ReplaySource(input_path, speed=speed)
    if config is not None:
        cfg = _load(config)
    else:
        stored = Recording.open(input_path).config
        cfg = config_from_dict(stored) if stored else _load(None)
    cfg = _with_recon_roi(_with_localizer(cfg, localizer), recon_roi)
    base = input_path.with_suffix("")
    output = output or base.with_name(base.name + "_replay.zarr")
    check_writable(output)
    pipe = Pipeline(
        src,
        output,
        config=cfg,
        recon=weights,
        delay_maps=delay_maps,
        device=device,
        overwrite=overwrite,
    )
    _run_live(pipe, headless, quiet)


@app.command()
def live(
    output: Annotated[Path, typer.Option("--output", "-o", help="Recording to write.")] = Path(
        "live.zarr"
    ),
    frames: Annotated[
        int | None, typer.Option("--frames", "-n", min=1, help="Frames to acquire (default 1000).")
    ] = None,
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
    pixel_size_nm: PixelOpt = None,
    baseline_adu: BaselineOpt = None,
    e_per_adu: EPerAduOpt = None,
    em_gain: GainOpt = None,
    qe: QeOpt = None,
    config: ConfigOpt = None,
    localizer: LocalizerOpt = None,
    weights: ReconWeightsOpt = "auto",
    delay_maps: DelayOpt = None,
    recon_roi: ReconRoiOpt = None,
    device: DeviceOpt = "auto",
    headless: HeadlessOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Live DBlink on a Micro-Manager camera through pycromanager (or pymmcore-plus: --mda).

    Headless: --mm-config and --adapter-path start Micro-Manager's core in this process;
    --connect uses a running Micro-Manager instead; --mda SEQ.yaml runs a useq MDA sequence
    with pymmcore-plus on that headless core. Give the camera calibration (offset, e-/ADU,
    EM gain, QE) so photon counts are right. Every option can also come from the config's
    `live` section (the command line wins).
    """
    from dblink_live.acquire.micromanager import MicroManagerSource
    from dblink_live.pipeline import Pipeline

    cfg = _with_recon_roi(_with_localizer(_load(config), localizer), recon_roi)
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
        try:
            parts = tuple(int(v) for v in roi.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 4:
            raise DblinkError(f"--roi must be x,y,width,height in pixels, got {roi!r}")
        roi_t = parts
    camera = {
        k: v
        for k, v in dict(
            baseline_adu=baseline_adu, e_per_adu=e_per_adu, em_gain=em_gain, qe=qe
        ).items()
        if v is not None
    }
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
            camera=camera,
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
            camera=camera,
            roi=roi_t,
        )
    pipe = Pipeline(
        src,
        output,
        config=cfg,
        recon=weights,
        delay_maps=delay_maps,
        device=device,
        overwrite=overwrite,
    )
    _run_live(pipe, headless, quiet)


@app.command()
def view(
    input_path: Annotated[Path, typer.Argument(help="A recording (*.zarr) to browse.")],
) -> None:
    """Open a recording in the viewer (raw frames, localizations, reconstruction, confidence)."""
    from dblink_live.io.recording import Recording

    Recording.open(input_path)  # a clear error for a path that is not a recording
    if not _display_available():
        raise DblinkError(
            "no display is available (no DISPLAY or WAYLAND_DISPLAY): run `view` on a desktop "
            "session or over ssh -X, or use `info` / `evaluate` here; live runs take --headless"
        )
    try:
        from dblink_live.display import run_viewer
    except ImportError as exc:
        raise DblinkError(f"the viewer cannot start ({exc})") from None
    raise typer.Exit(run_viewer(recording=input_path))


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Make SIGTERM (job schedulers, systemd) act like Ctrl-C while a command runs: live runs
    drain, batch commands stop and say what they kept. Yields the list of stop signals
    received; the previous handlers come back at the end."""
    import signal

    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(s) in (signal.default_int_handler, signal.SIG_DFL):
                previous[s] = signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user-input errors into one line and exit status 2.

    Exit status: 0 done (a live run stopped by Ctrl-C or SIGTERM that drained is done); 1 a
    bug (with its traceback); 2 bad input, an unwritable output or a failed run (one line);
    130 / 143 a batch command interrupted by SIGINT / SIGTERM (it says what it kept).
    """
    import signal

    received: list[int] = []
    try:
        with _stop_signals() as received:
            app(args=argv, prog_name="dblink-live")  # standalone: usage errors exit 2
    except DblinkError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        console.print(
            f"[red]error:[/red] could not write{where} ({exc.strerror}); free space or choose "
            "another output",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        if code == 130 and received:
            sig = received[-1]
            name = signal.Signals(sig).name
            console.print(f"interrupted by {name}", highlight=False)
            return 128 + sig
        return code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
