"""Benchmark the viewer's cost: pipeline throughput with and without the viewer, side by side.

Each repeat runs the same demo acquisition (virtual microscope, frames arriving faster than the
pipeline processes them, so the pipeline is the bottleneck) twice: headless, and with the
viewer open (offscreen) following it. Reports the pipeline's reconstructions/s and localized
frames/s, its reconstruction compute per map, the display's refresh and redraw rates and the
time the viewer spends per refresh, and the viewer/headless ratios (the viewer must cost < 10 %).

Usage::

    python scripts/bench_viewer.py -o bench_viewer.json [--frames 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from dblink_live import __version__


def _run(
    mode: str, args: argparse.Namespace, workdir: Path, index: int, cfg: Any
) -> dict[str, Any]:
    from dblink_live.pipeline import demo_pipeline

    out = workdir / f"{mode}{index}.zarr"
    pipe = demo_pipeline(
        out, n_frames=args.frames, fps=args.fps, config=cfg, device=args.device, seed=index
    )
    display: dict[str, Any] = {}
    if mode == "headless":
        pipe.start()
        t0 = time.perf_counter()
        status = pipe.wait()
    else:
        from qtpy import QtCore

        from dblink_live.display import ViewerWindow
        from dblink_live.display.app import application

        app = application()
        # the window is built before the run starts: its start-up is not the pipeline's cost
        win = ViewerWindow(pipeline=pipe, refresh_hz=args.refresh_hz)
        win.resize(1200, 1000)
        busy = [0.0]
        refresh = win.refresh

        def timed_refresh() -> None:
            t = time.perf_counter()
            refresh()
            busy[0] += time.perf_counter() - t

        win.timer.timeout.disconnect()
        win.timer.timeout.connect(timed_refresh)
        win.show()
        app.processEvents()
        loop = QtCore.QEventLoop()
        poll = QtCore.QTimer()
        poll.timeout.connect(lambda: loop.quit() if pipe.state.done else None)
        poll.start(50)
        cpu0 = time.thread_time()
        pipe.start()
        t0 = time.perf_counter()
        loop.exec()
        poll.stop()
        wall = time.perf_counter() - t0
        cpu = time.thread_time() - cpu0
        counters = dict(win.counters)
        win.close()
        app.processEvents()
        status = pipe.status()
        display = {
            "refresh_hz_target": args.refresh_hz,
            "ticks_per_s": counters["ticks"] / wall,
            "redraws_per_s": counters["redraws"] / wall,
            "skipped_versions": counters["skipped_versions"],
            "refresh_ms_mean": 1e3 * busy[0] / max(counters["ticks"], 1),
            "qt_thread_cpu_fraction": cpu / wall,
        }
    wall = time.perf_counter() - t0
    summary = pipe.summary
    elapsed = status.elapsed_s or wall
    row = {
        "mode": mode,
        "repeat": index,
        "state": status.state.value,
        "elapsed_s": elapsed,
        "frames_in": status.frames_in,
        "frames_localized": status.frames_localized,
        "dropped_frames": status.dropped_frames,
        "outputs": status.outputs,
        "outputs_per_s": status.outputs / elapsed,
        "localized_frames_per_s": status.frames_localized / elapsed,
        "recon_ms_per_map": 1e3
        * summary.get("busy_s", {}).get("reconstruction", 0.0)
        / max(status.outputs, 1),
        "localizer_ms_per_frame": 1e3
        * summary.get("busy_s", {}).get("localizer", 0.0)
        / max(status.frames_localized, 1),
        "device": status.device,
        "loadavg_1min_after": os.getloadavg()[0],
        **({"display": display} if display else {}),
    }
    print(
        f"{mode:8s} #{index}: {row['outputs']} maps in {elapsed:.1f} s = "
        f"{row['outputs_per_s']:.2f} maps/s, {row['localized_frames_per_s']:.1f} loc fr/s, "
        f"recon {row['recon_ms_per_map']:.0f} ms/map"
        + (
            f" | display {display['ticks_per_s']:.1f} ticks/s, "
            f"{display['redraws_per_s']:.1f} redraws/s, {display['refresh_ms_mean']:.2f} ms each"
            if display
            else ""
        ),
        flush=True,
    )
    return row


class _SyntheticPipeline:
    """Results as fast as a thread can make them (the display's ceiling, no pipeline cost)."""

    def __init__(self, camera_px: int, grid_px: int, path: Path):
        import threading

        import numpy as np

        from dblink_live.pipeline_types import LiveResults, PipelineState, PipelineStatus

        self._np, self._status_cls = np, PipelineStatus
        self.state = PipelineState.RUNNING
        self.recording_path = path
        self._rng = np.random.default_rng(0)
        self._res = LiveResults(pixel_size_nm=160.0, bin_nm=160.0 * camera_px / grid_px)
        self._shape, self._grid = (camera_px, camera_px), (grid_px, grid_px)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from dataclasses import replace

        np, v = self._np, 0
        while not self._stop.is_set():
            v += 1
            raw = self._rng.integers(100, 4000, self._shape, dtype=np.uint16)
            rec = self._rng.random(self._grid, dtype=np.float32)
            self._res = replace(
                self._res,
                version=v,
                frame_index=v,
                raw=raw,
                output_index=v // 10,
                reconstruction=rec,
                confidence=rec,
                output_first_frame=v,
                window_frames=10,
            )
            time.sleep(0.002)

    def start(self) -> _SyntheticPipeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> Any:
        self._thread.join(timeout)
        return self.status()

    def status(self) -> Any:
        return self._status_cls(state=self.state, device="synthetic")

    def latest(self, render_maps: int = 10) -> Any:
        from dataclasses import replace

        res = self._res
        return replace(res, render=res.reconstruction, render_maps=render_maps)


def _display_ceiling(args: argparse.Namespace, seconds: float = 3.0) -> dict[str, Any]:
    """Redraws/s and Qt-thread CPU per redraw when every refresh has new results."""
    from qtpy import QtCore

    from dblink_live.display import ViewerWindow
    from dblink_live.display.app import application

    app = application()
    px = args.camera_px
    pipe = _SyntheticPipeline(px, px * 4, Path(tempfile.gettempdir()) / "none.zarr").start()
    win = ViewerWindow(pipeline=pipe, refresh_hz=args.refresh_hz)
    win.resize(1200, 1000)
    win.show()
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(round(1000 * seconds), loop.quit)
    cpu0, t0 = time.thread_time(), time.perf_counter()
    loop.exec()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    counters = dict(win.counters)
    win.close()
    app.processEvents()
    return {
        "seconds": wall,
        "refresh_hz_target": args.refresh_hz,
        "redraws_per_s": counters["redraws"] / wall,
        "skipped_versions_per_s": counters["skipped_versions"] / wall,
        "qt_thread_cpu_fraction": cpu / wall,
        "qt_thread_ms_per_redraw": 1e3 * cpu / max(counters["redraws"], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_viewer.json"))
    ap.add_argument("--frames", type=int, default=300, help="frames per run")
    ap.add_argument("--fps", type=float, default=1000.0, help="camera rate (above throughput)")
    ap.add_argument("--camera-px", type=int, default=32, help="camera width = height (pixels)")
    ap.add_argument("--repeats", type=int, default=3, help="headless/viewer pairs")
    ap.add_argument("--refresh-hz", type=float, default=20.0, help="viewer refresh rate")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    from dblink_live.config import RunConfig

    ceiling = _display_ceiling(args)
    print(
        f"display ceiling: {ceiling['redraws_per_s']:.1f} redraws/s with new results at every "
        f"refresh (target {args.refresh_hz:g}), {ceiling['qt_thread_ms_per_redraw']:.1f} ms "
        f"of Qt-thread CPU per redraw",
        flush=True,
    )

    px = args.camera_px
    cfg = RunConfig().updated(simulation={"camera": {"width_px": px, "height_px": px}})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            # alternate the order so a drift in machine load hits both modes alike
            order = ("headless", "viewer") if r % 2 == 0 else ("viewer", "headless")
            for mode in order:
                rows.append(_run(mode, args, Path(tmp), r, cfg))

    def med(mode: str, key: str) -> float:
        return statistics.median(row[key] for row in rows if row["mode"] == mode)

    keys = ("outputs_per_s", "localized_frames_per_s", "recon_ms_per_map")
    headless = {k: med("headless", k) for k in keys}
    viewer = {k: med("viewer", k) for k in keys}
    ratios = {k: viewer[k] / headless[k] if headless[k] else None for k in keys}
    displays = [row["display"] for row in rows if row["mode"] == "viewer"]
    display = {
        k: statistics.median(d[k] for d in displays)
        for k in ("ticks_per_s", "redraws_per_s", "refresh_ms_mean", "qt_thread_cpu_fraction")
    }
    cost = 1 - ratios["outputs_per_s"] if ratios["outputs_per_s"] else None
    result = {
        "benchmark": "bench_viewer",
        "package_version": __version__,
        "frames": args.frames,
        "fps": args.fps,
        "camera_px": px,
        "repeats": args.repeats,
        "refresh_hz": args.refresh_hz,
        "device": rows[0]["device"],
        "median": {"headless": headless, "viewer": viewer, "viewer_over_headless": ratios},
        "display": display,
        "display_ceiling": ceiling,
        "throughput_cost": cost,
        "under_10_percent": cost is not None and cost < 0.10,
        "runs": rows,
    }
    print()
    print(f"{'':24s}{'headless':>12s}{'viewer':>12s}{'viewer/headless':>17s}")
    for k in keys:
        print(f"{k:24s}{headless[k]:12.2f}{viewer[k]:12.2f}{ratios[k] or 0:17.3f}")
    print(
        f"display: {display['ticks_per_s']:.1f} refreshes/s (target {args.refresh_hz:g}), "
        f"{display['redraws_per_s']:.1f} redraws/s, {display['refresh_ms_mean']:.2f} ms per "
        f"refresh; Qt thread CPU {100 * display['qt_thread_cpu_fraction']:.1f} % of a core"
    )
    if cost is not None:
        print(f"viewer cost: {100 * cost:+.1f} % of throughput (must be < 10 %)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
