"""CPython's cyclic garbage collector, collecting less often while a bulk job runs.

A bulk job (`process`, `promote`, a load) makes millions of short-lived dicts and tuples; at the
default thresholds (700, 10, 10) the collector runs every 700 allocations and walks ever more
of the job's live objects: a seventh of a 200,000-person promote's CPU time, measured with the
collector off. The job's objects die by reference counting, not as cycles. Every 50,000
allocations, a 1M county's promote still spent 10.2 s of 187 s in 808 collections that found
23,000 objects in cycles; every 1,000,000, 3.5 s in 60, with the same peak (benchmarks/RESULTS.md,
issue 10). A young collection walks only what is young: a pause of about 50 ms, during a bulk
job only. The collector is one per process: the first job in sets the thresholds, the last one
out puts back what it found (an application's own settings, if it changed them, included).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLDS = (1_000_000, 20, 100)

_LOCK = threading.Lock()
_running = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def bulk_collection() -> Iterator[None]:
    """Run the body with the collector's bulk thresholds (never lower than the ones in force)."""
    global _running, _saved
    with _LOCK:
        if _running == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*(max(now, bulk) for now, bulk in zip(_saved, BULK_THRESHOLDS, strict=True)))
        _running += 1
    try:
        yield
    finally:
        with _LOCK:
            _running -= 1
            if _running == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
