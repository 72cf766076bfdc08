"""The latency budget of the live path: when to skip whole maps to stay live.

The budget is the look-ahead ``D x W`` frames (a floor: an output cannot come before its
future frames) plus slack (``live.latency_budget_s``, default 0.5 s more). Half the slack may be
spent by frames waiting for the localizer; that allowance adapts to the latency measured on
each output, so that skipped maps spread evenly instead of in bursts: each late output takes
a large step off it, each output in time gives a small step back, in the ratio that leaves
:data:`LATE_FRACTION` of the outputs late (a stochastic-approximation tracker of the
latency's 99th percentile: the budget holds at p99, not at the median). No thread: the
localizer thread asks :meth:`LatencyBudget.behind`, the reconstruction thread reports each
output's latency.
"""

from __future__ import annotations

import math

__all__ = ["LATE_FRACTION", "LatencyBudget"]

#: The fraction of outputs the allowance's steering lets come later than the budget.
LATE_FRACTION = 0.01


class LatencyBudget:
    """When the live path is too far behind the camera (see the module docstring).

    Parameters
    ----------
    window, delay_maps
        Frames per map W and the streaming delay D (maps).
    arrival_s
        Seconds between frames; None or 0 for an unpaced source (no budget).
    budget_s
        The budget in seconds, or None for ``D x W x arrival_s + 0.5``.
    """

    def __init__(
        self, window: int, delay_maps: int, arrival_s: float | None, budget_s: float | None
    ):
        self.window = int(window)
        self.delay_maps = int(delay_maps)
        if not arrival_s:
            self.seconds = math.inf
            self.max_wait_frames = self.wait_frames = math.inf
            return
        lookahead_s = self.delay_maps * self.window * arrival_s
        if budget_s is None:
            budget_s = lookahead_s + 0.5
        #: the budget (s) from a map's last frame to its reconstruction
        self.seconds = float(budget_s)
        slack_s = max(budget_s - lookahead_s, 2 * self.window * arrival_s)
        #: frames allowed to wait for the localizer: at most ...
        self.max_wait_frames = max(float(self.window), 0.5 * slack_s / arrival_s)
        #: ... and now (adapted to the measured latency)
        self.wait_frames = self.max_wait_frames

    def summary_s(self) -> float | None:
        """The budget in seconds, rounded to ms, or None without one."""
        return round(self.seconds, 3) if math.isfinite(self.seconds) else None

    def behind(
        self,
        waiting_frames: int,
        frames_localized: int,
        ring_capacity: int,
        queue_full: bool,
    ) -> bool:
        """Whether the live path is further behind than the budget allows: more frames wait
        for the localizer than allowed, or its queue to the reconstruction is full and more
        than a map waits. Never while starting up (fewer than 2 W frames localized), nor when
        the allowance is longer than the ring (the ring's own loss then bounds the lag)."""
        if self.max_wait_frames >= ring_capacity:  # a budget longer than the ring: off
            return False
        if frames_localized < 2 * self.window:
            return False  # starting up (the localizer warming, the camera being measured)
        return waiting_frames > self.wait_frames or (queue_full and waiting_frames > self.window)

    def adapt(self, latency_s: float, outputs_measured: int = 0) -> None:
        """Steer the frames allowed to wait by the latency of the output just made, from the
        first output on: the start-up counts like the rest of the run (the models are warmed
        before the camera starts). ``outputs_measured`` is not used (kept for callers)."""
        # steps in the ratio LATE_FRACTION : 1 - LATE_FRACTION balance where that fraction is
        # late; a late output takes a third of the allowance off at once
        down = max(1.0, self.max_wait_frames / 3)
        up = down * LATE_FRACTION / (1 - LATE_FRACTION)
        if latency_s > self.seconds:
            self.wait_frames = max(0.0, self.wait_frames - down)
        else:
            self.wait_frames = min(self.max_wait_frames, self.wait_frames + up)
