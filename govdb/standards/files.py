"""File mode of the standards: read any supported file, standardize its standard columns, write it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from govdb.errors import InputFileError
from govdb.readers.columns import check_mapping, read_table
from govdb.standards import STANDARD_COLUMNS, standardize

OUTPUT_FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class StandardizeFileReport:
    rows: int
    unreadable: int
    columns: list[str]
    issues: pl.DataFrame  # column, reason, rows
    warnings: list[str] = field(default_factory=list)  # e.g. no standard column found


def standardize_file(
    source: Path,
    out: Path,
    *,
    rename: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
    address_hint: str | None = None,
    today: dt.date | None = None,
) -> StandardizeFileReport:
    """Keep every input column; add `<column>_std` and `<column>_issues` for each standard column.

    Rows the reader cannot parse are not written (there is no value to standardize); their count
    is reported. Headers are read through `aliases` (the rules' column aliases, 姓名 -> name) and
    `rename` (a caller's mapping, 统一社会信用代码=uscc), which wins.
    """
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise InputFileError(
            f"cannot write {str(out)!r}: use an output name ending in {' or '.join(OUTPUT_FORMATS)}"
        )
    rename = dict(rename or {})
    check_mapping(rename, STANDARD_COLUMNS)
    table = read_table(source, aliases or {}, rename, standard=STANDARD_COLUMNS)
    if not table.records.lines:
        raise InputFileError(f"{source}: no readable rows")
    frame = table.frame
    std = standardize(frame, today=today, address_hint=address_hint)
    present = [c for c in STANDARD_COLUMNS if c in frame.columns]
    issues = (
        pl.concat(
            [
                std.select(pl.lit(c).alias("column"), pl.col(f"{c}_issues").str.split(";").alias("reason"))
                for c in present
                if f"{c}_issues" in std.columns
            ]
            or [pl.DataFrame(schema={"column": pl.String, "reason": pl.List(pl.String)})]
        )
        .explode("reason")
        .filter(pl.col("reason") != "")
        .group_by("column", "reason")
        .len("rows")
        .sort("rows", descending=True)
    )
    try:
        if out.suffix.lower() == ".csv":
            std.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d")).write_csv(out)
        else:
            std.write_parquet(out)
    except OSError as exc:
        raise InputFileError(
            f"cannot write {str(out)!r}: {exc.strerror or exc}; choose a writable --out"
        ) from exc
    return StandardizeFileReport(std.height, len(table.records.bad), present, issues, table.plan.warnings)
