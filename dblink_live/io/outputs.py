"""Checks on output paths, made before any work so a bad one costs one line, not a run."""

from __future__ import annotations

import os
from pathlib import Path

from dblink_live.errors import DblinkError

__all__ = ["check_writable"]


def check_writable(output: str | Path) -> None:
    """Raise one clear :class:`DblinkError` if ``output`` (a file or a ``*.zarr`` folder) cannot
    be created: its folder is missing, is a file, or is not writable (a read-only file system
    included). An existing ``output`` is the caller's business (``--overwrite``)."""
    output = Path(output)
    parent = output.absolute().parent
    if not parent.exists():
        for above in parent.parents:  # a file somewhere up the path: say which
            if above.exists():
                if not above.is_dir():
                    raise DblinkError(f"cannot write {output}: {above} is a file, not a folder")
                break
        raise DblinkError(
            f"cannot write {output}: the folder {parent} does not exist (create it first)"
        )
    if not parent.is_dir():
        raise DblinkError(f"cannot write {output}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DblinkError(f"cannot write {output}: the folder {parent} is not writable")
    try:  # os.access does not see a read-only mount for root; a real attempt does
        probe = parent / f".dblink-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise DblinkError(
            f"cannot write {output}: the folder {parent} is not writable ({exc.strerror})"
        ) from None
