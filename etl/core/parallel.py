"""Work spread over forked worker processes with bounded memory."""

from __future__ import annotations

import os
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

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("fork")) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
