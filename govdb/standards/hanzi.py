"""Character folding for names: traditional and regional variants to simplified, look-alikes to
one canonical form, so 張偉 and 张伟, or 王丽 and 玉丽 copied from a poor scan, compare as variants.

Both tables ship in data/: traditional.parquet (rebuilt by `python tools/hanzi_build.py`
from OpenCC's dictionaries) and lookalikes.tsv (curated here).
"""

from __future__ import annotations

import functools
from pathlib import Path

import polars as pl

DATA = Path(__file__).with_name("data")


@functools.cache
def char_folds() -> dict[str, str]:
    """Character -> its folded form (only characters that change)."""
    folds: dict[str, str] = dict(pl.read_parquet(DATA / "traditional.parquet").iter_rows())
    for line in (DATA / "lookalikes.tsv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        canonical, *others = line.split("\t")
        for char in others:
            folds[char] = canonical
    # A traditional character whose simplified form is a look-alike member folds to the canonical.
    return {char: folds.get(target, target) for char, target in folds.items()}


@functools.cache
def fold_table() -> pl.DataFrame:
    folds = char_folds()
    return pl.DataFrame({"_char": list(folds), "_folded": list(folds.values())})


def fold_names(names: pl.Series) -> pl.Series:
    """Each character of the names folded, inside each name's list of characters (cheap for one
    name and for a million)."""
    folds = fold_table()
    char = pl.element()
    return (
        names.str.split("")
        .list.eval(char.replace(folds.get_column("_char"), folds.get_column("_folded")))
        .list.join("")
        .rename(names.name)
    )
