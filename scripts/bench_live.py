"""Live pipeline benchmark on the virtual microscope (simulated camera in Micro-Manager, frames
through the pycromanager hook, CNN localizer, streaming ConvBiLSTM, recording on disk).

For each reconstruction model and camera rate it runs the whole demo pipeline and reports, side
by side: frames dropped by the live path (the recorder never drops), the latency from a frame's
arrival to the reconstruction that covers it being available (p50/p99), time spent in the
acquisition hook per frame (p50/p99/max), worker busy time, and the process memory (RSS) sampled
over the run. The highest rate with zero drops is reported per model.

``--load N`` runs N CPU-burning processes beside the pipeline (a busy shared machine) and
``--budget`` compares the latency budget (the default: look-ahead + 0.5 s, whole maps skipped
evenly to keep within it) with ``off`` (no budget: the backlog grows until the ring overruns),
side by side: latency p50/p99, maps skipped, frames dropped.

Usage::

    python scripts/bench_live.py -o bench_live.json                 # 64x64 camera, CPU
    python scripts/bench_live.py --rates 100 200 --frames 2000 --weights recon_filaments
    python scripts/bench_live.py --size 256 --device cuda --rates 100 200   # on a GPU
    python scripts/bench_live.py --rates 100 --frames 3000 --weights recon_filaments_live \
        --load 0 1 --budget default off -o bench_live_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from dblink_live import __version__
from dblink_live.config import RunConfig
from dblink_live.pipeline import demo_pipeline


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def competing_load(n: int):  # type: ignore[no-untyped-def]
    """``n`` processes that burn a CPU core each while the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run_once(
    weights: str,
    rate: float,
    frames: int,
    size: int,
    device: str,
    delay: int,
    workdir: Path,
    budget: str = "default",
    load: int = 0,
) -> dict:
    live = {} if budget == "default" else {"latency_budget_s": 3600.0 if budget == "off" else
                                           float(budget)}  # fmt: skip
    cfg = RunConfig().updated(
        simulation={"camera": {"width_px": size, "height_px": size}}, live=live
    )
    out = workdir / f"bench_{weights}_{rate:g}_{budget}_{load}.zarr"
    pipe = demo_pipeline(
        out,
        n_frames=frames,
        fps=rate,
        config=cfg,
        device=device,
        seed=1,
        delay_maps=delay,
        overwrite=True,
        recon=weights,
    )
    rss: list[float] = []
    timeline: list[dict] = []
    done = threading.Event()

    def sample() -> None:
        t_start = time.perf_counter()
        while not done.wait(0.5):
            rss.append(_rss_mb())
            st = pipe.status()
            timeline.append(
                {
                    "t_s": round(time.perf_counter() - t_start, 2),
                    "rss_mb": round(rss[-1], 1),
                    "frames_in": st.frames_in,
                    "localized": st.frames_localized,
                    "dropped": st.dropped_frames,
                    "outputs": st.outputs,
                    "localizer_fps": round(st.localizer_fps, 1),
                }
            )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with competing_load(load):
        status = pipe.run()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    hook = np.array(pipe.source.hook_times_s) * 1e3
    lat = pipe.latencies()
    return {
        "weights": weights,
        "rate_hz": rate,
        "latency_budget": budget,
        "latency_budget_s": pipe.summary.get("latency_budget_s"),
        "competing_processes": load,
        "skipped_maps": status.skipped_maps,
        "frames": frames,
        "state": status.state.value,
        "error": status.error,
        "frames_recorded": status.frames_recorded,
        "dropped_frames": status.dropped_frames,
        "recorder_lost": status.recorder_lost,
        "recorder_max_backlog": pipe.summary.get("recorder_max_backlog"),
        "outputs": status.outputs,
        "wall_s": round(wall, 2),
        "acquisition_s": round(frames / rate, 2),
        "latency_s": {
            "p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99": float(np.percentile(lat, 99)) if len(lat) else None,
        },
        "hook_ms": {
            "p50": float(np.percentile(hook, 50)),
            "p99": float(np.percentile(hook, 99)),
            "max": float(hook.max()),
        },
        "busy_s": pipe.summary.get("busy_s"),
        "timeline": timeline,
        "rss_mb": {
            "start": rss[0] if rss else None,
            "max": max(rss) if rss else None,
            "end": rss[-1] if rss else None,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_live.json"))
    ap.add_argument("--weights", nargs="+", default=["recon_filaments_live", "recon_filaments"])
    ap.add_argument("--rates", nargs="+", type=float, default=[50, 100, 150])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64, help="camera pixels per side")
    ap.add_argument("--delay-maps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--load", nargs="+", type=int, default=[0], help="CPU-burning processes")
    ap.add_argument("--budget", nargs="+", default=["default"],
                    help="latency budget: default, off, or seconds")  # fmt: skip
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(w, rate, b, n) for w in args.weights for rate in args.rates
                 for n in args.load for b in args.budget]  # fmt: skip
        for w, rate, budget, load in cases:
            r = run_once(
                    w, rate, args.frames, args.size, args.device, args.delay_maps, Path(tmp),
                    budget, load,
                )  # fmt: skip
            runs.append(r)
            print(
                f"{w:22s} {rate:6.0f} Hz budget {budget:7s} load {load}: skipped "
                f"{r['skipped_maps']:4d} maps, "
                f"dropped {r['dropped_frames']:5d}, recorder lost "
                f"{r['recorder_lost']}, latency p50 {r['latency_s']['p50']:.2f} s p99 "
                f"{r['latency_s']['p99']:.2f} s, hook p99 {r['hook_ms']['p99']:.3f} ms, "
                f"RSS max {r['rss_mb']['max']:.0f} MB, busy {r['busy_s']}",
                flush=True,
            )
    best = {
        w: max((r["rate_hz"] for r in runs if r["weights"] == w and r["dropped_frames"] == 0
                and r["competing_processes"] == 0), default=None)
        for w in args.weights
    }  # fmt: skip
    for w, b in best.items():
        print(f"{w}: highest rate with zero drops {b} Hz ({args.size}x{args.size} camera)")
    report = {
        "benchmark": "live pipeline on the virtual microscope",
        "package_version": __version__,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "camera_px": args.size,
        "delay_maps": args.delay_maps,
        "highest_zero_drop_rate_hz": best,
        "runs": runs,
    }
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
