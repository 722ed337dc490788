"""UUIDs as text, many at a time."""

from __future__ import annotations

import os
import time

import numpy as np

COUNTER_BITS = 26  # ids in one call keep their order in the 12 bits of rand_a and 14 of rand_b


def uuid7_texts(n: int, *, now_ms: int | None = None) -> list[str]:
    """`n` time-ordered UUIDs (version 7, RFC 9562) in their usual text form, ascending in the
    order returned (the millisecond, then a counter in the first 26 bits after it, method 1 of
    the RFC), each with 48 random bits from one read of the system's random source.

    Proposal ids are primary keys: random ones (version 4) land all over their index, and a
    county's `process` spent more time inserting 750,000 proposals and their 1.6 million tasks
    (keyed by proposal) than planning them. Ordered ones append."""
    if n == 0:
        return []
    if n >= 1 << COUNTER_BITS:
        raise ValueError(f"at most {(1 << COUNTER_BITS) - 1} ids a call, not {n}")
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    counter = np.arange(n, dtype=np.uint64)
    octets = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    octets[:, :6] = np.frombuffer(stamp.to_bytes(8, "big")[2:], dtype=np.uint8)  # unix ms, 48 bits
    octets[:, 6] = 0x70 | (counter >> 22).astype(np.uint8)  # version 7, counter bits 25-22
    octets[:, 7] = (counter >> 14).astype(np.uint8) & 0xFF  # counter bits 21-14
    octets[:, 8] = 0x80 | ((counter >> 8).astype(np.uint8) & 0x3F)  # RFC variant, bits 13-8
    octets[:, 9] = (counter & 0xFF).astype(np.uint8)  # counter bits 7-0
    h = octets.tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


class ClusteredIds:
    """Ids for the entities one job creates ("P" and 15 hex digits for a person, as random ones
    were): a random 60-bit starting point drawn for the job, then counted up from it, so they
    ascend in the order made and sit together in every index keyed by them.

    Random ids (version 4) put each of a chunk's 60,000 new people, their features and their
    lineage on a page of its own in those B-trees: a chunk of newcomers wrote three times the
    pages of a chunk of changes. Two jobs collide only if their runs overlap: for jobs of n and m
    ids, odds of (n + m) / 2**60, so a county's ids collide less often than random ones would (a
    job of one id is one random id). The primary key refuses an id made twice, and the job then
    fails without writing anything."""

    SPAN = 1 << 24  # ids counted from one starting point before another is drawn

    def __init__(self) -> None:
        self._start, self._count = self._draw(), 0

    @classmethod
    def _draw(cls) -> int:
        return int.from_bytes(os.urandom(8), "big") % ((1 << 60) - cls.SPAN)  # a run never wraps

    def __call__(self, prefix: str) -> str:
        if self._count == self.SPAN:
            self._start, self._count = self._draw(), 0
        value = self._start + self._count
        self._count += 1
        return f"{prefix}{value:015X}"
