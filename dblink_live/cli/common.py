"""What the commands share: the consoles, progress bars and lines, and the config helpers
(loading, --localizer, --recon-roi)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dblink_live.errors import ConfigError, DblinkError

if TYPE_CHECKING:
    from dblink_live.config import LocalizerConfig, RunConfig

log = logging.getLogger("dblink_live")
console = Console(stderr=True)
#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_LINE_S = 30.0
out = Console()


@contextmanager
def _progress(description: str, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields ``update(done, total, stage)``."""
    if quiet:
        yield lambda done, total, stage=None: None
        return
    if not console.is_terminal:  # a log file (nohup, a cluster job): a plain line now and then
        yield _progress_lines(description)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, stage: str | None = None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _progress_lines(description: str, every_s: float = PROGRESS_LINE_S) -> Callable[..., None]:
    """``update(done, total, stage)`` printing a line at most every ``every_s`` s, and at the end:
    done/total, rate and the estimated time left."""
    t0 = time.monotonic()
    last = [t0]

    def update(done: int, total: int, stage: str | None = None) -> None:
        now = time.monotonic()
        total = total or 0
        finished = bool(total) and done >= total
        if now - last[0] < every_s and not finished:
            return
        last[0] = now
        rate = done / max(now - t0, 1e-9)
        left = (total - done) / rate if rate > 0 and total else float("nan")
        eta = f", {left / 60:.1f} min left" if not finished and left == left else ""
        pct = f" ({100 * done / total:.0f} %)" if total else ""
        of = f"/{total:,}" if total else ""
        console.print(f"{description}: {done:,}{of}{pct}, {rate:.3g}/s{eta}", highlight=False)

    return update


def _load(config: Path | None) -> RunConfig:
    from dblink_live.config import RunConfig, load_config

    return load_config(config) if config is not None else RunConfig()


def _localizer_config(
    cfg: RunConfig, localizer: str | None, weights: str | None
) -> LocalizerConfig:
    """The config's localizer section with --localizer and --weights (the CNN's) applied."""
    from dblink_live.config import (
        AutoLocalizerConfig,
        ClassicLocalizerConfig,
        CNNLocalizerConfig,
    )

    lcfg = cfg.localizer
    if localizer is not None:
        kinds = {"cnn": CNNLocalizerConfig, "classic": ClassicLocalizerConfig}
        kinds["auto"] = AutoLocalizerConfig
        if localizer not in kinds:
            raise ConfigError(f"--localizer must be cnn, auto or classic, got {localizer!r}")
        if localizer != lcfg.kind:
            if localizer == "auto" and isinstance(lcfg, CNNLocalizerConfig):
                lcfg = AutoLocalizerConfig(cnn=lcfg)
            elif localizer == "cnn" and isinstance(lcfg, AutoLocalizerConfig):
                lcfg = lcfg.cnn
            else:
                lcfg = kinds[localizer]()
    if weights is not None:
        if lcfg.kind == "cnn":
            lcfg = lcfg.model_copy(update={"weights": weights})
        elif lcfg.kind == "auto":
            lcfg = lcfg.model_copy(update={"cnn": lcfg.cnn.model_copy(update={"weights": weights})})
        else:
            raise ConfigError("--weights only applies to --localizer cnn or auto")
    return lcfg


def _four_ints(text: str) -> tuple[int, int, int, int] | None:
    """``x,y,width,height`` as four integers; None when ``text`` is not that."""
    try:
        parts = tuple(int(v) for v in text.split(","))
    except ValueError:
        return None
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


def _with_recon_roi(cfg: RunConfig, recon_roi: str | None) -> RunConfig:
    """The config with --recon-roi applied (one clear line for a malformed value)."""
    if recon_roi is None:
        return cfg
    value: object = recon_roi.strip().lower()
    if value not in ("auto", "full"):
        value = _four_ints(str(value))
        if value is None:
            raise DblinkError(
                f"--recon-roi must be x,y,width,height in pixels, full or auto; got {recon_roi!r}"
            )
    return cfg.updated(live={"recon_roi": value})


def _with_localizer(cfg: RunConfig, localizer: str | None) -> RunConfig:
    """The config with --localizer applied."""
    return cfg.model_copy(update={"localizer": _localizer_config(cfg, localizer, None)})
