"""The reconstruction checkpoint: one format, built from the run config, and the functions
that make, find and read it (training writes it, inference and fine-tuning read it).

A checkpoint is a ``torch.save`` dict that describes itself: ``format``
(:data:`CHECKPOINT_FORMAT`), ``format_version``, ``package_version``, ``architecture`` (the
``recon_model`` config), ``grid`` (``bin_nm``, ``window_frames``), ``normalization``,
``structure``, ``target``, the resolved ``config``, ``step``, ``model_state``,
``best_model_state`` (what inference loads), optimizer and scheduler states (to resume),
``metrics`` and ``init`` (what a fine-tuning run started from).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from dblink_live import __version__
from dblink_live.checkpoints import file_sha256, read_checkpoint, shipped_names, shipped_or_path
from dblink_live.config import ReconModelConfig, RunConfig
from dblink_live.errors import DblinkError
from dblink_live.recon.data import NORM_FACTOR
from dblink_live.recon.model import ConvBiLSTM

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "load_init_weights",
    "make_checkpoint",
    "read_recon_checkpoint",
    "resolve_recon_weights",
]

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "dblink-live-recon"
CHECKPOINT_VERSION = 1


def resolve_recon_weights(weights: str | Path) -> Path:
    """Path of a checkpoint from a shipped name (``dblink_live/weights/NAME.pt``) or a path."""
    return shipped_or_path(
        weights,
        "reconstruction",
        f"a shipped name ({', '.join(shipped_names('recon_'))}); train one with "
        "`dblink-live train`",
    )


def read_recon_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a reconstruction checkpoint, checking its format and version (one clear error)."""
    return read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "reconstruction", device)


def make_checkpoint(
    model: ConvBiLSTM,
    config: RunConfig,
    step: int,
    optimizer,
    scheduler,
    metrics: dict[str, Any],
    best_state: dict | None = None,
    init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to rebuild the model, run it on the right grid, and resume.

    ``init`` names the checkpoint a fine-tuning run started from (path, sha256, step).
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "package_version": __version__,
        "architecture": config.recon_model.model_dump(mode="json"),
        "grid": {"bin_nm": config.grid.bin_nm, "window_frames": config.grid.window_frames},
        "normalization": {"kind": "mean_count", "factor": NORM_FACTOR},
        "structure": config.simulation.structure.kind,
        "target": config.recon_training.target,
        "config": config.to_dict(),
        "step": step,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # the weights with the best validation loss: what inference loads
        "best_model_state": best_state,
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "metrics": metrics,
        "init": init,
    }


def load_init_weights(
    weights: str | Path, config: RunConfig, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights to fine-tune from: the best weights of a reconstruction checkpoint.

    Parameters
    ----------
    weights
        A shipped name (``recon_filaments``, ``recon_mitochondria``) or a ``.pt`` path.
    config
        The new run's config; its ``recon_model`` must describe the same architecture.
    device
        Where the tensors are loaded.

    Returns
    -------
    state : the model state dict (``best_model_state`` when present, else ``model_state``)
    info : ``{"path", "name", "sha256", "step", "grid", "structure"}`` of the checkpoint

    Raises
    ------
    DblinkError
        if the checkpoint is missing or not a reconstruction checkpoint, or its architecture
        differs from ``config.recon_model``.
    """
    path = resolve_recon_weights(weights)
    ckpt = read_recon_checkpoint(path, device)
    try:
        theirs = ReconModelConfig(**ckpt["architecture"]).model_dump()
    except Exception as exc:  # a hand-edited or foreign architecture block
        raise DblinkError(f"{path} has an unreadable architecture: {exc}") from None
    ours = config.recon_model.model_dump()
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ:
        diffs = ", ".join(f"{k}: {theirs.get(k)} there, {ours[k]} in the config" for k in differ)
        raise DblinkError(
            f"cannot fine-tune from {path}: its architecture differs from the config's "
            f"recon_model ({diffs}); set recon_model to the checkpoint's "
            f"(preset: {theirs.get('preset')}) or train from scratch without --init"
        )
    grid = ckpt.get("grid", {})
    if grid and (
        float(grid.get("bin_nm", config.grid.bin_nm)) != config.grid.bin_nm
        or int(grid.get("window_frames", config.grid.window_frames)) != config.grid.window_frames
    ):
        log.warning(
            "fine-tuning %s (trained on bins of %s nm, W=%s) on bins of %s nm, W=%s",
            path.name,
            grid.get("bin_nm"),
            grid.get("window_frames"),
            config.grid.bin_nm,
            config.grid.window_frames,
        )
    state = ckpt.get("best_model_state") or ckpt["model_state"]
    info = {
        "path": str(path),
        "name": path.stem,
        "sha256": file_sha256(path),
        "step": int(ckpt.get("step", 0)),
        "grid": grid,
        "structure": ckpt.get("structure"),
    }
    return state, info
