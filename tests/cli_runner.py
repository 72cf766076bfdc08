"""Run ``dblink-live`` as a real child process (``python -m dblink_live.cli``), as a user's shell
would: its exit status, stdout and stderr, never a traceback hidden in-process."""

from __future__ import annotations

import signal
import subprocess
import sys


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``dblink-live ARGS...`` in a child process; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "dblink_live.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def interruptible() -> None:
    """``preexec_fn`` for a child that a test stops with Ctrl-C: SIGINT back to its default.

    A shell starts a background job (``cmd &`` without job control: nohup, CI launchers) with
    SIGINT ignored, the child inherits that, and ``dblink-live`` rightly keeps an ignored
    SIGINT ignored, so a test's Ctrl-C would never arrive. The child gets the disposition an
    interactive terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
