"""Streaming ConvBiLSTM with a trailing delay of D maps.

Maps arrive one at a time. The forward direction's state is carried map by map. When map t
exists, the backward direction runs from a zero state over the buffered maps t, t-1, ..., t-D
and the head decodes map t-D from its forward features and these backward features. So the
output for map t-D uses all the past and D maps of future; D = 0 is causal, and D covering the
whole recording equals the offline reconstruction. :func:`reconstruct_with_lookahead` is the
same computation done offline, which the tests compare against.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Protocol

import numpy as np
import torch

from dblink_live.recon.model import ConvBiLSTM, State

__all__ = [
    "Output",
    "ProcessStreamingReconstructor",
    "Reconstructor",
    "StreamingReconstructor",
    "reconstruct_with_lookahead",
]


#: One reconstructed map: ``(index, reconstruction (Y, X) in [0, 1], confidence (Y, X) or None)``.
Output = tuple[int, np.ndarray, np.ndarray | None]


class Reconstructor(Protocol):
    """A streaming reconstruction as the live pipeline drives it (in this process or a child).

    Every call returns the outputs that are ready, oldest first, as a list (often empty): an
    in-process reconstructor returns an output from the call that makes it due, one in a child
    process from a later call (``poll`` collects them while no map arrives).
    """

    #: True when the work runs in a child process (the caller then leaves it a CPU core).
    runs_in_child: bool

    def push(self, counts_map: np.ndarray, index: int | None = None) -> list[Output]:
        """Add normalized map ``index`` (Y, X)."""
        ...

    def advance(self, index: int) -> list[Output]:
        """Map ``index`` was skipped, but time has reached it."""
        ...

    def poll(self) -> list[Output]:
        """Outputs that are ready without adding a map (non-blocking)."""
        ...

    def flush(self) -> list[Output]:
        """End of the stream: the remaining outputs (their look-ahead shrinks)."""
        ...

    def close(self) -> None:
        """Release what it holds (a child process); safe after flush and after an error."""
        ...


class StreamingReconstructor:
    """Push normalized maps (Y, X); get ``(index, reconstruction, confidence)`` D maps later.

    Maps are numbered (``index``; by default 0, 1, 2, ...). When the live path skips maps to
    keep up (see the pipeline's latency budget) the numbers have gaps, and the look-ahead is
    kept in *time*: the output for map i is made as soon as a map numbered i + D or later has
    arrived, with whatever maps arrived between them (fewer than D after a gap). With
    consecutive numbers this is exactly the fixed look-ahead of D maps.

    Parameters
    ----------
    model
        The network (eval mode; its device is used).
    delay_maps
        Trailing delay D (maps of look-ahead).
    """

    runs_in_child = False

    def __init__(self, model: ConvBiLSTM, delay_maps: int):
        if delay_maps < 0:
            raise ValueError("delay_maps must be >= 0")
        self.model = model
        self.delay = int(delay_maps)
        self._device = next(model.parameters()).device
        self._state: State | None = None
        # the maps not output yet and those after them: at most D + 1 (numbers increase)
        self._maps: deque[torch.Tensor] = deque()
        self._fw: deque[torch.Tensor] = deque()
        self._index: deque[int] = deque()
        self._next_in = 0

    @torch.no_grad()
    def push(
        self, counts_map: np.ndarray | torch.Tensor, index: int | None = None, emit: bool = True
    ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Add map ``index`` (default: the one after the last); returns the outputs that are
        now due (maps ``index - D`` and older), oldest first (often none or one).
        ``emit=False`` leaves them to the next call (the same outputs: each keeps its
        look-ahead of D maps), e.g. when the end of the stream follows at once and
        :meth:`flush` makes them all in one run."""
        idx = self._next_in if index is None else int(index)
        if idx < self._next_in:
            raise ValueError(f"map {idx} arrived after map {self._next_in - 1}")
        x = torch.as_tensor(counts_map, dtype=torch.float32, device=self._device)[None, None, None]
        fw, self._state = self.model.run_direction(x, "forward", self._state)
        self._maps.append(x[0, 0])
        self._fw.append(fw[0, 0])
        self._index.append(idx)
        self._next_in = idx + 1
        return self._due() if emit else []

    @torch.no_grad()
    def advance(
        self, index: int, emit: bool = True
    ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Map ``index`` was skipped (no map to push), but time has reached it: the outputs
        now due (maps ``index - D`` and older) are made with the look-ahead that arrived
        (``emit``: as in :meth:`push`)."""
        if index < self._next_in:
            raise ValueError(f"map {index} is before map {self._next_in - 1}")
        self._next_in = int(index) + 1
        return self._due() if emit else []

    def _due(self) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """The outputs due now that time has reached map ``_next_in - 1``, oldest first."""
        now, outs = self._next_in - 1, []
        while self._index and now - self._index[0] >= self.delay:
            outs.append(self._emit())
        return outs

    def _emit(self) -> tuple[int, np.ndarray, np.ndarray | None]:
        """Output the oldest buffered map, with the newer buffered maps up to D maps after it
        as look-ahead."""
        first = self._index[0]
        ahead = [m for m, i in zip(self._maps, self._index, strict=True) if i - first <= self.delay]
        seq = torch.stack(ahead[::-1])[None]  # (1, n, 1, Y, X), newest first
        bw, _ = self.model.run_direction(seq, "backward")
        target_fw = self._fw.popleft()
        self._maps.popleft()
        idx = self._index.popleft()
        logit, conf = self.model.decode(target_fw[None, None], bw[:, -1:])
        rec = torch.sigmoid(logit[0, 0]).cpu().numpy()
        cf = torch.sigmoid(conf[0, 0]).cpu().numpy() if conf is not None else None
        return idx, rec, cf

    @torch.no_grad()
    def flush(self) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Outputs for the last maps (their look-ahead shrinks at the end of the recording).

        One backward run from the newest map gives them all: the backward features of the
        buffered map i, run from a zero state at the newest map, are that run's features
        after it has reached map i (the same numbers as one run per output, in fewer steps:
        D instead of D (D + 1) / 2)."""
        out = self._due()  # those a deferred push left due keep their look-ahead of D maps
        if not self._index:
            return out
        seq = torch.stack(list(self._maps)[::-1])[None]  # (1, n, 1, Y, X), newest first
        bw, _ = self.model.run_direction(seq, "backward")
        n = len(self._index)
        for i in range(n):
            logit, conf = self.model.decode(self._fw[i][None, None], bw[:, n - 1 - i : n - i])
            rec = torch.sigmoid(logit[0, 0]).cpu().numpy()
            cf = torch.sigmoid(conf[0, 0]).cpu().numpy() if conf is not None else None
            out.append((self._index[i], rec, cf))
        self._maps.clear()
        self._fw.clear()
        self._index.clear()
        return out

    def poll(self) -> list[Output]:
        """Nothing becomes due without a map: outputs come from :meth:`push` and
        :meth:`advance` (here for the :class:`Reconstructor` protocol)."""
        return []

    def close(self) -> None:
        """Drop the buffered maps and the carried state."""
        self._state = None
        self._maps.clear()
        self._fw.clear()
        self._index.clear()


@torch.no_grad()
def reconstruct_with_lookahead(
    model: ConvBiLSTM, maps: np.ndarray, delay_maps: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Offline equivalent of streaming with delay D: (T, Y, X) maps -> outputs (T, Y, X) x 2.

    Output t = head(forward features of maps 0..t, backward features of maps min(t+D, T-1)..t
    run from a zero state).
    """
    dev = next(model.parameters()).device
    x = torch.as_tensor(maps, dtype=torch.float32, device=dev)[None, :, None]
    fw, _ = model.run_direction(x, "forward")
    t_len = x.shape[1]
    recs, confs = [], []
    for t in range(t_len):
        end = min(t + delay_maps, t_len - 1)
        seg = x[:, t : end + 1].flip(1)
        bw, _ = model.run_direction(seg, "backward")
        logit, conf = model.decode(fw[:, t : t + 1], bw[:, -1:])
        recs.append(torch.sigmoid(logit[0, 0]).cpu().numpy())
        if conf is not None:
            confs.append(torch.sigmoid(conf[0, 0]).cpu().numpy())
    return np.stack(recs), (np.stack(confs) if confs else None)


def _child_main(read_fd: int, write_fd: int) -> None:  # pragma: no cover - child process
    """Child process: receive the model, then stream maps; one reply per map.

    The child takes no terminal or job-control signals (SIGINT, SIGTERM): its parent decides
    when the stream ends, by sending ``None`` (drain) or by closing the pipe (its own exit or
    death), and the child then ends quietly.
    """
    import signal
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    try:
        spec = inbox.recv()
        torch.set_num_threads(int(spec["threads"]))
        model = ConvBiLSTM(**spec["architecture"])
        model.load_state_dict({k: torch.from_numpy(v) for k, v in spec["state"].items()})
        model.eval()
        streamer = StreamingReconstructor(model, int(spec["delay_maps"]))
        if spec.get("warm_shape"):  # a throwaway stream: the first steps cost the most
            warm = StreamingReconstructor(model, int(spec["delay_maps"]))
            blank = np.zeros(tuple(spec["warm_shape"]), np.float32)
            for _ in range(int(spec["delay_maps"]) + 2):
                warm.push(blank)
            warm.flush()
        outbox.send(("ready",))
        while True:
            item = inbox.recv()
            if item is None:
                outbox.send(("done", streamer.flush()))
                return
            index, counts = item
            # more waits in the pipe (the end of the stream, or the next map): it makes the
            # outputs due, so that maps followed at once by the end take one backward run
            emit = not inbox.poll(0)
            if counts is None:
                outbox.send(("out", streamer.advance(index, emit=emit)))
            else:
                outbox.send(("out", streamer.push(counts, index, emit=emit)))
    except (EOFError, ConnectionError):  # the parent closed the pipe or is gone: nothing to tell
        return
    except BaseException as exc:
        with contextlib.suppress(OSError):
            outbox.send(("error", f"{type(exc).__name__}: {exc}"))


class ProcessStreamingReconstructor:
    """:class:`StreamingReconstructor` in a child process (CPU): the same outputs, computed
    beside the acquisition's Python threads instead of competing with them for the GIL.

    The child is ``python -m dblink_live.recon.streaming`` talking over two pipes (so no user
    script is re-imported, as ``multiprocessing``'s spawn would do); a reader thread drains its
    replies. :meth:`push` hands a map over and returns the outputs that have come back so far
    (a list, possibly empty, as :meth:`StreamingReconstructor.push` returns); :meth:`poll`
    collects more; :meth:`flush` ends the stream and returns the
    rest. POSIX only (the pipeline uses a thread elsewhere).

    Parameters
    ----------
    model
        The network; its architecture and weights are copied to the child.
    delay_maps
        Trailing delay D.
    threads
        torch threads in the child.
    max_pending
        Maps in flight before :meth:`push` waits (back-pressure).
    warm_shape
        (Y, X) of the maps to come: the child runs a throwaway stream of blank maps of this
        shape before it is ready (None: no warm-up).
    """

    runs_in_child = True

    def __init__(
        self,
        model: ConvBiLSTM,
        delay_maps: int,
        threads: int = 1,
        max_pending: int = 8,
        start_timeout_s: float = 120.0,
        warm_shape: tuple[int, int] | None = None,
    ):
        import os
        import queue
        import subprocess
        import sys
        import threading
        from multiprocessing.connection import Connection

        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dblink_live.recon.streaming", str(r_in), str(w_out)],
            pass_fds=(r_in, w_out),
            # its own session: a terminal's Ctrl-C (sent to the whole foreground process
            # group) reaches only the parent, which then drains the child through the pipe
            start_new_session=True,
        )
        os.close(r_in)
        os.close(w_out)
        self._send = Connection(w_in, readable=False)
        self._recv = Connection(r_out, writable=False)
        self._replies: queue.Queue = queue.Queue()
        self._max_pending = max(1, int(max_pending))
        self._pending = 0
        self._error: str | None = None
        self._send.send(
            {
                "architecture": dict(model.architecture),
                # numpy, not tensors: torch would share tensors through file descriptors
                "state": {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
                "delay_maps": int(delay_maps),
                "threads": int(threads),
                "warm_shape": None if warm_shape is None else [int(v) for v in warm_shape],
            }
        )
        self._reader = threading.Thread(target=self._read, name="recon-worker-reader", daemon=True)
        self._reader.start()
        first = self._next(start_timeout_s)
        if first[0] != "ready":
            raise RuntimeError(f"the reconstruction worker did not start: {first}")

    def _read(self) -> None:
        try:
            while True:
                self._replies.put(self._recv.recv())
        except (EOFError, OSError):
            self._replies.put(("eof",))

    def _next(self, timeout: float | None) -> tuple:
        item = self._replies.get(timeout=timeout)
        if item[0] == "error":
            self._error = item[1]
            raise RuntimeError(f"reconstruction worker: {item[1]}")
        if item[0] == "eof":
            raise RuntimeError(f"the reconstruction worker ended (exit code {self._proc.poll()})")
        return item

    def _take(self, item: tuple, outs: list) -> None:
        self._pending -= 1
        outs.extend(item[1])

    def poll(self) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Outputs that have arrived (non-blocking)."""
        import queue

        outs: list = []
        while True:
            try:
                item = self._next(0)
            except queue.Empty:
                return outs
            self._take(item, outs)

    def push(
        self, counts_map: np.ndarray, index: int | None = None
    ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Send map ``index`` (default: the one after the last; see
        :class:`StreamingReconstructor`), waiting while ``max_pending`` maps are in flight;
        returns the outputs that have come back so far (possibly none)."""
        outs = self.poll()
        while self._pending >= self._max_pending:
            self._take(self._next(600.0), outs)
        self._send.send((index, np.ascontiguousarray(counts_map, dtype=np.float32)))
        self._pending += 1
        return outs + self.poll()

    def advance(self, index: int) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Map ``index`` was skipped: see :meth:`StreamingReconstructor.advance` (the outputs it
        makes come back through :meth:`poll` and later calls)."""
        outs = self.poll()
        while self._pending >= self._max_pending:
            self._take(self._next(600.0), outs)
        self._send.send((int(index), None))
        self._pending += 1
        return outs + self.poll()

    def flush(self, timeout_s: float = 600.0) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """End the stream: the remaining outputs (shrinking look-ahead); the child then ends
        by itself (:meth:`close` waits for it: the outputs do not wait for a process exit)."""
        outs: list = []
        self._send.send(None)
        while True:
            item = self._next(timeout_s)
            if item[0] == "done":
                outs += item[1]
                break
            self._take(item, outs)
        with contextlib.suppress(OSError):
            self._send.close()
        return outs

    def close(self) -> None:
        """Stop the child (also after an error)."""
        import subprocess

        with contextlib.suppress(OSError):
            self._send.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":  # pragma: no cover - the child of ProcessStreamingReconstructor
    import sys

    _child_main(int(sys.argv[1]), int(sys.argv[2]))
