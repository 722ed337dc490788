"""A nightly reconciliation job: ingest the day's files, process, report quality and the work queue.

python examples/reconciliation_job.py [HOME]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from collections import Counter
from pathlib import Path

from govdb import open_db
from govdb.demo import COUNTY, make_hall_events, make_people


def main(home: Path) -> dict[str, object]:
    today = dt.date.today()
    with open_db(home) as db:
        db.serve_district(COUNTY)
        register = make_people(200, seed=5, today=today)
        db.load_people(register, source="public_security")
        daily = home / "hall-export.csv"
        make_hall_events(register, daily, seed=5, today=today)
        ingest = db.ingest(
            daily,
            source="hall-window",
            key_column="受理编号",
            occurred_at_column="办理时间",
            service_code="hall.resident_registration",
            department="service_hall",
        )
        print(
            f"read {ingest.read}, stored {ingest.stored}, duplicate {ingest.duplicate}, "
            f"quarantined {ingest.quarantined} ({ingest.encoding})"
        )
        report = db.process(today=today)
        print(report.validation.by_reason())
        queue = Counter(t.unit_id.split(":")[0] for t in db.tasks(limit=10_000))
        print("open tasks by level:", dict(queue))
        return {
            "stored": ingest.stored,
            "proposals": report.proposals.proposals,
            "open_tasks": sum(queue.values()),
        }


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="govdb-recon-"))
    main(target)
