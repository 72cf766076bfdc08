"""The pieces both trainers share (dblink_live/training_loop.py), on a real torch optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dblink_live.training_loop import Plateau, optimizer_step, resume_from, save_atomic


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
