"""Where independent simulations run: in this process, a local process pool, or Dask.

A sweep's points and a fleet's pods (fleet.pods) are independent runs of one worker function on
validated inputs, so every executor gives the same results. `executor(scheduler, workers, n)`:
scheduler None runs `workers` local processes (default one per CPU, at most one per task; one:
this process), "local" a dask.distributed LocalCluster of `workers` processes, "tcp://HOST:PORT"
an existing Dask cluster. `as_completed` yields results as they finish (a sweep writes each point
at once); `map` returns them in task order (pods merge in order).

Pool workers are spawned (safe with threads: progress bars, Jupyter; identical on every platform),
ignore Ctrl-C (the parent ends them), show warnings as the parent does, and exit when the parent
goes away even if it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from fleetsim.errors import SpecError


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Processes started inside this block inherit SIGINT ignored: Ctrl-C (sent to the whole
    terminal process group) reaches only this process, which then ends the workers itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def parent_warning_hook() -> Any:
    """This process's warnings.showwarning when fleetsim installed it (the command line's
    one-line `warning: MESSAGE`), for the pool workers to show warnings the same way; else None."""
    hook = warnings.showwarning
    return hook if getattr(hook, "__module__", "").startswith("fleetsim.") else None


def die_with(parent_pid: int, show_warning: Any = None) -> None:
    """Pool worker start-up: ignore Ctrl-C, show warnings as the parent does, and exit when the
    parent goes away, even when it is killed outright (Linux: the kernel's parent-death signal;
    elsewhere a watcher)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if show_warning is not None:
        warnings.showwarning = show_warning
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="fleetsim-parent-watch", daemon=True).start()


class Serial:
    """Runs tasks in this process (workers=1): same worker function, no pool."""

    def as_completed(self, fn: Callable, tasks: list) -> Iterator:
        for t in tasks:
            yield fn(t)

    def map(self, fn: Callable, tasks: list) -> list:
        return [fn(t) for t in tasks]

    def close(self, interrupted: bool = False) -> None:
        pass


class Pool:
    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.ex = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with,
            initargs=(os.getpid(), parent_warning_hook()),
        )

    def as_completed(self, fn: Callable, tasks: list) -> Iterator:
        from concurrent.futures import as_completed

        with ctrl_c_ignored():  # workers start on submit
            futures = [self.ex.submit(fn, t) for t in tasks]
        for f in as_completed(futures):
            yield f.result()

    def map(self, fn: Callable, tasks: list) -> list:
        with ctrl_c_ignored():
            futures = [self.ex.submit(fn, t) for t in tasks]
        return [f.result() for f in futures]

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # running tasks are abandoned (a sweep reruns them on resume)
            for proc in list((getattr(self.ex, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    proc.kill()
        self.ex.shutdown(wait=True, cancel_futures=True)


class Dask:
    def __init__(self, scheduler: str, workers: int | None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - dask is an optional dependency
            raise SpecError("--scheduler needs dask[distributed]: pip install 'fleetsim[dask]'") from None

        self.cluster = None
        self._futures: list = []
        if scheduler == "local":
            with ctrl_c_ignored():  # the worker processes start here
                self.cluster = LocalCluster(
                    n_workers=workers or 2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            self.client = Client(self.cluster)
        elif scheduler.startswith("tcp://"):
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise SpecError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        else:
            raise SpecError(f"--scheduler: '{scheduler}' is not 'local' or tcp://HOST:PORT")

    def as_completed(self, fn: Callable, tasks: list) -> Iterator:
        from dask.distributed import as_completed

        self._futures = [self.client.submit(fn, t, pure=False) for t in tasks]
        for f in as_completed(self._futures):
            yield f.result()

    def map(self, fn: Callable, tasks: list) -> list:
        self._futures = [self.client.submit(fn, t, pure=False) for t in tasks]
        return self.client.gather(self._futures)

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # a cluster torn down mid-task logs every cancelled future: not news
            for name in ("distributed", "tornado", "asyncio"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        for f in self._futures:
            f.cancel()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def executor(scheduler: str | None, workers: int | None, n_tasks: int) -> Serial | Pool | Dask:
    if scheduler:
        return Dask(scheduler, workers)
    n = max(1, min(workers or os.cpu_count() or 1, n_tasks))
    return Serial() if n == 1 else Pool(n)
