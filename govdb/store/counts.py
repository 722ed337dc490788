"""Row counts of the main tables of both stores, for reports (`govdb status`, the demo)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from govdb.store import events as ev
from govdb.store import master as ma

MASTER_TABLES = (ma.Person, ma.Enterprise, ma.Place, ma.Credential, ma.FieldHistory, ma.Conflict, ma.Issuance)
EVENT_TABLES = (ev.Event, ev.Quarantine, ev.Proposal, ev.Task)


def table_counts(master: Engine, events: Engine) -> dict[str, int]:
    """Table name -> rows, master's tables (the audit log included) then the event store's."""
    out: dict[str, int] = {}
    for engine, tables in ((master, (*MASTER_TABLES, ma.AuditLog)), (events, EVENT_TABLES)):
        with engine.connect() as conn:
            for model in tables:
                table = model.__table__  # type: ignore[union-attr]  # SQLModel declares no __table__
                out[table.name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return out
