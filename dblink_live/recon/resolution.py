"""Resolution of a reconstruction without ground truth: FRC and decorrelation analysis.

- **FRC** (Fourier ring correlation): the localizations are split into alternating blocks of
  W raw frames (even and odd blocks), each half is reconstructed on its own (two maps of the
  halves cover the same 2W frames) and the two reconstructions of each time point are
  correlated ring by ring; the resolution is where the FRC first drops below 1/7.
- **Decorrelation** (Descloux et al. 2019, with its high-pass refinement): from each stored
  reconstruction alone, so it is given per time window.

Both measure what the images support, not whether the structure is right: an image that
hallucinates a sharp structure consistently in both halves has a fine FRC. Use them beside
``evaluate --static`` (the data's own accumulation) on real data.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from dblink_live.errors import DblinkError
from dblink_live.io.outputs import check_writable
from dblink_live.io.recording import Recording
from dblink_live.localizations import Localizations
from dblink_live.metrics import decorrelation_resolution, frc_curve, frc_resolution

if TYPE_CHECKING:
    from dblink_live.recon.inference import LoadedModel

__all__ = ["alternating_block_reconstructions", "resolution_report"]

#: FRC threshold (the fixed 1/7 criterion).
FRC_THRESHOLD = 1.0 / 7.0


def alternating_block_reconstructions(
    locs: Localizations,
    model: LoadedModel,
    fov_nm: tuple[float, float],
    n_frames: int,
    window_frames: int,
    origin_nm: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Reconstructions of the even and of the odd W-frame blocks, each (T'', Y', X'): block
    ``2k`` and block ``2k + 1`` both become map ``k`` of their half."""
    from dblink_live.recon.reprocess import reconstruct_localizations

    w = window_frames
    block = locs.frame // w
    halves = []
    for parity in (0, 1):
        sel = locs.select(block % 2 == parity)
        sel = replace(sel, frame=((sel.frame // w // 2) * w + sel.frame % w).astype(np.int64))
        out = [
            r
            for _, r, _ in reconstruct_localizations(
                sel,
                model,
                fov_nm,
                max(n_frames // 2, w),
                window_frames=w,
                origin_nm=origin_nm,
                with_evidence=False,
            )
        ]
        halves.append(np.concatenate(out))
    m = min(len(halves[0]), len(halves[1]))
    return halves[0][:m], halves[1][:m]


def resolution_report(
    recording: str | Path,
    *,
    weights: str | None = None,
    frc: bool = True,
    device: str = "auto",
    figure: str | Path | None = None,
    output: str | Path | None = None,
    max_maps: int = 50,
) -> dict[str, Any]:
    """FRC (from alternating blocks) and decorrelation (per stored map) of a recording's
    reconstruction, in nm; writes ``figure`` (PNG) and ``output`` (JSON) when given.

    ``weights`` (for the FRC's two reconstructions) defaults to the model that made the stored
    reconstruction. Maps without any structure (all zero) are left out of the decorrelation.
    """
    for path in (figure, output):
        if path is not None:
            check_writable(path)
    rec = Recording.open(recording)
    found = rec.read_image("reconstruction")
    if found is None:
        raise DblinkError(f"{rec.path} holds no reconstruction: run `dblink-live reprocess` first")
    data, attrs = found
    if len(data) == 0:
        raise DblinkError(f"{rec.path}: the reconstruction holds no maps")
    bin_nm = float(attrs["bin_nm"])
    w = int(attrs["window_frames"])
    stride = int(attrs.get("stride_frames", w))
    interval = float(rec.frame_interval_s)
    picks = np.unique(np.linspace(0, len(data) - 1, min(max_maps, len(data))).astype(int))
    per_map = []
    for i in picks:
        img = data[i]
        value = decorrelation_resolution(img, bin_nm) if img.max() > 0 else float("nan")
        per_map.append({"map": int(i), "time_s": float(i * stride * interval), "nm": value})
    values = np.array([p["nm"] for p in per_map], float)
    report: dict[str, Any] = {
        "recording": str(rec.path),
        "bin_nm": bin_nm,
        "window_frames": w,
        "model": (attrs.get("model") or {}).get("name"),
        "decorrelation_nm": {
            "median": float(np.nanmedian(values)) if np.isfinite(values).any() else None,
            "per_map": per_map,
            "method": "Descloux et al. 2019 with high-pass refinement",
        },
    }
    curve = None
    if frc:
        locs = rec.read_localizations()
        if len(locs) == 0:
            raise DblinkError(f"{rec.path} holds no localizations for the FRC; pass --no-frc")
        from dblink_live.recon.inference import load_recon_model

        name = weights or report["model"]
        if not name:
            raise DblinkError("the reconstruction does not name its model: pass --weights")
        model = load_recon_model(name, device)
        # (width, height) and (x, y) as the reconstruction stored them
        default_fov = (data.shape[2] * bin_nm, data.shape[1] * bin_nm)
        fov = cast(tuple[float, float], tuple(float(v) for v in attrs.get("fov_nm", default_fov)))
        origin_nm = attrs.get("origin_nm", (0.0, 0.0))
        origin = cast(tuple[float, float], tuple(float(v) for v in origin_nm))
        a, b = alternating_block_reconstructions(locs, model, fov, rec.n_frames, w, origin)
        if len(a) == 0:
            raise DblinkError(f"{rec.path}: too few frames for two halves of W={w}")
        idx = np.unique(np.linspace(0, len(a) - 1, min(10, len(a))).astype(int))
        res = [frc_resolution(a[i], b[i], bin_nm, FRC_THRESHOLD) for i in idx]
        mid = int(idx[len(idx) // 2])
        freq, values_frc = frc_curve(a[mid], b[mid])
        curve = (freq / bin_nm, values_frc)
        report["frc_nm"] = {
            "median": float(np.median(res)),
            "per_pair": [float(v) for v in res],
            "threshold": FRC_THRESHOLD,
            "curve_map": mid,
            "curve": {"frequency_per_nm": curve[0].tolist(), "frc": curve[1].tolist()},
            "weights": model.name,
            "note": "halves of alternating W-frame blocks, each map over 2W raw frames",
        }
    if figure is not None:
        _plot(Path(figure), report, curve)
        report["figure"] = str(figure)
    if output is not None:
        Path(output).write_text(json.dumps(report, indent=2))
        report["output"] = str(output)
    return report


def _plot(path: Path, report: dict[str, Any], curve) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    if curve is not None:
        ax[0].plot(curve[0], curve[1], lw=1.5)
        ax[0].axhline(FRC_THRESHOLD, color="gray", ls="--", lw=1)
        med = report["frc_nm"]["median"]
        ax[0].set_title(f"FRC of alternating blocks: {med:.0f} nm (median)")
        ax[0].set_xlabel("spatial frequency (1/nm)")
        ax[0].set_ylabel("FRC")
    else:
        ax[0].text(0.5, 0.5, "FRC not computed", ha="center", va="center")
        ax[0].set_axis_off()
    per = report["decorrelation_nm"]["per_map"]
    ax[1].plot([p["time_s"] for p in per], [p["nm"] for p in per], "o-", ms=3)
    med = report["decorrelation_nm"]["median"]
    ax[1].set_title(
        "decorrelation per map" + (f": {med:.0f} nm (median)" if med is not None else "")
    )
    ax[1].set_xlabel("time (s)")
    ax[1].set_ylabel("resolution (nm)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
