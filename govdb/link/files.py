"""File mode of linkage: CSV or Parquet in and out (by extension), for reconciliation jobs.

`link_files` links an events file to a master file (one output row per event); `dedupe_file`
clusters the records of one file. Both read the standard columns as people wrote them (name,
gender, birth_date, id_number, phone, address), renamed first by `mapping` where headers differ.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from govdb.errors import InputFileError
from govdb.link.batch import LinkOutput, link_frames
from govdb.link.blocking import SkippedKey
from govdb.link.clusters import DedupeOutput, dedupe_frame
from govdb.link.features import ENTERPRISE_FIELDS, PERSON_FIELDS
from govdb.link.model import LinkModel
from govdb.readers import detect_encoding
from govdb.rulebook.models import MatchingRules

FORMATS = (".csv", ".parquet")


def read_records(path: Path) -> pl.DataFrame:
    """A CSV (UTF-8 or GB18030/GBK, every column as text) or Parquet file."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputFileError(f"{path}: linkage reads {' or '.join(FORMATS)} files; convert it or rename it")
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        data = path.read_bytes()
        encoding = detect_encoding(data)
        if encoding not in ("utf-8", "utf-8-sig"):
            data = data.decode(encoding).encode("utf-8")
        return pl.read_csv(io.BytesIO(data), infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read it as {suffix[1:]}: {exc}") from exc


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


def _mapping_for(frame: pl.DataFrame, mapping: Mapping[str, str]) -> dict[str, str]:
    return {column: target for column, target in mapping.items() if column in frame.columns}


def check_mapping(mapping: Mapping[str, str], frames: dict[str, pl.DataFrame], id_columns: set[str]) -> None:
    """Every mapped column exists in some file, and maps to a standard field or an id column."""
    allowed = set(PERSON_FIELDS) | set(ENTERPRISE_FIELDS) | {"division_code"} | id_columns
    for column, target in mapping.items():
        if target not in allowed:
            raise InputFileError(f"--map {column}={target}: {target!r} is not one of {sorted(allowed)}")
        if not any(column in frame.columns for frame in frames.values()):
            where = "; ".join(f"{name}: {frame.columns}" for name, frame in frames.items())
            raise InputFileError(f"--map {column}={target}: no file has a column {column!r} ({where})")


@dataclass
class LinkFileReport:
    events: int
    master: int
    candidates: int
    decisions: dict[str, int]
    seconds: dict[str, float]
    skipped: list[SkippedKey] = field(default_factory=list)


def link_files(
    events_path: Path,
    master_path: Path,
    out: Path,
    rules: MatchingRules,
    *,
    mapping: Mapping[str, str] | None = None,
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
    events = read_records(events_path)
    master = read_records(master_path)
    mapping = dict(mapping or {})
    check_mapping(mapping, {str(events_path): events, str(master_path): master}, {event_id, master_id})
    events = events.rename(_mapping_for(events, mapping))
    master = master.rename(_mapping_for(master, mapping))
    result = link_frames(
        events, master, rules, event_id=event_id, master_id=master_id, model=model, today=today,
        address_hint=address_hint,
    )  # fmt: skip
    write_records(result.links, out)
    report = LinkFileReport(
        events.height, master.height, result.candidates, result.counts(), result.seconds, result.skipped
    )
    return report, result


def dedupe_file(
    path: Path,
    out: Path,
    rules: MatchingRules,
    *,
    mapping: Mapping[str, str] | None = None,
    id_column: str = "record_id",
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> DedupeOutput:
    """Write one row per record of `path`: its id, cluster_id and cluster_size."""
    if out.suffix.lower() not in FORMATS:
        raise InputFileError(f"cannot write {out}: use an output name ending in {' or '.join(FORMATS)}")
    records = read_records(path)
    mapping = dict(mapping or {})
    check_mapping(mapping, {str(path): records}, {id_column})
    result = dedupe_frame(
        records.rename(_mapping_for(records, mapping)), rules, id_column=id_column, today=today,
        address_hint=address_hint,
    )  # fmt: skip
    write_records(result.clusters, out)
    return result
