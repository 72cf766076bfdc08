"""Input and output: the recording format (zarr v3), localization tables, raw stacks."""

from dblink_live.io.recording import FORMAT_NAME, FORMAT_VERSION, IMAGE_NAMES, Recording
from dblink_live.io.tables import read_localizations, read_stack, write_localizations

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_NAMES",
    "Recording",
    "read_localizations",
    "read_stack",
    "write_localizations",
]
