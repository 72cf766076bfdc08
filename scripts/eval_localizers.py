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
from dblink_live.metrics import match_localizations, score_localizations
from dblink_live.sim import simulate_movie
from dblink_live.sim.camera import render_expected_photons
from dblink_live.sim.movie import MovieSimulator

REPO = Path(__file__).resolve().parents[1]
#: CNN checkpoints scored side by side (``--weights``); the shipped one by default.
WEIGHTS: list[str] = ["localizer"]
DEEPSTORM = REPO.parent / "shared" / "data" / "deepstorm_demo1"


def _photometry(gt_photons, gt_background, pred, gi, pi) -> dict[str, float]:
    """Median ratios predicted / true of photons and background over matched pairs;
    ``gt_background``: photons per pixel, one number or one per true emitter (the background
    under it, for a non-uniform background)."""
    ok = gt_photons[gi] > 0
    ph = pred.photons[pi][ok] / gt_photons[gi][ok]
    truth_bg = np.asarray(gt_background, np.float64)
    bg = pred.background[pi] / (truth_bg[gi] if truth_bg.ndim else truth_bg)
    return {
        "photons_ratio_median": float(np.median(ph)) if len(ph) else float("nan"),
        "background_ratio_median": float(np.median(bg)) if len(bg) else float("nan"),
    }


def _score_both(raw, cal, gt, gt_background: float, device: str, full=None) -> dict[str, Any]:
    """Both localizers on ``raw``; ``gt``: (frame, x_nm, y_nm, photons); ``full`` marks the
    true emitters lit for the whole frame (the photometry is judged on those)."""
    gt_f, gt_x, gt_y, gt_ph = gt
    out = {}
    configs: list[tuple[str, Any]] = [
        (f"cnn ({Path(w).stem})" if w != "localizer" else "cnn", CNNLocalizerConfig(weights=w))
        for w in WEIGHTS
    ]
    configs.append(("classic", ClassicLocalizerConfig()))
    for label, cfg in configs:
        loc = make_localizer(cfg, device)
        pred = loc.localize(raw, cal)
        s = score_localizations(gt_f, gt_x, gt_y, pred.frame, pred.x_nm, pred.y_nm)
        gi, pi = match_localizations(gt_f, gt_x, gt_y, pred.frame, pred.x_nm, pred.y_nm, 100.0)
        if full is not None:
            keep = full[gi]
            gi, pi = gi[keep], pi[keep]
        out[label] = {**s.to_dict(), **_photometry(gt_ph, gt_background, pred, gi, pi)}
    return out


def simulated(density: float, frames: int, device: str, camera: dict | None = None) -> dict:
    sim: dict[str, Any] = {
        "photophysics": {"density_per_um2": density},
        "optics": {"sigma_nm": 130.0},
    }
    if camera:
        sim["camera"] = camera
    cfg = RunConfig().updated(simulation=sim)
    movie = simulate_movie(cfg, n_frames=frames, seed=100)
    cal = CameraCalibration.from_camera(movie.metadata["camera"])
    em = movie.emitters
    # the true background under each emitter (the same seed draws the same background map)
    bg_map = MovieSimulator(cfg, n_frames=frames, seed=100).camera.background
    px = cfg.simulation.camera.pixel_size_nm
    row = np.clip((em.y_nm / px).astype(int), 0, bg_map.shape[0] - 1)
    col = np.clip((em.x_nm / px).astype(int), 0, bg_map.shape[1] - 1)
    bg = bg_map[row, col]
    res = _score_both(
        movie.raw, cal, (em.frame, em.x_nm, em.y_nm, em.photons), bg, device, em.on_fraction >= 1
    )
    kind = "sCMOS, 108 nm px, smooth background" if camera else "EMCCD"
    return {
        "data": f"simulated filaments, {kind}, {density}/um^2",
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
    res = _score_both(raw, cal, (gt.frame, gt.x_nm, gt.y_nm, gt.photons), background, device)
    return {
        "data": "Deep-STORM demo 1",
        "frames": len(raw),
        "true_per_frame": len(gt) / len(raw),
        "calibration": {"adu_per_photon": gain, "baseline_adu": offset - gain * background},
        "results": res,
    }


def real_frames(device: str) -> list[dict[str, Any]]:
    """Recall of the obvious spots of the real dSTORM frames (``formats/images.tif``), counted
    by the independent detector of ``tests/test_localize_real.py``, within 1 camera pixel, for
    both localizers and each calibration the test uses (none: estimated from the frames)."""
    import sys
    import tempfile

    sys.path.insert(0, str(REPO / "tests"))
    from test_localize_real import CALIBRATIONS, IMAGES_PX_NM, recall_of, reference_spots

    from dblink_live.localize.run import localize

    stack = REPO.parent / "shared" / "data" / "formats" / "images.tif"
    raw, _ = read_stack(stack)
    spots = reference_spots(raw)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cal in CALIBRATIONS.items():
            for cfg in (CNNLocalizerConfig(), ClassicLocalizerConfig()):
                out = Path(tmp) / "locs.csv"
                res = localize(
                    stack,
                    config=cfg,
                    output=out,
                    device=device,
                    pixel_size_nm=IMAGES_PX_NM,
                    overwrite=True,
                    **cal,
                )
                locs = read_localizations(out, pixel_size_nm=IMAGES_PX_NM)
                rows.append(
                    {
                        "calibration": name,
                        "localizer": cfg.kind,
                        "reference_spots": len(spots),
                        "recall": recall_of(spots, locs.frame, locs.x_nm, locs.y_nm, IMAGES_PX_NM),
                        "localizations_per_frame": len(locs) / len(raw),
                        "median_photons": float(np.median(locs.photons)) if len(locs) else None,
                        "yield_check": res.localizer.get("yield_check"),
                    }
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("eval_localizers.json"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--weights", nargs="+", default=["localizer"], help="CNN checkpoints side by side"
    )
    args = ap.parse_args()
    WEIGHTS[:] = args.weights
    rows = [simulated(d, args.frames, args.device) for d in (0.2, 1.5, 2.0)]
    scmos = {
        "kind": "scmos",
        "pixel_size_nm": 108.0,
        "width_px": 96,
        "height_px": 96,
        "e_per_adu": 0.3,
        "baseline_adu": 400.0,
        "background_photons": 120.0,
        "background_kind": "smooth",
        "background_variation": 0.6,
    }
    rows.append(simulated(0.5, args.frames, args.device, scmos))
    if DEEPSTORM.is_dir():
        rows.append(deepstorm(args.device))
    real = real_frames(args.device) if (REPO.parent / "shared" / "data").is_dir() else []
    args.output.write_text(json.dumps({"simulated": rows, "real_frames": real}, indent=2))
    print(
        "| data | true/frame | localizer | JI | recall | precision | RMSE (nm) | efficiency "
        "| photons / true | background / true |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for name, s in r["results"].items():
            print(
                f"| {r['data']} | {r['true_per_frame']:.1f} | {name} | {s['jaccard']:.3f} | "
                f"{s['recall']:.3f} | {s['precision']:.3f} | {s['rmse_lateral_nm']:.1f} | "
                f"{s['efficiency']:.1f} | {s['photons_ratio_median']:.3f} | "
                f"{s['background_ratio_median']:.3f} |"
            )
    if real:
        print()
        print(
            "| calibration given | localizer | reference spots found | localizations/frame "
            "| median photons |"
        )
        print("|---|---|---|---|---|")
        for r in real:
            ph = f"{r['median_photons']:.0f}" if r["median_photons"] is not None else "-"
            print(
                f"| {r['calibration']} | {r['localizer']} | {100 * r['recall']:.0f} % of "
                f"{r['reference_spots']} | {r['localizations_per_frame']:.1f} | {ph} |"
            )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
