"""The gazetteer: every division name with the short forms people write (广东 for 广东省, 南海 for
南海区, 桂城 and 桂城街 for 桂城街道, 花苑社区 for 花苑社区居委会, 凉山 for 凉山彝族自治州), and the names of
abolished or renamed counties, each leading to its division code. The address parser reads it.
"""

from __future__ import annotations

import functools
import re
import threading

import polars as pl

from govdb.standards.divisions import DATA, division_table

# Suffixes people leave out, longest first, per level.
_SUFFIXES = {
    1: ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市"),
    2: ("自治州", "地区", "盟", "市"),
    3: ("自治县", "自治旗", "林区", "新区", "区", "县", "市", "旗"),
    4: ("街道办事处", "街道", "镇", "乡"),
}
_VILLAGE_FORMS = (
    ("社区居民委员会", "社区"),
    ("居民委员会", ""),
    ("村民委员会", "村"),
    ("社区居委会", "社区"),
    ("居委会", ""),
    ("村委会", "村"),
    ("委会", ""),
)
_ETHNIC = re.compile(
    r"(蒙古|藏|回|维吾尔|苗|彝|壮|布依|朝鲜|满|侗|瑶|白|土家|哈尼|哈萨克|傣|黎|傈僳|佤|畲|高山|拉祜|水|东乡|"
    r"纳西|景颇|柯尔克孜|土|达斡尔|仫佬|羌|布朗|撒拉|毛南|仡佬|锡伯|阿昌|普米|塔吉克|怒|乌孜别克|俄罗斯|鄂温克|"
    r"德昂|保安|裕固|京|塔塔尔|独龙|鄂伦春|赫哲|门巴|珞巴|基诺|各)+族$"
)


def _short_forms(name: pl.Expr, level: int) -> list[pl.Expr]:
    """The short forms of division names of one level (null where a form does not apply): the name
    without its level's suffix (the longest that leaves two characters), an autonomous area's name
    without its ethnic groups too (凉山彝族自治州 -> 凉山彝族, 凉山), a street office's 街 form
    (石牌街道 -> 石牌街), a village committee's usual name."""
    length = name.str.len_chars()

    def cut(suffix: str, keep: str = "") -> pl.Expr:
        applies = name.str.ends_with(suffix) & (length - len(suffix) + len(keep) >= 2)
        return pl.when(applies).then(name.str.slice(0, length - len(suffix)) + keep)

    # pl.coalesce takes the first form that applies, in the longest-first order of the suffixes.
    forms = [name]
    suffixes = _SUFFIXES.get(level, ())
    if suffixes:
        short = pl.coalesce(cut(suffix) for suffix in suffixes)
        forms.append(short)
        autonomous = [s for s in suffixes if s.startswith("自治")]
        if level in (2, 3) and autonomous:
            ethnic = short.str.replace(_ETHNIC.pattern, "")
            by_autonomy = name.str.ends_with(autonomous[0])
            for suffix in autonomous[1:]:
                by_autonomy = by_autonomy | name.str.ends_with(suffix)
            forms.append(pl.when(by_autonomy & (ethnic.str.len_chars() >= 2)).then(ethnic))
    if level == 4:
        # A street office as people also write it (石牌街 for 石牌街道), so that the 街 is not read
        # as a road's after the short form (石牌 + 街华师社区).
        stem = pl.coalesce(cut("街道办事处"), cut("街道"))
        forms.append(pl.when(~stem.str.ends_with("街")).then(stem + "街"))
    if level == 5:
        forms.append(pl.coalesce(cut(suffix, keep) for suffix, keep in _VILLAGE_FORMS))
    return forms


_GAZETTEER_LOCK = threading.Lock()


def gazetteer() -> pl.DataFrame:
    """alias -> (code, level): every division name and short form, levels 1-3 MCA, 4-5 NBS.

    Built once per process (about a second); threads asking at the same time wait for that build.
    """
    with _GAZETTEER_LOCK:
        return _build_gazetteer()


@functools.cache
def _build_gazetteer() -> pl.DataFrame:
    table = division_table()
    usable = table.filter(
        ((pl.col("scheme") == "mca") & (pl.col("level") <= 3))
        | ((pl.col("scheme") == "nbs") & (pl.col("level") >= 4))
    ).filter(~pl.col("name").is_in(["市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"]))
    generic = ["街道", "社区", "城区", "新区", "开发区", "工业园区", "镇区", "居委会", "村委会"]
    schema = {"alias": pl.String, "code": pl.String, "level": pl.Int8}

    def aliases(entries: pl.DataFrame) -> pl.DataFrame:
        frame = pl.concat(
            [
                part.select(
                    pl.concat_list(_short_forms(pl.col("name"), level)).alias("alias"), "code", "level"
                )
                for (level,), part in entries.group_by("level")
            ]
        )
        frame = frame.explode("alias").drop_nulls("alias").select(*schema)
        return frame.filter(~pl.col("alias").is_in(generic) & (pl.col("alias").str.len_chars() >= 2)).unique()

    current = aliases(usable.select("code", "name", pl.col("level").cast(pl.Int8)))
    # Names of abolished or renamed counties lead to the county that took them over (江干区 ->
    # 上城区, 南海市 -> 南海区), from the shipped change history; a name still in use means the
    # current division, so history only adds names nobody uses now.
    history = aliases(
        pl.read_parquet(DATA / "historical_names.parquet").select(
            "code", "name", pl.lit(3, pl.Int8).alias("level")
        )
    ).join(current, on="alias", how="anti")
    return pl.concat([current, history])
