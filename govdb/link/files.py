"""File mode of linkage, for reconciliation jobs: any file ingest reads in, CSV or Parquet out.

`link_files` links an events file to a master file (one output row per event); `dedupe_file`
clusters the records of one file. Both read the standard columns as people wrote them (name,
gender, birth_date, id_number, phone, address) through the shared reader (govdb.readers.columns):
headers by the rules' column aliases (`aliases`, 姓名 -> name) and `mapping`, which wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from govdb.errors import InputFileError
from govdb.link.batch import LinkOutput, link_frames
from govdb.link.blocking import SkippedKey
from govdb.link.clusters import DedupeOutput, dedupe_frame
from govdb.link.features import ENTERPRISE_FIELDS, PERSON_FIELDS
from govdb.link.model import LinkModel
from govdb.readers.columns import check_mapping as check_targets
from govdb.readers.columns import read_table
from govdb.rulebook.models import MatchingRules

FORMATS = (".csv", ".parquet")


def read_people(
    path: Path,
    aliases: Mapping[str, str],
    mapping: Mapping[str, str],
    ids: Collection[str],
    warnings: list[str],
) -> tuple[pl.DataFrame, list[str]]:
    """A file of person records as text columns, headers read as the standard fields (the shared
    reader of every file command), and its header as written; warnings (e.g. no standard column
    found) are added to `warnings`."""
    table = read_table(
        path, aliases, mapping, standard=(*PERSON_FIELDS, "division_code"), ids=ids, strict=False
    )
    warnings += table.plan.warnings
    return table.frame, table.header


def write_records(frame: pl.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputFileError(f"cannot write {path}: use an output name ending in {' or '.join(FORMATS)}")
    try:
        if suffix == ".parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
    except OSError as exc:
        raise InputFileError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}; choose a writable --out"
        ) from exc


def check_mapping(mapping: Mapping[str, str], headers: dict[str, list[str]], id_columns: set[str]) -> None:
    """Every mapped column exists in some file, and maps to a standard field or an id column."""
    allowed = set(PERSON_FIELDS) | set(ENTERPRISE_FIELDS) | {"division_code"} | id_columns
    check_targets(mapping, allowed)
    for column, target in mapping.items():
        if not any(column in header for header in headers.values()):
            where = "; ".join(f"{name}: {header}" for name, header in headers.items())
            raise InputFileError(f"--map {column}={target}: no file has a column {column!r} ({where})")


@dataclass
class LinkFileReport:
    events: int
    master: int
    candidates: int
    decisions: dict[str, int]
    seconds: dict[str, float]
    skipped: list[SkippedKey] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a file with no standard column


def link_files(
    events_path: Path,
    master_path: Path,
    out: Path,
    rules: MatchingRules,
    *,
    mapping: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
    event_id: str = "event_id",
    master_id: str = "person_id",
    model: LinkModel | None = None,
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> tuple[LinkFileReport, LinkOutput]:
    """Link every event of one file to the master file; write event_id, person_id,
    match_probability, match_weight, decision and explanation (JSON) per event."""
    if out.suffix.lower() not in FORMATS:
        raise InputFileError(f"cannot write {out}: use an output name ending in {' or '.join(FORMATS)}")
    mapping, warnings = dict(mapping or {}), list[str]()
    ids = {event_id, master_id}
    events, events_header = read_people(events_path, aliases or {}, mapping, ids, warnings)
    master, master_header = read_people(master_path, aliases or {}, mapping, ids, warnings)
    check_mapping(mapping, {str(events_path): events_header, str(master_path): master_header}, ids)
    result = link_frames(
        events, master, rules, event_id=event_id, master_id=master_id, model=model, today=today,
        address_hint=address_hint,
    )  # fmt: skip
    write_records(result.links, out)
    report = LinkFileReport(
        events.height, master.height, result.candidates, result.counts(), result.seconds, result.skipped,
        warnings,
    )  # fmt: skip
    return report, result


def dedupe_file(
    path: Path,
    out: Path,
    rules: MatchingRules,
    *,
    mapping: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
    id_column: str = "record_id",
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> DedupeOutput:
    """Write one row per record of `path`: its id, cluster_id and cluster_size."""
    if out.suffix.lower() not in FORMATS:
        raise InputFileError(f"cannot write {out}: use an output name ending in {' or '.join(FORMATS)}")
    mapping, warnings = dict(mapping or {}), list[str]()
    records, header = read_people(path, aliases or {}, mapping, {id_column}, warnings)
    check_mapping(mapping, {str(path): header}, {id_column})
    result = dedupe_frame(records, rules, id_column=id_column, today=today, address_hint=address_hint)
    write_records(result.clusters, out)
    result.warnings = warnings
    return result
