"""Promote's planning process: the next chunk worked out on the other core (its event-store half
read, then master's rows, survivorship and the people's new link keys: `apply.work_out`) while
this process writes the chunk before into master.

One interpreter runs Python on one core at a time, and a thread doing a chunk's reads was slower
(the interpreter lock); reading the event store alone in a second process gained too little to
keep (benchmarks/RESULTS.md, 5 December). What is worked out here was read from master as it
stood before the chunk being written commits. The writing transaction checks (`ChunkWork.
still_holds`) that nothing the work read has changed since and that nothing it creates has been
created since, else works the chunk out again itself: a chunk of neighbouring people shares no
person with the chunk before; chunks of the queue's order may (a newcomer's two registrations, two
claims on one certificate number), and then the second is worked out where it is written.
Reading the event store ahead changes nothing a run sees: only promote moves an approved proposal
on (one run at a time, the job lock), a proposal approved during the run is not in its plan, and
events do not change once proposed.
"""

from __future__ import annotations

import datetime as dt
import queue
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from govdb.base import second_process
from govdb.base.second_process import SecondProcess, silence_limit, wanted
from govdb.errors import GovdbError
from govdb.promote.apply import ChunkWork
from govdb.promote.reads import ChunkRead
from govdb.rulebook.loader import Rulebook
from govdb.store.engine import in_process_memory

SETTING = "GOVDB_PROMOTE_PROCESS"  # 0: every chunk worked out in this process
TIMEOUT_SETTING = "GOVDB_PROMOTE_TIMEOUT"
# A chunk takes seconds to work out: a planning process silent for half an hour is hung.
SILENCE_SECONDS = 1800.0


class PromotePlannerError(GovdbError):
    """Promote's planning process stopped or failed; every chunk master holds is kept."""


def _stopped(detail: str) -> PromotePlannerError:
    return PromotePlannerError(
        f"promote's planning process {detail}; every chunk written before it is kept: run `govdb "
        f"promote` again to finish ({SETTING}=0 works every chunk out in one process)"
    )


def _silence() -> float:
    return silence_limit(TIMEOUT_SETTING, SILENCE_SECONDS, "promote's planning process")


class ChunkPlanner(SecondProcess):
    """Chunks worked out in a second process, in the order submitted (`submit`, then `collect`)."""

    def __init__(self, events: Engine, master: Engine, rules: Rulebook, fingerprint: str) -> None:
        super().__init__("govdb.promote.planner", _stopped, _silence, TIMEOUT_SETTING)
        # The URLs (a password in them) go through the pipe, never on the command line.
        urls = [e.url.render_as_string(hide_password=False) for e in (events, master)]
        self._start(("start", *urls, rules, fingerprint))

    @staticmethod
    def usable(events: Engine, master: Engine) -> bool:
        """Unless the deployment says GOVDB_PROMOTE_PROCESS=0, or a store is in this process's memory."""
        return wanted(SETTING) and not in_process_memory(events) and not in_process_memory(master)

    def submit(self, proposal_ids: list[str], today: dt.date) -> None:
        """Work these proposals' chunk out against master as it stands."""
        self._send(("plan", proposal_ids, today))

    def collect(self) -> tuple[ChunkRead | None, ChunkWork | None]:
        """The oldest chunk submitted and not collected: its work, or its reads when none of its
        proposals is still approved (then there is nothing to work out)."""
        read, worked = self._expect(self._next(), "planned")
        return read, worked


def _serve(requests: queue.Queue[Any], reply: Callable[[tuple[Any, ...]], None]) -> None:
    """Start (the stores' URLs, the rulebook and its fingerprint), then plan chunks until the
    input ends."""
    from govdb.base.collector import bulk_collection
    from govdb.promote.apply import work_out
    from govdb.promote.reads import read_chunk
    from govdb.store.engine import make_engine, store_errors
    from govdb.store.locks import snapshot

    stores: tuple[Engine, Engine] | None = None
    rules: Rulebook | None = None
    fingerprint = ""
    with bulk_collection():
        while (message := requests.get()) is not None:
            kind, *rest = message
            try:
                if kind == "start":
                    stores = (make_engine(rest[0]), make_engine(rest[1]))
                    rules, fingerprint = rest[2], rest[3]
                elif kind == "error":  # what the caller sent could not be read here: say why
                    raise rest[0]
                elif kind == "plan":
                    if stores is None or rules is None:
                        raise GovdbError("promote's planning process was asked to plan before it was started")
                    ids, today = rest
                    events, master = stores
                    with store_errors(events), events.connect() as conn:
                        read = read_chunk(conn, ids)
                    if not read[0]:
                        reply(("planned", read, None))
                        continue
                    with snapshot(master) as conn:
                        worked = work_out(conn, rules, *read, fingerprint, today)
                    # Not the reads: the writer reads them again in the rare case it works the
                    # chunk out itself, and a chunk's proposals pickle slower than its work.
                    reply(("planned", None, worked))
                    del read, worked  # not held while the next chunk is worked out
                else:
                    raise GovdbError(f"promote's planning process was sent {kind!r}")
            except Exception as exc:  # handed to the caller, which raises it, saying where it failed
                reply(("error", _stopped(f"failed: {type(exc).__name__}: {exc}")))
                return  # the caller stops at this error; nothing after it is wanted
    for engine in stores or ():
        engine.dispose()


def main() -> None:
    second_process.child_main(_serve, _stopped)


if __name__ == "__main__":  # `python -m govdb.promote.planner`: the module's own classes, not __main__'s
    from govdb.promote import planner

    planner.main()
