"""Score the shipped reconstruction models end to end, for the README.

For each case: simulate a movie with the structure's config (camera frames, SMLM-2016 EMCCD),
localize it with the shipped CNN localizer, reprocess it with the shipped model, and evaluate
against the simulated ground truth with ``dblink-live evaluate`` (reference definitions: per
frame min-max, threshold 100/255; 0- and 1-bin tolerance; static SMLM baselines over W and 10 W;
confidence quartiles; FRC). Cases: filaments at W = 10, 20, 40 (the model was trained at 10; the
normalized input lets it run at other W) and mitochondria at W = 10.

``--seeds 0 1 2 3 4`` runs one case on several simulated fields (the default workflow:
``simulate -c configs/filaments.yaml -n 600 --seed S``, localize, ``reprocess``, ``evaluate``)
and prints the mean and standard deviation of each score over the seeds, since scores vary
from field to field.

Usage::

    python scripts/eval_recon.py -o eval_recon.json [--frames 600] [--workdir DIR]
    python scripts/eval_recon.py --only filaments:10 --seeds 0 1 2 3 4 -o seeds.json
    python scripts/eval_recon.py --only mitochondria:10 --seeds 0 1 2 --background 0.25

``--background F`` adds uniformly random localizations (a fraction F of all) to each localized
recording before it is reconstructed, the condition in which the models trained without
background draw structure that is not there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.config import load_config
from dblink_live.io.recording import Recording
from dblink_live.localizations import Localizations
from dblink_live.localize.run import localize
from dblink_live.recon.evaluate import evaluate_recording
from dblink_live.recon.reprocess import reprocess
from dblink_live.sim.record import simulate_recording

REPO = Path(__file__).resolve().parents[1]


def case(
    structure: str,
    window: int,
    frames: int,
    workdir: Path,
    frc: bool,
    weights: str | None = None,
    seed: int = 1234,
    background: float = 0.0,
) -> dict[str, Any]:
    cfg = load_config(REPO / "configs" / f"{structure}.yaml")
    cfg = cfg.updated(simulation={"seed": seed}, grid={"window_frames": window})
    path = workdir / f"{structure}_W{window}_seed{seed}.zarr"
    simulate_recording(cfg, path, n_frames=frames * window // 10, overwrite=True)
    localize(path, overwrite=True)
    if background > 0:
        add_background(path, background, seed)
    weights = weights or f"recon_{structure}"
    reprocess(path, weights=weights, window_frames=window, overwrite=True)
    report = evaluate_recording(
        path, figure=workdir / f"{structure}_W{window}.png", weights=weights, frc=frc
    )
    report["case"] = f"{structure}, W={window}"
    report["seed"] = seed
    return report


def add_background(path: Path, fraction: float, seed: int) -> None:
    """Replace the recording's localizations by themselves plus uniformly random ones (over
    the camera field and the frames), so that ``fraction`` of all are background: out-of-focus
    and non-specific detections, which our simulator's camera frames barely make."""
    rec = Recording.open(path, mode="r+")
    locs = rec.read_localizations()
    n_bg = round(len(locs) * fraction / (1 - fraction))
    rng = np.random.default_rng(seed + 7)
    h, w = rec.frame_shape
    px = rec.pixel_size_nm
    bg = Localizations(
        frame=rng.integers(0, rec.n_frames, n_bg).astype(np.int64),
        x_nm=rng.uniform(0, w * px, n_bg).astype(np.float32),
        y_nm=rng.uniform(0, h * px, n_bg).astype(np.float32),
        photons=rng.choice(locs.photons, n_bg).astype(np.float32),
        background=rng.choice(locs.background, n_bg).astype(np.float32),
        uncertainty_nm=rng.choice(locs.uncertainty_nm, n_bg).astype(np.float32),
        score=rng.choice(locs.score, n_bg).astype(np.float32),
        pixel_size_nm=locs.pixel_size_nm,
        n_frames=locs.n_frames,
    )
    info = dict(rec.group["localizations"].attrs.get("localizer", {}))
    rec.clear_localizations({**info, "background_added": fraction})
    rec.append_localizations(Localizations.concatenate([locs, bg]))
    rec.mark_localized(0, rec.n_frames)


def seed_summary(reports: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation over seeds of each reconstruction score:
    ``{"tol0": {"recall": [mean, sd], ...}, "tol1": {...}}``."""
    out: dict[str, dict[str, list[float]]] = {}
    for tol in ("tol0", "tol1"):
        out[tol] = {}
        for key in ("recall", "false_positive_rate", "jaccard"):
            v = np.array([r["reconstruction"][tol][key] for r in reports], dtype=float)
            out[tol][key] = [float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("eval_recon.json"))
    ap.add_argument("--frames", type=int, default=600, help="raw frames at W=10 (scaled with W)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--weights", default=None, help="evaluate this checkpoint instead")
    ap.add_argument("--only", default=None, help="one case, e.g. filaments:10")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="fields to average over")
    ap.add_argument("--background", type=float, default=0.0,
                    help="fraction of uniformly random localizations added (0-0.9)")  # fmt: skip
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dblink-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = [
        ("filaments", 10, True),
        ("filaments", 20, False),
        ("filaments", 40, False),
        ("mitochondria", 10, False),
    ]
    if args.only:
        name, win = args.only.split(":")
        cases = [(name, int(win), False)]
    if args.seeds:
        name, win, _ = cases[0]
        reports = [
            case(name, win, args.frames, work, False, args.weights, s, args.background)
            for s in args.seeds
        ]
        summary = seed_summary(reports)
        args.output.write_text(json.dumps({"seeds": args.seeds, "summary": summary,
                                           "reports": reports}, indent=2))  # fmt: skip
        print(f"{name}, W={win}, {len(reports)} seeds ({args.frames} frames each): mean +- sd")
        for tol, label in (("tol0", "pixel-exact"), ("tol1", "1-bin")):
            m = summary[tol]
            fpr = [100 * v for v in m["false_positive_rate"]]
            print(
                f"  {label}: recall {m['recall'][0]:.3f} +- {m['recall'][1]:.3f}, FPR "
                f"{fpr[0]:.2f} +- {fpr[1]:.2f} %, Jaccard {m['jaccard'][0]:.3f} +- "
                f"{m['jaccard'][1]:.3f}"
            )
        for r in reports:
            a, b = r["reconstruction"]["tol0"], r["reconstruction"]["tol1"]
            print(
                f"  seed {r['seed']}: exact {a['recall']:.3f} / "
                f"{100 * a['false_positive_rate']:.2f} % / {a['jaccard']:.3f}; 1-bin "
                f"{b['recall']:.3f} / {100 * b['false_positive_rate']:.2f} % / {b['jaccard']:.3f}"
            )
        return
    reports = [
        case(s, w, args.frames, work, frc, args.weights, background=args.background)
        for s, w, frc in cases
    ]
    args.output.write_text(json.dumps(reports, indent=2))
    print(
        "| case | method | recall | FPR % | Jaccard | recall 1-bin | FPR 1-bin % | Jaccard 1-bin |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in reports:
        rows = [("DBlink", r["reconstruction"]), *r["baselines"].items()]
        for name, s in rows:
            a, b = s["tol0"], s["tol1"]
            print(
                f"| {r['case']} ({r['target']}) | {name} | {a['recall']:.3f} | "
                f"{100 * a['false_positive_rate']:.2f} | {a['jaccard']:.3f} | "
                f"{b['recall']:.3f} | {100 * b['false_positive_rate']:.2f} | "
                f"{b['jaccard']:.3f} |"
            )
        if "confidence" in r:
            q = r["confidence"]["quartile_hallucination"]
            print(
                f"|  | confidence quartiles (low..high) hallucination | "
                f"{' / '.join(f'{100 * v:.2f}%' for v in q)} | ratio "
                f"{r['confidence']['ratio_low_high']:.1f} | | | | |"
            )
        extra = {
            k: r[k]
            for k in ("temporal_consistency", "decorrelation_resolution_nm", "frc_resolution_nm")
            if k in r
        }
        print(f"|  | {extra} | | | | | | |")
    print(f"-> {args.output} (figures in {work})")


if __name__ == "__main__":
    main()
