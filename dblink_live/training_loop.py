"""What both trainers (``train-localizer`` and ``train``) share: one optimizer step, the
plateau schedule with early stopping, the atomic checkpoint write and resuming.

- :func:`optimizer_step`: backward, gradient clipping (norm 5), step.
- :class:`Plateau`: ``ReduceLROnPlateau`` (factor 0.5) on the validation loss plus an
  early-stopping counter; both go into the checkpoint, so a resumed run keeps its schedule.
- :func:`save_atomic`: the checkpoint is written beside its target and renamed over it, so a
  run killed mid-write leaves the previous checkpoint whole.
- :func:`resume_from`: model, optimizer and schedule restored from a checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

__all__ = ["Plateau", "optimizer_step", "resume_from", "save_atomic"]

#: Gradients are clipped to this norm before every step (both trainers).
CLIP_NORM = 5.0


def optimizer_step(
    loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Backpropagate ``loss`` (a scalar), clip ``model``'s gradients, step ``optimizer``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
    optimizer.step()


class Plateau:
    """Learning rate halved after ``lr_patience`` validations without improvement, and
    training stopped after ``stop_patience`` (None: never stopped early).

    ``best`` is the best validation loss so far; an improvement must beat it by
    ``min_delta``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_patience: int,
        stop_patience: int | None = None,
        min_delta: float = 1e-4,
    ):
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=lr_patience
        )
        self.stop_patience = stop_patience
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.bad = 0  # validations without improvement

    def update(self, loss: float, step_scheduler: bool = True) -> bool:
        """Take one validation ``loss``; True when it improved on the best. With
        ``step_scheduler=False`` the learning rate is left to the caller (a fixed decay)."""
        if step_scheduler:
            self.scheduler.step(loss)
        improved = loss < self.best - self.min_delta
        if improved:
            self.best, self.bad = float(loss), 0
        else:
            self.bad += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.stop_patience is not None and self.bad >= self.stop_patience

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (or a bare scheduler state, as older
        checkpoints stored it)."""
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
            self.best, self.bad = float(state["best"]), int(state["bad"])
        else:
            self.scheduler.load_state_dict(state)


def save_atomic(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to ``PATH.tmp``, then rename it over ``path``; returns ``path``."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


def resume_from(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> dict[str, Any]:
    """Load model and optimizer state from checkpoint ``path``; returns the checkpoint (its
    ``step``, ``metrics`` and schedule state for the caller)."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(ckpt["model_state"])
    if ckpt.get("optimizer_state"):
        optimizer.load_state_dict(ckpt["optimizer_state"])
    return ckpt
