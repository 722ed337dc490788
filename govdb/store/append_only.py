"""Database triggers that make a table append-only, on SQLite and PostgreSQL.

The audit log, its subjects, its head and the checkpoints refuse UPDATE and DELETE (and TRUNCATE
on PostgreSQL) whoever connects; the head may only move forward. Dropping a trigger needs DDL
rights, which the application role should not hold on PostgreSQL (`audit_role_sql`).

A migration that rebuilds one of these tables on SQLite (alembic batch mode) drops its triggers:
call `create` again after it.
"""

from __future__ import annotations

from collections.abc import Callable

APPEND_ONLY = ("auditlog", "auditsubject", "auditcheckpoint", "rulesapplied")
FORWARD_ONLY = {"audithead": "seq"}  # may be updated, but this column only grows
# SQLite's INSERT OR REPLACE deletes a row clashing on these without firing DELETE triggers, so an
# insert that would replace one is refused before it happens.
UNIQUE_KEYS = {
    "auditlog": (("seq",), ("hash",)),
    "auditsubject": (("seq", "subject_kind", "subject_id"),),
    "audithead": (("id",),),
    "auditcheckpoint": (("seq",),),
    "rulesapplied": (("id",),),
}


def _sqlite(table: str, forward: str | None) -> list[str]:
    message = f"{table} is append-only: entries are never changed or removed"
    sql = [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
    ]
    if forward:
        sql.append(
            f"CREATE TRIGGER IF NOT EXISTS {table}_forward_only BEFORE UPDATE ON {table} "
            f"WHEN NEW.{forward} <= OLD.{forward} OR NEW.id <> OLD.id "
            f"BEGIN SELECT RAISE(ABORT, '{table} only moves forward'); END"
        )
    else:
        sql.append(
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    keys = UNIQUE_KEYS.get(table, ())
    if keys:
        match = " OR ".join("(" + " AND ".join(f"{c} = NEW.{c}" for c in cols) + ")" for cols in keys)
        sql.append(
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {match}) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    return sql


def _postgres(table: str, forward: str | None) -> list[str]:
    message = f"{table} is append-only: entries are never changed or removed"
    guard = f"govdb_{table}_append_only"
    update_check = (
        f"IF TG_OP = 'UPDATE' AND NEW.{forward} > OLD.{forward} AND NEW.id = OLD.id THEN RETURN NEW; END IF;"
        if forward
        else ""
    )
    return [
        f"CREATE OR REPLACE FUNCTION {guard}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{update_check} RAISE EXCEPTION '{message}' USING ERRCODE = 'insufficient_privilege'; END $$",
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {guard}()",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {guard}()",
    ]


def statements(dialect: str, tables: tuple[str, ...]) -> list[str]:
    """The DDL that makes `tables` append-only (or forward-only) on `dialect`."""
    build: Callable[[str, str | None], list[str]] = _postgres if dialect == "postgresql" else _sqlite
    out: list[str] = []
    for table in tables:
        out += build(table, FORWARD_ONLY.get(table))
    return out


MASTER_AUDIT = ("auditlog", "auditsubject", "audithead", "rulesapplied")
EVENTS_AUDIT = ("auditcheckpoint",)


def _identifier(name: str, what: str) -> str:
    if not name or not name.replace("_", "").isalnum() or not name.isascii() or name[0].isdigit():
        raise ValueError(
            f"{what} {name!r} must be ASCII letters, digits and underscores, not starting with a digit"
        )
    return name


def audit_role_sql(role: str, schema: str = "public", store: str = "both") -> list[str]:
    """GRANTs for an application role that can append to the audit tables but never change them.

    Run as the owner of the stores, for the schema of each store (`store` = master, events or
    both when one schema holds both); connect govdb as `role`. The role must not own the tables
    (an owner may drop triggers); tables later migrations add are granted by default privileges."""
    role, schema = _identifier(role, "role name"), _identifier(schema, "schema name")
    if store not in ("master", "events", "both"):
        raise ValueError(f"store {store!r} is master, events or both")
    audit = (MASTER_AUDIT if store != "events" else ()) + (EVENTS_AUDIT if store != "master" else ())
    frozen = [t for t in audit if t not in FORWARD_ONLY]
    defaults = f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT"
    sql = [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"{defaults} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"{defaults} USAGE, SELECT ON SEQUENCES TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(f'{schema}.{t}' for t in frozen)} FROM {role}",
    ]
    if store != "events":
        sql.append(f"REVOKE DELETE, TRUNCATE ON {schema}.audithead FROM {role}")
    sql.append(f"REVOKE TRIGGER, REFERENCES ON ALL TABLES IN SCHEMA {schema} FROM {role}")
    return sql
