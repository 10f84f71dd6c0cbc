import time
from concurrent.futures import Future, ThreadPoolExecutor

from builtup.core.parallel import in_order


def test_results_come_in_order_when_later_items_finish_first():
    def slow_first(item):
        time.sleep(0.05 if item == 0 else 0)
        return item * 10

    with ThreadPoolExecutor(3) as pool:
        assert list(in_order(pool, slow_first, range(8), 3)) == [i * 10 for i in range(8)]


class CountingPool:
    """Runs each item at once and counts the submissions."""

    def __init__(self):
        self.submitted = 0

    def submit(self, fn, item) -> Future:
        self.submitted += 1
        future = Future()
        future.set_result(fn(item))
        return future


def test_items_in_flight_stay_bounded():
    pool = CountingPool()
    results = in_order(pool, lambda item: item, range(20), 2)
    assert next(results) == 0
    assert pool.submitted == 2 * 2 + 1  # the first result waits behind 2 x threads more
    assert next(results) == 1
    assert pool.submitted == 2 * 2 + 2
    assert list(results) == list(range(2, 20))
