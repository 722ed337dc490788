"""The gazetteer: division names and the short forms people write, each to its division."""

import polars as pl
import pytest

from govdb.standards.divisions import find_by_name
from govdb.standards.gazetteer import gazetteer


@pytest.mark.parametrize(
    ("name", "alias"),
    [
        ("广东省", "广东"),
        ("南海区", "南海"),
        ("桂城街道", "桂城"),
        ("石牌街道", "石牌街"),
        ("凉山彝族自治州", "凉山彝族"),
        ("凉山彝族自治州", "凉山"),
        ("新疆维吾尔自治区", "新疆"),
        ("花苑社区居委会", "花苑社区"),
        ("夏西村民委员会", "夏西村"),
    ],
)
def test_the_gazetteer_knows_short_forms(name: str, alias: str) -> None:
    codes = {d.code for d in find_by_name(name)}
    found = set(gazetteer().filter(pl.col("alias") == alias).get_column("code"))
    assert codes and codes & found, (name, alias)


def test_threads_asking_at_once_share_one_build() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(lambda _: gazetteer(), range(4)))
    assert all(table is built[0] for table in built)
