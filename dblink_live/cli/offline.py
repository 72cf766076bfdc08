"""The offline commands: ``localize``, ``evaluate-localizer``, ``reprocess``, ``resolution``,
``batch`` and ``evaluate`` (a whole recording at a time, with full bidirectional context)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from rich.table import Table

from dblink_live.cli.common import _load, _localizer_config, _progress, out
from dblink_live.cli.options import (
    CameraOptions,
    CnnWeightsOpt,
    ConfigOpt,
    DeviceOpt,
    LocalizerOpt,
    PixelOpt,
    QuietOpt,
    SigmaOpt,
    StrideOpt,
    WindowOpt,
    option_groups,
)
from dblink_live.errors import ConfigError
from dblink_live.io.outputs import check_writable


@option_groups(camera=CameraOptions)
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
    weights: CnnWeightsOpt = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", help="Table format: auto (by suffix), thunderstorm, csv, decode, picasso."
        ),
    ] = "auto",
    device: DeviceOpt = "auto",
    *,
    camera: CameraOptions,
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
            overwrite=overwrite,
            progress=update,
            psf_sigma_nm=psf_sigma_nm,
            **camera.as_kwargs(),
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


@option_groups(camera=CameraOptions)
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
    weights: CnnWeightsOpt = None,
    tolerance_nm: Annotated[float, typer.Option(min=1, help="Matching radius (nm).")] = 250.0,
    method: Annotated[
        str, typer.Option(help="Matching: greedy (SMLM-2016) or hungarian.")
    ] = "greedy",
    min_photons: Annotated[
        float, typer.Option(min=0, help="Ignore true emitters dimmer than this in a frame.")
    ] = 0.0,
    device: DeviceOpt = "auto",
    *,
    camera: CameraOptions,
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
            min_photons=min_photons,
            progress=update,
            psf_sigma_nm=psf_sigma_nm,
            **camera.as_kwargs(),
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
    stride: StrideOpt = None,
    chunk_maps: Annotated[
        int, typer.Option(min=1, help="Maps processed at once (of all phases together).")
    ] = 32,
    window_frames: WindowOpt = None,
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
    stride: StrideOpt = None,
    window_frames: WindowOpt = None,
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
