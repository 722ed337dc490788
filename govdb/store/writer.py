"""A thread that writes a job's chunks while the job prepares the next one.

`process` standardizes, links and plans a chunk of events in Python and polars, then writes it
in one transaction; with the write in a thread of its own, SQLite's or the server's work on one
chunk overlaps the preparing of the next (the second core of a hall's server). The job must read
nothing its pending write changes: each chunk's rows are all behind the next chunk's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Self

from sqlalchemy import Engine
from sqlalchemy.pool import SingletonThreadPool, StaticPool


class BackgroundWriter:
    """One write at a time, in the order given: `submit` waits for the write before it, so a
    failed write stops the job at the next chunk with that write's error, and leaving the block
    waits for the last. A shared in-memory SQLite store has one connection for every thread:
    there, writes run inline."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        inline = isinstance(engine.pool, StaticPool | SingletonThreadPool)
        self._pool = None if inline else ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self._wait()
        if self._pool is None:
            write(*args)
        else:
            self._pending = self._pool.submit(write, *args)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # the write's error, raised here

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if error is None:
                self._wait()  # the last chunk is written before the job returns
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # a write under way finishes (or fails) first
