"""Finding and reading self-describing checkpoints (shipped in ``dblink_live/weights``)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from dblink_live.errors import DblinkError

__all__ = ["file_sha256", "read_checkpoint", "shipped_or_path"]


def shipped_names(prefix: str = "") -> list[str]:
    """Names of the shipped checkpoints (``dblink_live/weights/*.pt``) starting with ``prefix``."""
    folder = resources.files("dblink_live") / "weights"
    names = (f.name.removesuffix(".pt") for f in folder.iterdir() if f.name.endswith(".pt"))
    return sorted(n for n in names if n.startswith(prefix))


def shipped_or_path(weights: str | Path, what: str, hint: str) -> Path:
    """A ``.pt`` path, or the shipped ``dblink_live/weights/NAME.pt``; one clear error if neither.

    ``what`` names the kind of checkpoint and ``hint`` says how to get one.
    """
    p = Path(weights)
    if p.is_file():
        return p
    shipped = resources.files("dblink_live") / "weights" / f"{weights}.pt"
    if shipped.is_file():
        return Path(str(shipped))
    raise DblinkError(f"no {what} checkpoint {weights!r}: give a path to a .pt file or {hint}")


def read_checkpoint(
    path: Path, fmt: str, max_version: int, what: str, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """``torch.load`` a checkpoint and check its ``format`` and ``format_version``.

    Raises
    ------
    DblinkError
        if it cannot be read, is another kind of file, or was written by a newer version.
    """
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise DblinkError(f"{path} cannot be read as a checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise DblinkError(f"{path} is not a dblink_live {what} checkpoint")
    if ckpt.get("format_version", 0) > max_version:
        raise DblinkError(f"{path} was written by a newer dblink_live; upgrade to load it")
    ckpt["path"] = str(path)
    return ckpt


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (stored with results to name the exact weights used)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
