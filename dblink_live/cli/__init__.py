"""The ``dblink-live`` command line: one command per workflow, each a thin layer over a function.

Errors in the user's input (a bad config, a foreign store...) are printed as one line and exit
with status 2; every long command shows a progress bar and ends with a one-line summary.

The commands live by purpose in :mod:`~dblink_live.cli.data`, :mod:`~dblink_live.cli.training`,
:mod:`~dblink_live.cli.offline` and :mod:`~dblink_live.cli.live`, their shared options in
:mod:`~dblink_live.cli.options`; all register here on the one :data:`app`, in the order of the
help.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.logging import RichHandler

from dblink_live import __version__
from dblink_live.cli import data, live, offline, training
from dblink_live.cli.common import PROGRESS_LINE_S as PROGRESS_LINE_S
from dblink_live.cli.common import _progress_lines as _progress_lines
from dblink_live.cli.common import console, out
from dblink_live.cli.live import _micromanager_paths as _micromanager_paths
from dblink_live.cli.live import _status_printer as _status_printer
from dblink_live.errors import WRITE_ERRNOS, DblinkError

__all__ = ["app", "main"]

app = typer.Typer(
    name="dblink-live",
    help="Live and offline DBlink super-resolved video reconstruction for SMLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: name -> command, in the order `dblink-live --help` lists them
COMMANDS: dict[str, Callable[..., None]] = {
    "simulate": data.simulate,
    "info": data.info,
    "models": data.models,
    "train-localizer": training.train_localizer_cmd,
    "localize": offline.localize,
    "evaluate-localizer": offline.evaluate_localizer,
    "train": training.train,
    "reprocess": offline.reprocess,
    "export": data.export,
    "resolution": offline.resolution,
    "batch": offline.batch,
    "evaluate": offline.evaluate,
    "demo": live.demo,
    "replay": live.replay,
    "live": live.live,
    "view": live.view,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def _version(value: bool) -> None:
    if value:
        out.print(f"dblink-live {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Make SIGTERM (job schedulers, systemd) act like Ctrl-C while a command runs: live runs
    drain, batch commands stop and say what they kept. Yields the list of stop signals
    received; the previous handlers come back at the end."""
    import signal

    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(s) in (signal.default_int_handler, signal.SIG_DFL):
                previous[s] = signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user-input errors into one line and exit status 2.

    Exit status: 0 done (a live run stopped by Ctrl-C or SIGTERM that drained is done); 1 a
    bug (with its traceback); 2 bad input, an unwritable output or a failed run (one line);
    130 / 143 a batch command interrupted by SIGINT / SIGTERM (it says what it kept).
    """
    import signal

    received: list[int] = []
    try:
        with _stop_signals() as received:
            app(args=argv, prog_name="dblink-live")  # standalone: usage errors exit 2
    except DblinkError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        console.print(
            f"[red]error:[/red] could not write{where} ({exc.strerror}); free space or choose "
            "another output",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        if code == 130 and received:
            sig = received[-1]
            name = signal.Signals(sig).name
            console.print(f"interrupted by {name}", highlight=False)
            return 128 + sig
        return code
    return 0
