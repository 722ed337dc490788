import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "govdb").rglob("__init__.py")}
    assert found | {"govdb._rules"} == listed


def test_division_table_ships_with_its_metadata() -> None:
    data = REPO / "govdb" / "standards" / "data"
    assert {p.name for p in data.iterdir()} >= {
        "divisions.parquet",
        "divisions.meta.json",
        "township_crosswalk.parquet",
    }
