"""What both trainers (``train-localizer`` and ``train``) share: the training loop, one
optimizer step, the plateau schedule with early stopping, the atomic checkpoint write and
resuming.

- :func:`run_training`: the loop itself: steps counted, progress reported, validation every
  N steps and at the last, the plateau updated, early stopping, checkpoints every N steps, at
  the last and on stopping (written by the main rank only under DDP).

- :func:`optimizer_step`: backward, gradient clipping (norm 5), step.
- :class:`Plateau`: ``ReduceLROnPlateau`` (factor 0.5) on the validation loss plus an
  early-stopping counter; both go into the checkpoint, so a resumed run keeps its schedule.
- :func:`save_atomic`: the checkpoint is written beside its target and renamed over it, so a
  run killed mid-write leaves the previous checkpoint whole.
- :func:`resume_from`: model, optimizer and schedule restored from a checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LoopResult",
    "Plateau",
    "Validation",
    "optimizer_step",
    "resume_from",
    "run_training",
    "save_atomic",
]

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


@dataclass(frozen=True)
class Validation:
    """One validation, as :func:`run_training` hands it to its ``on_validation``."""

    #: Steps taken so far (the step just finished, counted from 1).
    step: int
    #: The validation loss ``validate`` returned.
    loss: float
    #: Whether it improved on the plateau's best (``Plateau.update``'s answer).
    improved: bool
    #: Whether the plateau asks to stop now (early stopping).
    stop: bool
    #: Loss parts of the training step just taken.
    parts: dict[str, float]
    #: Seconds since the loop started.
    seconds: float


@dataclass(frozen=True)
class LoopResult:
    """How :func:`run_training` ended."""

    #: Steps taken in all, counted from the run's start (resumed runs included).
    step: int
    #: True when early stopping ended the run before ``steps``.
    stopped: bool
    #: The metrics of the last validation (the initial ones when none was made).
    metrics: dict[str, Any]


def run_training(
    *,
    start_step: int,
    steps: int,
    train_step: Callable[[], dict[str, float]],
    validate: Callable[[int], float],
    on_validation: Callable[[Validation], dict[str, Any]],
    checkpoint: Callable[[int, bool, dict[str, Any]], None],
    validate_every: int,
    checkpoint_every: int,
    plateau: Plateau,
    metrics: dict[str, Any] | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    before_step: Callable[[int], None] | None = None,
    step_scheduler: Callable[[int], bool] | None = None,
    is_main: bool = True,
) -> LoopResult:
    """Train from step ``start_step`` to ``steps``, validating, scheduling and checkpointing.

    Each step: ``before_step(step)`` (``step``: steps taken before it), ``train_step()``
    (one optimizer step; returns the loss parts), then with ``step`` counting the steps taken:

    - ``progress(step, steps, parts)`` on the main rank;
    - every ``validate_every`` steps and at the last step, ``validate(step)`` (the validation
      loss; called on every rank, so it may hold collective operations), ``plateau.update``
      (stepping the learning-rate scheduler unless ``step_scheduler(step)`` is False), and
      ``on_validation`` (returns the metrics that later checkpoints carry);
    - every ``checkpoint_every`` steps, at the last step and on early stopping,
      ``checkpoint(step, last_or_stopped, metrics)`` on the main rank.

    The loop ends after ``steps`` steps or when ``plateau.should_stop`` after a validation.
    ``metrics`` are those checkpoints carry until the first validation (default: empty).
    """
    step = start_step
    stop = False
    metrics = {} if metrics is None else metrics
    t0 = time.perf_counter()
    while step < steps and not stop:
        if before_step is not None:
            before_step(step)
        parts = train_step()
        step += 1
        if progress is not None and is_main:
            progress(step, steps, parts)
        last = step == steps
        if step % validate_every == 0 or last:
            loss = validate(step)
            scheduled = True if step_scheduler is None else step_scheduler(step)
            improved = plateau.update(loss, step_scheduler=scheduled)
            stop = plateau.should_stop
            seconds = time.perf_counter() - t0
            metrics = on_validation(Validation(step, loss, improved, stop, parts, seconds))
        if is_main and (step % checkpoint_every == 0 or last or stop):
            checkpoint(step, last or stop, metrics)
    return LoopResult(step, stop, metrics)
