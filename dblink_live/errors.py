"""Exceptions that carry a message a user can act on.

Every error raised for bad *input* (a config file, a recording, a table, a checkpoint) is a
subclass of :class:`DblinkError`. The command line prints its message as one line and exits with
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno

__all__ = [
    "WRITE_ERRNOS",
    "ConfigError",
    "DblinkError",
    "FormatError",
    "RecordingError",
    "SimulationError",
]

#: errno values of a write that failed for want of space or permission (a full disk, a
#: file-size limit, a read-only file system): reported in one line, never a traceback.
WRITE_ERRNOS = frozenset(
    getattr(errno, n)
    for n in ("ENOSPC", "EFBIG", "EDQUOT", "EROFS", "EACCES", "EPERM")
    if hasattr(errno, n)
)


class DblinkError(Exception):
    """Base class of all user-facing errors of dblink_live."""


class ConfigError(DblinkError, ValueError):
    """A configuration file or value is invalid; the message names the file and the key."""


class RecordingError(DblinkError, OSError):
    """A recording store is missing, foreign, corrupt or written with the wrong shape/dtype."""


class SimulationError(DblinkError, ValueError):
    """Simulation parameters are physically inconsistent (e.g. an unreachable density)."""


class FormatError(DblinkError, ValueError):
    """A localization table or image file is malformed; the message names file, line or column."""
