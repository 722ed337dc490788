"""The shipped administrative division table and lookups on it.

Levels 1-4 come from the Ministry of Civil Affairs table (scheme "mca", 2025-12-31); townships and
villages from the statistical codes (scheme "nbs", 2023 edition, 12-digit village codes). A
record's division code is the NBS village code when known; jurisdiction is a code prefix.
Rebuild with `python tools/divisions_build.py`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from govdb.errors import NotFoundError

DATA = Path(__file__).with_name("data")
LEVEL_NAMES = {1: "province", 2: "city", 3: "county", 4: "township", 5: "village"}


@dataclass(frozen=True)
class DivisionInfo:
    """One division: its code, name, level (1 province .. 5 village), parent and code scheme."""

    code: str
    name: str
    level: int
    parent_code: str | None
    scheme: str


@functools.cache
def division_table() -> pl.DataFrame:
    """Every division row (about 700k), read once per process from the shipped parquet."""
    return pl.read_parquet(DATA / "divisions.parquet")


@functools.cache
def region_codes() -> pl.Series:
    """Every 6-digit region code that ever existed (current, 2023 statistical, historical)."""
    return pl.read_parquet(DATA / "region_codes.parquet").get_column("code")


@functools.cache
def division_metadata() -> dict[str, Any]:
    """Version, sources and counts of the shipped table."""
    meta: dict[str, Any] = json.loads((DATA / "divisions.meta.json").read_text(encoding="utf-8"))
    return meta


@functools.cache
def _by_code(scheme: str) -> dict[str, DivisionInfo]:
    # Levels 1-3 exist only as MCA rows; a 9-digit code may mean different townships in the two
    # schemes (510115004 is 涌泉街道 for MCA, 天府街道 for NBS), so the preferred scheme wins.
    table = division_table().sort(pl.col("scheme") == scheme)
    return {
        row[0]: DivisionInfo(*row)
        for row in table.select("code", "name", "level", "parent_code", "scheme").iter_rows()
    }


def significant_prefix(code: str) -> str:
    """The code without level padding: 440000 -> 44, 440600 -> 4406, 440605011000 -> 440605011."""
    code = code.strip()
    if len(code) == 12 and code.endswith("000"):
        code = code[:9]
    if len(code) == 9 and code.endswith("000"):
        code = code[:6]
    if len(code) == 6:
        if code.endswith("0000"):
            return code[:2]
        if code.endswith("00"):
            return code[:4]
    return code


def lookup(code: str, *, scheme: str = "nbs") -> DivisionInfo:
    """The division with this code (6-, 9- or 12-digit; 12-digit padded forms are accepted).

    Townships are read in `scheme` when both schemes have the code: NBS by default, the scheme
    of record division codes in govdb (village codes hang off NBS townships).
    """
    table = _by_code(scheme)
    info = table.get(code) or table.get(_pad(significant_prefix(code)))
    if info is None:
        raise NotFoundError(
            f"division code {code!r} is not in the division table ({division_metadata()['version']}); "
            "use a 6-digit county, 9-digit township or 12-digit village code"
        )
    return info


def _pad(prefix: str) -> str:
    return prefix.ljust(6, "0") if len(prefix) < 6 else prefix


def is_known(code: str) -> bool:
    """Whether the code is in the table."""
    try:
        lookup(code)
    except NotFoundError:
        return False
    return True


def ancestors(code: str) -> list[DivisionInfo]:
    """The division and every division above it, village first, province last."""
    chain = [lookup(code)]
    while chain[-1].parent_code:
        chain.append(lookup(chain[-1].parent_code))
    return chain


def children(code: str, *, scheme: str | None = None) -> list[DivisionInfo]:
    """Divisions directly under `code` (townships under a county come in both schemes)."""
    parent = lookup(code).code
    rows = division_table().filter(pl.col("parent_code") == parent)
    if scheme:
        rows = rows.filter(pl.col("scheme") == scheme)
    return [
        DivisionInfo(*r) for r in rows.select("code", "name", "level", "parent_code", "scheme").iter_rows()
    ]


def subtree(code: str, *, scheme: str = "nbs") -> pl.DataFrame:
    """Every division under `code` in one scheme (plus the division itself)."""
    prefix = significant_prefix(lookup(code).code)
    table = division_table()
    return (
        table.filter(
            pl.col("code").str.starts_with(prefix) & ((pl.col("scheme") == scheme) | (pl.col("level") <= 3))
        )
        .unique("code", keep="first")
        .sort("code")
    )


def find_by_name(name: str, *, level: int | None = None) -> list[DivisionInfo]:
    """Divisions named exactly `name` (朝阳区 gives two: Beijing's and Changchun's)."""
    rows = division_table().filter(pl.col("name") == name)
    if level is not None:
        rows = rows.filter(pl.col("level") == level)
    return [
        DivisionInfo(*r) for r in rows.select("code", "name", "level", "parent_code", "scheme").iter_rows()
    ]


def covers(unit_code: str, record_code: str | None) -> bool:
    """Whether a unit whose jurisdiction is `unit_code` covers a record in `record_code`."""
    if not record_code:
        return False
    return significant_prefix(record_code).startswith(significant_prefix(unit_code))
