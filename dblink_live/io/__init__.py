"""Input and output: the recording format (zarr v3); later, ring buffer and foreign tables."""

from dblink_live.io.recording import FORMAT_NAME, FORMAT_VERSION, IMAGE_NAMES, Recording

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "IMAGE_NAMES", "Recording"]
