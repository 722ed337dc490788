"""The bottom layer: small things every stage shares (the clock, who is acting).

Nothing here imports another govdb module; every other layer may import from here
(tests/test_layers.py holds the order).
"""

from govdb.base.actors import Actor, ResolvedActor
from govdb.base.clock import utcnow

__all__ = ["Actor", "ResolvedActor", "utcnow"]
