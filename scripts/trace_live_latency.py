"""Per-output latency of one live demo run (64x64 virtual microscope, 100 Hz), for finding where
the latency goes: prints p50/p99/max, skipped maps and dropped frames, and writes every
output's latency (s, in output order) and the skipped maps as JSON.

Usage::

    python scripts/trace_live_latency.py FRAMES LOAD TAG     # writes /tmp/lat_TAG.json

``LOAD`` CPU-burning processes run beside it (as ``bench_live.py --load``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_live

from dblink_live.config import RunConfig
from dblink_live.pipeline import demo_pipeline


def main() -> None:
    frames, load, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with tempfile.TemporaryDirectory() as d:
        pipe = demo_pipeline(
            Path(d) / "trace.zarr", n_frames=frames, fps=100, config=RunConfig(), device="cpu",
            seed=1, delay_maps=4, overwrite=True, recon="recon_filaments_live",
        )  # fmt: skip
        with bench_live.competing_load(load):
            st = pipe.run()
        lat = pipe.latencies()
    skipped = list(st.skipped_maps) if not isinstance(st.skipped_maps, int) else st.skipped_maps
    n_skip = len(skipped) if isinstance(skipped, list) else skipped
    print(
        f"p50 {np.percentile(lat, 50):.2f} p99 {np.percentile(lat, 99):.2f} max {lat.max():.2f} "
        f"n={len(lat)} skipped={n_skip} dropped={st.dropped_frames}"
    )
    out = {"latency_s": lat.tolist(), "skipped": skipped, "dropped": st.dropped_frames}
    Path(f"/tmp/lat_{tag}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
