"""Our decorrelation analysis beside NanoPyx's on the same images (an independent
implementation of Descloux et al. 2019), for the README.

Images: band-limited test images whose resolution is known by construction (spectra falling
as 1/k^a, cut at a fraction of Nyquist, plus white noise), and reconstructions of the real
localization tables in ``../shared/data/real`` (first ``--frames`` frames, reprocessed with the
shipped default model at W = 10: five maps spread over the run, and their time average).

NanoPyx is not a dependency: install it in its own environment and pass its interpreter::

    python -m venv /tmp/npx && /tmp/npx/bin/pip install nanopyx
    python scripts/compare_decorrelation.py --nanopyx-python /tmp/npx/bin/python -o decorr.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from dblink_live.io.recording import Recording
from dblink_live.io.tables import read_localizations, write_localizations
from dblink_live.metrics import decorrelation_resolution
from dblink_live.recon.reprocess import reprocess

REPO = Path(__file__).resolve().parents[1]

_NANOPYX = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, nanopyx
    data = np.load(sys.argv[1])
    out = {}
    for key in data.files:
        img, px = data[key][0], float(data[key][1][0, 0])
        out[key] = float(nanopyx.calculate_decorr_analysis(img.astype(np.float32), pixel_size=px))
    print(json.dumps(out))
    """
)


def synthetic(n: int = 256) -> dict[str, tuple[np.ndarray, float, float]]:
    """name -> (image, pixel nm, true resolution nm)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot((yy - n // 2) / (n / 2), (xx - n // 2) / (n / 2))
    out = {}
    for slope in (0.0, 1.0, 1.5):
        for cutoff in (0.3, 0.5):
            amp = np.where(r <= cutoff, 1 / np.maximum(r, 2 / n) ** slope, 0.0)
            spec = np.fft.fftshift(np.fft.fft2(rng.normal(size=(n, n)))) * amp
            img = np.fft.ifft2(np.fft.ifftshift(spec)).real / np.sqrt((amp**2).mean())
            img += rng.normal(0, 0.05, img.shape)
            out[f"band-limited 1/k^{slope:g}, cutoff {cutoff:g} Nyquist"] = (
                img, 10.0, 2 * 10.0 / cutoff
            )  # fmt: skip
    return out


def real(frames: int, work: Path) -> dict[str, tuple[np.ndarray, float, float]]:
    out: dict[str, tuple[np.ndarray, float, float]] = {}
    for table in sorted((REPO.parent / "shared" / "data" / "real").glob("*.csv")):
        locs = read_localizations(table)
        part = locs.select(locs.frame < frames)
        part.n_frames = min(frames, locs.n_frames)
        sub = work / f"{table.stem}.csv"
        write_localizations(part, sub, format="csv")
        rec_path = work / f"{table.stem}.zarr"
        reprocess(sub, output=rec_path, weights="recon_filaments", overwrite=True)
        data, attrs = Recording.open(rec_path).read_image("reconstruction")  # type: ignore[misc]
        bin_nm = float(attrs["bin_nm"])
        for i in np.linspace(0, len(data) - 1, 5).astype(int):
            out[f"{table.stem} map {i}"] = (data[i], bin_nm, float("nan"))
        out[f"{table.stem} time average"] = (data.mean(0), bin_nm, float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanopyx-python", default=None, help="an interpreter with nanopyx")
    ap.add_argument("--frames", type=int, default=1000, help="frames of each real table")
    ap.add_argument("--no-real", action="store_true", help="synthetic images only")
    ap.add_argument("-o", "--output", type=Path, default=Path("compare_decorrelation.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dblink-decorr-") as tmp:
        images = synthetic()
        if not args.no_real:
            images.update(real(args.frames, Path(tmp)))
        rows: list[dict[str, Any]] = []
        for name, (img, px, truth) in images.items():
            rows.append(
                {"image": name, "pixel_nm": px, "truth_nm": truth,
                 "ours_nm": decorrelation_resolution(img, px),
                 "ours_unrefined_nm": decorrelation_resolution(img, px, n_filters=0)}
            )  # fmt: skip
        if args.nanopyx_python:
            npz = Path(tmp) / "images.npz"
            np.savez(npz, **{r["image"]: np.array([images[r["image"]][0],
                                                   np.full_like(images[r["image"]][0],
                                                                r["pixel_nm"])])
                             for r in rows})  # fmt: skip
            res = subprocess.run(
                [args.nanopyx_python, "-c", _NANOPYX, str(npz)],
                capture_output=True, text=True, timeout=3600, check=True,
            )  # fmt: skip
            theirs = json.loads(res.stdout.strip().splitlines()[-1])
            for r in rows:
                r["nanopyx_nm"] = theirs[r["image"]]
    print(
        "| image | truth (nm) | ours (nm) | ours, unrefined (nm) | NanoPyx (nm) | ours / NanoPyx |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        nan = r.get("nanopyx_nm", float("nan"))
        ratio = r["ours_nm"] / nan if nan and np.isfinite(nan) else float("nan")
        truth = f"{r['truth_nm']:.1f}" if np.isfinite(r["truth_nm"]) else "-"
        print(f"| {r['image']} | {truth} | {r['ours_nm']:.1f} | {r['ours_unrefined_nm']:.1f} | "
              f"{nan:.1f} | {ratio:.2f} |")  # fmt: skip
    args.output.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
