"""Benchmark FrameRing.put, the acquisition hook's only work: latency per frame (p50/p99).

Side by side in one run, for 64x64, 256x256 and 512x512 uint16 frames:

- ``numpy``: the in-memory ring as the live pipeline builds it (numpy slots, committed in put);
- ``numpy+staged``: the same with the background writer (put only stages a copy);
- ``zarr-memory+staged``: the storage the in-memory ring had before (a zarr MemoryStore, one
  chunk per frame) behind the background writer, as the pipeline used it, and ``zarr-memory``
  with the zarr write in put itself;
- ``zarr-disk+staged``: the on-disk ring another process can watch.

Each ring is measured idle (no reader: the cost of put itself) and loaded, as in the pipeline:
a lossless cursor (the recorder) and a lossy one (the localizer) drain it from two threads
while frames are put at ``--fps``. Loaded, the p99 is mostly the wait for the GIL held by a
reader (CPython hands it over every ``sys.getswitchinterval()``, 5 ms by default;
``--switch-interval`` sets it).

Usage::

    python scripts/bench_ring.py -o bench_ring.json [--frames 2000] [--fps 1000]
        [--switch-interval 0.005]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zarr
import zarr.storage

from dblink_live import __version__
from dblink_live.io.ring import FrameRing

CAPACITY = 256


def _ring(kind: str, size: int, tmp: Path) -> FrameRing:
    staged = kind.endswith("+staged")
    if kind.startswith("zarr-disk"):
        return FrameRing(CAPACITY, (size, size), path=tmp / f"ring{size}.zarr")
    ring = FrameRing(CAPACITY, (size, size), background_writer=staged)
    if kind.startswith("zarr-memory"):  # the storage this ring had before numpy slots
        ring._slots = zarr.create_array(
            zarr.storage.MemoryStore(),
            shape=(CAPACITY, size, size),
            chunks=(1, size, size),
            dtype=ring.dtype,
            compressors=None,
            fill_value=0,
            config={"write_empty_chunks": True},
        )
    return ring


def _drain(ring: FrameRing, name: str, lossless: bool, stop: threading.Event) -> None:
    cur = ring.cursor(name, start=0, lossless=lossless)
    while not (stop.is_set() and cur.available() <= 0):
        if cur.get(max_frames=32, timeout=0.05) is None and ring.closed:
            return


def bench(kind: str, size: int, frames: int, fps: float, tmp: Path, loaded: bool) -> dict:
    """put latency of one ring: ``loaded`` with two readers draining it, else idle."""
    ring = _ring(kind, size, tmp)
    stop = threading.Event()
    readers = [
        threading.Thread(target=_drain, args=(ring, n, ll, stop), daemon=True)
        for n, ll in (("recorder", True), ("localizer", False))
        if loaded
    ]
    for t in readers:
        t.start()
    time.sleep(0.05)
    frame = np.random.default_rng(0).integers(0, 4000, (size, size)).astype(np.uint16)
    times = np.empty(frames)
    period = 1.0 / fps
    next_t = time.perf_counter()
    for i in range(frames):
        while time.perf_counter() < next_t:
            pass
        next_t += period
        t0 = time.perf_counter()
        ring.put(frame, {"i": i})
        times[i] = time.perf_counter() - t0
    stop.set()
    ring.close()
    for t in readers:
        t.join()
    us = 1e6 * times
    return {
        "frame_px": size,
        "storage": kind,
        "readers": len(readers),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_ring.json"))
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--fps", type=float, default=1000.0, help="put rate (frames/s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    ap.add_argument("--switch-interval", type=float, default=None, help="GIL hand-over (s)")
    args = ap.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    kinds = ["numpy", "numpy+staged", "zarr-memory", "zarr-memory+staged", "zarr-disk+staged"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loaded in (False, True):
            for size in args.sizes:
                for kind in kinds:
                    row = bench(kind, size, args.frames, args.fps, Path(tmp), loaded)
                    rows.append(row)
                    print(
                        f"{'loaded' if loaded else 'idle':6s} {size:3d}x{size:<3d} {kind:19s}: "
                        f"put p50 {row['p50_us']:8.1f} us, p99 {row['p99_us']:8.1f} us, "
                        f"max {row['max_us']:9.1f} us"
                    )
                base, new = (
                    next(r for r in rows[-len(kinds) :] if r["storage"] == k)
                    for k in (kinds[3], kinds[0])
                )
                print(
                    f"{'loaded' if loaded else 'idle':6s} {size:3d}x{size:<3d} p99 {kinds[0]} / "
                    f"{kinds[3]} (before): {new['p99_us'] / base['p99_us']:.2f}"
                )
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "bench_ring",
                "package_version": __version__,
                "frames": args.frames,
                "fps": args.fps,
                "switch_interval_s": sys.getswitchinterval(),
                "capacity": CAPACITY,
                "consumers": ["recorder (lossless)", "localizer (lossy)"],
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
