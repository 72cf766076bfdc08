"""Screenshot of the viewer, rendered offscreen: on a recording, or following a running demo.

Writes the PNG (``widget.grab()`` of the whole window) and a JSON of what was shown.

Usage::

    python scripts/screenshot_viewer.py -o docs/viewer.png                 # live demo (default)
    python scripts/screenshot_viewer.py --recording sim.zarr --frame 200 -o docs/viewer.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from dblink_live import __version__


def _wait(app, condition, timeout_s: float) -> bool:
    """Run the event loop until ``condition()`` or the timeout; True if it held."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recording", type=Path, help="recording to show (default: a live demo)")
    ap.add_argument("--frame", type=int, default=None, help="raw frame to show (recording)")
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/viewer.png"))
    ap.add_argument("--json", type=Path, default=None, help="JSON report (default: beside -o)")
    ap.add_argument("--frames", type=int, default=400, help="demo: frames to acquire")
    ap.add_argument("--fps", type=float, default=100.0, help="demo: camera frame rate")
    ap.add_argument("--outputs", type=int, default=6, help="demo: grab after this many outputs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", default="1200x1000", help="window size WxH in pixels")
    ap.add_argument("--timeout", type=float, default=300.0, help="demo: seconds to wait at most")
    args = ap.parse_args()

    from dblink_live.display import ViewerWindow
    from dblink_live.display.app import application

    app = application()
    width, height = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    info: dict = {"script": "screenshot_viewer", "package_version": __version__}
    tmp = None
    pipe = None
    if args.recording is not None:
        win = ViewerWindow(args.recording)
        win.resize(width, height)
        win.show()
        n = win.source.n_frames
        frame = n // 2 if args.frame is None else min(max(args.frame, 0), n - 1)
        win.show_frame_index(frame)
        info.update(mode="recording", recording=str(args.recording))
    else:
        from dblink_live.pipeline import demo_pipeline

        tmp = tempfile.TemporaryDirectory()
        pipe = demo_pipeline(
            Path(tmp.name) / "demo.zarr", n_frames=args.frames, fps=args.fps, device=args.device
        )
        pipe.start()
        win = ViewerWindow(pipeline=pipe, title="dblink_live: live demo (virtual microscope)")
        win.resize(width, height)
        win.show()
        ok = _wait(
            app,
            lambda: win.frame is not None and win.frame.output_index >= args.outputs - 1,
            args.timeout,
        )
        if not ok:
            print(f"no {args.outputs} outputs within {args.timeout} s", file=sys.stderr)
        _wait(app, lambda: False, 0.3)  # one more status tick
        info.update(mode="live", frames=args.frames, fps=args.fps)
    _wait(app, lambda: False, 0.2)  # let the layout settle

    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not win.grab().save(str(args.output)):
        print(f"could not write {args.output}", file=sys.stderr)
        return 1
    from PIL import Image

    with Image.open(args.output) as img:
        pixels = np.asarray(img.convert("RGB"))
    vf = win.frame
    info.update(
        output=str(args.output),
        width_px=int(pixels.shape[1]),
        height_px=int(pixels.shape[0]),
        unique_colours=len(np.unique(pixels.reshape(-1, 3), axis=0)),
        frame_index=vf.frame_index if vf else -1,
        output_index=vf.output_index if vf else -1,
        position=win.time_bar.label.text(),
        panels={p.objectName(): p.subtitle.text() for p in win.panels},
        status=win.status_fields.text() or win.info_label.text(),
        alerts=list(win.banner.errors + win.banner.warnings),
        display_counters=dict(win.counters),
    )
    win.close()
    if pipe is not None:
        info["pipeline_final"] = pipe.status().line()
    info["elapsed_s"] = round(time.perf_counter() - t0, 2)
    out_json = args.json or args.output.with_suffix(".json")
    out_json.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    print(f"wrote {args.output} ({info['width_px']}x{info['height_px']}) and {out_json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
