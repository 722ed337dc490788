"""Random (version 4) UUIDs as text, many at a time."""

from __future__ import annotations

import os

import numpy as np


def uuid4_texts(n: int) -> list[str]:
    """`n` random UUIDs (version 4, RFC 4122 variant) in their usual text form, from one read of
    the system's random source: `str(uuid.uuid4())` reads it once per id, a second or more of a
    county's `process` for its million proposals."""
    octets = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    octets[:, 6] = (octets[:, 6] & 0x0F) | 0x40  # version 4
    octets[:, 8] = (octets[:, 8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = octets.tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]
