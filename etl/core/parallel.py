"""Work spread over forked worker processes with bounded memory, which die with their parent."""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator


def bounded_map(fn: Callable, items: Iterable, n_jobs: int) -> Iterator:
    """``fn(item)`` for each item, in order, in ``n_jobs`` forked processes (in this process when
    ``n_jobs`` is 1). Items are consumed lazily and at most ``2 * n_jobs`` are in flight, so
    memory is bounded by a few items' work, whatever their number."""
    n_jobs = max(1, min(n_jobs, os.cpu_count() or 1))
    if n_jobs == 1:
        for item in items:
            yield fn(item)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("fork"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux ``prctl``);
    False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """A worker's initializer: killed by the kernel when the process that forked it dies (a
    ``kill -9`` of ``alpha features build`` or of a nightly leaves no worker waiting forever on
    its queue, holding its memory and inherited file descriptors); gone at once if that process
    died before the setting took effect."""
    if set_parent_death_signal(sig) and os.getppid() != parent_pid:
        os._exit(1)
