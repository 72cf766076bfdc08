"""Runner: the state machine and the threads of a live run.

States go idle -> running -> draining -> finished | failed, never back: a finished or failed run
keeps its state (:meth:`Runner.set_state` ignores later changes). The first failure of any
thread is kept as the run's error and aborts the run; later ones, often its consequences (other
writes to the same full disk), are logged at debug level only. :meth:`Runner.run` blocks until
the run ends, turning the first Ctrl-C (or SIGTERM, which the CLI maps to it) into a clean
stop and a second into an abort.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from dblink_live.errors import WRITE_ERRNOS, DblinkError
from dblink_live.pipeline_types import PipelineState

__all__ = ["Runner"]

log = logging.getLogger("dblink_live.pipeline")


class Runner:
    """State, stop/abort flags, first error and worker threads of one run."""

    def __init__(self) -> None:
        self._state = PipelineState.IDLE
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        self.abort_event = threading.Event()
        self.finished = threading.Event()
        self._error: str | None = None
        self.threads: list[threading.Thread] = []

    @property
    def state(self) -> PipelineState:
        """Where the run is."""
        return self._state

    @property
    def error(self) -> str | None:
        """The first failure, in one line (None while none)."""
        with self._lock:
            return self._error

    def set_state(self, state: PipelineState) -> None:
        """Move to ``state`` unless the run is already finished or failed."""
        with self._lock:
            if self._state.done:
                return
            self._state = state
        log.info("pipeline %s", state.value)

    def failed_to_start(self, exc: BaseException) -> None:
        """Setting up failed: the run is failed and done (``wait`` returns at once)."""
        with self._lock:
            self._error = str(exc) if isinstance(exc, DblinkError) else repr(exc)
        self._state = PipelineState.FAILED
        self.finished.set()

    def start(self, targets: Iterable[tuple[Callable[[], None], str]]) -> None:
        """Run each ``(target, name)`` in a daemon thread ``dblink-NAME``, guarded: an
        exception fails the run."""
        self.set_state(PipelineState.RUNNING)
        for target, name in targets:
            t = threading.Thread(target=self._guard(target), name=f"dblink-{name}", daemon=True)
            self.threads.append(t)
        for t in self.threads:
            t.start()

    def join(self, names: Iterable[str]) -> None:
        """Wait for the threads of these names (``dblink-`` prefixed)."""
        wanted = {f"dblink-{n}" for n in names}
        for t in self.threads:
            if t.name in wanted:
                t.join()

    def stop(self) -> None:
        """Ask for a clean stop (drain what is buffered)."""
        if not self.stop_event.is_set():
            log.info("stop requested: draining")
        self.stop_event.set()

    def abort(self) -> None:
        """Stop without processing what is buffered."""
        self.abort_event.set()
        self.stop_event.set()

    def fail(self, exc: BaseException) -> None:
        """Record the first failure and abort (see the module docstring)."""
        msg = str(exc) if isinstance(exc, DblinkError) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            first = self._error is None
            if first:
                self._error = msg
        if first:
            plain = isinstance(exc, DblinkError) or (
                isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS
            )
            log.error("pipeline failed: %s", msg, exc_info=not plain)
        else:
            log.debug("after the first failure: %s", msg)
        self.abort()

    def end(self) -> None:
        """The last thread is done: finished, or failed if any failure was recorded."""
        self.set_state(PipelineState.FAILED if self.error is not None else PipelineState.FINISHED)
        self.finished.set()

    def run(self, on_tick: Callable[[], None] | None = None) -> None:
        """Block until the run ends, calling ``on_tick`` about twice a second; the first
        Ctrl-C stops cleanly, a second aborts."""
        interrupts = 0
        while not self.finished.is_set():
            try:
                self.finished.wait(0.5)
                if on_tick is not None:
                    on_tick()
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    log.warning(
                        "stop requested (Ctrl-C or SIGTERM): stopping and draining (again to "
                        "skip processing)"
                    )
                    self.stop()
                else:
                    self.abort()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self.fail(exc)

        return run
