"""Domain gap of a reconstruction model: localization-space vs camera + localizer sequences.

Both kinds of sequence are simulated from the same seeds (the checkpoint's own validation draws:
same scenes, blinks and ground truth) and differ only in how the localizations were made: the
fast localization-space model, or raw camera frames (PSF, blinking, EMCCD/sCMOS noise) localized
by the config's localizer (the shipped CNN). For each kind: the training validation loss, the
reference scores (per-frame min-max, threshold 100/255; exact and 1-bin tolerance; also 1-bin
away from the tile's outer camera pixel, to separate tile-edge effects), localizations per true
lit emitter and the fraction of all binned localizations that lie within 1 bin of the truth.

With ``--sequences 16`` the localization-space loss is the checkpoint's stored validation loss.

Usage::

    python scripts/eval_domain_gap.py [--weights recon_filaments] [--sequences 64] \\
        [-o eval_domain_gap.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dblink_live.config import config_from_dict
from dblink_live.localize import make_localizer
from dblink_live.metrics import binarize, score_reconstruction
from dblink_live.recon.data import DATA_MODES, make_sequence, map_scale
from dblink_live.recon.inference import load_recon_model
from dblink_live.recon.training import recon_loss, validation_draws


def _scores(pred: np.ndarray, truth: np.ndarray, tol: int) -> dict[str, float]:
    s = score_reconstruction(pred, truth, tol)
    return {
        "recall": s.recall,
        "false_positive_rate": s.false_positive_rate,
        "jaccard": s.jaccard,
    }


def evaluate(weights: str, n_sequences: int, device: str) -> dict[str, Any]:
    """Scores of ``weights`` on ``n_sequences`` validation sequences of each kind."""
    loaded = load_recon_model(weights, device)
    model = loaded.model
    cfg = config_from_dict(loaded.checkpoint["config"])
    t = cfg.recon_training
    cfg = cfg.updated(recon_training={"validation_sequences": n_sequences})
    draws = [p for batch in validation_draws(cfg) for p in batch]
    localizer = make_localizer(cfg.localizer, device)
    border = math.ceil(cfg.simulation.camera.pixel_size_nm / cfg.grid.bin_nm)
    results: dict[str, Any] = {}
    for mode in DATA_MODES:
        t0 = time.perf_counter()
        losses, preds, truths, dens = [], [], [], []
        n_locs = n_em = 0
        near_counts = all_counts = 0.0
        per_emitter = []
        for seed, w, density in draws:
            info: dict[str, Any] = {}
            maps, truth = make_sequence(
                mode, cfg, seed, t.tile_bins, t.sequence_maps, w, density, t.target, localizer, info
            )
            x = torch.from_numpy(maps)[None, :, None].to(loaded.device)
            g = torch.from_numpy(truth)[None].to(loaded.device)
            with torch.no_grad():
                loss, _ = recon_loss(model, x, g, cfg)
                rec = torch.sigmoid(model(x)[0][0]).cpu().numpy()
            losses.append(loss.item())
            preds.append(binarize(rec))
            truths.append(truth > 0.5)
            near = F.max_pool2d(torch.from_numpy(truth)[:, None], 3, 1, 1)[:, 0].numpy() > 0
            counts = maps * map_scale(info["rate_per_um2_frame"], w, cfg.grid.bin_nm)
            near_counts += float(counts[near].sum())
            all_counts += float(counts.sum())
            n_locs += info["localizations"]
            n_em += info["true_emitters"]
            if info["true_emitters"] >= 20:
                per_emitter.append(info["localizations"] / info["true_emitters"])
                dens.append(density)
        pred, truth = np.concatenate(preds), np.concatenate(truths)
        inner = (slice(None), slice(border, -border), slice(border, -border))
        lo = [p for p, d in zip(per_emitter, dens, strict=True) if d < np.mean(t.density_per_um2)]
        hi = [p for p, d in zip(per_emitter, dens, strict=True) if d >= np.mean(t.density_per_um2)]
        results[mode] = {
            "validation_loss": float(np.mean(losses)),
            "tol0": _scores(pred, truth, 0),
            "tol1": _scores(pred, truth, 1),
            "tol1_interior": _scores(pred[inner], truth[inner], 1),
            "localizations_per_true_emitter": n_locs / max(n_em, 1),
            "localizations_per_true_emitter_low_density": float(np.mean(lo)) if lo else None,
            "localizations_per_true_emitter_high_density": float(np.mean(hi)) if hi else None,
            "input_within_1_bin_of_truth": near_counts / max(all_counts, 1.0),
            "seconds": time.perf_counter() - t0,
        }
    return {
        "weights": loaded.name,
        "sha256": loaded.sha256,
        "stored_best_validation": loaded.checkpoint["metrics"].get("best_validation"),
        "sequences": len(draws),
        "tile_bins": t.tile_bins,
        "sequence_maps": t.sequence_maps,
        "density_per_um2": list(t.density_per_um2),
        "interior_border_bins": border,
        "localizer": cfg.localizer.model_dump(mode="json"),
        "camera": cfg.simulation.camera.kind,
        "results": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="recon_filaments", help="shipped name or .pt")
    ap.add_argument("--sequences", type=int, default=64, help="sequences of each kind")
    ap.add_argument("-o", "--output", type=Path, default=Path("eval_domain_gap.json"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    report = evaluate(args.weights, args.sequences, args.device)
    report["seconds"] = time.perf_counter() - t0
    args.output.write_text(json.dumps(report, indent=2))
    print(
        f"{report['weights']}: {report['sequences']} sequences of {report['sequence_maps']} maps, "
        f"{report['tile_bins']}x{report['tile_bins']} bins, {report['camera']} camera"
    )
    print(
        "| data | val. loss | recall | FPR % | Jaccard | recall 1-bin | FPR 1-bin % | "
        "Jaccard 1-bin | Jaccard 1-bin interior | locs / true emitter |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, r in report["results"].items():
        a, b, c = r["tol0"], r["tol1"], r["tol1_interior"]
        print(
            f"| {mode} | {r['validation_loss']:.4f} | {a['recall']:.3f} | "
            f"{100 * a['false_positive_rate']:.2f} | {a['jaccard']:.3f} | {b['recall']:.3f} | "
            f"{100 * b['false_positive_rate']:.2f} | {b['jaccard']:.3f} | {c['jaccard']:.3f} | "
            f"{r['localizations_per_true_emitter']:.2f} |"
        )
    for mode, r in report["results"].items():
        lo = r["localizations_per_true_emitter_low_density"]
        hi = r["localizations_per_true_emitter_high_density"]
        print(
            f"{mode}: localizations per true lit emitter {lo:.2f} (density below the range's "
            f"middle) / {hi:.2f} (above); {100 * r['input_within_1_bin_of_truth']:.1f} % of the "
            "binned localizations within 1 bin of the truth"
        )
    print(f"wrote {args.output} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
