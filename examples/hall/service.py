"""What the hall does, once for the pages and the JSON API: each operation takes the signed-in
account and calls govdb's public API (the GovDB facade) as that account's actor.

govdb checks the rest: purposes and fields by the unit's department (reads are audited, refused
ones too), jurisdiction on decisions, and the event store never writes master.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Engine

from examples.hall import accounts
from examples.hall.accounts import Account
from govdb import AccessDeniedError, Actor, GovDB

SOURCE = "hall_window_system"  # the source the hall registers (rules/verification/routes.yaml)
SERVICE = "hall.resident_registration"
LOOKUP_PURPOSE = "identity_lookup"
# What the window captures, as standard fields, and the headers the hall's export uses for them.
CAPTURED = {"name": "姓名", "id_number": "身份证号", "phone": "联系电话", "address": "居住地址",
            "division_code": "村居代码"}  # fmt: skip


class Forbidden(Exception):
    """The signed-in account's role may not do this (the pages and API answer 403)."""


def plain(value: Any) -> Any:
    """A JSON-safe copy: dataclasses as dicts, dates as ISO text, non-finite floats as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return str(value)


@dataclass
class Hall:
    """The stores, the hall's own tables and what a deployment configures."""

    db: GovDB
    users: Engine
    source_token: str | None = None
    process_on_submit: bool = True

    def __post_init__(self) -> None:
        self._work = threading.Lock()  # one process/promote at a time from this server
        # The window's last look-up per (clerk, ID number), kept server-side so the checking unit
        # sees the explanation govdb gave, not one a client could send.
        self._lookups: dict[tuple[str, str], dict[str, Any]] = {}
        # Every personal read appends to the audit chain, a write. SQLite has one writer, and its
        # busy handler backs off in sleeps of up to 100 ms when threads collide: on SQLite the
        # hall queues its audited reads itself instead (PostgreSQL takes them concurrently).
        sqlite = self.db.master.dialect.name == "sqlite"
        self._audited = threading.Lock() if sqlite else contextlib.nullcontext()

    @staticmethod
    def actor(who: Account) -> Actor:
        return Actor(who.actor_id, who.unit_id)

    def department(self, who: Account) -> str | None:
        parts = who.unit_id.split(":")
        return parts[1] if parts[0] == "department" and len(parts) > 1 else None

    def forms(self, who: Account) -> list[dict[str, str]]:
        """The forms whose department is the account's (a transport window fills transport's)."""
        dept = self.department(who)
        return [
            {"code": f.code, "title": f.title, "purpose": f.purpose}
            for f in self.db.rules.forms.values()
            if f.department == dept
        ]

    def require_window(self, who: Account) -> None:
        if who.role != "window":
            raise Forbidden(f"{who.username} signs in for {who.unit_id}, not for a window")

    # --- the window ----------------------------------------------------------------------------

    def find(self, who: Account, record: dict[str, Any]) -> dict[str, Any]:
        """link_one as the window clerk (audited): the person, how sure, and why."""
        self.require_window(who)
        record = {k: v for k, v in record.items() if v not in (None, "")}
        with self._audited:
            result = self.db.link_one(record, actor=self.actor(who), purpose=LOOKUP_PURPOSE)
        found = plain(result)
        id_number = (found.get("master") or {}).get("id_number")
        if id_number:
            if len(self._lookups) > 10_000:
                self._lookups.clear()
            keep = ("decision", "match_probability", "match_weight", "explanation", "record_id")
            self._lookups[(who.username, str(id_number))] = {k: found[k] for k in keep}
        return found

    def prefill(self, who: Account, form: str, id_number: str) -> dict[str, Any]:
        """The form filled from master as the window may see it (audited)."""
        self.require_window(who)
        self._own_form(who, form)
        with self._audited:
            filled = self.db.prefill(form, id_number=id_number, actor=self.actor(who))
        return plain(filled)

    def _own_form(self, who: Account, form: str) -> None:
        if form not in {f["code"] for f in self.forms(who)}:
            raise Forbidden(f"{who.unit_id} does not take form {form!r}; its forms: "
                            f"{[f['code'] for f in self.forms(who)]}")  # fmt: skip

    def submit(self, who: Account, form: str, id_number: str, values: dict[str, Any]) -> dict[str, Any]:
        """What the window captured goes to the event store (unverified, never master), then
        processing opens the checks it needs. Master's current values are read once more (the
        form's audited read) so the checking units see current against proposed."""
        self.require_window(who)
        self._own_form(who, form)
        with self._audited:
            current = self.db.prefill(form, id_number=id_number, actor=self.actor(who))
        now = {f.name: f.value for f in current.fields}
        captured = {"name": now.get("name"), "id_number": id_number}
        captured.update({k: v for k, v in values.items() if k in CAPTURED and v not in (None, "")})
        app_no = f"H{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}{uuid.uuid4().hex[:6].upper()}"
        frame = pl.DataFrame(
            {"受理编号": [app_no], **{CAPTURED[k]: [str(v)] for k, v in captured.items() if v is not None}}
        )
        report = self.db.ingest_frame(
            frame,
            source=SOURCE,
            source_token=self.source_token,
            key_column="受理编号",
            service_code=SERVICE,
            department=self.department(who),
            channel="window",
        )
        accounts.record_submission(
            self.users,
            {
                "app_no": app_no,
                "actor_id": who.actor_id,
                "unit_id": who.unit_id,
                "form": form,
                "person_id": current.person_id,
                "division_code": captured.get("division_code"),
                "captured": plain(captured),
                "current": plain({k: v for k, v in now.items() if k in CAPTURED}),
                "link": self._lookups.pop((who.username, id_number), {"decision": "by ID number"}),
            },
        )
        processed = self.process() if self.process_on_submit else None
        return {
            "app_no": app_no,
            "stored": report.stored + report.new_versions,
            "duplicate": report.duplicate,
            "quarantined": report.quarantined,
            "proposals": processed["proposals"] if processed else None,
        }

    def process(self) -> dict[str, int]:
        with self._work:
            report = self.db.process()
        return {"proposals": report.proposals.proposals, "validated": report.validation.rows}

    # --- checking units ------------------------------------------------------------------------

    def inbox(self, who: Account, limit: int = 200) -> list[dict[str, Any]]:
        """The unit's open tasks: what is proposed, what master holds as the window saw it, and
        the window's look-up explanation (from the hall's record of the submission)."""
        tasks = self.db.tasks(unit_id=who.unit_id, limit=limit)
        sent = accounts.recent_submissions(self.users)
        out = []
        for task in tasks:
            proposed = {k: v for k, v in task.payload.items() if not k.startswith("_")}
            origin = _submission_for(proposed, task.division_code, sent)
            out.append(
                {
                    **plain(task),
                    "proposed": plain(proposed),
                    "current": origin["current"] if origin else None,
                    "link": origin["link"] if origin else None,
                    "app_no": origin["app_no"] if origin else None,
                }
            )
        return out

    def decide_many(
        self, who: Account, decisions: list[dict[str, Any]], allow_refusals: bool
    ) -> dict[str, Any]:
        """Decisions as the signed-in actor; govdb refuses another unit's task (JurisdictionError)."""
        report = self.db.decide_many(self.actor(who), decisions, allow_refusals=allow_refusals)
        return plain(report)

    # --- department and data bureau ------------------------------------------------------------

    def profile(self, who: Account, id_number: str, purpose: str) -> dict[str, Any]:
        """一人一档 where the department's policy grants `purpose` (audited, refusals too)."""
        if self.department(who) is None:
            raise AccessDeniedError(f"{who.unit_id} is not a department; files are read by departments")
        with self._audited:
            file = self.db.profile(id_number=id_number, actor=self.actor(who), purpose=purpose)
        return plain(file)

    def conflicts(self, who: Account) -> list[dict[str, Any]]:
        """The conflicts (比对) the signed-in department owns in its county (audited, masked)."""
        if self.department(who) is None:
            raise AccessDeniedError(f"{who.unit_id} is not a department; conflicts go to their owners")
        with self._audited:
            return [plain(c) for c in self.db.conflicts(actor=self.actor(who))]

    def resolve_conflict(
        self, who: Account, conflict_id: int, resolution: str, value: str | None, reason: str | None
    ) -> dict[str, Any]:
        """Settle one conflict once as its owning department: accept, keep or amend (govdb checks
        the owner, the county and that nobody settled it first)."""
        if self.department(who) is None:
            raise AccessDeniedError(f"{who.unit_id} is not a department; conflicts go to their owners")
        with self._audited, self._work:
            done = self.db.resolve_conflict(
                conflict_id, resolution, actor=self.actor(who), value=value, reason=reason
            )
        return plain(done)

    def promote(self, who: Account) -> dict[str, Any]:
        """Apply approved changes to master (the data bureau's action, or the background timer)."""
        if who.role != "admin":
            raise Forbidden(f"{who.username} is not a data-bureau administrator")
        return self.promote_now()

    def promote_now(self) -> dict[str, Any]:
        with self._work:
            return plain(self.db.promote())


def _submission_for(proposed: dict[str, Any], place: str | None, sent: list[dict[str, Any]]) -> dict | None:
    """The newest submission whose captured values hold everything the task proposes (a task
    carries no application number, so the hall matches on the proposed values and the place)."""
    if not proposed:
        return None
    for row in sent:
        captured = row["captured"] or {}
        if place and row["division_code"] and not str(place).startswith(str(row["division_code"])[:6]):
            continue
        if all(str(captured.get(k)) == str(v) for k, v in proposed.items()):
            return row
    return None
