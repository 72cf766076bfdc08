"""Test doubles that wrap real parts (imported by several test modules)."""

from __future__ import annotations

import time

from dblink_live.config import RunConfig
from dblink_live.localize import make_localizer


class SlowLocalizer:
    """A real localizer made deliberately slow (stands in for an overloaded machine): each call
    sleeps ``delay_s`` seconds, then localizes the frames for real."""

    def __init__(self, delay_s: float):
        self.inner = make_localizer(RunConfig().localizer.model_copy(), "cpu")
        self.name = "slow"
        self.takes_context = self.inner.takes_context
        self.delay_s = delay_s
        self.device = "cpu"
        self.calls = 0

    def localize(self, frames, calibration, first_frame=0, **context):  # type: ignore[no-untyped-def]
        self.calls += 1
        time.sleep(self.delay_s)
        return self.inner.localize(frames, calibration, first_frame, **context)
