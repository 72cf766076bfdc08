"""Frame sources: Micro-Manager (pycromanager), replay of recordings; one FrameSource interface."""

from dblink_live.acquire.base import FrameSink, FrameSource
from dblink_live.acquire.micromanager import MicroManagerSource, demo_camera_paths
from dblink_live.acquire.replay import ReplaySource

__all__ = ["FrameSink", "FrameSource", "MicroManagerSource", "ReplaySource", "demo_camera_paths"]
