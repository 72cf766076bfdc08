"""Commands on recordings and models that need no network: ``simulate``, ``info``, ``models``,
``export``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dblink_live.cli.common import _load, _progress, out
from dblink_live.cli.options import ConfigOpt, QuietOpt
from dblink_live.errors import RecordingError
from dblink_live.io.outputs import check_writable


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
