"""Benchmark FrameRing.put, the acquisition hook's only work: latency per frame (p50/p99).

Compares 64x64 and 256x256 uint16 frames, in-memory and on-disk rings, side by side.

Usage::

    python scripts/bench_ring.py -o bench_ring.json [--frames 3000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from dblink_live import __version__
from dblink_live.io.ring import FrameRing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_ring.json"))
    ap.add_argument("--frames", type=int, default=3000)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 256):
            for where in ("memory", "disk"):
                path = Path(tmp) / f"ring{size}.zarr" if where == "disk" else None
                ring = FrameRing(256, (size, size), path=path)
                frame = np.random.default_rng(0).integers(0, 4000, (size, size)).astype(np.uint16)
                times = np.empty(args.frames)
                for i in range(args.frames):
                    t0 = time.perf_counter()
                    ring.put(frame)
                    times[i] = time.perf_counter() - t0
                row = {
                    "frame_px": size,
                    "storage": where,
                    "p50_ms": 1e3 * np.percentile(times, 50),
                    "p99_ms": 1e3 * np.percentile(times, 99),
                    "max_ms": 1e3 * times.max(),
                }
                rows.append(row)
                print(
                    f"{size:3d}x{size:<3d} {where:6s}: put p50 {row['p50_ms']:.3f} ms, "
                    f"p99 {row['p99_ms']:.3f} ms, max {row['max_ms']:.2f} ms"
                )
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "bench_ring",
                "package_version": __version__,
                "frames": args.frames,
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
