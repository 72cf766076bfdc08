"""Frame sources: Micro-Manager (pycromanager), replay of recordings; one FrameSource interface."""

from dblink_live.acquire.base import FrameSink, FrameSource
from dblink_live.acquire.micromanager import MicroManagerSource, demo_camera_paths
from dblink_live.acquire.replay import ReplaySource
from dblink_live.acquire.virtual import VirtualMicroscopeSource

__all__ = [
    "FrameSink",
    "FrameSource",
    "MicroManagerSource",
    "ReplaySource",
    "VirtualMicroscopeSource",
    "demo_camera_paths",
]
