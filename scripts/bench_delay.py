"""Quality of the streaming reconstruction against its trailing delay D (maps of look-ahead).

On simulated filament sequences (localization-space, 128x128-bin fields, W=10) with the shipped
model, computes the output with look-ahead D for D = 0 (causal) .. full offline context and
scores it against the ground truth (1-bin recall, FPR, Jaccard; reference thresholding). The
live pipeline picks its default D from this curve.

Usage::

    python scripts/bench_delay.py -o bench_delay.json [--sequences 4 --maps 40]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dblink_live import __version__
from dblink_live.config import load_config
from dblink_live.localizations import count_maps
from dblink_live.metrics import binarize, score_reconstruction
from dblink_live.recon.data import map_scale
from dblink_live.recon.inference import load_recon_model
from dblink_live.recon.streaming import reconstruct_with_lookahead
from dblink_live.sim import simulate_localizations

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_delay.json"))
    ap.add_argument("--weights", default="recon_filaments")
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--maps", type=int, default=40)
    ap.add_argument("--field-px", type=int, default=32, help="camera pixels (160 nm) per side")
    args = ap.parse_args()
    px = args.field_px
    model = load_recon_model(args.weights, "cpu")
    w, bin_nm = model.window_frames, model.bin_nm
    cfg = load_config(REPO / "configs" / "filaments.yaml").updated(
        simulation={"camera": {"width_px": px, "height_px": px}}
    )
    nb = round(px * 160 / bin_nm)
    delays = [0, 1, 2, 4, 8, 16, args.maps]
    scores: dict[int, list[dict[str, float]]] = {d: [] for d in delays}
    for s in range(args.sequences):
        seq = simulate_localizations(cfg, n_frames=args.maps * w, seed=1000 + s)
        rate = len(seq.localizations) / (args.maps * w) / (px * 0.16) ** 2
        maps = count_maps(seq.localizations, bin_nm, (nb, nb), w, args.maps) / map_scale(
            rate, w, bin_nm
        )
        truth = seq.gt_skeleton[:, :nb, :nb] > 0
        for d in delays:
            rec, _ = reconstruct_with_lookahead(model.model, maps, d)
            scores[d].append(score_reconstruction(binarize(rec), truth, 1).to_dict())
    rows = []
    for d in delays:
        mean = {
            k: float(np.nanmean([r[k] for r in scores[d]]))
            for k in ("recall", "false_positive_rate", "jaccard")
        }
        label = "full" if d == args.maps else str(d)
        rows.append({"delay_maps": d, "label": label, "delay_s_at_100Hz": d * w / 100.0, **mean})
        print(
            f"D={label:>4s} ({d * w / 100.0:5.2f} s at 100 Hz): recall {mean['recall']:.3f}  "
            f"FPR {100 * mean['false_positive_rate']:.2f}%  Jaccard {mean['jaccard']:.3f}"
        )
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "bench_delay",
                "package_version": __version__,
                "weights": model.name,
                "window_frames": w,
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
