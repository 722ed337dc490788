"""A service-hall backend, end to end over its HTTP API: the window finds a walk-in applicant in
master, sees the prefilled form, submits what it captured; the village and street check it; the
data bureau promotes it; the window sees the verified value.

The backend itself is the `examples/hall` package (FastAPI, sign-in, pages, JSON API); this script
seeds it in HOME and drives its API in-process, as a hall's integration test would. To serve it:
`python -m examples.hall seed --home DIR` then `python -m examples.hall serve --home DIR`.

An applicant without their ID card is found by name (traditional characters), birth date and
address (`link_one`); the registration goes to the event store (unverified) and reaches master
only after the checks and a promotion.

    python examples/service_hall_backend.py [HOME]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples.hall, after the installed govdb

from fastapi.testclient import TestClient

from examples.hall import create_app, open_hall
from examples.hall.seed import seed

FORM = "senior_transit_card"


def main(home: Path) -> dict[str, object]:
    home.mkdir(parents=True, exist_ok=True)
    hall = open_hall(home)
    try:
        report = seed(hall, home)
        app = create_app(hall, "example-session-secret")
        applicant = report.applicant

        def signed_in(username: str) -> TestClient:
            client = TestClient(app)
            password = report.passwords[username][0]
            client.post("/api/session", json={"username": username, "password": password}).raise_for_status()
            return client

        window = signed_in("window1")
        found = window.post(
            "/api/applicants/search", json={k: applicant[k] for k in ("name", "birth_date", "address")}
        ).json()
        sure = found["match_probability"]
        print(f"{applicant['name']}: {found['decision']} {found['person_id']} ({sure:.4f})")
        for field, why in found["explanation"].items():
            if isinstance(why, dict):
                print(f"  {field:<10} {why['level']:<14} {why['weight']:+.2f}")
        form = window.get(f"/api/forms/{FORM}/prefill", params={"id_number": applicant["id_number"]}).json()
        for f in form["fields"]:
            lock = "locked" if f["locked"] else "editable"
            print(f"{f['label']:<12} {f['value']!s:<30} {lock:<8} {f['source'] or ''}")
        print("no longer needed:", ", ".join(form["documents_waived"]))
        phone = "13912345678"
        sent = window.post(
            "/api/submissions",
            json={"form": FORM, "id_number": applicant["id_number"], "phone": phone,
                  "division_code": applicant["division_code"]},
        ).json()  # fmt: skip
        for officer in ("village1", "street1"):
            checker = signed_in(officer)
            mine = [t for t in checker.get("/api/tasks").json() if t["proposed"].get("phone") == phone]
            checker.post(
                f"/api/tasks/{mine[0]['task_id']}/decision", json={"outcome": "approve"}
            ).raise_for_status()
        promoted = signed_in("bureau1").post("/api/promotions").json()
        after = window.get(f"/api/forms/{FORM}/prefill", params={"id_number": applicant["id_number"]}).json()
        now = next(f["value"] for f in after["fields"] if f["name"] == "phone")
        print(f"{sent['app_no']}: promoted {promoted['promoted']}, phone in master now {now}")
        return {
            "stored": sent["stored"],
            "locked": sum(f["locked"] for f in form["fields"]),
            "identified": int(found["decision"] == "match" and found["person_id"] == form["person_id"]),
            "promoted": int(now == phone),
        }
    finally:
        hall.db.close()
        hall.users.dispose()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="govdb-hall-"))
    main(target)
