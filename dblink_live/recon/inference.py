"""Offline reconstruction of whole recordings with full bidirectional context, memory bounded.

Two passes over the maps, in chunks:

1. the backward direction runs from the last chunk to the first, carrying its state across
   chunks, and stores its last-layer features for every map in a temporary zarr array on disk;
2. the forward direction runs from the first chunk to the last, carrying its state, reads the
   stored backward features of the same maps and decodes them with the head.

So the result equals running the model on the whole sequence at once, while memory holds one
chunk. Output every S < W raw frames (``stride``) runs one such sequence per phase offset of the
window (``W / S`` passes, each over the maps starting at ``phase x S``) and interleaves them: never
one full window pass per output frame.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from dblink_live.checkpoints import file_sha256, read_checkpoint, shipped_names, shipped_or_path
from dblink_live.config import ReconModelConfig
from dblink_live.errors import DblinkError
from dblink_live.localize.base import resolve_device
from dblink_live.recon.model import ConvBiLSTM
from dblink_live.recon.training import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

__all__ = [
    "LoadedModel",
    "choose_recon_weights",
    "load_recon_model",
    "reconstruct_sequence",
    "resolve_recon_weights",
]

Progress = Callable[[int, int, str], None]


@dataclass
class LoadedModel:
    """A reconstruction model with what it needs to be used correctly."""

    model: ConvBiLSTM
    bin_nm: float
    window_frames: int
    structure: str
    name: str
    sha256: str
    checkpoint: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def trained_window_frames(self) -> tuple[int, int]:
        """Range of W (raw frames per map) the model was trained on, (low, high)."""
        return _trained_window_range(self.checkpoint)

    def window_warning(self, window_frames: int) -> str | None:
        """A warning when ``window_frames`` lies outside the W range the model was trained on
        (it still runs, the input being normalized, but makes more false positives)."""
        lo, hi = self.trained_window_frames
        if lo <= window_frames <= hi:
            return None
        rng = f"W={lo}" if lo == hi else f"W={lo}..{hi}"
        better = [
            n for n in shipped_names("recon_") if _shipped_fits(n, self.structure, window_frames)
        ]
        hint = f"; {better[0]} was trained for it" if better else ""
        return (
            f"W={window_frames} is outside the range {self.name} was trained on ({rng}): expect "
            f"more false positives{hint}"
        )

    @property
    def trained_density_per_um2(self) -> tuple[float, float] | None:
        """Localization density range (per um^2 per raw frame) the model was trained on."""
        cfg = (self.checkpoint.get("config") or {}).get("recon_training") or {}
        rng = cfg.get("density_per_um2")
        return (float(rng[0]), float(rng[1])) if rng else None

    def density_factor(self, density_per_um2: float) -> float:
        """Factor (0, 1] on the confidence for a density outside the training range: 1 within
        half the lowest to twice the highest trained density, else the ratio to that band
        (a table 10x sparser than the model ever saw keeps a tenth of its confidence)."""
        rng = self.trained_density_per_um2
        if rng is None or density_per_um2 <= 0:
            return 1.0
        lo, hi = 0.5 * rng[0], 2.0 * rng[1]
        if density_per_um2 < lo:
            return density_per_um2 / lo
        if density_per_um2 > hi:
            return hi / density_per_um2
        return 1.0

    def density_warning(self, density_per_um2: float, window_frames: int) -> str | None:
        """A warning when the measured density (per um^2 per frame, over the area holding
        data) lies outside the model's training range, with the W that would give its maps
        the localizations per map the model was trained with."""
        rng = self.trained_density_per_um2
        if rng is None or density_per_um2 <= 0:
            return None
        lo, hi = rng
        if 0.5 * lo <= density_per_um2 <= 2.0 * hi:
            return None
        w_lo, w_hi = self.trained_window_frames
        # per map the model saw lo*W..hi*W localizations per um^2 (W over its training range)
        per_map_lo, per_map_hi = lo * w_lo, hi * w_hi
        w_min = math.ceil(per_map_lo / density_per_um2)
        w_max = max(w_min, math.floor(per_map_hi / density_per_um2))
        if density_per_um2 < lo:
            advice = (
                f"maps of W={window_frames} hold {density_per_um2 * window_frames:.2g} "
                f"localizations/um2 where it was trained on {per_map_lo:.2g}-{per_map_hi:.2g}: "
                f"W={w_min}-{w_max} would, at the cost of temporal resolution; expect "
                "structure drawn through sparse or background localizations"
            )
        else:
            advice = f"expect missed structure; W={max(1, w_min)}-{max(1, w_max)} would fit"
        factor = self.density_factor(density_per_um2)
        return (
            f"localization density {density_per_um2:.3g}/um2/frame is outside the range "
            f"{self.name} was trained on ({lo:g}-{hi:g}/um2/frame): {advice}; confidence "
            f"scaled by {factor:.2g}"
        )

    def describe(self) -> dict[str, Any]:
        """Stored with every reconstruction: which model, trained for which grid."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "structure": self.structure,
            "target": self.checkpoint.get("target", "skeleton"),
            "bin_nm": self.bin_nm,
            "window_frames": self.window_frames,
            "architecture": self.checkpoint["architecture"],
        }


def _trained_window_range(ckpt: dict[str, Any]) -> tuple[int, int]:
    rng = ((ckpt.get("config") or {}).get("recon_training") or {}).get("window_frames")
    if rng:
        return int(rng[0]), int(rng[1])
    w = int(ckpt["grid"]["window_frames"])
    return w, w


@functools.cache
def _shipped_facts(name: str) -> tuple[str, tuple[int, int]]:
    """(structure, trained W range) of a shipped reconstruction model."""
    ckpt = torch.load(resolve_recon_weights(name), map_location="cpu", weights_only=False)
    return str(ckpt.get("structure", "unknown")), _trained_window_range(ckpt)


def _shipped_fits(name: str, structure: str, window_frames: int) -> bool:
    kind, (lo, hi) = _shipped_facts(name)
    return kind == structure and lo <= window_frames <= hi and not name.endswith("_live")


def choose_recon_weights(structure: str, window_frames: int) -> str:
    """The shipped model for offline use on ``structure`` at W = ``window_frames``.

    ``recon_<structure>`` when it was trained for that W, else another shipped model of that
    structure trained for it (e.g. ``recon_filaments_wrange`` for W = 40), else the one whose
    trained W range comes closest (``recon_filaments_wrange`` for W = 1000; the caller warns).
    Live models (``*_live``) are left to the live pipeline.

    Raises
    ------
    DblinkError
        if no model is shipped for ``structure``.
    """
    default = f"recon_{structure}"
    names = shipped_names("recon_")
    if default not in names:
        raise DblinkError(
            f"no shipped reconstruction model for {structure!r} (shipped: {', '.join(names)}); "
            "give --weights"
        )
    fitting = [n for n in names if _shipped_fits(n, structure, window_frames)]
    if default in fitting:
        return default
    if fitting:
        return fitting[0]
    # none was trained for this W: the one whose W range comes closest (the caller warns)
    candidates = [n for n in names if not n.endswith("_live") and _shipped_facts(n)[0] == structure]

    def distance(name: str) -> float:
        lo, hi = _shipped_facts(name)[1]
        return abs(math.log(window_frames / min(max(window_frames, lo), hi)))

    return min(candidates, key=lambda n: (distance(n), n != default), default=default)


def resolve_recon_weights(weights: str | Path) -> Path:
    """Path of a checkpoint from a shipped name (``dblink_live/weights/NAME.pt``) or a path."""
    return shipped_or_path(
        weights,
        "reconstruction",
        f"a shipped name ({', '.join(shipped_names('recon_'))}); train one with "
        "`dblink-live train`",
    )


def load_recon_model(weights: str | Path, device: str = "auto") -> LoadedModel:
    """Load a self-describing ConvBiLSTM checkpoint (best validation weights when present)."""
    path = resolve_recon_weights(weights)
    dev = resolve_device(device)
    ckpt = read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "reconstruction", dev)
    model = ConvBiLSTM(**ReconModelConfig(**ckpt["architecture"]).model_dump())
    model.load_state_dict(ckpt.get("best_model_state") or ckpt["model_state"])
    model.to(dev).eval()
    sha = file_sha256(path)
    return LoadedModel(
        model,
        float(ckpt["grid"]["bin_nm"]),
        int(ckpt["grid"]["window_frames"]),
        ckpt.get("structure", "unknown"),
        path.stem,
        sha,
        ckpt,
    )


def _as_tensor(maps: np.ndarray | torch.Tensor, dev: torch.device) -> torch.Tensor:
    if torch.is_tensor(maps):
        return maps.to(device=dev, dtype=torch.float32)
    return torch.as_tensor(np.asarray(maps), dtype=torch.float32, device=dev)


@torch.no_grad()
def reconstruct_sequence(
    model: ConvBiLSTM,
    maps: Callable[[int, int], np.ndarray],
    n_maps: int,
    chunk_maps: int = 32,
    progress: Progress | None = None,
    workdir: str | Path | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Full-context bidirectional reconstruction of a long sequence in bounded memory.

    Parameters
    ----------
    model
        The network (its device is used).
    maps
        ``maps(start, stop)`` returns normalized maps ``[start, stop)`` as (n, Y, X) float32
        (numpy, or a tensor already on the model's device).
    n_maps
        Length of the sequence.
    chunk_maps
        Maps processed at once.
    workdir
        Where the temporary backward features go (a temporary folder by default).

    Yields
    ------
    (start, reconstruction (n, Y, X) float32 in [0, 1], confidence (n, Y, X) or None)
    """
    dev = next(model.parameters()).device
    if n_maps == 0:
        return
    first = maps(0, 1)
    ny, nx = first.shape[-2:]
    h = model.hidden_channels
    starts = list(range(0, n_maps, chunk_maps))
    total = 2 * len(starts)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="dblink-bw-") as tmp:
        store = zarr.open_array(
            Path(tmp) / "backward.zarr",
            mode="w",
            shape=(n_maps, h, ny, nx),
            chunks=(min(chunk_maps, n_maps), h, ny, nx),
            dtype="float32",
        )
        state = None
        for i, s in enumerate(reversed(starts)):
            e = min(s + chunk_maps, n_maps)
            x = _as_tensor(maps(s, e), dev)
            feats, state = model.run_direction(x.flip(0)[None, :, None], "backward", state)
            store[s:e] = feats[0].flip(0).cpu().numpy()
            if progress is not None:
                progress(i + 1, total, "backward")
        state = None
        for i, s in enumerate(starts):
            e = min(s + chunk_maps, n_maps)
            x = _as_tensor(maps(s, e), dev)
            fw, state = model.run_direction(x[None, :, None], "forward", state)
            bw = torch.as_tensor(store[s:e], device=dev)[None]
            logit, conf = model.decode(fw, bw)
            rec = torch.sigmoid(logit[0]).cpu().numpy()
            cf = torch.sigmoid(conf[0]).cpu().numpy() if conf is not None else None
            if progress is not None:
                progress(len(starts) + i + 1, total, "forward")
            yield s, rec, cf
