"""RecordingSink: what the live reconstruction thread writes, buffered into whole blocks.

A zarr append costs milliseconds per column, so the live path does not write per map: the
localizations of each localized block, the frame ranges they cover, and each reconstruction
with its confidence are buffered and appended in blocks. Order is the promise a killed run
relies on: localizations (and the ranges marked localized) are always on disk before any
reconstruction made from them, so a recording never holds a reconstruction over frames it
does not call localized.

With ``background=True`` the writes themselves happen on a writer thread of the sink's own, in
the order they were made: compressing and writing a block costs up to half a second on a
loaded 2-core machine, time the reconstruction thread then spends delivering outputs instead
(``scripts/bench_live.py``). A failed write is raised from the next call, and
:meth:`RecordingSink.close` waits for every write.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from dblink_live.io.recording import Recording
from dblink_live.live.assembler import LocalizedBlock
from dblink_live.localizations import Localizations
from dblink_live.recon.streaming import Output

__all__ = ["RecordingSink"]


class RecordingSink:
    """Buffered writer of the live path's localizations and reconstructions.

    Parameters
    ----------
    recording
        The recording being written (its ``reconstruction`` and, with a confidence head,
        ``confidence`` images exist).
    output_block
        Reconstructions appended at a time (the images' chunk length: whole-chunk writes).
    output_every_s
        ... or after this long since the last write, whichever comes first.
    localizations_every_s
        Localizations are appended at most this often (and always before reconstructions).
    clock
        Seconds, monotonic (a test can pass its own).
    background
        Write on a writer thread (see the module docstring); at most ``max_pending`` blocks
        wait for it (then the caller waits: the memory stays bounded on a slow disk).
    """

    def __init__(
        self,
        recording: Recording,
        output_block: int = 8,
        output_every_s: float = 1.0,
        localizations_every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        max_pending: int = 16,
    ):
        self.recording = recording
        self.output_block = int(output_block)
        self.output_every_s = float(output_every_s)
        self.localizations_every_s = float(localizations_every_s)
        self._clock = clock
        self._locs: list[Localizations] = []
        self._ranges: list[tuple[int, int]] = []
        self._outputs: list[Output] = []
        self._last_locs = self._last_outputs = clock()
        self._error: BaseException | None = None
        self._tasks: queue.Queue | None = None
        self._writer: threading.Thread | None = None
        if background:
            self._tasks = queue.Queue(maxsize=max(1, int(max_pending)))
            self._writer = threading.Thread(
                target=self._write_loop, name="recording-sink", daemon=True
            )
            self._writer.start()

    @property
    def pending_outputs(self) -> int:
        """Reconstructions buffered, not written yet."""
        return len(self._outputs)

    def add_block(self, block: LocalizedBlock) -> None:
        """Buffer a localized block (written within ``localizations_every_s``)."""
        self._raise_failed()
        self._locs.append(block.locs)
        if block.n:
            self._ranges.append((block.first, block.first + block.n))
        if self._clock() - self._last_locs > self.localizations_every_s:
            self.write_localizations()

    def add_output(self, output: Output, flush_when_due: bool = True) -> None:
        """Buffer one reconstruction (maps in order); with ``flush_when_due``, write the buffer
        once it holds ``output_block`` or ``output_every_s`` has passed."""
        self._raise_failed()
        self._outputs.append(output)
        due = len(self._outputs) >= self.output_block
        if flush_when_due and (due or self._clock() - self._last_outputs > self.output_every_s):
            self.flush()

    def write_localizations(self) -> None:
        """Append the buffered localizations, then mark their frames localized."""
        locs, ranges = list(self._locs), list(self._ranges)
        self._locs.clear()
        self._ranges.clear()
        self._submit(locs, ranges, [])
        self._last_locs = self._clock()

    def flush(self) -> None:
        """Write everything buffered: localizations first, then the reconstructions (handed to
        the writer thread in the background; :meth:`close` waits for them)."""
        locs, ranges, outputs = list(self._locs), list(self._ranges), list(self._outputs)
        self._locs.clear()
        self._ranges.clear()
        self._outputs.clear()
        self._submit(locs, ranges, outputs)
        self._last_locs = self._last_outputs = self._clock()

    def close(self) -> None:
        """Write what is buffered, wait for every write, end the writer thread; raises the
        first failed write."""
        self.flush()
        if self._writer is not None and self._tasks is not None:
            if self._writer.is_alive():
                self._tasks.put(None)
                self._writer.join()
            self._writer = None
        self._raise_failed()

    # ------------------------------------------------------------------ writing
    def _submit(
        self, locs: list[Localizations], ranges: list[tuple[int, int]], outputs: list[Output]
    ) -> None:
        if not (locs or ranges or outputs):
            return
        if self._tasks is None:
            self._write(locs, ranges, outputs)
            return
        self._raise_failed()
        while self._writer is not None and self._writer.is_alive():
            try:
                self._tasks.put((locs, ranges, outputs), timeout=0.5)
                return
            except queue.Full:
                continue
        self._raise_failed()

    def _write(
        self, locs: list[Localizations], ranges: list[tuple[int, int]], outputs: list[Output]
    ) -> None:
        rec = self.recording
        if locs:
            rec.append_localizations(Localizations.concatenate(locs))
        for a, b in ranges:
            rec.mark_localized(a, b)
        if outputs:
            rec.append_image("reconstruction", np.stack([o[1] for o in outputs]))
            confidence = [o[2] for o in outputs if o[2] is not None]
            if confidence:
                rec.append_image("confidence", np.stack(confidence))

    def _write_loop(self) -> None:
        assert self._tasks is not None
        while True:
            task = self._tasks.get()
            if task is None:
                return
            if self._error is None:  # after a failure nothing more is written (order)
                try:
                    self._write(*task)
                except BaseException as exc:
                    self._error = exc

    def _raise_failed(self) -> None:
        if self._error is not None:
            raise self._error
