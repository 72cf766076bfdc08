"""Signals at random moments of `demo`, `replay` and `reprocess`, many times; every outcome
checked against the invariants of ``tests/test_faults.py``.

Each case starts the command in its own process group (as a terminal runs a job), waits a
random time (from the start-up to past the end of the acquisition), and sends SIGINT, SIGTERM
or SIGKILL to the whole group. Then: no traceback in anything printed, the exit status is one
the README documents for that signal, and the recording (when it exists) passes
:func:`check_recording`.

Usage::

    python scripts/stress_faults.py --rounds 3 -o stress_faults.json     # 27 cases
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dblink_live.config import RunConfig, save_config
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording

#: what a command may exit with after each signal (README, "Exit status")
EXPECTED = {
    signal.SIGINT: {0, 130},  # drained (0), or stopped before the run started / batch (130)
    signal.SIGTERM: {0, 143},
    signal.SIGKILL: {-signal.SIGKILL},
}


def check_recording(path: Path, window: int | None = None) -> Recording:
    """Invariants of a recording after a fault: it opens, every counted frame reads back, no
    localization lies beyond the recorded frames, and no map has confidence over a window in
    which no frame was localized. Raises AssertionError."""
    rec = Recording.open(path)
    n = rec.n_frames
    assert rec.read_frames(0, n).shape[0] == n, "a counted frame does not read back"
    assert rec.unreadable_frames() == [], "an unreadable chunk among the counted frames"
    if "localizations" in rec.group:
        locs = rec.read_localizations()
        assert len(locs) == 0 or int(locs.frame.max()) < n, "localizations beyond the frames"
        got = rec.read_image("confidence")
        if got is not None:
            conf, attrs = got
            stride, w = int(attrs["stride_frames"]), int(attrs["window_frames"])
            localized = np.zeros(n, bool)
            for a, b in rec.group["localizations"].attrs.get("localized_frames") or []:
                localized[a:b] = True
            for k in range(len(conf)):
                if not localized[k * stride : k * stride + w].any():
                    assert conf[k].max() == 0, f"map {k} has confidence without input"
    return rec


def _cmd() -> list[str]:
    exe = shutil.which("dblink-live")
    return [exe] if exe else [sys.executable, "-m", "dblink_live.cli"]


def _default_signals() -> None:
    """A job started in the background (nohup, ``&``) inherits SIGINT ignored, as Unix wants;
    the cases run as a terminal's foreground job would, with SIGINT and SIGTERM live."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _prepare(work: Path) -> dict[str, Path]:
    cfg = work / "small.yaml"
    save_config(RunConfig().updated(simulation={"camera": {"width_px": 32, "height_px": 32}}), cfg)
    sim = work / "sim.zarr"
    subprocess.run([*_cmd(), "simulate", "-n", "1500", "-c", str(cfg), "-o", str(sim), "-q"],
                   check=True)  # fmt: skip
    subprocess.run([*_cmd(), "reprocess", str(sim), "-q", "--device", "cpu",
                    "--localizer", "classic"], check=True, capture_output=True)  # fmt: skip
    return {"config": cfg, "sim": sim}


def _case(command: str, sig: int, delay: float, work: Path, inputs: dict[str, Path], i: int):  # type: ignore[no-untyped-def]
    out = work / f"{command}_{i}.zarr"
    if command == "demo":
        args = ["demo", "-n", "3000", "-c", str(inputs["config"]), "-o", str(out),
                "--headless", "--device", "cpu", "--fps", "200"]  # fmt: skip
    elif command == "replay":
        args = ["replay", str(inputs["sim"]), "-o", str(out), "--headless", "--device", "cpu",
                "--speed", "1"]  # fmt: skip
    else:  # reprocess a copy, so every case starts from a complete recording
        shutil.copytree(inputs["sim"], out)
        args = ["reprocess", str(out), "--overwrite", "--device", "cpu", "--stride", "1"]
    before = Recording.open(out).read_image("reconstruction")[0] if command == "reprocess" else None
    t0 = time.monotonic()
    proc = subprocess.Popen([*_cmd(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=_default_signals)  # fmt: skip
    time.sleep(delay)
    sent = proc.poll() is None
    if sent:
        os.killpg(proc.pid, sig)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return {"ok": False, "why": "hung after the signal"}
    result = {"command": command, "signal": signal.Signals(sig).name, "delay_s": round(delay, 2),
              "signal_sent": sent, "exit": proc.returncode,
              "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    problems = []
    if "Traceback" in stderr or "Traceback" in stdout:
        problems.append("a traceback was printed")
    allowed = EXPECTED[sig] if sent else {0}
    if proc.returncode not in allowed:
        problems.append(f"exit {proc.returncode}, expected one of {sorted(allowed)}")
    heeded = "stop requested" in stderr or proc.returncode != 0
    result["signal_heeded"] = heeded
    if sent and sig != signal.SIGKILL and not heeded and command == "reprocess":
        problems.append("the signal was ignored")
    if out.exists():
        try:
            rec = check_recording(out)
            result["frames"] = rec.n_frames
            if before is not None:  # an interrupted reprocess keeps the old result whole
                after = rec.read_image("reconstruction")[0]
                if proc.returncode != 0 and not np.array_equal(before, after):
                    problems.append("the previous reconstruction was not kept")
        except DblinkError as exc:
            if sig != signal.SIGKILL:  # a kill during creation may leave a store being made
                problems.append(f"the recording does not open: {exc}")
            result["recording"] = f"does not open: {exc}"
        except AssertionError as exc:
            problems.append(f"invariant: {exc}")
    result["ok"] = not problems
    result["problems"] = problems
    if problems:
        result["stderr_tail"] = stderr[-2000:]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the 9 command x signal cases")
    ap.add_argument("--max-delay-s", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, default=Path("stress_faults.json"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="dblink-stress-") as tmp:
        work = Path(tmp)
        inputs = _prepare(work)
        i = 0
        for _ in range(args.rounds):
            for command in ("demo", "replay", "reprocess"):
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                    delay = rng.uniform(0.3, args.max_delay_s)
                    r = _case(command, sig, delay, work, inputs, i)
                    i += 1
                    results.append(r)
                    mark = "ok  " if r["ok"] else "FAIL"
                    said = "; ".join(r.get("problems", []))
                    print(f"{mark} {command:9} {r.get('signal', ''):7} at {delay:5.1f} s -> "
                          f"exit {r.get('exit')} {said}", flush=True)  # fmt: skip
    survived = sum(r["ok"] for r in results)
    summary = {"cases": len(results), "survived": survived, "seed": args.seed, "results": results}
    args.output.write_text(json.dumps(summary, indent=2))
    print(f"{survived} of {len(results)} fault cases survived; wrote {args.output}")
    return 0 if survived == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
