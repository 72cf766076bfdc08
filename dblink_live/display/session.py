"""The viewer's hold on a live session: a background start, its state and recording (Qt-free).

``pipeline.start()`` (opening the camera, loading the models) can take seconds, so
:class:`SessionControl` runs it in a helper thread while the window stays responsive.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from dblink_live.display.source import RecordingSource
from dblink_live.errors import DblinkError
from dblink_live.pipeline_types import LiveSession, PipelineState, PipelineStatus

__all__ = ["SessionControl", "open_source", "start_error_text"]

log = logging.getLogger(__name__)


class SessionControl:
    """Start, state and stop of the window's pipeline (``pipeline`` None: a recording only)."""

    def __init__(self, pipeline: LiveSession | None):
        self.pipeline = pipeline
        #: The newest status snapshot the window asked for (None before the first).
        self.last_status: PipelineStatus | None = None
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None

    @property
    def starting(self) -> bool:
        """True from :meth:`start` until :meth:`finish_start` saw the start end."""
        return self._starter is not None

    @property
    def state(self) -> PipelineState | None:
        """The pipeline's state (a finished one as last reported); None without a pipeline."""
        if self.pipeline is None:
            return None
        if self.last_status is not None and self.last_status.state.done:
            return self.last_status.state
        return self.pipeline.state

    def start(self) -> bool:
        """Run ``pipeline.start()`` in a helper thread; False when there is nothing to start."""
        if self.pipeline is None or self.starting:
            return False
        if self.state is not PipelineState.IDLE:
            return False
        pipeline = self.pipeline
        self._start_error = None

        def start() -> None:
            try:
                pipeline.start()
            except BaseException as exc:  # shown by the Qt thread in _finish_start
                self._start_error = exc

        self._starter = threading.Thread(target=start, name="dblink-viewer-start", daemon=True)
        self._starter.start()
        return True

    def finish_start(self) -> tuple[bool, BaseException | None]:
        """(the background start is over, its exception or None); forgets a finished start."""
        if self._starter is None or self._starter.is_alive():
            return False, None
        self._starter.join()
        self._starter = None
        exc, self._start_error = self._start_error, None
        return True, exc

    def join_start(self, timeout_s: float) -> None:
        """Let a start in progress end (up to ``timeout_s`` seconds), then forget it."""
        if self._starter is not None:
            self._starter.join(timeout_s)
            self._starter = None

    def stop(self) -> None:
        """Ask the pipeline to stop (it drains what is buffered, then finishes)."""
        state = self.state  # None exactly when there is no pipeline
        if self.pipeline is not None and state is not None and not state.done:
            self.pipeline.stop()

    def stop_and_wait(self, state: PipelineState, timeout_s: float) -> None:
        """Stop the pipeline (in ``state``, not done) and wait up to ``timeout_s`` s to drain.

        A started pipeline's final status is kept in :attr:`last_status`.
        """
        if self.pipeline is None:
            return
        self.pipeline.stop()
        if state is not PipelineState.IDLE:
            self.last_status = self.pipeline.wait(timeout=timeout_s)

    def recording(self) -> RecordingSource | None:
        """The pipeline's recording, or None while it does not exist or is not readable yet."""
        path = getattr(self.pipeline, "recording_path", None)
        if path is None or not Path(path).exists():
            return None
        try:
            return RecordingSource(path)
        except DblinkError as exc:
            log.debug("recording %s not readable yet: %s", path, exc)
            return None


def start_error_text(exc: BaseException) -> str:
    """The message for a failed start (an unexpected exception is logged with its traceback)."""
    if isinstance(exc, DblinkError):
        return str(exc)
    log.error("starting the pipeline failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def open_source(path: str | Path) -> RecordingSource:
    """Open the recording at ``path``.

    Raises
    ------
    DblinkError
        if it cannot be opened; a foreign or damaged store (any other exception, logged with
        its traceback) is reported as one too, naming ``path``.
    """
    try:
        return RecordingSource(path)
    except DblinkError:
        raise
    except Exception as exc:  # a foreign or damaged store: say so, keep the window
        log.exception("opening %s failed", path)
        raise DblinkError(f"{path}: {type(exc).__name__}: {exc}") from exc
