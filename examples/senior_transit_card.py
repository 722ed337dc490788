"""The yearly proactive run: issue a free transit card to everyone who has turned 60.

Those whose disability certificate says they cannot walk get it delivered to their home. Running
it again issues nothing twice.

    python examples/senior_transit_card.py [HOME]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

from govdb.demo import run_demo


def main(home: Path) -> dict[str, object]:
    today = dt.date.today()
    report = run_demo(home, people=200, today=today)  # a district whose checks have run
    first, second = report.first_run, report.second_run
    for person in first.selected:
        if person["delivery"] == "home":
            print(f"deliver to {person['name']} at {person['address']}: {'; '.join(person['reasons'])}")
    print(f"issued {first.issued} ({first.home_delivery} home deliveries); second run issued {second.issued}")
    return {"issued": first.issued, "home": first.home_delivery, "second": second.issued}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="govdb-card-"))
    main(target)
