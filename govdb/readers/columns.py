"""Headers as people write them -> standard column names, the same way for every file command.

A file's headers are read through the rules' column aliases (姓名 -> name, 身份证号 -> id_number,
rules/standards/columns.yaml) and a caller's mapping (`--map 统一社会信用代码=uscc`), which wins.
The rules come from above (the rulebook is a higher layer): callers pass the aliases in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from govdb.errors import InputFileError
from govdb.readers import FileRecords, read_records


@dataclass(frozen=True)
class ColumnPlan:
    """How one file's headers are read: header -> standard name, the standard columns found, warnings."""

    rename: dict[str, str]
    found: list[str]
    warnings: list[str] = field(default_factory=list)


def check_mapping(mapping: Mapping[str, str], targets: Collection[str]) -> None:
    """Every mapping names a known target (a standard column, or an id column the caller allows)."""
    for column, target in mapping.items():
        if target not in targets:
            raise InputFileError(
                f"--map {column}={target}: {target!r} is not a column govdb reads; "
                f"use one of {sorted(targets)}"
            )


def plan_columns(
    header: Sequence[str],
    aliases: Mapping[str, str],
    mapping: Mapping[str, str],
    *,
    where: str,
    standard: Collection[str],
    ids: Collection[str] = (),
    strict: bool = True,
) -> ColumnPlan:
    """Which header becomes which standard column. `mapping` wins over the aliases, a header already
    named like a standard column over an alias; a second header meaning the same column is kept
    under its own name, with a warning. `ids` are id columns a header may be named or mapped to
    (never an alias's target, never counted as a standard column). `strict` refuses a mapping that
    names no header of the file (off where one mapping serves two files). Warns when no standard
    column is found at all."""
    if strict:
        unknown = [c for c in mapping if c not in header]
        if unknown:
            raise InputFileError(
                f"{where}: --map names columns {unknown} that are not in the header {list(header)}"
            )
    rename: dict[str, str] = {}
    warnings: list[str] = []
    taken: dict[str, str] = {}  # standard name -> the header that holds it
    exact = [h for h in header if (h in standard or h in ids) and h not in mapping]
    by_alias = [h for h in header if h not in mapping and h not in exact]
    ordered = [(h, mapping[h]) for h in header if h in mapping] + [(h, h) for h in exact]
    ordered += [(h, aliases[h.strip()]) for h in by_alias if aliases.get(h.strip()) in standard]
    for column, target in ordered:
        if target in taken:
            warnings.append(
                f"{where}: column {column!r} also means {target!r}; {taken[target]!r} is read as {target} "
                f"(choose another with --map {column}={target})"
            )
            continue
        taken[target] = column
        if column != target:
            rename[column] = target
    # A header named like a target it lost to a mapping keeps its values under another name.
    names = set(header) | set(rename.values())
    for column in header:
        if column in taken and taken[column] != column and column not in rename:
            moved = f"{column}_unmapped"
            while moved in names:
                moved += "_"
            rename[column] = moved
            names.add(moved)
    found = [c for c in standard if c in taken]
    if not found:
        warnings.append(
            f"{where}: no standard column found in the header {list(header)}; name them with "
            f"--map HEADER=COLUMN (standard columns: {', '.join(standard)})"
        )
    return ColumnPlan(rename, found, warnings)


@dataclass(frozen=True)
class Table:
    """A file read for its columns: every readable record as text, headers as standard names."""

    frame: pl.DataFrame
    records: FileRecords
    plan: ColumnPlan
    header: list[str]  # as written


def read_table(
    path: Path,
    aliases: Mapping[str, str],
    mapping: Mapping[str, str],
    *,
    standard: Collection[str],
    ids: Collection[str] = (),
    strict: bool = True,
) -> Table:
    """Any supported file (see read_records) as one frame of text columns, renamed by `plan_columns`.

    Records the reader cannot parse are left out of the frame (their count is `records.bad`)."""
    records, _ = read_records(path)
    frame = records.text_frame()
    plan = plan_columns(
        frame.columns, aliases, mapping, where=str(path), standard=standard, ids=ids, strict=strict
    )
    return Table(frame.rename(plan.rename), records, plan, frame.columns)
