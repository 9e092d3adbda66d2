"""Where batch tasks run: in this process, local worker processes, or a Dask cluster.

:func:`execute` applies a picklable top-level function to a list of items
and yields results as they finish, whatever the back end, so the batch logic
is the same for ``--jobs N`` and ``--scheduler ADDRESS``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator, Optional, Sequence

from ..errors import ParameterError


def default_jobs() -> int:
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _dask_client(scheduler: str, jobs: int):
    """A ``distributed.Client`` for ``scheduler`` (an address, or ``local``) and its cluster."""
    try:
        import distributed
    except ImportError:
        raise ParameterError(
            "--scheduler needs Dask distributed, which is not installed; install it with "
            "pip install 'perfmap[distributed]'") from None
    if scheduler == "local":
        cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ParameterError(f"cannot connect to the Dask scheduler at {scheduler} "
                             f"({' '.join(str(exc).split()) or type(exc).__name__})") from None


@contextlib.contextmanager
def dask_session(scheduler: Optional[str], jobs: int = 1):
    """A connected ``distributed.Client`` for ``scheduler``, closed on exit.

    ``scheduler`` is an address or ``"local"`` (a ``LocalCluster`` of
    ``jobs`` worker processes on loopback); ``None`` yields ``None``.
    Connecting first lets a wrong address fail before anything is written.
    """
    if not scheduler:
        yield None
        return
    client, cluster = _dask_client(scheduler, jobs)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def execute(fn: Callable, items: Sequence, *, jobs: int = 1, scheduler: Optional[str] = None,
            client=None) -> Iterator[tuple]:
    """Apply ``fn`` to every item; yield ``(index, result, error)`` as they finish.

    Parameters
    ----------
    fn : callable
        A picklable top-level function of one argument.
    items : sequence
        Its arguments (picklable).
    jobs : int
        Worker processes (local pool, or a ``local`` Dask cluster). With
        ``jobs <= 1`` and no scheduler the items run in this process, in order.
    scheduler : str, optional
        A Dask scheduler address (``tcp://host:port``) or ``"local"``.
    client : distributed.Client, optional
        A connected client (:func:`dask_session`) used instead of ``scheduler``.

    Yields
    ------
    (int, object, Exception or None)
        The item's index, ``fn``'s result (None on error) and the exception
        raised by ``fn`` or by the worker infrastructure.
    """
    items = list(items)
    if not items:
        return
    if client is not None:
        yield from _execute_dask(fn, items, client)
    elif scheduler:
        with dask_session(scheduler, jobs) as session:
            yield from _execute_dask(fn, items, session)
    elif jobs <= 1 or len(items) == 1:
        for i, item in enumerate(items):
            try:
                result = fn(item)
            except Exception as exc:
                yield i, None, exc
            else:
                yield i, result, None
    else:
        yield from _execute_pool(fn, items, min(jobs, len(items)))


#: Thread-count variables of the BLAS/OpenMP libraries numpy and scipy may use.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _worker_threads(n: int):
    """Environment for starting worker processes with ``n`` BLAS threads each.

    Values the user set are kept. Spawned workers copy the environment when
    they start (during ``submit``), so it is restored right after.
    """
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, str(n))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute_pool(fn, items, jobs):
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    futures = {}
    try:
        # One BLAS thread per core share, so N workers do not oversubscribe the cores.
        with _worker_threads(max(1, default_jobs() // jobs)):
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result(), None
            except Exception as exc:  # e.g. BrokenProcessPool when a worker died
                yield futures[future], None, exc
    finally:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _execute_dask(fn, items, client):
    import distributed

    tag = uuid.uuid4().hex[:8]
    futures = {client.submit(fn, item, key=f"perfmap-{tag}-{i}", pure=False): i
               for i, item in enumerate(items)}
    try:
        for future in distributed.as_completed(list(futures)):
            try:
                result = future.result()
            except Exception as exc:  # KilledWorker, deserialisation errors, ...
                yield futures[future], None, exc
            else:
                yield futures[future], result, None
            future.release()
    finally:
        client.cancel([f for f in futures if not f.done()])
