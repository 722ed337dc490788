"""Registered sources and the tokens that prove them (invariant 9).

A source named in the rules (`sources:` in the verification rules) gets a random 256-bit token
from the deployment (`govdb sources register NAME`); master keeps only a salted SHA-256 of it. An
ingest that presents the token is recorded as that source, and only such events can earn an
automatic pass. A department name typed on the command line proves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from govdb.base.clock import utcnow
from govdb.errors import AccessDeniedError, NotFoundError, StateError
from govdb.rulebook.loader import Rulebook
from govdb.store.engine import store_errors
from govdb.store.master import SourceCredential

TABLE = SourceCredential.__table__  # type: ignore[attr-defined]


def _digest(salt: str, token: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()


def _known(rules: Rulebook, name: str) -> None:
    if name not in rules.verification.sources:
        known = ", ".join(sorted(rules.verification.sources)) or "none"
        raise NotFoundError(
            f"source {name!r} is not registered in the verification rules (sources: {known}); "
            "add it under `sources:` with its department first"
        )


def register(master: Engine, rules: Rulebook, name: str) -> str:
    """A fresh token for a source of the rules; the previous token stops working."""
    _known(rules, name)
    token = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    with store_errors(master), master.begin() as conn:
        conn.execute(delete(TABLE).where(TABLE.c.source == name))
        conn.execute(
            insert(TABLE),
            [{"source": name, "salt": salt, "token_sha256": _digest(salt, token), "registered_at": utcnow()}],
        )
    return token


def authenticate(master: Engine, rules: Rulebook, name: str, token: str | None) -> str | None:
    """The source's name when `token` proves it, None for an unregistered source without a token;
    a wrong token, a token for a source without one, or a registered source's name without its
    token is refused."""
    if token is None:
        if name in rules.verification.sources:
            raise AccessDeniedError(
                f"source {name!r} is registered: its ingests must give its token (source_token= or "
                "GOVDB_SOURCE_TOKEN), so nobody else can send records in its name"
            )
        return None
    if not isinstance(token, str):
        raise AccessDeniedError(f"a source token is text, not {type(token).__name__}")
    _known(rules, name)
    with store_errors(master), master.connect() as conn:
        row = conn.execute(select(TABLE.c.salt, TABLE.c.token_sha256).where(TABLE.c.source == name)).first()
    if row is None or not hmac.compare_digest(row.token_sha256, _digest(row.salt, token.strip())):
        raise AccessDeniedError(
            f"the token given for source {name!r} is not its registered token; "
            "use the token `govdb sources register` issued last (registering again issues a new one)"
        )
    return name


def ingest_source(
    master: Engine, rules: Rulebook, name: str, token: str | None, options: Mapping[str, Any]
) -> str | None:
    """The source an ingest's token proves, or None; never one the caller names in the ingest's
    `options` (invariant 9)."""
    if "authenticated_source" in options:
        raise StateError(
            "authenticated_source is not an option: a source proves itself with its token "
            "(source_token=, or GOVDB_SOURCE_TOKEN), which `govdb sources register NAME` issues"
        )
    return authenticate(master, rules, name, token)
