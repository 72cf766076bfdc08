"""The training commands: ``train-localizer`` (the CNN localizer) and ``train`` (the ConvBiLSTM
reconstruction model), both on simulated data generated on the fly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dblink_live.cli.common import _load, _progress, out
from dblink_live.cli.options import (
    ConfigOpt,
    DeviceOpt,
    OutputPt,
    QuietOpt,
    ResumeOpt,
    StepsOpt,
    ThreadsOpt,
)
from dblink_live.errors import RecordingError
from dblink_live.io.outputs import check_writable

if TYPE_CHECKING:
    from dblink_live.config import RunConfig


def _training_config(
    config: Path | None,
    section: str,
    steps: int | None,
    resume: Path | None,
    output: Path,
    write: bool = True,
) -> RunConfig:
    """Config with ``section.steps`` overridden, checked resume path, config saved beside."""
    from dblink_live.config import save_config

    cfg = _load(config)
    if steps is not None:
        cfg = cfg.updated(**{section: {"steps": steps}})
    if resume is not None and not resume.exists():
        raise RecordingError(f"checkpoint to resume not found: {resume}")
    if write:
        import contextlib

        with contextlib.suppress(OSError):  # a new folder for checkpoints is fine
            output.parent.mkdir(parents=True, exist_ok=True)
        check_writable(output)
        save_config(cfg, output.with_suffix(".yaml"))
    return cfg


def train_localizer_cmd(
    output: OutputPt = Path("localizer.pt"),
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    resume: ResumeOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the CNN localizer on simulated frames generated on the fly.

    Uses the `localizer_training` section of the config (ranges of pixel size, PSF width,
    density, photons, background and camera models). The checkpoint describes itself
    (architecture, training config, version) and is rewritten regularly, so an interrupted run
    continues with --resume.
    """
    from dblink_live.localize.training import train_localizer

    tcfg = _training_config(config, "localizer_training", steps, resume, output).localizer_training
    t0 = time.perf_counter()
    with _progress("train-localizer", quiet) as update:
        path = train_localizer(
            tcfg,
            output,
            device=device,
            resume=resume,
            threads=threads,
            progress=lambda done, total, parts: update(done, total),
        )
    import torch

    metrics = torch.load(path, map_location="cpu", weights_only=False).get("metrics", {})
    out.print(
        f"wrote {path} ({tcfg.steps} steps, validation loss "
        f"{metrics.get('validation_loss', float('nan')):.4f}) in {time.perf_counter() - t0:.0f} s"
    )


def train(
    output: OutputPt = Path("recon.pt"),
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    resume: ResumeOpt = None,
    init: Annotated[
        str | None,
        typer.Option(
            metavar="WEIGHTS",
            help="Fine-tune: start from these weights (a shipped name such as recon_filaments, "
            "or a .pt; same architecture) with a fresh optimizer, counting steps from 0.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the ConvBiLSTM reconstruction model on simulated localization sequences.

    Uses the config's simulation (structure, motion, photophysics), grid (bin_nm, W),
    recon_model and recon_training sections (train_data / validation_data: locspace, or camera
    frames localized by the config's localizer). Under `torchrun --nproc_per_node N` it trains
    with DistributedDataParallel (one process per GPU, or gloo on CPUs).
    """
    import os

    from dblink_live.recon.training import train_recon

    rank0 = os.environ.get("RANK", "0") == "0"
    cfg = _training_config(config, "recon_training", steps, resume, output, write=rank0)
    t0 = time.perf_counter()
    with _progress("train", quiet or not rank0) as update:
        path = train_recon(
            cfg,
            output,
            device=device,
            resume=resume,
            init=init,
            threads=threads,
            progress=lambda done, total, parts: update(done, total),
        )
    if rank0:
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        m = ckpt.get("metrics", {})
        nan = float("nan")
        out.print(
            f"wrote {path} (step {ckpt['step']}, validation loss "
            f"{m.get('validation_loss', nan):.4f}, best {m.get('best_validation', nan):.4f})"
            f" in {time.perf_counter() - t0:.0f} s"
        )
