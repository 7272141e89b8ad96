"""Keep the garbage collector, while an export runs, off the objects that were there before and off its own churn."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "collect_only_new_objects"]

#: Allocations of tracked objects between two collections of the youngest generation while an export runs
#: (Python's default is 700). An export makes tens of thousands of short-lived objects that form no cycles
#: (entries, pages, requests), and each young collection walks every one of them made since the last.
YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
# Exports under way in this process, and what the first of them found: the last one to end puts it back.
_active = 0
_saved_threshold: tuple[int, int, int] = (700, 10, 10)
_froze = False


@contextmanager
def collect_only_new_objects() -> Iterator[None]:
    """
    While the block runs, the cyclic garbage collector looks only at objects created inside it, and less often.

    An export allocates steadily (HTTP exchanges, the S3 client's models), and now and then that sets off a
    collection of the oldest generation, which walks every tracked object of the process: in a task process
    the ~280,000 of Airflow and its imports, about 0.25 s of CPU each time, for an export whose own CPU is
    well under a second. Those objects are frozen for the block (:func:`gc.freeze`) and handed back to the
    collector after it (:func:`gc.unfreeze`), so nothing is kept from collection beyond the block. A process
    that freezes its heap itself (Airflow's LocalExecutor does before it forks) keeps its own freeze. The
    youngest generation is collected every :data:`YOUNG_THRESHOLD` allocations instead of every 700, which
    cuts the collector's share of an export by about four fifths; the thresholds are put back after the
    block. Blocks may overlap (exports in threads of one process): the first sets, the last restores. A
    process that runs without the collector is left as it is.
    """
    global _active, _saved_threshold, _froze
    if not gc.isenabled():
        yield
        return
    with _lock:
        if _active == 0:
            _saved_threshold = gc.get_threshold()
            gc.set_threshold(max(_saved_threshold[0], YOUNG_THRESHOLD), *_saved_threshold[1:])
            _froze = gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _froze:
                    gc.unfreeze()
                gc.set_threshold(*_saved_threshold)
