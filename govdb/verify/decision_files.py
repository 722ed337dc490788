"""Decisions from a file (CSV, TSV, XLSX, Parquet or JSON Lines) for one batch.

Columns: task_id, outcome, reason, amendments. In a JSON Lines file `amendments` is an object;
in a table it is JSON object text (`{"phone": "13800138000"}`). Any problem names the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from govdb.errors import InputFileError
from govdb.readers import read_records

COLUMNS = ("task_id", "outcome", "reason", "amendments")


def read_decisions(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(decisions, the file line of each) as `GovDB.decide_many` takes them; nothing is guessed:
    an unreadable line, an unknown column or bad amendments refuse the whole file."""
    records, _ = read_records(path)
    if records.bad:
        first = records.bad[0]
        raise InputFileError(f"{path} line {first.line}: {first.reason}; fix the line and decide again")
    unknown = [c for c in records.columns if c not in COLUMNS] if records.columns else []
    if unknown:
        raise InputFileError(f"{path}: unknown column(s) {unknown}; a decisions file has {list(COLUMNS)}")
    decisions: list[dict[str, Any]] = []
    for line, payload in zip(records.lines, records.payload_list(), strict=True):
        extra = sorted(set(payload) - set(COLUMNS))
        if extra:
            raise InputFileError(f"{path} line {line}: unknown field(s) {extra}; use {list(COLUMNS)}")
        amendments = payload.get("amendments")
        if isinstance(amendments, str):
            text = amendments.strip()
            try:
                amendments = json.loads(text) if text else {}
            except json.JSONDecodeError:
                amendments = None
            if not isinstance(amendments, dict):
                raise InputFileError(
                    f"{path} line {line}: amendments {text!r} are not a JSON object such as "
                    '{"phone": "13800138000"}'
                )
        reason = payload.get("reason")
        decisions.append(
            {
                "task_id": payload.get("task_id"),
                "outcome": payload.get("outcome"),
                "reason": reason if reason not in ("", None) else None,
                "amendments": amendments or {},
            }
        )
    if not decisions:
        raise InputFileError(f"{path} holds no decisions; columns: {list(COLUMNS)}")
    return decisions, list(records.lines)
