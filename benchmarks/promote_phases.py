"""Where one `promote` spends its time and I/O, phase by phase, on a copy of a snapshot.

    python benchmarks/promote_phases.py SNAPSHOT RUNDIR

SNAPSHOT is a county with every task decided (`bench_process.py --step promote --snapshot DIR
--repeat 0` makes one). The run wraps promote's phases (the event store's reads and marking,
master's reads, survivorship, writes, re-keying and commits) and prints each one's wall time and
the bytes its thread read and wrote through system calls (/proc/thread-self/io: SQLite's page
reads and writes, whether the pages come from the disk or the page cache). The wrappers cost
little; the figures are for finding where the time goes, not for comparing commits (use
`bench_process.py --baseline` for that). Run it with PYTHONPATH at the checkout to measure.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PHASES = ("_chunk_plan", "_approved", "_approved_among", "_checks", "_event_dates", "_promote_chunk")
PHASES += ("_mark_promoted", "refresh_pending_keys", "_rekey", "attach_places", "read_chunk")
PHASES += ("work_out", "write_out")
# The event store's reads (govdb.promote.reads): in this process for the first chunk, the queue's
# head and a run with GOVDB_PROMOTE_PROCESS=0; in the planning process for the others, where the
# time this one waits for them shows as `ChunkPlanner.collect` (with the chunk's work, for a
# chunk of neighbouring people).
READS = ("approved_among", "check_chains", "event_dates")
# Not `apply`: it runs once per proposal, and reading /proc twice per call cost more than the
# survivorship it timed (88 s of a 626 s run, where a sampling profiler found 23 s).
CHUNK_PHASES = ("read", "read_current", "write")
WRITES = ("history_frame", "update_many", "insert_frame", "record_changes", "insert_rows")


def _io() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/thread-self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.bytes: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])

    @contextlib.contextmanager
    def timed(self, label: str) -> Iterator[None]:
        start, (read, written) = time.perf_counter(), _io()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - start
            now_read, now_written = _io()
            self.bytes[label][0] += now_read - read
            self.bytes[label][1] += now_written - written

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        function = getattr(owner, name, None)
        if function is None:  # a phase this checkout does not have
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timed(label or name):
                return function(*args, **kwargs)

        setattr(owner, name, timed)

    def commits(self, owner: Any) -> None:
        """Time the end of each `writing()` block in `owner`: the commit (and any checkpoint it runs)."""
        writing: Callable[..., Any] = owner.writing

        @contextlib.contextmanager
        def timed_writing(*args: Any, **kwargs: Any) -> Iterator[Any]:
            block = writing(*args, **kwargs)
            conn = block.__enter__()
            try:
                yield conn
            except BaseException:
                if not block.__exit__(*sys.exc_info()):
                    raise
            else:
                with self.timed("commits (end of writing())"):
                    block.__exit__(None, None, None)

        owner.writing = timed_writing


def main() -> None:
    snapshot, run = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(snapshot, run)
    import govdb.promote as promote
    import govdb.promote.reads as reads
    import govdb.promote.survivorship as survivorship
    from govdb.api import GovDB

    phases = Phases()
    for name in PHASES:
        phases.wrap(promote, name)
    for name in READS:
        phases.wrap(reads, name)
        phases.wrap(promote, name)
    if hasattr(promote, "ChunkPlanner"):
        phases.wrap(promote.ChunkPlanner, "collect", "ChunkPlanner.collect")
    for name in CHUNK_PHASES:
        phases.wrap(survivorship.Chunk, name, f"Chunk.{name}")
    for name in WRITES:
        phases.wrap(survivorship, name)
    phases.commits(promote)
    db = GovDB.open(run)
    with phases.timed("whole run"):
        report = db.promote()
    db.close()
    shutil.rmtree(run, ignore_errors=True)
    print(f"promoted {report.promoted:,}; each phase's time includes the phases it calls")
    for label, seconds in sorted(phases.seconds.items(), key=lambda item: -item[1]):
        read, written = phases.bytes[label]
        print(f"{label:30} {seconds:7.1f} s   read {read / 1e9:6.1f} GB   written {written / 1e9:6.1f} GB")


if __name__ == "__main__":
    main()
