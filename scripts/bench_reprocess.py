"""Offline reconstruction throughput: batched phases against one phase at a time, camera sizes,
and the memory peak against the recording's length.

1. Stride-1 output (one reconstruction per raw frame, W = 10 phase sequences) on the same
   localizations with the same weights, in the same run: the path before (one phase at a
   time, the head's convolutions in NCHW layout, the temporary backward features compressed),
   the changes one by one (raw features + phases batched; + channels-last head instead) and
   today's path (all three): maps/s of each, the ratio of today's to before, and the largest
   difference between their outputs.
2. Raw frames/s of ``reconstruct_localizations`` (stride W and stride 1) for 64x64, 256x256
   and 512x512 cameras of 160 nm pixels (40 nm bins: 256, 1024 and 2048 bins square), on
   localizations of our simulator (filaments; their content does not change the cost).
3. The peak resident memory of a stride-W reconstruction (child processes, Linux ``VmHWM``)
   for recordings of increasing length: flat, since the work is chunked.

Usage::

    python scripts/bench_reprocess.py -o bench_reprocess.json
    python scripts/bench_reprocess.py --quick -o x.json     # a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dblink_live import __version__
from dblink_live.config import RunConfig
from dblink_live.recon import inference
from dblink_live.recon.inference import LoadedModel, load_recon_model
from dblink_live.recon.reprocess import _fitting_chunk, reconstruct_localizations
from dblink_live.sim import simulate_localizations
from dblink_live.sim.scene import grid_shape

PIXEL_NM = 160.0


def localizations(camera_px: int, n_frames: int, seed: int = 3):  # type: ignore[no-untyped-def]
    """Simulated localizations of a ``camera_px`` square camera (no ground truth)."""
    cfg = RunConfig().updated(
        simulation={"camera": {"width_px": camera_px, "height_px": camera_px}}
    )
    return simulate_localizations(cfg, n_frames=n_frames, seed=seed, with_gt=False).localizations


def timed_run(
    locs, model: LoadedModel, camera_px: int, n_frames: int, stride: int, batch: int | None
) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    """Seconds for one reconstruction and its outputs (chunk as ``reprocess`` would pick)."""
    fov = (camera_px * PIXEL_NM, camera_px * PIXEL_NM)
    w = model.window_frames
    chunk, fit_batch = _fitting_chunk(
        model, grid_shape(fov, model.bin_nm), 32, w // stride, n_frames // stride
    )
    t0 = time.perf_counter()
    out = [
        r
        for _, r, _ in reconstruct_localizations(
            locs, model, fov, n_frames, stride, chunk, batch=min(batch or fit_batch, fit_batch)
        )
    ]
    return time.perf_counter() - t0, np.concatenate(out)


_CHILD = textwrap.dedent(
    """
    import sys
    import torch
    sys.path.insert(0, sys.argv[3])
    from bench_reprocess import localizations
    from dblink_live.recon.inference import load_recon_model
    from dblink_live.recon.reprocess import reconstruct_localizations

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    px, n = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    m = load_recon_model("recon_filaments", "cpu")
    locs = localizations(px, n)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status("VmRSS:")
    for _ in reconstruct_localizations(locs, m, (px * 160.0, px * 160.0), n, None, 16):
        pass
    print(status("VmHWM:") - base)
    """
)


def peak_bytes(camera_px: int, n_frames: int) -> float:
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(camera_px), str(n_frames), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
    )
    return float(r.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="recon_filaments")
    ap.add_argument("--quick", action="store_true", help="small cases (about a minute)")
    ap.add_argument(
        "--sections", nargs="+", default=["phases", "sizes", "memory"],
        choices=["phases", "sizes", "memory"], help="parts to run (default all)",
    )  # fmt: skip
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_reprocess.json"))
    args = ap.parse_args(argv)
    model = load_recon_model(args.weights, "cpu")
    w = model.window_frames
    result: dict[str, Any] = {
        "benchmark": "bench_reprocess",
        "package_version": __version__,
        "weights": model.name,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }

    # 1. batched phases vs one at a time, stride 1
    rows = []
    sections = set(args.sections)
    for px, n in ((16, 120), (32, 120)) if args.quick else ((32, 300), (64, 200)):
        if "phases" not in sections:
            break
        locs = localizations(px, n)
        # the path before: one phase at a time, NCHW head, compressed backward features
        model.model.channels_last_head = False
        inference.BACKWARD_COMPRESSORS = "auto"
        t_before, before = timed_run(locs, model, px, n, 1, 1)
        inference.BACKWARD_COMPRESSORS = None
        t_batched, batched = timed_run(locs, model, px, n, 1, None)
        model.model.channels_last_head = True  # today's path
        t_one, _ = timed_run(locs, model, px, n, 1, 1)
        t_now, now = timed_run(locs, model, px, n, 1, None)
        k = len(now)
        row = {
            "camera_px": px,
            "bins": grid_shape((px * PIXEL_NM,) * 2, model.bin_nm)[0],
            "frames": n,
            "outputs": k,
            "maps_per_s": {
                "before (one phase at a time, NCHW head, compressed features)": k / t_before,
                "raw features, phases batched (default_batch), NCHW head": k / t_batched,
                "raw features, one phase at a time, channels-last head": k / t_one,
                "now (phases batched, channels-last head)": k / t_now,
            },
            "ratio_now_to_before": t_before / t_now,
            "max_abs_difference_now_vs_before": float(np.abs(now - before).max()),
            "max_abs_difference_batched_vs_one_phase": float(np.abs(batched - before).max()),
        }
        rows.append(row)
        print(f"stride 1, {px}x{px} camera ({row['bins']}^2 bins), {k} outputs:")
        for name, v in row["maps_per_s"].items():
            print(f"    {name}: {v:.1f} maps/s")
        print(
            f"    now / before: {row['ratio_now_to_before']:.2f}x; max |diff| "
            f"{row['max_abs_difference_now_vs_before']:.1e} (batching alone: "
            f"{row['max_abs_difference_batched_vs_one_phase']:.1e})"
        )
    result["stride1_batched_vs_one_phase"] = rows

    # 2. raw frames/s by camera size
    rows = []
    cases = ((64, 40),) if args.quick else ((64, 200), (256, 20), (512, 14))
    for px, n in cases if "sizes" in sections else ():
        locs = localizations(px, n)
        for stride in (w, 1):
            t, out = timed_run(locs, model, px, n, stride, None)
            frames = (len(out) - 1) * stride + w  # raw frames the outputs cover
            rows.append(
                {"camera_px": px, "frames": n, "stride": stride, "outputs": len(out),
                 "seconds": t, "raw_frames_per_s": frames / t, "maps_per_s": len(out) / t}
            )  # fmt: skip
            print(
                f"{px}x{px} camera, stride {stride}: {frames / t:.2f} raw frames/s "
                f"({len(out) / t:.2f} maps/s, {len(out)} maps in {t:.1f} s)"
            )
    result["throughput"] = rows

    # 3. memory peak against recording length
    rows = []
    if "memory" in sections and Path("/proc/self/clear_refs").exists():
        for n in (200, 400) if args.quick else (400, 1600, 6400):
            peak = peak_bytes(32, n)
            rows.append({"camera_px": 32, "frames": n, "peak_bytes": peak})
            print(f"32x32 camera, {n} frames, stride W: peak {peak / 1e6:.0f} MB")
    result["memory_by_length"] = rows
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
