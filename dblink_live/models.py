"""What a checkpoint is for: the facts ``dblink-live models`` shows about shipped or own weights.

Every checkpoint describes itself (architecture, grid, training config and metrics); this module
reads those facts without loading the weights into a network, so a microscopist can pick the
model that fits an experiment (structure, window W, compute) before running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dblink_live.checkpoints import file_sha256, shipped_names, shipped_or_path
from dblink_live.errors import DblinkError

__all__ = ["describe_weights", "shipped_weights"]

_STATE_KEYS = ("best_model_state", "model_state")


def _parameters(state: dict[str, torch.Tensor] | None) -> int:
    return int(sum(v.numel() for v in (state or {}).values() if torch.is_tensor(v)))


def _recon_facts(ckpt: dict[str, Any]) -> dict[str, Any]:
    from dblink_live.recon.inference import _trained_window_range
    from dblink_live.recon.model import ConvBiLSTM

    arch = dict(ckpt["architecture"])
    training = (ckpt.get("config") or {}).get("recon_training") or {}
    metrics = ckpt.get("metrics") or {}
    model = ConvBiLSTM(**arch)  # on the CPU, weights not loaded: only to count MACs
    init = ckpt.get("init") or None
    return {
        "kind": "reconstruction",
        "structure": ckpt.get("structure"),
        "target": ckpt.get("target", "skeleton"),
        "bin_nm": ckpt["grid"]["bin_nm"],
        "window_frames": ckpt["grid"]["window_frames"],
        "trained_window_frames": list(_trained_window_range(ckpt)),
        "trained_density_per_um2": training.get("density_per_um2"),
        "architecture": arch,
        "gmac_per_128px_map": model.macs_per_pixel() * 128 * 128 / 1e9,
        "train_data": training.get("train_data", "locspace"),
        "loss": training.get("loss", "bce"),
        "best_validation": metrics.get("best_validation"),
        "validation_data": metrics.get("validation_data", "locspace"),
        "fine_tuned_from": (init or {}).get("name"),
        "fine_tuned_from_step": (init or {}).get("step"),
    }


def _localizer_facts(ckpt: dict[str, Any]) -> dict[str, Any]:
    training = ckpt.get("training") or {}
    return {
        "kind": "localizer",
        "architecture": dict(ckpt.get("architecture") or {}),
        "trained_pixel_size_nm": training.get("pixel_size_nm"),
        "trained_density_per_um2": training.get("density_per_um2"),
        "trained_cameras": training.get("cameras"),
        "best_validation": (ckpt.get("metrics") or {}).get("best_validation"),
    }


def describe_weights(weights: str | Path) -> dict[str, Any]:
    """Facts about a checkpoint (a shipped name such as ``recon_filaments``, or a ``.pt``).

    Returns a JSON-ready dict: ``name``, ``path``, ``kind`` (``reconstruction`` or
    ``localizer``), ``size_bytes``, ``sha256``, ``parameters``, ``steps`` and the kind's facts
    (for reconstruction models: ``structure``, ``target``, ``bin_nm``, ``window_frames``, the
    W and density ranges it was trained on, ``architecture``, ``gmac_per_128px_map``,
    ``train_data``, ``best_validation``, ``fine_tuned_from``).

    Raises
    ------
    DblinkError
        if it is missing or not a dblink_live checkpoint.
    """
    path = shipped_or_path(weights, "model", f"a shipped name ({', '.join(shipped_names())})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DblinkError(f"{path} cannot be read as a checkpoint: {exc}") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt == "dblink-live-recon":
        facts = _recon_facts(ckpt)
    elif fmt == "dblink-live-localizer":
        facts = _localizer_facts(ckpt)
    else:
        raise DblinkError(f"{path} is not a dblink_live checkpoint")
    state = next((ckpt[k] for k in _STATE_KEYS if ckpt.get(k)), None)
    return {
        "name": path.stem,
        "path": str(path),
        **facts,
        "parameters": _parameters(state),
        "steps": int(ckpt.get("step", 0)),
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "package_version": ckpt.get("package_version"),
    }


def shipped_weights() -> list[dict[str, Any]]:
    """:func:`describe_weights` of every checkpoint in ``dblink_live/weights``, by name."""
    return [describe_weights(name) for name in shipped_names()]
