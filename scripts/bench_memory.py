"""Peak memory of the reconstruction against the estimate the commands check before a run.

Each case runs in a fresh child process: the shipped ``recon_filaments`` model on random maps of
an N x N-bin grid, live streaming (delay D = 4) or offline (16 maps a chunk); the peak resident
memory above the process's baseline (Linux ``VmHWM`` after resetting it) is printed beside
:mod:`dblink_live.resources`' estimate, and their ratio. The peak of the same case varies by up
to ~30 % from run to run (where the C allocator places and returns the transient activations),
so each case runs ``--repeats`` times and the smallest and largest peaks are both reported: the
estimate must bound the largest, and is checked not to exceed twice the smallest.

Usage::

    python scripts/bench_memory.py --sizes 128 256 512 --repeats 5 -o bench_memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from dblink_live.resources import (
    LIVE_FIXED_BYTES,
    OFFLINE_FIXED_BYTES,
    MemoryNeed,
    live_bytes_per_bin,
    offline_bytes_per_bin,
)

DELAY_MAPS = 4
CHUNK_MAPS = 16

_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from dblink_live.recon.inference import load_recon_model, reconstruct_sequence
    from dblink_live.recon.streaming import StreamingReconstructor

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    mode, n, delay, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    m = load_recon_model("recon_filaments", "cpu")
    rng = np.random.default_rng(0)
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    base = status("VmRSS:")
    if mode == "live":
        s = StreamingReconstructor(m.model, delay)
        for _ in range(delay + 3):
            s.push(rng.random((n, n), dtype=np.float32))
    else:
        maps = lambda a, b: rng.random((b - a, n, n), dtype=np.float32)
        for _ in reconstruct_sequence(m.model, maps, 2 * chunk, chunk):
            pass
    print(status("VmHWM:") - base)
    """
)


def measured_peak_bytes(mode: str, n: int) -> float:
    """Peak resident bytes above baseline of one case (a child process)."""
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(n), str(DELAY_MAPS), str(CHUNK_MAPS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(r.stdout.split()[-1])


def estimated_bytes(mode: str, n: int) -> float:
    """What the commands' check expects for the case (the live child's part: no display
    history, which the probe does not keep)."""
    if mode == "live":
        per_bin = live_bytes_per_bin(8, DELAY_MAPS, history_maps=0) - 4.0 * 8
        return MemoryNeed(mode, (n, n), 40.0, per_bin, LIVE_FIXED_BYTES).bytes
    per_bin = offline_bytes_per_bin(8, CHUNK_MAPS)
    return MemoryNeed(mode, (n, n), 40.0, per_bin, OFFLINE_FIXED_BYTES).bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--modes", nargs="+", default=["live", "offline"])
    ap.add_argument("--repeats", type=int, default=5, help="runs of each case (default 5)")
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_memory.json"))
    args = ap.parse_args(argv)
    rows = []
    print(f"{'mode':8} {'bins':>10} {'measured MB (min-max)':>22} {'estimate MB':>12} "
          f"{'est/max':>8} {'est/min':>8}")  # fmt: skip
    for mode in args.modes:
        for n in args.sizes:
            peaks = [measured_peak_bytes(mode, n) for _ in range(max(1, args.repeats))]
            lo, hi, est = min(peaks), max(peaks), estimated_bytes(mode, n)
            rows.append(
                {"mode": mode, "grid": n, "measured_bytes": peaks, "estimated_bytes": est,
                 "ratio_to_max": est / hi if hi else None,
                 "ratio_to_min": est / lo if lo else None}
            )  # fmt: skip
            span = f"{lo / 1e6:.1f}-{hi / 1e6:.1f}"
            print(f"{mode:8} {f'{n}x{n}':>10} {span:>22} {est / 1e6:12.1f} "
                  f"{est / hi:8.2f} {est / lo:8.2f}")  # fmt: skip
    args.output.write_text(json.dumps({"delay_maps": DELAY_MAPS, "chunk_maps": CHUNK_MAPS,
                                       "cases": rows}, indent=2))  # fmt: skip
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
