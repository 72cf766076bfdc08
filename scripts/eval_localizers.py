"""Score the CNN and classic localizers for the README (SMLM-2016 metrics, 250 nm, greedy).

Data sets, all in one run:

* simulated filaments on the SMLM-2016 EMCCD (64x64 px of 160 nm, PSF sigma 130 nm), at low
  density (0.2 emitters/um^2) and high density (1.5 and 2.0 emitters/um^2);
* the Deep-STORM demo-1 stack (``../shared/data/deepstorm_demo1``: 20 frames, 64x64 px of
  100 nm, ~6 emitters/um^2, ThunderSTORM-generated) against its ground-truth CSV. Its camera
  calibration is not stated, so it is estimated here by a least-squares fit of the pixel values
  to the ground truth rendered with the PSF (ADU = offset + gain x photons); the ground truth's
  own ``offset [photon]`` column gives the background.

Usage::

    python scripts/eval_localizers.py -o eval_localizers.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.config import ClassicLocalizerConfig, CNNLocalizerConfig, RunConfig
from dblink_live.io.tables import read_localizations, read_stack
from dblink_live.localize import CameraCalibration, make_localizer
from dblink_live.metrics import score_localizations
from dblink_live.sim import simulate_movie
from dblink_live.sim.camera import render_expected_photons

REPO = Path(__file__).resolve().parents[1]
DEEPSTORM = REPO.parent / "shared" / "data" / "deepstorm_demo1"


def _score_both(raw, cal, gt_f, gt_x, gt_y, device: str) -> dict[str, Any]:
    out = {}
    for cfg in (CNNLocalizerConfig(), ClassicLocalizerConfig()):
        loc = make_localizer(cfg, device)
        pred = loc.localize(raw, cal)
        s = score_localizations(gt_f, gt_x, gt_y, pred.frame, pred.x_nm, pred.y_nm)
        out[cfg.kind] = s.to_dict()
    return out


def simulated(density: float, frames: int, device: str) -> dict[str, Any]:
    cfg = RunConfig().updated(
        simulation={"photophysics": {"density_per_um2": density}, "optics": {"sigma_nm": 130.0}}
    )
    movie = simulate_movie(cfg, n_frames=frames, seed=100)
    cal = CameraCalibration.from_camera(movie.metadata["camera"])
    em = movie.emitters
    res = _score_both(movie.raw, cal, em.frame, em.x_nm, em.y_nm, device)
    return {
        "data": f"simulated filaments, {density}/um^2",
        "frames": frames,
        "true_per_frame": len(em) / frames,
        "results": res,
    }


def deepstorm(device: str) -> dict[str, Any]:
    raw, _ = read_stack(DEEPSTORM / "artificial_dataset_demo1.tif")
    gt = read_localizations(DEEPSTORM / "positions_demo1.csv", pixel_size_nm=100.0)
    sigma_nm = 110.0  # median "sigma [nm]" of the ground truth
    signal = render_expected_photons(
        gt.frame, gt.x_nm, gt.y_nm, gt.photons, len(raw), raw.shape[1:], 100.0, sigma_nm
    )
    design = np.column_stack([np.ones(signal.size), signal.ravel()])
    (offset, gain), *_ = np.linalg.lstsq(design, raw.ravel().astype(float), rcond=None)
    background = 50.0  # the ground truth's offset [photon]
    cal = CameraCalibration(
        pixel_size_nm=100.0,
        baseline_adu=offset - gain * background,
        e_per_adu=1.0 / gain,
        em_gain=1.0,
        qe=1.0,
        psf_sigma_nm=sigma_nm,
    )
    res = _score_both(raw, cal, gt.frame, gt.x_nm, gt.y_nm, device)
    return {
        "data": "Deep-STORM demo 1",
        "frames": len(raw),
        "true_per_frame": len(gt) / len(raw),
        "calibration": {"adu_per_photon": gain, "baseline_adu": offset - gain * background},
        "results": res,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("eval_localizers.json"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    rows = [simulated(d, args.frames, args.device) for d in (0.2, 1.5, 2.0)]
    if DEEPSTORM.is_dir():
        rows.append(deepstorm(args.device))
    args.output.write_text(json.dumps(rows, indent=2))
    print("| data | true/frame | localizer | JI | recall | precision | RMSE (nm) | efficiency |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for name, s in r["results"].items():
            print(
                f"| {r['data']} | {r['true_per_frame']:.1f} | {name} | {s['jaccard']:.3f} | "
                f"{s['recall']:.3f} | {s['precision']:.3f} | {s['rmse_lateral_nm']:.1f} | "
                f"{s['efficiency']:.1f} |"
            )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
