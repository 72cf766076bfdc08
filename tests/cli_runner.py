"""Run ``dblink-live`` as a real child process (``python -m dblink_live.cli``), as a user's shell
would: its exit status, stdout and stderr, never a traceback hidden in-process."""

from __future__ import annotations

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
