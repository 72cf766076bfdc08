"""Benchmark the localizers: frames/s and localizations/s, 64x64 and 256x256, batch sizes.

Both localizers run side by side on the same simulated frames (default filament config,
density 0.5/um^2, 160 nm pixels) in one run, so their ratio is meaningful on a noisy machine.
The issue's bars: on a 2-core CPU the default path keeps up with a 64x64 camera at 100 Hz;
on a GPU, 256x256 at >= 1,000 frames/s is the aim.

Usage::

    python scripts/bench_localize.py                  # writes bench_localize.json
    python scripts/bench_localize.py --quick -o x.json
    python scripts/bench_localize.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from dblink_live import __version__
from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig, RunConfig
from dblink_live.localize import CameraCalibration, make_localizer
from dblink_live.sim import MovieSimulator


def _frames(size: int, n: int):
    cfg = RunConfig().updated(simulation={"camera": {"width_px": size, "height_px": size}})
    sim = MovieSimulator(cfg, n_frames=n, seed=0)
    raw, _ = sim.frames(0, n)
    return raw, CameraCalibration.from_camera(sim.metadata()["camera"])


def _time(localizer, raw, cal, min_time_s: float) -> tuple[float, float]:
    localizer.localize(raw[: min(len(raw), 8)], cal)  # warm-up
    if localizer.device.type == "cuda":
        torch.cuda.synchronize()
    t0, frames, locs = time.perf_counter(), 0, 0
    while time.perf_counter() - t0 < min_time_s:
        out = localizer.localize(raw, cal)
        frames += len(raw)
        locs += len(out)
    if localizer.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return frames / dt, locs / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_localize.json"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    args = ap.parse_args()
    min_time = 0.3 if args.quick else 3.0
    sizes = {64: 32, 256: 8} if args.quick else {64: 256, 256: 64}
    batches = [16, 64] if args.quick else [16, 64, 256]
    rows: list[dict[str, Any]] = []
    for size, n in sizes.items():
        raw, cal = _frames(size, n)
        for batch in batches:
            for cfg in (
                CNNLocalizerConfig(batch_frames=batch),
                ClassicLocalizerConfig(batch_frames=batch),
            ):
                loc = make_localizer(cfg, args.device)
                fps, lps = _time(loc, raw, cal, min_time)
                rows.append(
                    {
                        "localizer": cfg.kind,
                        "camera_px": size,
                        "batch_frames": batch,
                        "device": str(loc.device),
                        "frames_per_s": fps,
                        "localizations_per_s": lps,
                    }
                )
                print(
                    f"{cfg.kind:8s} {size:4d}x{size:<4d} batch {batch:4d} on {loc.device}: "
                    f"{fps:9.1f} frames/s {lps:11.0f} localizations/s"
                )
    device = rows[0]["device"]
    result = {
        "benchmark": "bench_localize",
        "package_version": __version__,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "results": rows,
    }
    args.output.write_text(json.dumps(result, indent=2))
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
