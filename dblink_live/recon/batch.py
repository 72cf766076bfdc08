"""Reprocess many recordings on a dask.distributed cluster: one task per recording.

Batch work (a day's recordings, a parameter sweep) is where one machine stops being enough.
Each recording is one task that runs :func:`dblink_live.recon.reprocess.reprocess` on a
worker, exactly as the serial command would (same code, same outputs); the tasks share
nothing but the cluster. A task that fails is retried (``retries``) and, if it fails again,
reported with its error while the others go on.

The cluster is a :class:`distributed.LocalCluster` of worker processes on this machine by
default, or an existing scheduler by address (``tcp://host:8786``), e.g. one started by
dask-jobqueue on SLURM or PBS (see the README). Workers must see the recordings at the same
paths (a shared file system) and have dblink_live installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dblink_live.errors import DblinkError

__all__ = ["BatchOutcome", "reprocess_many"]

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    """What happened to one recording of a batch."""

    path: Path
    #: :func:`~dblink_live.recon.reprocess.describe_result` of the run, or None if it failed
    result: dict[str, Any] | None
    #: the error of the last attempt (one line), or None
    error: str | None = None
    #: where it ran (the worker's address)
    worker: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _reprocess_task(path: str, options: dict[str, Any], threads: int) -> dict[str, Any]:
    """Runs on a worker: one recording, with ``threads`` torch threads."""
    import torch

    from dblink_live.recon.reprocess import describe_result, reprocess

    if threads > 0:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = describe_result(reprocess(path, **options))
    res["task_seconds"] = time.perf_counter() - t0
    try:
        from distributed import get_worker

        res["worker"] = get_worker().address
    except (ImportError, ValueError):
        res["worker"] = None
    return res


def _connect(scheduler: str | None, workers: int, threads_per_worker: int):
    """(client, the local cluster started for it or None)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as exc:
            raise DblinkError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,  # a failed task is reported by us, in one line
        env={"OMP_NUM_THREADS": str(max(1, threads_per_worker))},
    )
    return Client(cluster), cluster


def reprocess_many(
    paths: Sequence[str | Path],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    retries: int = 1,
    progress: Callable[[BatchOutcome, int, int], None] | None = None,
    **options: Any,
) -> list[BatchOutcome]:
    """Reprocess each recording in ``paths`` as one task on a dask.distributed cluster.

    Parameters
    ----------
    paths
        Recordings (or tables, with ``output`` not given: tables need an output each, so a
        batch takes recordings, written in place).
    scheduler
        Address of an existing scheduler; None starts a local cluster of ``workers``
        processes with ``threads_per_worker`` torch threads each (closed at the end).
    retries
        Further attempts of a task that failed (a worker lost, a transient error).
    progress
        Called as each task ends: ``progress(outcome, done, total)``.
    **options
        Passed to :func:`~dblink_live.recon.reprocess.reprocess` for every recording
        (``weights``, ``stride``, ``overwrite``, ...; ``output`` is not allowed).

    Returns
    -------
    One :class:`BatchOutcome` per path, in the order given. Never raises for a failed task:
    its outcome carries the error.
    """
    if "output" in options:
        raise DblinkError("a batch writes each reconstruction into its recording: no --output")
    if "progress" in options:
        raise DblinkError("progress is per task in a batch")
    resolved = [Path(p) for p in paths]
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise DblinkError(f"no such recording: {', '.join(missing)}")
    if len({p.resolve() for p in resolved}) != len(resolved):
        raise DblinkError("a recording is named twice in the batch")
    try:
        import distributed  # noqa: F401  (its loggers exist once it is imported)
    except ImportError:
        raise DblinkError(
            "batch reprocessing needs dask.distributed: pip install 'dblink-live[batch]' "
            "(or pip install distributed)"
        ) from None
    # the cluster's own chatter (start-up, connections closed at shutdown) is not the user's
    # concern: each task's end is reported by the caller, a failure in one line
    names = [
        n
        for n in list(logging.Logger.manager.loggerDict)
        if n.split(".")[0] in ("distributed", "tornado", "bokeh")
    ]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        return _run(resolved, scheduler, workers, threads_per_worker, retries, progress, options)
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _run(
    resolved: list[Path],
    scheduler: str | None,
    workers: int,
    threads_per_worker: int,
    retries: int,
    progress: Callable[[BatchOutcome, int, int], None] | None,
    options: dict[str, Any],
) -> list[BatchOutcome]:
    from distributed import as_completed

    client, cluster = _connect(scheduler, workers, threads_per_worker)
    outcomes: dict[int, BatchOutcome] = {}
    try:
        futures = {
            client.submit(
                _reprocess_task,
                str(p.resolve()),
                options,
                threads_per_worker,
                key=f"dblink-reprocess-{i}-{p.name}",
                retries=retries,
                pure=False,
            ): i
            for i, p in enumerate(resolved)
        }
        for fut in as_completed(futures):
            i = futures[fut]
            path = resolved[i]
            if fut.status == "finished":
                res = fut.result()
                out = BatchOutcome(
                    path,
                    res,
                    worker=res.get("worker"),
                    seconds=float(res.get("task_seconds", 0.0)),
                    warnings=list(res.get("warnings", [])),
                )
            else:
                exc = fut.exception()
                line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                out = BatchOutcome(path, None, error=f"{type(exc).__name__}: {line}")
            outcomes[i] = out
            if progress is not None:
                progress(out, len(outcomes), len(resolved))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [outcomes[i] for i in range(len(resolved))]
