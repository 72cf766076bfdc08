"""Stages of the live engine that need no threads (see :mod:`dblink_live.pipeline`)."""

from dblink_live.live.assembler import LocalizedBlock, MapAssembler, WindowMap

__all__ = ["LocalizedBlock", "MapAssembler", "WindowMap"]
