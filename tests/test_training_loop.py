"""The pieces both trainers share (dblink_live/training_loop.py), on a real torch optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dblink_live.training_loop import (
    LoopResult,
    Plateau,
    Validation,
    optimizer_step,
    resume_from,
    run_training,
    save_atomic,
)


def _opt() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def test_the_plateau_halves_the_rate_then_stops_and_its_state_round_trips() -> None:
    _, opt = _opt()
    plateau = Plateau(opt, lr_patience=1, stop_patience=3, min_delta=1e-4)
    assert plateau.update(1.0) and plateau.best == 1.0
    assert not plateau.update(1.0 - 5e-5)  # within min_delta: not an improvement
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert not plateau.update(2.0)  # second bad validation: past lr_patience = 1
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-3)
    assert not plateau.should_stop
    plateau.update(3.0)
    assert plateau.bad == 3 and plateau.should_stop
    _, opt2 = _opt()
    again = Plateau(opt2, lr_patience=1, stop_patience=3)
    again.load_state_dict(plateau.state_dict())
    assert (again.best, again.bad, again.should_stop) == (1.0, 3, True)
    assert again.scheduler.state_dict()["num_bad_epochs"] == plateau.scheduler.num_bad_epochs


def test_a_fixed_decay_leaves_the_rate_alone() -> None:
    _, opt = _opt()
    plateau = Plateau(opt, lr_patience=0, stop_patience=None, min_delta=0.0)
    for v in (1.0, 2.0, 3.0):
        plateau.update(v, step_scheduler=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2) and not plateau.should_stop


def test_a_step_clips_and_a_checkpoint_is_replaced_whole_and_resumes(tmp_path: Path) -> None:
    model, opt = _opt()
    before = model.weight.detach().clone()
    loss = (model(torch.full((4, 3), 1e6)) ** 2).mean()  # a huge gradient, clipped to norm 5
    optimizer_step(loss, model, opt)
    assert not torch.equal(model.weight, before)
    assert torch.isfinite(model.weight).all()
    path = tmp_path / "c.pt"
    path.write_bytes(b"the previous checkpoint")
    ckpt = {"model_state": model.state_dict(), "optimizer_state": opt.state_dict(), "step": 7}
    assert save_atomic(ckpt, path) == path
    assert not path.with_suffix(".tmp").exists()
    other, opt2 = _opt()
    got = resume_from(path, other, opt2, torch.device("cpu"))
    assert got["step"] == 7 and torch.equal(other.weight, model.weight)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def _loop(losses: list[float], plateau: Plateau, **kw: object) -> tuple[list[tuple], LoopResult]:
    """run_training with plain callables; returns the calls made, in order, and the result."""
    calls: list[tuple] = []
    it = iter(losses)

    def train_step() -> dict[str, float]:
        calls.append(("train",))
        return {"total": float(len(calls))}

    def validate(step: int) -> float:
        calls.append(("validate", step))
        return next(it)

    def on_validation(v: Validation) -> dict[str, object]:
        calls.append(("validated", v.step, v.loss, v.improved, v.stop))
        return {"step": v.step, "train": v.parts}

    args: dict = {
        "start_step": 0,
        "steps": 7,
        "train_step": train_step,
        "validate": validate,
        "on_validation": on_validation,
        "checkpoint": lambda step, final, m: calls.append(("checkpoint", step, final, m)),
        "validate_every": 3,
        "checkpoint_every": 2,
        "plateau": plateau,
        "progress": lambda step, steps, parts: calls.append(("progress", step, steps)),
        "before_step": lambda step: calls.append(("before", step)),
    }
    args.update(kw)
    return calls, run_training(**args)


def test_the_loop_validates_and_checkpoints_every_n_steps_and_at_the_last() -> None:
    _, opt = _opt()
    calls, result = _loop([3.0, 2.0, 1.0], Plateau(opt, lr_patience=5))
    assert [c[1] for c in calls if c[0] == "before"] == list(range(7))
    assert [c[1] for c in calls if c[0] == "progress"] == list(range(1, 8))
    assert all(c[2] == 7 for c in calls if c[0] == "progress")
    assert [c[1] for c in calls if c[0] == "validate"] == [3, 6, 7]
    assert [c[1:4] for c in calls if c[0] == "validated"] == [
        (3, 3.0, True),
        (6, 2.0, True),
        (7, 1.0, True),
    ]
    ckpts = [c for c in calls if c[0] == "checkpoint"]
    assert [(c[1], c[2]) for c in ckpts] == [(2, False), (4, False), (6, False), (7, True)]
    assert ckpts[0][3] == {}  # before the first validation: the initial metrics
    assert ckpts[1][3]["step"] == 3 and ckpts[3][3]["step"] == 7
    # one step: before_step, train, progress, then validation, then the checkpoint
    assert calls[:3] == [("before", 0), ("train",), ("progress", 1, 7)]
    i = calls.index(("validate", 6))
    assert calls[i - 1] == ("progress", 6, 7) and calls[i + 2][:2] == ("checkpoint", 6)
    assert (result.step, result.stopped, result.metrics["step"]) == (7, False, 7)


def test_the_loop_stops_early_checkpoints_then_and_resumes_from_its_step() -> None:
    _, opt = _opt()
    plateau = Plateau(opt, lr_patience=5, stop_patience=2)
    calls, result = _loop(
        [1.0, 2.0, 3.0], plateau, validate_every=1, checkpoint_every=10, steps=20, start_step=4
    )
    assert [c[1] for c in calls if c[0] == "validate"] == [5, 6, 7]
    assert [c[4] for c in calls if c[0] == "validated"] == [False, False, True]
    assert [c[1:3] for c in calls if c[0] == "checkpoint"] == [(7, True)]  # on stopping
    assert (result.step, result.stopped) == (7, True)
    assert plateau.best == 1.0 and plateau.bad == 2


def test_other_ranks_neither_report_nor_write_and_a_fixed_decay_skips_the_scheduler() -> None:
    _, opt = _opt()
    plateau = Plateau(opt, lr_patience=0, min_delta=0.0)
    scheduled: list[int] = []

    def step_scheduler(step: int) -> bool:
        scheduled.append(step)
        return step < 6

    calls, result = _loop(
        [1.0, 2.0, 3.0], plateau, is_main=False, metrics={"init": 1}, step_scheduler=step_scheduler
    )
    assert not [c for c in calls if c[0] in ("progress", "checkpoint")]
    assert [c[1] for c in calls if c[0] == "validate"] == [3, 6, 7]  # every rank validates
    assert scheduled == [3, 6, 7]
    # patience 0: the bad validation at 6 would halve the rate, but the decay owns it there
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2) and result.step == 7


def test_a_finished_run_takes_no_step() -> None:
    _, opt = _opt()
    calls, result = _loop([], Plateau(opt, lr_patience=1), start_step=7, metrics={"m": 1})
    assert calls == [] and (result.step, result.stopped, result.metrics) == (7, False, {"m": 1})
