"""Where a run computes: a Dask client for the command line, and the memory a task needs.

The library never starts a cluster: :func:`dask_client` is for the command line (``run`` and
``demo``), which owns its process.  It connects to an existing scheduler, starts an embedded
``LocalCluster`` on 127.0.0.1, or computes in-process, and limits OpenCV and BLAS to one
thread per task through a worker plugin (:class:`SingleThreadedLibraries`): Dask already runs
one task per thread, and library thread pools inside each task oversubscribe the machine.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import dask
import dask.array as da
import xarray as xr
from distributed.diagnostics.plugin import WorkerPlugin

from sediment_xr._validate import IN_PROCESS_SCHEDULERS, check_scheduler
from sediment_xr.exceptions import ConfigError, setting

__all__ = [
    "IN_PROCESS_SCHEDULERS",
    "EmbeddedWorkers",
    "SingleThreadedLibraries",
    "check_task_memory",
    "compute_tasks",
    "dask_client",
    "describe_scheduler",
    "keep_chunks",
    "memory_per_thread",
    "progress_logger",
]

#: Bytes per pixel of a chunk of frames a task holds: the RGB frames, their preprocessed
#: features (up to the same size), labels (1 byte) and working copies.
TASK_BYTES_PER_PIXEL = 8
#: Memory a task may use when the workers' limit is not known (an existing cluster, or
#: in-process): 1 GiB, as workers commonly have 2-4 GiB per thread.
DEFAULT_TASK_BUDGET = 2**30
#: Share of a worker thread's memory a task may use (dask spills from 60 %).
TASK_MEMORY_SHARE = 0.5
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class SingleThreadedLibraries(WorkerPlugin):
    """Worker plugin: OpenCV and BLAS use one thread in each worker process.

    Register it with ``client.register_plugin(SingleThreadedLibraries())``; it changes only
    the workers of that client's cluster.
    """

    name = "sediment-xr-single-threaded"

    def setup(self, worker: Any) -> None:
        """Set the limits in the worker process."""
        limit_threads()


class EmbeddedWorkers(WorkerPlugin):
    """Worker plugin: the embedded cluster's workers behave as parts of the command line.

    They share its stderr and its process group, so they log ``distributed``'s messages at
    the command line's ``level`` (a run stopped by a signal cancels its tasks without each
    worker printing a warning about it; ``--debug`` shows them), and they ignore SIGINT:
    Ctrl-C reaches the whole process group, and the command line stops the run and closes
    the cluster itself, instead of each worker printing a ``KeyboardInterrupt`` traceback.
    """

    name = "sediment-xr-embedded-workers"

    def __init__(self, level: int) -> None:
        self.level = level

    def setup(self, worker: Any) -> None:
        """Set the log level and ignore SIGINT in the worker process."""
        import signal
        import threading

        logging.getLogger("distributed").setLevel(self.level)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


class _DashboardStopError(logging.Filter):
    """Drops the traceback distributed logs when its dashboard cannot stop at a close.

    distributed before 2026.8 stops the dashboard's Bokeh application synchronously from
    inside the scheduler's event loop; Bokeh 3.10 refuses that with a ``RuntimeError`` that
    the scheduler logs, as an ERROR with its traceback, at the end of every run
    (dask/distributed#9350, fixed in distributed 2026.8.0). Only that record is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, RuntimeError) and "stop_async()" in str(error))


@contextlib.contextmanager
def _without_dashboard_stop_errors() -> Iterator[None]:
    """In the block, distributed does not log its dashboard's failure to stop."""
    log, quiet = logging.getLogger("distributed.core"), _DashboardStopError()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


@contextlib.contextmanager
def _one_thread_each() -> Iterator[None]:
    """OpenCV and BLAS limited to one thread in this process while in the block."""
    import cv2
    from threadpoolctl import threadpool_limits

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        cv2.setNumThreads(previous)


def limit_threads() -> None:
    """Limit OpenCV and BLAS to one thread in this process (a worker, or the CLI's own)."""
    import cv2

    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        return
    threadpool_limits(limits=1)


def memory_per_thread(dask_config: Any) -> float:
    """Bytes of ``dask.memory_limit`` each worker thread of an embedded cluster may use."""
    from dask.utils import parse_bytes

    limit = dask_config.memory_limit
    if str(limit).lower() == "auto":
        from distributed.system import MEMORY_LIMIT

        total = MEMORY_LIMIT / dask_config.n_workers
    else:
        total = parse_bytes(limit)
    return total / dask_config.threads_per_worker


def check_task_memory(
    frames: xr.DataArray, *, chunk_frames: Any = "auto", dask_config: Any = None
) -> None:
    """Refuse chunks of frames whose tasks would not fit the memory a task may use.

    A task holds a chunk of frames, their features and labels: about
    :data:`TASK_BYTES_PER_PIXEL` bytes per pixel of the chunk.  It may use
    :data:`TASK_MEMORY_SHARE` of a worker thread's memory when ``dask_config`` (the embedded
    cluster's settings) says what that is, else :data:`DEFAULT_TASK_BUDGET`.
    ``chunk_frames`` is the setting that chose the chunks, named in the message.
    """
    from dask.utils import format_bytes

    if dask_config is None:
        budget, why = DEFAULT_TASK_BUDGET, "the default where the workers' limit is unknown"
        settings: list[tuple[str, Any]] = []
    else:
        budget = memory_per_thread(dask_config) * TASK_MEMORY_SHARE
        limit, threads = dask_config.memory_limit, dask_config.threads_per_worker
        why = (
            f"half of {setting('memory_limit', limit)} / {setting('threads_per_worker', threads)}"
        )
        settings = [("memory_limit", limit), ("threads_per_worker", threads)]
    n_frames = max(frames.chunks[0]) if frames.chunks and frames.sizes["time"] else 0
    pixels = frames.sizes["y"] * frames.sizes["x"]
    need = n_frames * pixels * TASK_BYTES_PER_PIXEL
    if need <= budget:
        return
    fits = int(budget // (pixels * TASK_BYTES_PER_PIXEL))
    fix = (
        f"Use {setting('chunk_frames', fits)} or fewer, or more memory per worker thread"
        if fits >= 1
        else f"Give {setting('resize', (1024, 1024))}, or more memory per worker thread"
    )
    raise ConfigError(
        f"{setting('chunk_frames', chunk_frames)} puts {n_frames} frames of "
        f"{frames.sizes['x']}x{frames.sizes['y']} pixels in each task, about "
        f"{format_bytes(need)}, more than the {format_bytes(int(budget))} a task may use "
        f"({why}). {fix}.",
        settings=[
            ("chunk_frames", chunk_frames),
            ("chunk_frames", fits),
            ("resize", (1024, 1024)),
            *settings,
        ],
    )


@contextlib.contextmanager
def dask_client(scheduler: str | None, dask_config: Any) -> Iterator[Any]:
    """A client for a run: ``scheduler``'s address, in-process, or an embedded LocalCluster.

    Parameters
    ----------
    scheduler : str or None
        ``tcp://host:port`` of an existing scheduler, ``synchronous`` or ``threads``
        (in this process), or None for ``dask_config.scheduler`` or else a new LocalCluster
        of ``dask_config.n_workers`` worker processes on 127.0.0.1.
    dask_config : sediment_xr.config.DaskConfig
        Workers, threads and memory of a LocalCluster.

    Yields
    ------
    distributed.Client or None
        None when computing in this process.
    """
    from distributed import Client, LocalCluster

    address = check_scheduler(scheduler) or dask_config.scheduler
    if address in IN_PROCESS_SCHEDULERS:
        workers = dask_config.n_workers * dask_config.threads_per_worker
        with _one_thread_each(), dask.config.set(scheduler=address, num_workers=workers):
            yield None
        return
    if address:
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(
                f"could not connect to the dask scheduler at {address} ({err}). Check the "
                "address, or leave out --scheduler to use a local cluster."
            ) from err
        with client:
            client.register_plugin(SingleThreadedLibraries())
            yield client
        return
    # distributed's workers start with one thread for OpenMP/BLAS, and glibc's
    # MALLOC_TRIM_THRESHOLD_=65536, which maps and unmaps every array of a few megabytes
    # (each decoded frame): the page faults cost ~8 % of a run (benchmarks/results.md).
    # The embedded cluster keeps glibc's own thresholds, for ~100 MiB more per worker.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    environ.update(dict.fromkeys(_THREAD_VARIABLES, 1))
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        _without_dashboard_stop_errors(),  # left last: after the cluster has closed
        LocalCluster(
            n_workers=dask_config.n_workers,
            threads_per_worker=dask_config.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # a free port: never clashes with another cluster
            memory_limit=dask_config.memory_limit,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(SingleThreadedLibraries())
        client.register_plugin(
            EmbeddedWorkers(logging.getLogger("distributed").getEffectiveLevel())
        )
        yield client


def keep_chunks(array: xr.DataArray, chunks: list[int]) -> xr.DataArray:
    """``array`` with some of its time chunks (and their ``frame_status``) persisted.

    The chunks are computed now, together (each decode task once), and held in memory (on
    the workers of a distributed cluster); the other chunks stay lazy.  Computing the
    result later reads the kept chunks instead of computing them again.
    """
    data, status = array.data, array["frame_status"].data
    pairs = dask.persist(*[(data.blocks[i], status.blocks[i]) for i in chunks])
    blocks = [data.blocks[i] for i in range(data.numblocks[0])]
    flags = [status.blocks[i] for i in range(status.numblocks[0])]
    for i, (block, flag) in zip(chunks, pairs, strict=True):
        blocks[i], flags[i] = block, flag
    kept = array.copy(data=da.concatenate(blocks, axis=0))
    return kept.assign_coords(
        frame_status=("time", da.concatenate(flags), array["frame_status"].attrs)
    )


def describe_scheduler() -> str:
    """Where dask computes now, for the log: the distributed scheduler and its dashboard."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return f"dask: computing in this process ({dask.config.get('scheduler', 'threads')})"
    try:
        link = client.dashboard_link
    except Exception:  # a scheduler started without a dashboard
        link = "none"
    return f"dask: scheduler {client.scheduler.address}, dashboard {link}"


def compute_tasks(
    tasks: list[Any],
    *,
    desc: str,
    progress: bool,
    hold: list[Any] | None = None,
    retries: int = 0,
) -> list[Any]:
    """Compute delayed tasks on the active scheduler, with a progress bar on stderr.

    ``tasks`` and ``hold`` (collections whose persisted chunks the tasks read: an optimized
    graph names them without holding them) are emptied once the tasks are submitted to a
    distributed scheduler, so that the persisted chunks are released as each task finishes.
    On a distributed scheduler a task that raises is run again up to ``retries`` times
    (e.g. a read from object storage that timed out): give only tasks that can run twice.
    """
    hold = [] if hold is None else hold
    if not tasks:
        return []
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        with contextlib.ExitStack() as stack:
            if progress:
                from dask.diagnostics import ProgressBar

                stack.enter_context(ProgressBar(out=sys.stderr))
            results = list(dask.compute(*tasks))
        tasks.clear()
        hold.clear()
        return results
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(list(tasks), retries=retries)
    tasks.clear()  # the scheduler holds what the tasks need now, and frees it after them
    hold.clear()
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    try:
        with tqdm(total=len(futures), desc=desc, unit="chunk", disable=not progress) as bar:
            for future in as_completed(futures):
                results[index[future.key]] = future.result()
                bar.update(1)
    except BaseException:
        client.cancel(futures)  # nothing keeps writing once the run has stopped
        raise
    return results


def progress_logger(progress: bool) -> Callable[[str], None]:
    """A function that logs stage messages to the ``sediment_xr`` logger when ``progress``."""
    log = logging.getLogger("sediment_xr")

    def say(message: str) -> None:
        if progress:
            log.info(message)

    return say
