"""Benchmark the reconstruction: maps/s per preset and size; carried-context vs sliding window.

1. Throughput of the full bidirectional pass (both directions + head) for the ``light`` and
   ``dblink_paper`` presets at 128x128 and 512x512 maps (sequences of 16 maps, no gradients).
2. Stride-1 offline reprocessing (one pass per phase of the window, W passes, state carried over
   the whole recording) against a reference-style sliding window (for every output: a fresh
   sequence of +-25 maps around it, hidden state reset, one output kept), on the same simulated
   localizations and the same weights, at equal output count: the speed ratio, and the accuracy
   of both against the ground truth (1-bin recall / false-positive rate / Jaccard, computed on
   outputs aligned with the ground-truth maps).

Usage::

    python scripts/bench_recon.py --weights recon_filaments -o bench_recon.json
    python scripts/bench_recon.py --quick -o x.json      # seconds, untrained weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dblink_live import __version__
from dblink_live.config import ReconModelConfig, RunConfig
from dblink_live.localizations import count_maps
from dblink_live.metrics import binarize, score_reconstruction
from dblink_live.recon.data import map_scale
from dblink_live.recon.inference import LoadedModel, load_recon_model
from dblink_live.recon.model import ConvBiLSTM
from dblink_live.recon.reprocess import reconstruct_localizations
from dblink_live.sim import simulate_localizations


def throughput(preset: str, size: int, n_maps: int, min_time: float, device: torch.device) -> float:
    model = ConvBiLSTM(**ReconModelConfig(preset=preset).model_dump()).to(device).eval()
    x = torch.rand(1, n_maps, 1, size, size, device=device)
    with torch.no_grad():
        model(x[:, :2])
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < min_time:
            model(x)
            done += n_maps
        if device.type == "cuda":
            torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def sliding_window(locs, model: LoadedModel, fov, n_frames: int, half: int) -> np.ndarray:
    """Reference-style: one fresh +-half-map sequence per output (stride 1), centre kept."""
    w = model.window_frames
    shape = (int(np.ceil(fov[1] / model.bin_nm)), int(np.ceil(fov[0] / model.bin_nm)))
    scale = map_scale(len(locs) / n_frames / (fov[0] * fov[1] / 1e6), w, model.bin_nm)
    n_out = n_frames - w + 1
    out = np.zeros((n_out, *shape), np.float32)
    sliding_window.map_steps = 0  # ConvLSTM steps (maps x directions): the work done
    with torch.no_grad():
        for j in range(n_out):
            first = j - half * w
            starts = [first + k * w for k in range(2 * half + 1)]
            valid = [s for s in starts if s >= 0 and s + w <= n_frames]
            maps = np.stack([count_maps(locs, model.bin_nm, shape, w, 1, s)[0] for s in valid])
            x = torch.as_tensor(maps / scale, dtype=torch.float32, device=model.device)[
                None, :, None
            ]
            logit, _ = model.model(x)
            sliding_window.map_steps += 2 * len(valid)
            centre = valid.index(j)
            out[j] = torch.sigmoid(logit[0, centre]).cpu().numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_recon.json"))
    ap.add_argument("--weights", default="recon_filaments")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    min_time = 0.3 if args.quick else 3.0
    sizes = [32] if args.quick else [128, 512]
    rows = []
    for preset in ("light", "dblink_paper"):
        for size in sizes:
            n = 4 if args.quick or (preset == "dblink_paper" and size == 512) else 16
            mps = throughput(preset, size, n, min_time, device)
            rows.append({"preset": preset, "map_px": size, "maps_per_s": mps})
            print(f"{preset:13s} {size:4d}x{size:<4d}: {mps:8.2f} maps/s")

    model = load_recon_model(args.weights, str(device))
    frames = 60 if args.quick else 400
    tile_px = 8 if args.quick else 16
    cfg = RunConfig().updated(simulation={"camera": {"width_px": tile_px, "height_px": tile_px}})
    seq = simulate_localizations(cfg, n_frames=frames, seed=7)
    fov = (tile_px * 160.0, tile_px * 160.0)
    w = model.window_frames
    t0 = time.perf_counter()
    carried = np.concatenate(
        [r for _, r, _ in reconstruct_localizations(seq.localizations, model, fov, frames, 1, 64)]
    )
    t_carried = time.perf_counter() - t0
    t0 = time.perf_counter()
    slid = sliding_window(seq.localizations, model, fov, frames, 25)
    t_slid = time.perf_counter() - t0
    # outputs aligned with ground-truth maps: output j = k * W covers frames [kW, (k+1)W)
    n_gt = len(seq.gt_skeleton)
    truth = seq.gt_skeleton[:n_gt] > 0
    acc = {}
    for name, out in (("carried", carried), ("sliding_window", slid)):
        aligned = out[::w][:n_gt]
        acc[name] = score_reconstruction(binarize(aligned), truth[: len(aligned)], 1).to_dict()
    result: dict[str, Any] = {
        "benchmark": "bench_recon",
        "package_version": __version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "throughput": rows,
        "stride1": {
            "weights": model.name,
            "raw_frames": frames,
            "outputs": len(carried),
            "carried_seconds": t_carried,
            "sliding_window_seconds": t_slid,
            "speed_ratio": t_slid / t_carried,
            # ConvLSTM steps (maps x 2 directions), the machine-independent work measure
            "map_steps": {
                "carried": 2 * sum((frames - p) // w for p in range(w)),
                "sliding_window": sliding_window.map_steps,
            },
            "accuracy_1bin": acc,
        },
    }
    args.output.write_text(json.dumps(result, indent=2))
    print(
        f"stride 1, {len(carried)} outputs: carried {t_carried:.1f} s, sliding window "
        f"{t_slid:.1f} s -> {t_slid / t_carried:.1f}x faster"
    )
    for name, a in acc.items():
        print(
            f"  {name:15s} recall {a['recall']:.3f}  FPR {100 * a['false_positive_rate']:.2f}%  "
            f"Jaccard {a['jaccard']:.3f}"
        )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
