"""ReconStage: localized blocks -> window maps -> streaming reconstruction -> recording.

The reconstruction thread of the pipeline feeds it the localizer's blocks; it assembles the
W-frame count maps (:class:`~dblink_live.live.assembler.MapAssembler`), scales a map that
misses frames to a full window, normalizes by the density measured so far, pushes the map
through the streaming reconstructor, tempers each output's confidence by the evidence of the
localizations around it (:mod:`dblink_live.recon.evidence`) and hands localizations and
outputs to the :class:`~dblink_live.live.sink.RecordingSink`. A map with no localized frame
(skipped whole to keep the latency budget, or lost) is not reconstructed: the recording gets an
empty map with confidence 0 at its index, so its images stay indexed by map. No thread, no
queue: ``tests/test_recon_stage.py`` drives it directly.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from dblink_live.io.recording import Recording
from dblink_live.live.assembler import LocalizedBlock, MapAssembler, WindowMap
from dblink_live.live.budget import LatencyBudget
from dblink_live.live.sink import RecordingSink
from dblink_live.live.stats import LiveCounters
from dblink_live.recon.data import map_scale
from dblink_live.recon.evidence import (
    EVIDENCE_CONTEXT_MAPS,
    evidence_from_counts,
    temper_confidence,
)
from dblink_live.recon.inference import LoadedModel
from dblink_live.recon.streaming import Output, Reconstructor

__all__ = ["LOC_WRITE_S", "OUTPUT_BLOCK", "ReconStage"]

#: Reconstructions are appended this many at a time (the chunk length: whole-chunk writes).
OUTPUT_BLOCK = 8
#: Localizations are appended to the recording at most this often (s).
LOC_WRITE_S = 0.5
#: While no block comes, outputs finished by a child process are collected this often (s).
POLL_S = 0.02


class ReconStage:
    """Reconstruct localized blocks as they come (see the module docstring).

    Parameters
    ----------
    window, grid_yx, bin_nm, origin_nm
        Frames per map W, the reconstructed grid (Y, X) in bins of ``bin_nm``, and its corner
        in the camera frame (nm).
    area_um2
        Area of the reconstructed region: the density the maps are normalized by.
    recording
        Where localizations and outputs go (through a :class:`RecordingSink`).
    streamer, model, delay_maps
        The streaming reconstructor, its model (both None: maps for the display only) and its
        delay D (maps).
    counters, budget
        The run's counters (maps, outputs, latencies) and latency budget (adapted to each
        output's latency).
    on_map
        Called with each localized map's counts (Y, X), scaled to a full window.
    on_output
        Called with ``(index, reconstruction, tempered confidence or None)`` of each output.
    clock
        Seconds, comparable with the frames' arrival times (``time.monotonic``).
    """

    def __init__(
        self,
        *,
        window: int,
        grid_yx: tuple[int, int],
        bin_nm: float,
        origin_nm: tuple[float, float],
        area_um2: float,
        recording: Recording,
        streamer: Reconstructor | None,
        model: LoadedModel | None,
        delay_maps: int,
        counters: LiveCounters,
        budget: LatencyBudget,
        on_map: Callable[[np.ndarray], None],
        on_output: Callable[[int, np.ndarray, np.ndarray | None], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window, self.grid_yx, self.bin_nm = window, grid_yx, bin_nm
        self.area_um2 = area_um2
        self.streamer, self.model = streamer, model
        self.counters, self.budget = counters, budget
        self._on_map, self._on_output, self._clock = on_map, on_output, clock
        self.assembler = MapAssembler(window, grid_yx, bin_nm, origin_nm)
        # localizations and reconstructions are written in blocks, localizations first
        self.sink = RecordingSink(recording, OUTPUT_BLOCK, 1.0, LOC_WRITE_S, background=True)
        self._arrival_end: dict[int, float] = {}  # map -> arrival of its last frame
        self.total_locs, self.total_frames = 0.0, 0
        # unscaled counts and localized frames of recent maps: the evidence for the confidence
        self._evidence: dict[int, tuple[np.ndarray, int]] = {}
        self._keep_maps = 2 * EVIDENCE_CONTEXT_MAPS + delay_maps + 2
        self._skipped: deque[int] = deque()  # maps with no localized frame
        self._next_written = 0  # the next map index the recording's images get
        self._has_conf = bool(model and model.model.architecture["confidence"])

    # ------------------------------------------------------------------ driving
    def run(self, blocks: queue.Queue, end: object, abort: threading.Event) -> None:
        """The reconstruction thread's loop: take blocks from ``blocks`` until ``end`` comes
        (or ``abort`` is set), delivering outputs while none comes, then :meth:`finish`."""
        try:
            self._run(blocks, end, abort)
        except BaseException:
            with contextlib.suppress(BaseException):  # the first error is the one to tell
                self.sink.close()
            raise

    def _run(self, blocks: queue.Queue, end: object, abort: threading.Event) -> None:
        while True:
            try:
                item = blocks.get(timeout=POLL_S)
            except queue.Empty:
                if abort.is_set():
                    break
                self.idle()
                continue
            if item is end:
                break
            t_start = time.perf_counter()
            self.add(item)
            # outputs a child process finished meanwhile are delivered now, not with the next
            # map: blocks come all the time, so waiting for a quiet queue added up to a map
            self.idle()
            self.counters.busy_s["reconstruction"] += time.perf_counter() - t_start
        self.finish(complete=not abort.is_set())

    def add(self, block: LocalizedBlock) -> None:
        """Take one localized block: record its localizations, reconstruct finished maps."""
        self.sink.add_block(block)
        for wm in self.assembler.add(block):
            self._finish_map(wm)

    def idle(self) -> None:
        """Nothing came: deliver what the streamer has finished meanwhile."""
        for out in self.streamer.poll() if self.streamer is not None else []:
            self._deliver(out)

    def finish(self, complete: bool) -> None:
        """The input ended: flush the streamer (``complete``; not after an abort), write the
        placeholders of trailing skipped maps, and write what is buffered."""
        if self.streamer is not None and complete:
            for out in self.streamer.flush():
                self._deliver(out)
            self._placeholders(self.assembler.next_map)
        self.sink.close()

    # ------------------------------------------------------------------ maps and outputs
    def _finish_map(self, wm: WindowMap) -> None:
        k, counts, valid, w = wm.index, wm.counts, wm.valid_frames, self.window
        if wm.arrival_s is not None:
            self._arrival_end[k] = wm.arrival_s
        self.counters.map_in()
        if valid <= 0:  # skipped whole (latency budget) or lost: nothing to reconstruct
            self._skipped.append(k)
            if self.streamer is not None:  # time moves on: earlier maps may be due now
                for out in self.streamer.advance(k):
                    self._deliver(out)
            return
        self.total_locs += float(counts.sum())
        self.total_frames += valid
        self._evidence[k] = (counts, valid)
        for old in [m for m in self._evidence if m <= k - self._keep_maps]:
            del self._evidence[old]
        if 0 < valid < w:
            counts = counts * (w / valid)  # a map missing frames, scaled to a full window
        self._on_map(counts)
        if self.streamer is None:  # no reconstruction: maps for the render only
            return
        rate = self.total_locs / max(self.total_frames, 1) / self.area_um2
        for out in self.streamer.push(counts / map_scale(rate, w, self.bin_nm), k):
            self._deliver(out)

    def _placeholders(self, until: int) -> None:
        """Empty maps, confidence 0, for the skipped maps before map ``until``."""
        ny, nx = self.grid_yx
        while self._skipped and self._skipped[0] < until:
            k = self._skipped.popleft()
            if k >= self._next_written:
                blank = np.zeros((ny, nx), np.float32)
                self.sink.add_output(
                    (k, blank, blank if self._has_conf else None), flush_when_due=False
                )
                self._next_written = k + 1

    def _deliver(self, out: Output) -> None:
        idx, rec, conf = out
        t_arr = self._arrival_end.pop(idx, None)
        self._placeholders(idx)
        self._next_written = idx + 1
        if conf is not None:
            conf = self.tempered(idx, rec, conf)
        latency = self._clock() - t_arr if t_arr is not None else None
        self.counters.output(idx, self.window, latency)
        if latency is not None:
            self.budget.adapt(latency, self.counters.latency_count())
        self._on_output(idx, rec, conf)
        self.sink.add_output((idx, rec, conf))

    def tempered(self, idx: int, rec: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """The learned confidence (Y, X) of output ``idx`` tempered by the evidence of the
        localizations over +-K maps (those that exist yet), 0 for a map with no localized
        frame or no localization, and scaled for a density outside the training range."""
        k, maps = EVIDENCE_CONTEXT_MAPS, self._evidence
        ctx = [maps[m] for m in range(idx - k, idx + k + 1) if m in maps]
        own = maps.get(idx)
        if own is None or own[1] == 0 or float(own[0].sum()) == 0.0:
            return np.zeros_like(conf)
        counts = np.sum([c for c, _ in ctx], axis=0)[None]
        frames = np.array([sum(v for _, v in ctx)])
        ev = evidence_from_counts(counts, frames, rec[None], self.bin_nm)[0]
        out = temper_confidence(conf[None], rec[None], ev[None])[0]
        if self.model is not None and self.total_frames:
            density = self.total_locs / self.total_frames / self.area_um2
            out = out * np.float32(self.model.density_factor(density))
        return out
