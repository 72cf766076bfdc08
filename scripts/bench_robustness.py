"""Robustness of the reconstruction on data our training simulator did not make.

Every cell is a field from ``scripts/othersim.py`` (worm-like chains, its own blinking and
localization process, no code shared with ``dblink_live.sim``), varied along one axis from a
base condition (0.4 true localizations/um^2/frame, no background, 10-20 nm precision, on-time
2 frames, 0.5 nm/frame motion, W = 10, 128 x 128 bins of 40 nm): background fraction
(uniform and clustered), density, precision, on-time, structure density with bundles, motion
speed (static to 3x the training maximum of ~1 nm/frame) and W. Side by side in each cell:

- the shipped model picked for W (``--weights auto`` in ``reprocess``), scored against the
  generator's 1-bin skeleton at 0 and 1 bin tolerance (recall, FPR, Jaccard);
- the static baselines (localizations accumulated over W and 10 W, same threshold);
- its confidence, learned and evidence-tempered: hallucination rate per confidence quartile
  (1-bin tolerance), its low/high ratio, and the expected calibration error (10 bins) of
  "a predicted structure pixel is right" -- plus a reliability curve over all cells (figure).

Usage::

    python scripts/bench_robustness.py -o bench_robustness.json --figure docs/reliability.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import binary_dilation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from othersim import OtherSimConfig, generate

from dblink_live.metrics import binarize, score_reconstruction
from dblink_live.recon.evaluate import confidence_quartiles, static_baseline
from dblink_live.recon.inference import choose_recon_weights, load_recon_model
from dblink_live.recon.reprocess import reconstruct_localizations

BASE = OtherSimConfig()
CELLS: dict[str, dict[str, Any]] = {
    "base": {},
    "background 10 % uniform": {"background_fraction": 0.10},
    "background 25 % uniform": {"background_fraction": 0.25},
    "background 50 % uniform": {"background_fraction": 0.50},
    "background 25 % clustered": {"background_fraction": 0.25, "clustered_background": True},
    "background 50 % clustered": {"background_fraction": 0.50, "clustered_background": True},
    "density 0.05": {"true_density_per_um2": 0.05},
    "density 0.1": {"true_density_per_um2": 0.1},
    "density 1.0": {"true_density_per_um2": 1.0},
    "density 2.0": {"true_density_per_um2": 2.0},
    "precision 5 nm": {"precision_nm": (5.0, 5.0)},
    "precision 30 nm": {"precision_nm": (30.0, 30.0)},
    "precision 40 nm": {"precision_nm": (40.0, 40.0)},
    "on-time 1 frame": {"on_frames": 1.0},
    "on-time 5 frames": {"on_frames": 5.0},
    "dense, bundles, crossings": {"chains_per_um2": 0.5, "bundle_probability": 0.5},
    "static": {"speed_nm_per_frame": 0.0},
    "speed 3x training max": {"speed_nm_per_frame": 3.0},
    "W = 5": {"window_frames": 5},
    "W = 20": {"window_frames": 20},
    "W = 40": {"window_frames": 40},
}


def _calibration(pred: np.ndarray, conf: np.ndarray, truth: np.ndarray, n_bins: int = 10):
    """(bin counts, mean confidence, fraction right) of predicted pixels, and the ECE."""
    near = binary_dilation(truth, structure=np.ones((1, 3, 3), bool))
    c, right = conf[pred], near[pred]
    idx = np.clip((c * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    mean_c = np.bincount(idx, weights=c, minlength=n_bins) / np.maximum(counts, 1)
    acc = np.bincount(idx, weights=right, minlength=n_bins) / np.maximum(counts, 1)
    ece = float(np.sum(counts / max(len(c), 1) * np.abs(acc - mean_c)))
    return counts, mean_c, acc, ece


def run_cell(
    name: str, changes: dict[str, Any], device: str, seed: int, weights: str | None = None
) -> dict[str, Any]:
    w = int(changes.get("window_frames", BASE.window_frames))
    cfg = replace(BASE, **changes, n_frames=30 * w, seed=seed)
    field = generate(cfg)
    locs = field.localizations
    fov = (cfg.field_nm, cfg.field_nm)
    weights = weights or choose_recon_weights("filaments", w)
    model = load_recon_model(weights, device)
    out: dict[str, Any] = {"cell": name, "model": weights, "window_frames": w, "seed": seed}
    t0 = time.perf_counter()
    results = {}
    for kind, with_ev in (("learned", False), ("tempered", True)):
        blocks = list(
            reconstruct_localizations(
                locs, model, fov, cfg.n_frames, w, 32, None, w, with_evidence=with_ev
            )
        )
        recon = np.concatenate([b[1] for b in blocks])
        conf = np.concatenate([b[2] for b in blocks])
        results[kind] = (recon, conf)
    out["seconds"] = time.perf_counter() - t0
    recon = results["learned"][0]
    truth = field.skeleton[: len(recon)]
    pred = binarize(recon)
    out["dblink"] = {f"tol{t}": score_reconstruction(pred, truth, t).to_dict() for t in (0, 1)}
    starts = np.arange(len(recon)) * w
    shape = truth.shape[1:]
    for label, span in (("static W", w), ("static 10 W", 10 * w)):
        base = static_baseline(locs, shape, cfg.bin_nm, w, span, starts)
        out[label] = score_reconstruction(binarize(base), truth, 1).to_dict()
    out["localizations_per_um2_frame"] = len(locs) / cfg.n_frames / (cfg.field_nm / 1e3) ** 2
    for kind in ("learned", "tempered"):
        conf = results[kind][1]
        q = confidence_quartiles(pred, conf, truth)
        counts, mean_c, acc, ece = _calibration(pred, conf, truth)
        out[f"confidence_{kind}"] = {
            **q,
            "ece": ece,
            "reliability": {
                "counts": counts.tolist(),
                "mean_confidence": mean_c.tolist(),
                "fraction_right": acc.tolist(),
            },
        }
    return out


def _figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for kind, colour in (("learned", "tab:red"), ("tempered", "tab:blue")):
        counts = np.sum([r[f"confidence_{kind}"]["reliability"]["counts"] for r in rows], 0)
        conf = np.sum(
            [
                np.array(r[f"confidence_{kind}"]["reliability"]["mean_confidence"])
                * r[f"confidence_{kind}"]["reliability"]["counts"]
                for r in rows
            ],
            0,
        ) / np.maximum(counts, 1)
        right = np.sum(
            [
                np.array(r[f"confidence_{kind}"]["reliability"]["fraction_right"])
                * r[f"confidence_{kind}"]["reliability"]["counts"]
                for r in rows
            ],
            0,
        ) / np.maximum(counts, 1)
        ok = counts > 0
        ece = float(np.sum(counts / counts.sum() * np.abs(right - conf)))
        ax.plot(conf[ok], right[ok], "o-", color=colour, label=f"{kind} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("confidence of a predicted structure pixel")
    ax.set_ylabel("fraction right (within 1 bin of truth)")
    ax.set_title("reliability, all cells of bench_robustness")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_robustness.json"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="cell names to run (default: all)")
    ap.add_argument(
        "--weights",
        nargs="*",
        default=[None],
        help="models side by side in every cell (default: the shipped one picked for W; "
        "'auto' names it among others)",
    )
    args = ap.parse_args()
    rows = []
    for name, changes in CELLS.items():
        if args.only and name not in args.only:
            continue
        for weights in args.weights:
            row = run_cell(
                name, changes, args.device, args.seed, None if weights == "auto" else weights
            )
            rows.append(row)
            d1, d0 = row["dblink"]["tol1"], row["dblink"]["tol0"]
            print(
                f"{name} [{Path(row['model']).stem}]: 1-bin R {d1['recall']:.3f} "
                f"FPR {100 * d1['false_positive_rate']:.2f} % "
                f"J {d1['jaccard']:.3f} | exact J {d0['jaccard']:.3f} | static 10W J "
                f"{row['static 10 W']['jaccard']:.3f} | quartile ratio learned "
                f"{row['confidence_learned']['ratio_low_high']:.1f} tempered "
                f"{row['confidence_tempered']['ratio_low_high']:.1f}",
                flush=True,
            )
    args.output.write_text(json.dumps(rows, indent=2))
    print()
    print(
        "| cell | model | loc/um2/frame | recall 1-bin | FPR 1-bin | Jaccard 1-bin | Jaccard exact "
        "| static W / 10 W Jaccard 1-bin | quartile hallucination low/high (learned -> "
        "tempered) | ECE learned / tempered |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d1, d0 = r["dblink"]["tol1"], r["dblink"]["tol0"]
        cl, ct = r["confidence_learned"], r["confidence_tempered"]

        def ratio(c: dict[str, Any]) -> str:
            q = c.get("quartile_hallucination") or []
            return f"{100 * q[0]:.1f} / {100 * q[3]:.1f} %" if len(q) == 4 else "n/a"

        print(
            f"| {r['cell']} | {Path(r['model']).stem} | {r['localizations_per_um2_frame']:.2f} | "
            f"{d1['recall']:.3f} | "
            f"{100 * d1['false_positive_rate']:.2f} % | {d1['jaccard']:.3f} | "
            f"{d0['jaccard']:.3f} | {r['static W']['jaccard']:.3f} / "
            f"{r['static 10 W']['jaccard']:.3f} | {ratio(cl)} -> {ratio(ct)} | "
            f"{cl['ece']:.3f} / {ct['ece']:.3f} |"
        )
    if args.figure:
        _figure(rows, args.figure)
        print(f"-> {args.figure}")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
