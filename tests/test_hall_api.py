"""The service-hall backend's JSON API and pages through FastAPI's test client: sign-in, 401/403,
the window-to-master path, and every personal read through the backend audited."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hall_support import PASSWORDS, seeded_hall

from examples.hall import create_app

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

PG_URL = os.environ.get("GOVDB_TEST_PG_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=[pytest.mark.pg])]
FORM = "senior_transit_card"


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("GOVDB_TEST_PG_URL is not set")
    with seeded_hall(request.param, tmp_path_factory.mktemp("hall"), PG_URL) as pair:
        yield pair


def client(hall, username: str | None = None) -> TestClient:
    c = TestClient(create_app(hall, "test-session-secret"))
    if username:
        r = c.post("/api/session", json={"username": username, "password": PASSWORDS[username]})
        assert r.status_code == 200, r.text
    return c


def test_unauthenticated_is_401_and_pages_go_to_sign_in(seeded) -> None:
    hall, _ = seeded
    c = client(hall)
    assert c.get("/api/me").status_code == 401
    assert c.get("/api/tasks").status_code == 401
    assert c.post("/api/applicants/search", json={"name": "x"}).status_code == 401
    assert c.get(f"/api/forms/{FORM}/prefill", params={"id_number": "1"}).status_code == 401
    assert c.post("/api/promotions").status_code == 401
    page = c.get("/inbox", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")
    assert c.post("/api/session", json={"username": "window1", "password": "wrong"}).status_code == 401
    assert c.post("/api/session", json={"username": "nobody", "password": "x"}).status_code == 401
    wrong = c.post("/signin", data={"username": "window1", "password": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text


def test_a_forged_session_is_not_signed_in(seeded) -> None:
    """The cookie is signed: a client writing its own session (as the administrator) gets 401,
    and a name in the request body does not change who acts."""
    hall, _ = seeded
    c = client(hall)
    forged = base64.b64encode(json.dumps({"user": "bureau1"}).encode()).decode()
    c.cookies.set("hall_session", forged)
    assert c.get("/api/me").status_code == 401
    c = client(hall, "window1")
    me = c.get("/api/me", params={"actor": "bureau1", "unit_id": "department:data_bureau:440605"}).json()
    assert me["actor_id"] == "hall.window1" and me["unit_id"] == "department:transport:440605"
    assert c.post("/api/promotions", json={"actor": "hall.bureau1"}).status_code == 403
    copied = c.cookies.get("hall_session")
    assert c.delete("/api/session").status_code == 204
    assert c.get("/api/me").status_code == 401
    # A copy of the cookie taken before signing out is dead too: the session ended on the server.
    replay = client(hall)
    replay.cookies.set("hall_session", copied)
    assert replay.get("/api/me").status_code == 401


def test_window_to_master_with_403_on_other_units(seeded) -> None:
    hall, report = seeded
    a = report.applicant
    window = client(hall, "window1")
    found = window.post("/api/applicants/search", json={k: a[k] for k in ("name", "birth_date", "address")})
    assert found.status_code == 200
    body = found.json()
    assert body["decision"] == "match" and body["master"]["id_number"] == a["id_number"]
    assert body["explanation"]["name"]["level"] in ("variant", "exact")  # 劉 folds to 刘
    form = window.get(f"/api/forms/{FORM}/prefill", params={"id_number": a["id_number"]}).json()
    locked = {f["name"] for f in form["fields"] if f["locked"]}
    assert {"name", "id_number", "birth_date", "address"} <= locked
    assert "phone" not in locked and form["documents_waived"]
    new_phone = "13900002222"
    sent = window.post(
        "/api/submissions",
        json={
            "form": FORM,
            "id_number": a["id_number"],
            "phone": new_phone,
            "division_code": a["division_code"],
        },
    )
    assert sent.status_code == 200 and sent.json()["stored"] == 1 and sent.json()["proposals"] == 1
    # Captured data went to the event store, not to master.
    again = window.get(f"/api/forms/{FORM}/prefill", params={"id_number": a["id_number"]}).json()
    assert next(f for f in again["fields"] if f["name"] == "phone")["value"] != new_phone

    village = client(hall, "village1")
    tasks = [t for t in village.get("/api/tasks").json() if t["proposed"].get("phone") == new_phone]
    assert len(tasks) == 1
    task = tasks[0]
    assert task["current"]["phone"] != new_phone and task["link"]["decision"] == "match"
    assert task["app_no"] == sent.json()["app_no"]
    # Another village, the window and an unknown task: refused, nothing decided.
    other = client(hall, "village2")
    assert all(t["task_id"] != task["task_id"] for t in other.get("/api/tasks").json())
    assert (
        other.post(f"/api/tasks/{task['task_id']}/decision", json={"outcome": "approve"}).status_code == 403
    )
    assert (
        window.post(f"/api/tasks/{task['task_id']}/decision", json={"outcome": "approve"}).status_code == 403
    )
    assert (
        village.post(
            "/api/tasks/decisions", json={"decisions": [{"task_id": task["task_id"], "outcome": "reject"}]}
        ).status_code
        == 409
    )  # fmt: skip  (no reason)
    decided = village.post(f"/api/tasks/{task['task_id']}/decision", json={"outcome": "approve"})
    assert decided.status_code == 200 and decided.json()["next_task_id"]
    street = client(hall, "street1")
    nxt = [t for t in street.get("/api/tasks").json() if t["task_id"] == decided.json()["next_task_id"]]
    assert nxt and nxt[0]["level"] == "street"
    batch = street.post(
        "/api/tasks/decisions", json={"decisions": [{"task_id": nxt[0]["task_id"], "outcome": "approve"}]}
    )
    assert batch.status_code == 200 and batch.json()["decided"][0]["proposal_state"] == "approved"
    assert window.post("/api/promotions").status_code == 403
    promoted = client(hall, "bureau1").post("/api/promotions")
    assert promoted.status_code == 200 and promoted.json()["promoted"] >= 1
    after = window.get(f"/api/forms/{FORM}/prefill", params={"id_number": a["id_number"]}).json()
    phone = next(f for f in after["fields"] if f["name"] == "phone")
    assert phone["value"] == new_phone and phone["source"] == "service_hall"  # the source's proven department
    assert any(step.startswith("village:") for step in phone["verified_by"])


def test_profile_where_the_policy_allows(seeded) -> None:
    hall, report = seeded
    civil = client(hall, "civil1")
    ok = civil.get(
        "/api/profile",
        params={"id_number": report.applicant["id_number"], "purpose": "public_rental_housing"},
    )
    assert ok.status_code == 200 and any(f["name"] == "name" for f in ok.json()["fields"])
    refused = civil.get(
        "/api/profile", params={"id_number": report.applicant["id_number"], "purpose": "senior_transit_card"}
    )
    assert refused.status_code == 403
    village = client(hall, "village1")
    assert (
        village.get(
            "/api/profile", params={"id_number": report.applicant["id_number"], "purpose": "x"}
        ).status_code
        == 403
    )
    assert client(hall, "window1").get(
        f"/api/forms/{FORM}/prefill", params={"id_number": "110101190001011234"}
    ).status_code in (404, 403)


def test_every_read_through_the_backend_is_audited(seeded) -> None:
    """Each look-up, prefill and profile read (refused ones too) adds one entry to the audit chain,
    under the signed-in clerk's actor; the chain verifies; who-read lists the clerk."""
    hall, report = seeded
    a = report.applicant
    before = hall.db.counts()["auditlog"]
    window, civil = client(hall, "window1"), client(hall, "civil1")
    calls = [
        window.post("/api/applicants/search", json={"id_number": a["id_number"]}),
        window.post("/api/applicants/search", json={k: a[k] for k in ("name", "birth_date", "address")}),
        window.get(f"/api/forms/{FORM}/prefill", params={"id_number": a["id_number"]}),
        civil.get("/api/profile", params={"id_number": a["id_number"], "purpose": "public_rental_housing"}),
        civil.get("/api/profile", params={"id_number": a["id_number"], "purpose": "senior_transit_card"}),
        window.post("/window/form", data={"form": FORM, "id_number": a["id_number"]}),
    ]
    assert [c.status_code for c in calls] == [200, 200, 200, 200, 403, 200]
    assert hall.db.counts()["auditlog"] - before == len(calls)
    assert hall.db.verify_audit().ok
    from govdb import Actor

    reads = hall.db.who_read(
        id_number=a["id_number"], actor=Actor("hall.test", "department:service_hall:440605")
    )
    actors = {r.actor_id for r in reads}
    assert {"hall.window1", "hall.civil1"} <= actors


def test_pages_render_for_each_role(seeded) -> None:
    hall, report = seeded
    window = client(hall)
    signed = window.post(
        "/signin", data={"username": "window1", "password": PASSWORDS["window1"]}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/window"
    found = window.post(
        "/window/find", data={k: report.applicant[k] for k in ("name", "birth_date", "address")}
    )
    assert found.status_code == 200 and "match" in found.text and "填写" in found.text
    assert window.get("/admin").status_code == 200  # the page shows; the action is refused
    assert window.post("/admin/promote").status_code == 403
    village = client(hall)
    village.post("/signin", data={"username": "village2", "password": PASSWORDS["village2"]})
    assert village.get("/window").status_code == 403
    assert village.get("/inbox").status_code == 200
    assert village.post("/inbox/decide", data={"outcome": "approve:999999999"}).status_code in (403, 404)


def test_batch_decision_from_the_inbox_page(seeded) -> None:
    """The inbox page's one form: the ticked tasks, one outcome and a reason (here: returned)."""
    hall, report = seeded
    a = report.applicant
    window = client(hall, "window1")
    phone = "13600007777"
    sent = window.post(
        "/api/submissions",
        json={"form": FORM, "id_number": a["id_number"], "phone": phone, "division_code": a["division_code"]},
    )
    assert sent.status_code == 200
    village = client(hall)
    village.post("/signin", data={"username": "village1", "password": PASSWORDS["village1"]})
    page = village.get("/inbox")
    assert phone in page.text
    task = next(t for t in village.get("/api/tasks").json() if t["proposed"].get("phone") == phone)
    refused = village.post("/inbox/decide", data={"task_id": [str(task["task_id"])], "outcome": "return"})
    assert refused.status_code == 409  # a return needs a reason
    done = village.post(
        "/inbox/decide",
        data={"task_id": [str(task["task_id"])], "outcome": "return", "reason": "请补充联系电话证明"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/inbox?done=1"
    assert all(t["task_id"] != task["task_id"] for t in village.get("/api/tasks").json())


def test_the_owning_department_settles_a_conflict(seeded) -> None:
    """Runs last (it decides every open task): an unproven source's other name for the applicant
    becomes a conflict for public security, which settles it once through the API and the page."""
    import polars as pl

    from govdb import Actor

    hall, report = seeded
    db, person = hall.db, report.applicant
    db.ingest_frame(
        pl.DataFrame(
            {
                "受理编号": ["CF1"],
                "姓名": ["另一个名字"],
                "身份证号": [person["id_number"]],
                "村居代码": [person["division_code"]],
                "办理时间": ["2026-05-01 09:00"],
            }
        ),
        source="walk_in_paper_form",
        key_column="受理编号",
        occurred_at_column="办理时间",
        service_code="hall.resident_registration",
    )
    db.process()
    while tasks := db.tasks():
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    assert db.promote().conflicts >= 1
    police = client(hall, "police1")
    listed = police.get("/api/conflicts")
    assert listed.status_code == 200, listed.text
    (conflict,) = [c for c in listed.json() if c["proposed_value"] == "另一个名字"]
    assert client(hall, "village1").get("/api/conflicts").status_code == 403  # not a department
    assert client(hall, "civil1").get("/api/conflicts").status_code == 403  # no reconciliation purpose
    page = police.get("/conflicts")
    assert page.status_code == 200 and "另一个名字" in page.text
    settled = police.post(f"/api/conflicts/{conflict['conflict_id']}/resolution", json={"resolution": "keep"})
    assert settled.status_code == 200 and settled.json()["resolution"] == "keep"
    again = police.post(f"/api/conflicts/{conflict['conflict_id']}/resolution", json={"resolution": "accept"})
    assert again.status_code == 409
    assert db.verify_audit().ok
