"""Repeat DemoCamera acquisitions through pycromanager until one fails or crashes.

A diagnostic for the native crash CI saw once (SIGABRT during a DemoCamera sequence
acquisition). Each round starts the headless core, acquires a time series into a ring through
``MicroManagerSource`` (the same path as ``tests/test_acquire.py``), checks every frame arrived,
and stops the core. Rounds run in child processes, several per child, so a crash ends one child
and is counted (with the fatal-error line) instead of ending the run; everything a failed child
printed is kept beside the JSON (``<output stem>_child<k>.log``).

Usage::

    python scripts/stress_democamera.py                       # 4 children x 10 rounds
    python scripts/stress_democamera.py --children 6 --rounds 40 -o stress.json
    python scripts/stress_democamera.py --plain      # pycromanager alone, as the control
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def _plain_round(adapters: str, config: str, frames: int) -> int:
    """One acquisition with pycromanager alone (none of dblink_live's acquisition code): the
    control. Before stopping it waits as ``MicroManagerSource.stop`` does."""
    import numpy as np
    from pycromanager import (
        Acquisition,
        Core,
        multi_d_acquisition_events,
        start_headless,
        stop_headless,
    )
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    from dblink_live.acquire.micromanager import _let_camera_thread_exit

    start_headless(adapters, config, python_backend=True, buffer_size_mb=64)
    try:
        Core().set_exposure(5.0)
        copies: list[np.ndarray] = []

        def hook(image, metadata):
            copies.append(np.array(image, copy=True))

        with Acquisition(show_display=False, image_process_fn=hook) as acq:
            acq.acquire(multi_d_acquisition_events(num_time_points=frames))
        return len(copies)
    finally:
        # the same wait as MicroManagerSource.stop, so that the two differ only in our code
        _let_camera_thread_exit(Core())
        stop_headless()
        if hasattr(Engine, "singleton"):
            del Engine.singleton


def _child(rounds: int, frames: int, plain: bool) -> None:
    import faulthandler

    faulthandler.enable(all_threads=True)
    from dblink_live.acquire import MicroManagerSource, demo_camera_paths
    from dblink_live.io.ring import FrameRing

    adapters, config = demo_camera_paths()
    for i in range(rounds):
        if plain:
            got = _plain_round(adapters, config, frames)
            if got != frames:
                print(f"round {i}: {got} of {frames} frames", flush=True)
                sys.exit(1)
            print(f"round {i}: ok", flush=True)
            continue
        src = MicroManagerSource(
            n_frames=frames,
            exposure_ms=5.0,
            adapter_path=adapters,
            config_file=config,
            keep_in_micromanager=False,
        )
        try:
            src.start()
            ring = FrameRing(2 * frames, src.frame_shape)
            got = src.run(ring.put, threading.Event())
        finally:
            src.stop()
        if got != frames:
            print(f"round {i}: {got} of {frames} frames", flush=True)
            sys.exit(1)
        print(f"round {i}: ok", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children", type=int, default=4, help="child processes, one after another")
    ap.add_argument("--rounds", type=int, default=10, help="acquisitions per child")
    ap.add_argument("--frames", type=int, default=25, help="frames per acquisition")
    ap.add_argument("-o", "--output", type=Path, default=Path("stress_democamera.json"))
    ap.add_argument(
        "--plain",
        action="store_true",
        help="pycromanager alone, none of dblink_live's acquisition code (the control)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.rounds, args.frames, args.plain)
        return
    children = []
    t0 = time.perf_counter()
    for k in range(args.children):
        cmd = [sys.executable, __file__, "--child", "--rounds", str(args.rounds)]
        cmd += ["--plain"] if args.plain else []
        proc = subprocess.run([*cmd, "--frames", str(args.frames)], capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        ok = sum(line.endswith(": ok") for line in proc.stdout.splitlines())
        fatal = [line for line in out.splitlines() if line.startswith("Fatal Python error")]
        row = {"child": k, "exit": proc.returncode, "rounds_ok": ok, "fatal": fatal}
        if proc.returncode != 0:  # keep everything it printed: the crash's only record
            log = args.output.with_name(f"{args.output.stem}_child{k}.log")
            log.write_text(out)
            row["log"] = str(log)
        children.append(row)
        state = "ok" if proc.returncode == 0 else f"exit {proc.returncode} {fatal}"
        print(f"child {k}: {ok}/{args.rounds} rounds, {state}", flush=True)
    result = {
        "rounds": args.children * args.rounds,
        "rounds_ok": sum(c["rounds_ok"] for c in children),
        "crashed_children": sum(c["exit"] < 0 for c in children),
        "failed_children": sum(c["exit"] > 0 for c in children),
        "frames_per_round": args.frames,
        "plain_pycromanager": args.plain,
        "wall_s": round(time.perf_counter() - t0, 1),
        "children": children,
    }
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "children"}))
    sys.exit(0 if result["rounds_ok"] == result["rounds"] else 1)


if __name__ == "__main__":
    main()
