"""Bounded, ordered work on a thread pool (numpy and GDAL release the GIL)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def in_order(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, threads: int) -> Iterator:
    """``fn`` over ``items`` on the pool, results in order, at most 2 x threads items in flight."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > 2 * threads:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
