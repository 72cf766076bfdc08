"""Confidence on real localization tables: is structure the data do not support flagged?

For each real table in ``../shared/data/real`` (static samples; first ``--frames`` frames),
``reprocess`` runs twice, side by side: with the evidence-tempered confidence (the default)
and with the network's learned confidence alone. For every reconstructed map, its structure
pixels (evaluation threshold) are split into *supported* (at least one localization within
200 nm over the model's temporal context, +-2 maps) and *unsupported*; the script reports the
mean confidence of each, the unsupported fraction, the measured density and the warnings;
and ``evaluate --static`` against the drift-corrected accumulation of the table (static
samples: hallucination, FPR, recall). ``--weights`` runs several models side by side.

Usage::

    python scripts/eval_real_tables.py --frames 3000 --weights recon_filaments \
        recon_filaments_robust -o eval_real_tables.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from dblink_live.io import Recording
from dblink_live.io.tables import read_localizations, write_localizations
from dblink_live.metrics import binarize
from dblink_live.recon.evidence import EVIDENCE_CONTEXT_MAPS, EVIDENCE_RADIUS_NM
from dblink_live.recon.reprocess import reprocess
from dblink_live.recon.static_check import evaluate_static

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
TABLES = ("thunderstorm_ts3d_leterrier.csv", "u2os_microtubules_rieslab.csv")


def support(rec: Recording) -> dict[str, Any]:
    """Mean confidence of supported / unsupported structure pixels of a reprocessed table."""
    recon, attrs = rec.read_image("reconstruction")
    conf, _ = rec.read_image("confidence")
    locs = rec.read_localizations()
    ox, oy = attrs["origin_nm"]
    locs = replace(locs, x_nm=locs.x_nm - ox, y_nm=locs.y_nm - oy)
    w, s, b = attrs["window_frames"], attrs["stride_frames"], attrs["bin_nm"]
    ny, nx = recon.shape[1:]
    side = 2 * round(EVIDENCE_RADIUS_NM / b) + 1
    k = EVIDENCE_CONTEXT_MAPS * w
    ix = np.floor(locs.x_nm / b).astype(int)
    iy = np.floor(locs.y_nm / b).astype(int)
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    sup_conf, uns_conf = [], []
    for j in range(len(recon)):
        lo, hi = j * s - k, j * s + w + k
        sel = ok & (locs.frame >= lo) & (locs.frame < hi)
        counts = np.zeros((ny, nx))
        np.add.at(counts, (iy[sel], ix[sel]), 1)
        near = uniform_filter(counts, side, mode="constant") * side * side > 0.5
        st = binarize(recon[j][None])[0]
        sup_conf.append(conf[j][st & near])
        uns_conf.append(conf[j][st & ~near])
    sup, uns = np.concatenate(sup_conf), np.concatenate(uns_conf)
    return {
        "maps": len(recon),
        "structure_pixels": int(len(sup) + len(uns)),
        "unsupported_fraction": float(len(uns) / max(len(sup) + len(uns), 1)),
        "confidence_supported": float(sup.mean()) if len(sup) else float("nan"),
        "confidence_unsupported": float(uns.mean()) if len(uns) else float("nan"),
        "density_per_um2": float(attrs["density_per_um2"]),
        "warnings": list(attrs.get("warnings", [])),
        "model": attrs["model"]["name"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("eval_real_tables.json"))
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--window-frames", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", nargs="+", default=["auto"], help="models side by side")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in TABLES:
            locs = read_localizations(REAL / name)
            part = locs.select(locs.frame < args.frames)
            part.n_frames = min(args.frames, locs.n_frames)
            table = Path(tmp) / name
            write_localizations(part, table, format="thunderstorm")
            for weights in args.weights:
                for with_evidence in (True, False):
                    out = Path(tmp) / f"{name}.{Path(weights).stem}.{with_evidence}.zarr"
                    t0 = time.perf_counter()
                    reprocess(
                        table,
                        output=out,
                        weights=weights,
                        device=args.device,
                        window_frames=args.window_frames,
                        evidence=with_evidence,
                    )
                    row = {
                        "table": name,
                        "frames": part.n_frames,
                        "localizations": len(part),
                        "confidence": "learned x evidence" if with_evidence else "learned",
                        "seconds": time.perf_counter() - t0,
                        **support(Recording.open(out)),
                    }
                    if with_evidence:
                        row["static_check"] = evaluate_static(out)
                    rows.append(row)
                    print(json.dumps(row))
    args.output.write_text(json.dumps(rows, indent=2))
    print(
        "| table | model | confidence | unsupported structure | mean conf. supported "
        "| mean conf. unsupported | static check: hallucination / FPR / recall |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        st = r.get("static_check")
        static = (
            f"{100 * st['hallucination']:.1f} % / {100 * st['false_positive_rate']:.2f} % / "
            f"{st['recall']:.3f}"
            if st
            else ""
        )
        print(
            f"| {r['table']} | {r['model']} | {r['confidence']} | "
            f"{100 * r['unsupported_fraction']:.1f} % | {r['confidence_supported']:.3f} | "
            f"{r['confidence_unsupported']:.3f} | {static} |"
        )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
