"""Benchmark the simulator: raw frames/s, ground-truth maps/s, localization-space sequences/s.

It also measures, in the same run, how many training sequences per second a light ConvBiLSTM
trainer step consumes on this machine (forward + backward + Adam step on the same sequence
size), so the ratio "generated / consumed" says whether on-the-fly data generation keeps up.
The trainer stand-in is the light model of the reconstruction issue (LSTM hidden 8, 3x3 kernels,
head 16-32-32-1, ~54 k parameters) until the real model lands in ``dblink_live.recon``.

Usage::

    python scripts/bench_sim.py                 # full run, writes bench_sim.json
    python scripts/bench_sim.py --quick -o x.json   # a few seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from dblink_live import __version__
from dblink_live.config import RunConfig
from dblink_live.localizations import count_maps
from dblink_live.sim import MovieSimulator, simulate_localizations


def _rate(fn, n_items: int, min_time_s: float) -> tuple[float, int]:
    """Items per second of ``fn`` (called repeatedly for at least ``min_time_s``)."""
    fn()  # warm-up
    t0, calls = time.perf_counter(), 0
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_time_s:
            return calls * n_items / dt, calls


def bench_raw(size: int, n_frames: int, min_time_s: float) -> dict[str, Any]:
    cfg = RunConfig().updated(simulation={"camera": {"width_px": size, "height_px": size}})
    sim = MovieSimulator(cfg, n_frames=n_frames, seed=0)
    fps, _ = _rate(lambda: sim.frames(0, n_frames), n_frames, min_time_s)
    gt_per_s, _ = _rate(lambda: sim.ground_truth_maps(0, 2), 2, min_time_s)
    return {
        "camera_px": size,
        "frames_per_call": n_frames,
        "raw_frames_per_s": fps,
        "gt_maps_per_s": gt_per_s,
        "gt_grid": list(sim.ground_truth_maps(0, 1)[1].shape[1:]),
        "emitters_per_frame": len(sim.scene.emitters(0, n_frames)) / n_frames,
    }


def bench_locspace(tile_bins: int, n_maps: int, min_time_s: float, kind: str) -> dict[str, Any]:
    base = RunConfig().updated(simulation={"structure": {"kind": kind}})
    px = base.simulation.camera.pixel_size_nm
    size_px = int(tile_bins * base.grid.bin_nm / px)
    cfg = base.updated(simulation={"camera": {"width_px": size_px, "height_px": size_px}})
    w = cfg.grid.window_frames
    seeds = iter(range(10**9))

    def one() -> None:
        seq = simulate_localizations(cfg, n_frames=n_maps * w, seed=next(seeds))
        count_maps(seq.localizations, cfg.grid.bin_nm, seq.gt_skeleton.shape[1:], w)

    rate, calls = _rate(one, 1, min_time_s)
    return {
        "structure": kind,
        "tile_bins": tile_bins,
        "maps_per_sequence": n_maps,
        "sequences_per_s": rate,
        "sequences_timed": calls,
    }


def bench_trainer(tile_bins: int, n_maps: int, batch: int, min_time_s: float) -> dict[str, Any]:
    import torch
    from torch import nn

    class Cell(nn.Module):
        def __init__(self, cin: int, hidden: int) -> None:
            super().__init__()
            self.hidden = hidden
            self.conv = nn.Conv2d(cin + hidden, 4 * hidden, 3, padding=1)

        def forward(self, x, state):
            h, c = state
            i, f, o, g = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return h, c

    class LightBiLSTM(nn.Module):
        def __init__(self, hidden: int = 8) -> None:
            super().__init__()
            self.fw = nn.ModuleList([Cell(1, hidden), Cell(hidden, hidden)])
            self.bw = nn.ModuleList([Cell(1, hidden), Cell(hidden, hidden)])
            self.head = nn.Sequential(
                nn.Conv2d(2 * hidden, 16, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 1, 3, padding=1),
            )
            self.hidden = hidden

        def run(self, cells, seq):
            b, t, _, hh, ww = seq.shape
            states = [(seq.new_zeros(b, self.hidden, hh, ww),) * 2 for _ in cells]
            outs = []
            for k in range(t):
                x = seq[:, k]
                for j, cell in enumerate(cells):
                    states[j] = cell(x, states[j])
                    x = states[j][0]
                outs.append(x)
            return torch.stack(outs, 1)

        def forward(self, seq):
            fw = self.run(self.fw, seq)
            bw = self.run(self.bw, seq.flip(1)).flip(1)
            feats = torch.cat([fw, bw], 2)
            b, t = feats.shape[:2]
            return self.head(feats.flatten(0, 1)).view(b, t, 1, *feats.shape[-2:])

    torch.manual_seed(0)
    model = LightBiLSTM()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, n_maps, 1, tile_bins, tile_bins)
    y = (torch.rand_like(x) > 0.95).float()

    def step() -> None:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()

    rate, calls = _rate(step, batch, min_time_s)
    return {
        "model": "light ConvBiLSTM stand-in (hidden 8, head 16-32-32-1, 3x3)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "torch_threads": torch.get_num_threads(),
        "sequences_per_s": rate,
        "steps_timed": calls,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("bench_sim.json"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    args = ap.parse_args()
    t = 0.2 if args.quick else 3.0
    sizes = [64] if args.quick else [64, 256]
    frames = 16 if args.quick else 200
    tile, n_maps = (32, 4) if args.quick else (64, 16)

    result: dict[str, Any] = {
        "benchmark": "bench_sim",
        "package_version": __version__,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "raw": [bench_raw(s, frames, t) for s in sizes],
        "localization_space": [
            bench_locspace(tile, n_maps, t, kind) for kind in ("filaments", "mitochondria")
        ],
        "trainer": bench_trainer(tile, n_maps, 4, t),
    }
    gen = min(r["sequences_per_s"] for r in result["localization_space"])
    use = result["trainer"]["sequences_per_s"]
    result["generated_over_consumed"] = gen / use  # the slower structure kind
    args.output.write_text(json.dumps(result, indent=2))

    for r in result["raw"]:
        print(
            f"raw {r['camera_px']}x{r['camera_px']}: {r['raw_frames_per_s']:8.1f} frames/s, "
            f"ground truth {r['gt_maps_per_s']:6.1f} maps/s ({r['gt_grid'][0]}x{r['gt_grid'][1]})"
        )
    for r in result["localization_space"]:
        print(
            f"localization space, {r['structure']:12s} ({tile}x{tile} bins, {n_maps} maps): "
            f"{r['sequences_per_s']:6.2f} sequences/s"
        )
    print(
        f"trainer stand-in (batch 4, {result['trainer']['torch_threads']} threads): "
        f"{use:6.2f} sequences/s consumed"
    )
    print(f"generated / consumed (slower kind) = {gen / use:.1f}x  -> {args.output}")


if __name__ == "__main__":
    main()
