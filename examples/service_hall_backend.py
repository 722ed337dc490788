"""A service-hall backend: find a walk-in applicant in master, register what the window clerk
captured, then prefill a form.

An applicant without their ID card is found by name, birth date and address (`link_one`, through
the master store's indexed blocking keys); the explanation says why.

The registration goes to the event store (unverified); the form is filled from master only, so
the clerk sees which fields are government-verified (locked) and which papers are no longer needed.

    python examples/service_hall_backend.py [HOME]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import polars as pl

from govdb import Actor, open_db
from govdb.demo import COUNTY, make_people


def main(home: Path) -> dict[str, object]:
    with open_db(home) as db:
        db.serve_district(COUNTY)
        people = make_people(50, seed=11, today=dt.date.today())
        db.load_people(people, source="public_security")
        applicant = people.row(0, named=True)
        # No ID card today: the clerk types the name in traditional characters and the birth date.
        # Finding a person reads personal data: the window names who looks and why (audited).
        window = Actor("clerk.wang", f"department:service_hall:{COUNTY}")
        found = db.link_one(
            {
                "name": applicant["name"].replace("张", "張").replace("陈", "陳").replace("刘", "劉"),
                "birth_date": applicant["birth_date"].strftime("%Y年%m月%d日"),
                "address": applicant["address"],
            },
            actor=window,
            purpose="identity_lookup",
        )
        print(f"{found.decision}: {found.person_id} ({found.match_probability:.4f})")
        for field, why in found.explanation.items():
            if isinstance(why, dict):
                print(f"  {field:<10} {why['level']:<14} {why['weight']:+.2f}")
        captured = pl.DataFrame(
            {
                "受理编号": ["W0001"],
                "姓名": [applicant["name"]],
                "身份证号": [applicant["id_number"]],
                "联系电话": ["13912345678"],
                "村居代码": [applicant["division_code"]],
            }
        )
        stored = db.ingest_frame(
            captured,
            source="hall-window",
            key_column="受理编号",
            service_code="hall.resident_registration",
            department="service_hall",
        )
        form = db.prefill(
            "senior_transit_card",
            id_number=applicant["id_number"],
            actor=Actor("clerk.wang", f"department:transport:{COUNTY}"),
        )
        for field in form.fields:
            lock = "locked" if field.locked else "editable"
            print(f"{field.label:<12} {field.value!s:<30} {lock:<8} {field.source or ''}")
        print("no longer needed:", ", ".join(form.documents_waived))
        return {
            "stored": stored.stored,
            "locked": sum(f.locked for f in form.fields),
            "identified": int(found.decision == "match" and found.person_id == form.person_id),
        }


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="govdb-hall-"))
    main(target)
