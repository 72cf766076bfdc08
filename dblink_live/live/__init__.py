"""Stages of the live engine that need no threads (see :mod:`dblink_live.pipeline`)."""

from dblink_live.live.assembler import LocalizedBlock, MapAssembler, WindowMap
from dblink_live.live.localizer import StreamingLocalizer
from dblink_live.live.sink import RecordingSink

__all__ = ["LocalizedBlock", "MapAssembler", "RecordingSink", "StreamingLocalizer", "WindowMap"]
