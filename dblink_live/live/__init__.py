"""The live engine's parts; :class:`dblink_live.pipeline.Pipeline` is their facade.

Stages that need no threads (each tested alone): ``localizer`` (:class:`StreamingLocalizer`),
``assembler`` (:class:`MapAssembler`: blocks and lost ranges -> window maps), ``sink``
(:class:`RecordingSink`: buffered writes), ``localize_stage`` and ``recon_stage`` (the loops
the localizer and reconstruction threads run). Around them: ``runner`` (state machine and
threads), ``budget`` (when to skip maps to stay live), ``stats`` (counters and rates),
``results`` (what a display reads), ``roi`` (the region reconstructed live and the memory it
needs), ``camera`` (the calibration measured on the first frames), ``setup`` (model,
recording, streamer, ground truth) and ``summary`` (status, warnings, summary).
"""

from dblink_live.live.assembler import LocalizedBlock, MapAssembler, WindowMap
from dblink_live.live.localizer import StreamingLocalizer
from dblink_live.live.sink import RecordingSink

__all__ = ["LocalizedBlock", "MapAssembler", "RecordingSink", "StreamingLocalizer", "WindowMap"]
