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
import itertools
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from dblink_live.checkpoints import file_sha256, shipped_names
from dblink_live.config import ReconModelConfig
from dblink_live.errors import DblinkError
from dblink_live.localize.base import resolve_device
from dblink_live.recon.checkpoint import read_recon_checkpoint, resolve_recon_weights
from dblink_live.recon.model import ConvBiLSTM, State

__all__ = [
    "LoadedModel",
    "choose_recon_weights",
    "load_recon_model",
    "reconstruct_sequence",
    "reconstruct_sequences",
    "resolve_recon_weights",
]

Progress = Callable[[int, int, str], None]

#: Codecs of the temporary backward features: none, since they are read back once and
#: compressing them cost more than writing them raw (zarr's default, ``"auto"``, is kept for
#: comparison in ``scripts/bench_reprocess.py``).
BACKWARD_COMPRESSORS: Any = None


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


def load_recon_model(weights: str | Path, device: str = "auto") -> LoadedModel:
    """Load a self-describing ConvBiLSTM checkpoint (best validation weights when present)."""
    path = resolve_recon_weights(weights)
    dev = resolve_device(device)
    ckpt = read_recon_checkpoint(path, dev)
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
    for start, rec, conf in reconstruct_sequences(
        model, lambda a, b: maps(a, b)[None], [n_maps], chunk_maps, progress, workdir
    ):
        yield start, rec[0], None if conf is None else conf[0]


def _segments(start: int, stop: int, lengths: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Split maps ``[start, stop)`` where a sequence ends: (a, b, indices of the sequences that
    have every map of [a, b))."""
    cuts = sorted({start, stop, *(int(n) for n in lengths if start < n < stop)})
    out = []
    for a, b in itertools.pairwise(cuts):
        active = np.flatnonzero(lengths >= b)
        if len(active):
            out.append((a, b, active))
    return out


def _take(state: State, idx: torch.Tensor | None) -> State:
    return state if idx is None else [(h[idx], c[idx]) for h, c in state]


def _put(state: State, idx: torch.Tensor | None, part: State) -> State:
    if idx is None:
        return part
    out = []
    for (h, c), (ph, pc) in zip(state, part, strict=True):
        h, c = h.clone(), c.clone()
        h[idx], c[idx] = ph, pc
        out.append((h, c))
    return out


@torch.no_grad()
def reconstruct_sequences(
    model: ConvBiLSTM,
    maps: Callable[[int, int], np.ndarray | torch.Tensor],
    lengths: Sequence[int],
    chunk_maps: int = 32,
    progress: Progress | None = None,
    workdir: str | Path | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Several sequences reconstructed side by side in one batch (each with its own full
    bidirectional context, exactly as if run alone), in bounded memory.

    The phase sequences of a stride-S reconstruction (``W / S`` of them, of lengths that differ
    by at most one map) run this way as one batched pass: the recurrent steps run once per map
    index for all sequences together, not once per sequence.

    Parameters
    ----------
    model
        The network (its device is used).
    maps
        ``maps(start, stop)`` returns normalized maps ``[start, stop)`` of every sequence as
        (B, n, Y, X) float32 (numpy, or a tensor on the model's device); rows past a sequence's
        end are not used (any value).
    lengths
        Maps in each of the B sequences.
    chunk_maps
        Maps of each sequence processed at once (B x ``chunk_maps`` maps per step).
    workdir
        Where the temporary backward features go (a temporary folder by default).

    Yields
    ------
    (start, reconstruction (B, n, Y, X) float32 in [0, 1], confidence (B, n, Y, X) or None)
    for maps ``[start, start + n)``, in order; rows of sequences that end before a map are 0.
    """
    dev = next(model.parameters()).device
    lens = np.asarray(lengths, dtype=np.int64)
    n_maps = int(lens.max(initial=0))
    if n_maps == 0:
        return
    b_all = len(lens)
    first = maps(0, 1)
    ny, nx = first.shape[-2:]
    h = model.hidden_channels
    starts = list(range(0, n_maps, chunk_maps))
    total = 2 * len(starts)

    def index(active: np.ndarray) -> torch.Tensor | None:
        return None if len(active) == b_all else torch.as_tensor(active, device=dev)

    with tempfile.TemporaryDirectory(dir=workdir, prefix="dblink-bw-") as tmp:
        store = zarr.create_array(
            Path(tmp) / "backward.zarr",
            shape=(b_all, n_maps, h, ny, nx),
            chunks=(b_all, min(chunk_maps, n_maps), h, ny, nx),
            dtype="float32",
            compressors=BACKWARD_COMPRESSORS,
        )
        x0 = _as_tensor(first, dev)
        state = model.zero_state(x0)
        for i, s in enumerate(reversed(starts)):
            e = min(s + chunk_maps, n_maps)
            x = _as_tensor(maps(s, e), dev)
            feats = torch.zeros((b_all, e - s, h, ny, nx), device=dev)
            for a, b, active in reversed(_segments(s, e, lens)):
                idx = index(active)
                part = x[:, a - s : b - s] if idx is None else x[idx, a - s : b - s]
                f, st = model.run_direction(part.flip(1)[:, :, None], "backward", _take(state, idx))
                state = _put(state, idx, st)
                if idx is None:
                    feats[:, a - s : b - s] = f.flip(1)
                else:
                    feats[idx, a - s : b - s] = f.flip(1)
            store[:, s:e] = feats.cpu().numpy()
            if progress is not None:
                progress(i + 1, total, "backward")
        state = model.zero_state(x0)
        for i, s in enumerate(starts):
            e = min(s + chunk_maps, n_maps)
            x = _as_tensor(maps(s, e), dev)
            bw_all = torch.as_tensor(store[:, s:e], device=dev)
            rec = torch.zeros((b_all, e - s, ny, nx), device=dev)
            cf = torch.zeros_like(rec) if model.confidence else None
            for a, b, active in _segments(s, e, lens):
                idx = index(active)
                sl = slice(a - s, b - s)
                part = x[:, sl] if idx is None else x[idx, sl]
                fw, st = model.run_direction(part[:, :, None], "forward", _take(state, idx))
                state = _put(state, idx, st)
                logit, conf = model.decode(fw, bw_all[:, sl] if idx is None else bw_all[idx, sl])
                if idx is None:
                    rec[:, sl] = torch.sigmoid(logit)
                    if cf is not None and conf is not None:
                        cf[:, sl] = torch.sigmoid(conf)
                else:
                    rec[idx, sl] = torch.sigmoid(logit)
                    if cf is not None and conf is not None:
                        cf[idx, sl] = torch.sigmoid(conf)
            if progress is not None:
                progress(len(starts) + i + 1, total, "forward")
            yield s, rec.cpu().numpy(), None if cf is None else cf.cpu().numpy()
