"""Keep the garbage collector's full collections, while an export runs, off the objects that were there before."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collect_only_new_objects"]


@contextmanager
def collect_only_new_objects() -> Iterator[None]:
    """
    While the block runs, the cyclic garbage collector looks only at objects created inside it.

    An export allocates steadily (HTTP exchanges, the S3 client's models), and now and then that sets off a
    collection of the oldest generation, which walks every tracked object of the process: in a task process
    the ~280,000 of Airflow and its imports, about 0.25 s of CPU each time, for an export whose own CPU is
    well under a second. Those objects are frozen for the block (:func:`gc.freeze`) and handed back to the
    collector after it (:func:`gc.unfreeze`), so nothing is kept from collection beyond the block. A process
    that freezes its heap itself (Airflow's LocalExecutor does before it forks), or runs without the
    collector, is left as it is.
    """
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
