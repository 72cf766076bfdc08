"""How well the camera is estimated from the frames (photon transfer), against known cameras.

Cases: simulated EMCCD and sCMOS movies (our simulator's camera models; the estimator shares no
code with them) with a non-uniform and a flat background, 100 and 5 frames; plus the real
frames of ``../shared/data/formats/images.tif`` (no known calibration: the estimate is printed).

Usage::

    python scripts/eval_camera_estimate.py -o eval_camera_estimate.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.config import load_config
from dblink_live.io.tables import read_stack
from dblink_live.localize import estimate_camera
from dblink_live.sim import simulate_movie

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "formats" / "images.tif"

CAMERAS = {
    "EMCCD (SMLM-2016), smooth background": {
        "kind": "emccd",
        "background_kind": "smooth",
        "background_variation": 0.5,
    },
    "EMCCD (SMLM-2016), flat background": {"kind": "emccd"},
    "EMCCD gain 100, 12 e-/ADU, offset 400, smooth": {
        "kind": "emccd",
        "em_gain": 100.0,
        "e_per_adu": 12.0,
        "baseline_adu": 400.0,
        "background_kind": "smooth",
        "background_variation": 0.5,
    },
    "sCMOS 0.5 e-/ADU, offset 300, smooth": {
        "kind": "scmos",
        "e_per_adu": 0.5,
        "baseline_adu": 300.0,
        "background_photons": 80.0,
        "background_kind": "smooth",
        "background_variation": 0.5,
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("eval_camera_estimate.json"))
    args = ap.parse_args()
    base = load_config(REPO / "configs" / "filaments.yaml")
    rows: list[dict[str, Any]] = []
    for name, cam in CAMERAS.items():
        cfg = base.updated(simulation={"camera": cam, "photophysics": {"density_per_um2": 0.2}})
        movie = simulate_movie(cfg, n_frames=100, seed=5)
        c = cfg.simulation.camera
        truth = getattr(c, "em_gain", 1.0) / c.e_per_adu
        for frames in (100, 5):
            est = estimate_camera(movie.raw[:frames], camera=c.kind)
            rows.append(
                {
                    "camera": name,
                    "frames": frames,
                    "true_offset_adu": c.baseline_adu,
                    "offset_adu": est.baseline_adu,
                    "offset_measured": est.offset_determined,
                    "true_adu_per_electron": truth,
                    "adu_per_electron": est.adu_per_electron,
                    "gain_error": est.adu_per_electron / truth - 1,
                }
            )
    if REAL.is_file():
        raw, _ = read_stack(REAL)
        est = estimate_camera(raw)
        rows.append(
            {
                **est.to_dict(),
                "camera": "real dSTORM frames (images.tif)",
                "frames": len(raw),
                "summary": est.summary(),
            }
        )
    args.output.write_text(json.dumps(rows, indent=2))
    print("| camera | frames | offset true / estimated (ADU) | ADU per e- true / estimated |")
    print("|---|---|---|---|")
    for r in rows:
        if "true_offset_adu" not in r:
            print(f"| {r['camera']} | {r['frames']} | {r['summary']} | |")
            continue
        how = "" if r["offset_measured"] else " (assumed)"
        print(
            f"| {r['camera']} | {r['frames']} | {r['true_offset_adu']:.0f} / "
            f"{r['offset_adu']:.1f}{how} | {r['true_adu_per_electron']:.3g} / "
            f"{r['adu_per_electron']:.3g} ({100 * r['gain_error']:+.1f} %) |"
        )
    print(f"-> {args.output}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
