"""RecordingSink: what the live reconstruction thread writes, buffered into whole blocks.

A zarr append costs milliseconds per column, so the live path does not write per map: the
localizations of each localized block, the frame ranges they cover, and each reconstruction
with its confidence are buffered and appended in blocks. Order is the promise a killed run
relies on: localizations (and the ranges marked localized) are always on disk before any
reconstruction made from them, so a recording never holds a reconstruction over frames it
does not call localized.
"""

from __future__ import annotations

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
    """

    def __init__(
        self,
        recording: Recording,
        output_block: int = 8,
        output_every_s: float = 1.0,
        localizations_every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
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

    @property
    def pending_outputs(self) -> int:
        """Reconstructions buffered, not written yet."""
        return len(self._outputs)

    def add_block(self, block: LocalizedBlock) -> None:
        """Buffer a localized block (written within ``localizations_every_s``)."""
        self._locs.append(block.locs)
        if block.n:
            self._ranges.append((block.first, block.first + block.n))
        if self._clock() - self._last_locs > self.localizations_every_s:
            self.write_localizations()

    def add_output(self, output: Output, flush_when_due: bool = True) -> None:
        """Buffer one reconstruction (maps in order); with ``flush_when_due``, write the buffer
        once it holds ``output_block`` or ``output_every_s`` has passed."""
        self._outputs.append(output)
        due = len(self._outputs) >= self.output_block
        if flush_when_due and (due or self._clock() - self._last_outputs > self.output_every_s):
            self.flush()

    def write_localizations(self) -> None:
        """Append the buffered localizations, then mark their frames localized."""
        if self._locs:
            self.recording.append_localizations(Localizations.concatenate(self._locs))
            self._locs.clear()
        for a, b in self._ranges:
            self.recording.mark_localized(a, b)
        self._ranges.clear()
        self._last_locs = self._clock()

    def flush(self) -> None:
        """Write everything buffered: localizations first, then the reconstructions."""
        self.write_localizations()
        if self._outputs:
            rec = self.recording
            rec.append_image("reconstruction", np.stack([o[1] for o in self._outputs]))
            confidence = [o[2] for o in self._outputs if o[2] is not None]
            if confidence:
                rec.append_image("confidence", np.stack(confidence))
            self._outputs.clear()
        self._last_outputs = self._clock()
