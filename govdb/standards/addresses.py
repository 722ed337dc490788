"""Addresses -> division codes down to village level, the remaining text, a confidence and a status.

Every division name in the shipped table, with the short forms people write (the gazetteer, in
gazetteer.py), goes into one Aho-Corasick automaton
(polars' `str.extract_many` / `str.find_many`), which finds every name in every address in one
pass. Each match is a candidate division; a candidate is supported by the other matches that are
its ancestors (and by an optional hint, such as the service hall's county). The best-supported,
deepest candidate wins; when candidates in different places are equally supported the address is
honestly `ambiguous` (朝阳区 alone is in Beijing and in Changchun). Townships and villages must be
supported by a matched ancestor or the hint: their short names are too common to trust alone.
A name that is only part of the text is not a candidate: one followed by a road word (南海大道,
北京路: see `ROAD_SUFFIXES`), one named after a lower-level division was already named (the
南海 of 桂城街道桂一社区南海大道 is the road's, not the county), and an unsupported one followed by
a township or village word (the 新昌 of 兰州市秦川镇新昌村: see `PART_SUFFIXES`).
Work is done once per distinct address.
"""

from __future__ import annotations

import functools
import re

import polars as pl

from govdb.standards.divisions import division_table
from govdb.standards.gazetteer import gazetteer
from govdb.standards.house_numbers import arabic_house_numbers, split_house_numbers

# Words that make the division name right before them part of a road's name (南海大道, 北京路,
# 中山街): the name is then text, unless a division under it is named right after it (唐山路南区,
# 东莞道滘镇, a township followed by its village 路口村).
ROAD_SUFFIXES = ("大道", "大街", "大马路", "马路", "公路", "路", "街", "道", "巷", "胡同", "弄")
ROAD_AHEAD = re.compile("|".join(ROAD_SUFFIXES))
# Words that make a province, city or county name right before them possibly the start of a
# township's or a village's name (新昌村, 凤凰乡, 张家口社区): with the same exception, such a name
# is a candidate only when supported (an ancestor named before it, or the hint).
PART_SUFFIXES = ("镇", "乡", "村", "社区", "居委会")
PART_AHEAD = re.compile("|".join(PART_SUFFIXES))


@functools.cache
def _upper_gazetteer() -> pl.DataFrame:
    return gazetteer().filter(pl.col("level") <= 3)


@functools.cache
def _upper_patterns() -> list[str]:
    return _upper_gazetteer().get_column("alias").unique().sort().to_list()


def _match(distinct: pl.DataFrame, names: pl.DataFrame, patterns: list[str]) -> pl.DataFrame:
    """Every (address, alias, start, end, code, level) where a division name occurs in an address."""
    if not patterns or distinct.is_empty():
        return pl.DataFrame(
            schema={
                "aid": pl.UInt32,
                "alias": pl.String,
                "start": pl.Int64,
                "end": pl.Int64,
                "code": pl.String,
                "level": pl.Int8,
            }
        )
    return (
        distinct.lazy()
        .with_columns(
            pl.col("address").str.extract_many(patterns, overlapping=True).alias("alias"),
            pl.col("address").str.find_many(patterns, overlapping=True).alias("start"),
        )
        .explode("alias", "start")
        .drop_nulls("alias")
        .with_columns(
            pl.col("start").cast(pl.Int64),
            (pl.col("start").cast(pl.Int64) + pl.col("alias").str.len_bytes().cast(pl.Int64)).alias("end"),
        )
        .join(names.lazy(), on="alias")
        .select("aid", "alias", "start", "end", "code", "level")
        .collect()
    )


def _prefix(code: pl.Expr, level: pl.Expr) -> pl.Expr:
    """The significant prefix of a code at its level (44, 4406, 440605, 440605011, 440605011001)."""
    width = (
        pl.when(level == 1).then(2).when(level == 2).then(4).when(level == 3).then(6).when(level == 4).then(9)
    )
    return code.str.slice(0, width.otherwise(12))


def parse_addresses(addresses: pl.Series, *, hint: str | None = None) -> pl.DataFrame:
    """One row per input address: division_code, division_level, address_rest, address_status,
    address_confidence, and the province/city/county/township/village codes of the match.

    `hint` is a division code known to contain the address (the service hall's county); it
    supports candidates under it and so resolves names that exist in several places.

    Addresses are parsed once per distinct head: the address without its house number (see
    `house_numbers.split_house_numbers`), so 1M addresses in a few thousand villages are a few
    thousand parses.
    """
    return parse_normalized(normalize_addresses(addresses), hint=hint)


# Text made only of these (printable ASCII but the space, and the unified CJK ideographs) is already
# in NFKC and has no whitespace.
_NORMAL_TEXT = r"[^\x21-\x7E\x{4E00}-\x{9FFF}]"


def normalize_addresses(addresses: pl.Series) -> pl.Series:
    """NFKC (full-width digits and letters) and no whitespace: the form addresses are parsed in.

    Only the addresses with some other character go through NFKC, a small share in practice.
    """
    text = addresses.cast(pl.String)
    odd = text.str.contains(_NORMAL_TEXT).fill_null(False).arg_true()
    if odd.is_empty():
        return text
    out = text.clone()
    out.scatter(odd, text.gather(odd).str.normalize("NFKC").str.replace_all(r"\s+", ""))
    return out


def parse_normalized(text: pl.Series, *, hint: str | None = None) -> pl.DataFrame:
    """`parse_addresses` for addresses already through `normalize_addresses`."""
    split = split_house_numbers(pl.DataFrame({"address": text}))
    lookup = _lookup(split.get_column("head"), hint)
    out = split.join(lookup, left_on="head", right_on="address", how="left", maintain_order="left")
    return out.select(
        pl.exclude("head", "tail", "address_rest", "address_status", "address_confidence"),
        (pl.col("address_rest") + pl.col("tail")).alias("address_rest"),
        pl.col("address_status").fill_null("unresolved"),
        pl.col("address_confidence").fill_null(0.0),
    ).select(*PARSED_COLUMNS)


PARSED_COLUMNS = (
    "division_code",
    "division_level",
    "address_rest",
    "address_status",
    "address_confidence",
    "province_code",
    "city_code",
    "county_code",
    "township_code",
    "village_code",
)


# What a house number is made of: it never starts a division name, and (bar the names in
# `_names_into_house_numbers`) no division name reaches into it.
def _lookup(texts: pl.Series, hint: str | None) -> pl.DataFrame:
    """Distinct non-empty normalized addresses -> one parsed row each, keyed by `address`."""
    distinct = pl.DataFrame({"address": texts}).unique().drop_nulls().filter(pl.col("address") != "")
    # Chunks keep the intermediate frames (about seven name matches per address) cache-sized.
    return pl.concat(
        [
            _parse_distinct(distinct.slice(start, CHUNK).with_row_index("aid"), hint)
            for start in range(0, max(distinct.height, 1), CHUNK)
        ]
    )


CHUNK = 200_000


def _parse_distinct(distinct: pl.DataFrame, hint: str | None) -> pl.DataFrame:
    """Parse distinct addresses (columns aid, address) into one lookup row each."""
    upper = _match(distinct, _upper_gazetteer(), _upper_patterns())
    upper = pl.concat([upper, _townships(distinct, upper, hint)])
    spans = _outermost(upper.with_columns(_prefix(pl.col("code"), pl.col("level")).alias("prefix")))
    found = _found(distinct, spans)
    scored = _trusted(_with_hint(_supported(found), hint))
    result = _resolved(distinct, _winners(scored))
    result = arabic_house_numbers(_villages(result)).with_columns(
        *_levels(pl.col("division_code"), pl.col("division_level"))
    )
    return result.select("address", *PARSED_COLUMNS)


def _outermost(spans: pl.DataFrame) -> pl.DataFrame:
    """The spans not inside another: a name inside a longer name is not a match (朝阳 inside
    朝阳区, 山市 inside 佛山市), so keep the spans not covered by an earlier-starting or longer one."""
    # Sorted by (address, start, longest first), a span is covered when an earlier one in the same
    # address reaches at least as far; aid and end share one integer so one cum_max does it.
    kept = (
        spans.select("aid", "start", "end")
        .unique()
        .sort("aid", "start", "end", descending=[False, False, True])
        .with_columns(
            (pl.col("aid").cast(pl.Int64) * (1 << 32) + pl.col("end")).cum_max().shift(1).alias("reach")
        )
        .filter(
            pl.col("reach").is_null()
            | (pl.col("reach") // (1 << 32) != pl.col("aid").cast(pl.Int64))
            | (pl.col("reach") % (1 << 32) < pl.col("end"))
        )
        .drop("reach")
    )
    return spans.join(kept, on=["aid", "start", "end"], how="semi")


def _found(distinct: pl.DataFrame, spans: pl.DataFrame) -> pl.LazyFrame:
    """The divisions each address names, once each (where first named)."""
    # The same text naming a county and a village means the county.
    top_level = spans.group_by("aid", "start", "end").agg(pl.col("level").min())
    named = _names_in_text(
        distinct, spans, spans.join(top_level, on=["aid", "start", "end", "level"], how="semi")
    )
    return (
        named
        # A division named twice counts where it is first named (南海区 ... 南海区人民政府).
        .sort("start")
        .unique(["aid", "code"], keep="first", maintain_order=False)
        .select("aid", "code", "level", "prefix", "end", "start", "alias", "part")
        .lazy()
    )


def _supported(found: pl.LazyFrame) -> pl.LazyFrame:
    """Each candidate's support: its ancestors named before it, found level by level with equi-joins."""
    supports = []
    for level, width in ((1, 2), (2, 4), (3, 6), (4, 9)):
        ancestors = found.filter(pl.col("level") == level).select(
            "aid", pl.col("prefix").alias("key"), pl.col("end").alias("end_a")
        )
        supports.append(
            found.filter(pl.col("level") > level)
            .select("aid", "code", "start", pl.col("code").str.slice(0, width).alias("key"))
            .join(ancestors, on=["aid", "key"])
            .filter(pl.col("end_a") <= pl.col("start"))
            .select("aid", "code", pl.lit(level, pl.Int8).alias("level_a"), "end_a")
        )
    pairs = (
        pl.concat(supports)
        .group_by("aid", "code")
        .agg(
            pl.col("level_a").n_unique().alias("support"),
            pl.col("level_a").max().alias("nearest"),
            pl.col("end_a").max().alias("end_a"),
        )
    )
    return found.join(pairs, on=["aid", "code"], how="left").with_columns(
        pl.col("support").fill_null(0),
        pl.col("nearest").fill_null(0),
        pl.max_horizontal("end", pl.col("end_a").fill_null(0)).alias("chain_end"),
        pl.lit(False).alias("hinted"),
    )


def _with_hint(scored: pl.LazyFrame, hint: str | None) -> pl.LazyFrame:
    """The hint counts as matched ancestors at its own levels. Places outside it stay candidates
    when the address names their own county (a resident of another province)."""
    if not hint:
        return scored
    hint_prefix = hint.rstrip("0") if len(hint) == 6 else hint
    hint_levels = {2: 1, 4: 2, 6: 3, 9: 4, 12: 5}.get(len(hint_prefix), 0)
    in_hint = pl.col("prefix").str.starts_with(hint_prefix)
    return scored.with_columns(
        pl.when(in_hint).then(pl.col("support") + hint_levels).otherwise(pl.col("support")).alias("support"),
        in_hint.alias("hinted"),
    )


def _trusted(scored: pl.LazyFrame) -> pl.LazyFrame:
    """Township and village names are too common to trust alone: they need their county (or, in a
    city without counties such as 东莞, their city) before them, or the hint."""
    countyless = pl.col("code").str.slice(4, 2) == "00"
    return scored.filter(
        (pl.col("level") <= 3)
        | pl.col("hinted")
        | (pl.col("nearest") >= 3)
        | (countyless & (pl.col("nearest") >= 2))
    ).filter(~pl.col("part") | (pl.col("support") > 0))  # 新昌村 alone is no county


def _winners(scored: pl.LazyFrame) -> pl.LazyFrame:
    """Each address's best-supported, deepest candidate, and how many tie with it."""
    ranked = scored.with_columns(
        (pl.col("support") * 10 + pl.col("level")).alias("score"),
    ).with_columns(pl.col("score").max().over("aid").alias("best"))
    top = ranked.filter(pl.col("score") == pl.col("best"))
    return top.group_by("aid").agg(
        pl.col("code").first(),
        pl.col("level").first(),
        pl.col("support").first(),
        pl.col("chain_end").first(),
        pl.col("alias").first(),
        pl.col("code").n_unique().alias("tied"),
    )


def _resolved(distinct: pl.DataFrame, winners: pl.LazyFrame) -> pl.DataFrame:
    """Status, division, confidence and the rest of the text of every address."""
    return (
        distinct.lazy()
        .join(winners, on="aid", how="left")
        .with_columns(
            pl.when(pl.col("code").is_null())
            .then(pl.lit("unresolved"))
            .when(pl.col("tied") > 1)
            .then(pl.lit("ambiguous"))
            .otherwise(pl.lit("ok"))
            .alias("address_status")
        )
        .with_columns(
            pl.when(pl.col("address_status") == "ok").then(pl.col("code")).alias("division_code"),
            pl.when(pl.col("address_status") == "ok").then(pl.col("level")).alias("division_level"),
            pl.when(pl.col("address_status") == "ok")
            .then(((pl.col("support") + 1) / pl.col("level").cast(pl.Float64)).clip(upper_bound=1.0))
            .otherwise(0.0)
            .alias("address_confidence"),
            # The text after the last name of the chosen chain (byte offsets -> via the bytes).
            pl.when(pl.col("address_status") == "ok")
            .then(pl.col("address").cast(pl.Binary).bin.slice(pl.col("chain_end")).cast(pl.String))
            .otherwise(pl.col("address"))
            .alias("address_rest"),
        )
        .collect()
    )


def _names_in_text(distinct: pl.DataFrame, spans: pl.DataFrame, top: pl.DataFrame) -> pl.DataFrame:
    """`top` without the names that are part of the text rather than divisions of the address, and
    with `part` marking the names that may be the start of a lower-level name.

    A name followed by a road word (`ROAD_SUFFIXES`) is a road's (南海大道, 北京路), unless a
    division under it is named right after it (唐山路南区; a township and its village 路口村).
    A province, city or county name followed by a township or village word (`PART_SUFFIXES`) is
    marked `part`, with the same exception: it stays a candidate only when supported (新昌村 in an
    address in 兰州 is a village's name, 承德兴隆镇 is in the county 兴隆县).
    A name after a lower-level division is the text's too: once 桂城街道 is named, the 南海 of
    南海大道 or the 佛山 of 佛山大道 that follow are not the county or the city again.
    `spans` are every uncovered name (all levels), `top` those kept at their span's top level.
    """

    def ahead(words: tuple[str, ...], road: bool) -> pl.LazyFrame:
        """(aid, end, road): where one of `words` starts in an address (the two lists share no
        first character, so no position is in both)."""
        return (
            distinct.lazy()
            .select("aid", pl.col("address").str.find_many(list(words), overlapping=True).alias("end"))
            .explode("end")
            .drop_nulls("end")
            .select("aid", pl.col("end").cast(pl.Int64), pl.lit(road).alias("road"))
            .unique()
        )

    top = top.with_row_index("row")
    followed = (
        top.lazy()
        .select("row", "aid", "start", "end", "code", "level", "prefix")
        .join(pl.concat([ahead(ROAD_SUFFIXES, True), ahead(PART_SUFFIXES, False)]), on=["aid", "end"])
        .filter(pl.col("road") | (pl.col("level") <= 3))
        .collect()
    )
    roads = parts = followed.get_column("row").clear()
    if not followed.is_empty():
        children = spans.select("aid", pl.col("start").alias("end"), pl.col("code").alias("child"))
        named_next = followed.join(children, on=["aid", "end"]).filter(
            pl.col("child").str.starts_with(pl.col("prefix")) & (pl.col("child") != pl.col("code"))
        )
        followed = followed.filter(
            ~pl.col("row").is_in(named_next.get_column("row").implode())
            & ~pl.col("row").is_in(_villages_next(distinct, followed).implode())
        )
        roads = followed.filter(pl.col("road")).get_column("row")
        parts = followed.filter(~pl.col("road")).get_column("row")
    top = top.filter(~pl.col("row").is_in(roads.implode()))
    # Where each level is passed: the end of the first name of a lower level (deeper division).
    level = pl.col("level")
    passed_at = pl.when(level == 1).then("p2").when(level == 2).then("p3").when(level == 3).then("p4")
    return (
        top.with_columns(pl.col("end").filter(level >= n).min().over("aid").alias(f"p{n}") for n in (2, 3, 4))
        .filter(passed_at.is_null() | (pl.col("start") < passed_at))
        .select(pl.exclude("row", "p2", "p3", "p4"), pl.col("row").is_in(parts.implode()).alias("part"))
    )


def _villages_next(distinct: pl.DataFrame, names: pl.DataFrame) -> pl.Series:
    """The `row` of the `names` (counties and townships followed by a road or township word) right
    after which one of their villages is named (大沥镇路口村, 狮山镇街边社区)."""
    villages = _villages_after_words()
    parents = names.filter(
        pl.col("level").is_in([3, 4])
        & pl.col("code").is_in(
            pl.concat([villages.get_column("township"), villages.get_column("county")]).implode()
        )
    )
    if parents.is_empty():
        return names.get_column("row").clear()
    parents = parents.join(distinct.select("aid", "address"), on="aid").with_columns(
        pl.col("address").cast(pl.Binary).bin.slice(pl.col("end")).cast(pl.String).alias("after")
    )
    return pl.concat(
        [
            _names_at_start(
                parents.filter(pl.col("level") == level),
                "after",
                villages.rename({key: "parent"}).drop(other),
                "code",
            ).get_column("row")
            for level, key, other in ((4, "township", "county"), (3, "county", "township"))
        ]
    ).unique()


@functools.cache
def _villages_after_words() -> pl.DataFrame:
    """The village names that may start where a road or township word starts (路口村, 街边社区):
    those that start with one of the words or are the start of one; a few thousand of 600k."""
    words = ROAD_SUFFIXES + PART_SUFFIXES
    starts = sorted({word[:n] for word in words for n in range(2, len(word))})
    alias = pl.col("alias")
    return _village_names().filter(alias.str.contains(f"^(?:{'|'.join(words)})") | alias.is_in(starts))


@functools.cache
def _countyless_cities() -> pl.Series:
    """Cities whose townships hang directly under them (东莞 441900, 中山 442000, 儋州 460400...)."""
    table = division_table()
    with_counties = table.filter(pl.col("level") == 3).get_column("code").str.slice(0, 4).unique()
    towns = table.filter(pl.col("level") == 4).get_column("code").str.slice(0, 6)
    return towns.filter(
        towns.str.ends_with("00") & ~towns.str.slice(0, 4).is_in(with_counties.implode())
    ).unique()


@functools.cache
def _township_names() -> pl.DataFrame:
    """alias -> township code, keyed by its county (or, for cities without counties, its city)."""
    return (
        gazetteer()
        .filter(pl.col("level") == 4)
        .select(
            "alias",
            "code",
            "level",
            pl.col("code").str.slice(0, 6).alias("parent"),
            pl.col("alias").str.slice(0, 2).alias("first2"),
        )
    )


def _names_at_start(frame: pl.DataFrame, text: str, names: pl.DataFrame, parent: str) -> pl.DataFrame:
    """Rows of `frame` joined with the `names` under `frame[parent]` that `text` starts with.

    Joined on (parent, first two characters), then checked with one vectorised starts_with: no
    row per candidate length, and only the few names sharing the first two characters meet.
    """
    keyed = frame.with_columns(pl.col(text).str.slice(0, 2).alias("first2"))
    return keyed.join(names, left_on=[parent, "first2"], right_on=["parent", "first2"]).filter(
        pl.col(text).str.starts_with(pl.col("alias"))
    )


def _townships(distinct: pl.DataFrame, upper: pl.DataFrame, hint: str | None) -> pl.DataFrame:
    """Township spans: a township named right after a matched county (or a city without counties),
    or, with a hint, at the start of the address. Looked up by (parent, leading characters), so
    road names such as 和平路 never meet the 41k township names."""
    parents = (
        upper.filter((pl.col("level") == 3) | pl.col("code").is_in(_countyless_cities().implode()))
        .select("aid", pl.col("code").alias("parent"), pl.col("end").alias("start"))
        .unique()
    )
    if hint:
        # The hinted county stands in for a county the address does not start with: also where
        # a county's name comes later, in a road's (桂城街道桂一社区南海大道).
        parents = pl.concat(
            [
                parents,
                distinct.select("aid", pl.lit(hint[:6]).alias("parent"), pl.lit(0, pl.Int64).alias("start")),
            ]
        )
    if parents.is_empty():
        return upper.clear()
    parents = parents.join(distinct.select("aid", "address"), on="aid").with_columns(
        pl.col("address").cast(pl.Binary).bin.slice(pl.col("start")).cast(pl.String).alias("rest")
    )
    return (
        _names_at_start(parents, "rest", _township_names(), "parent")
        .select(
            "aid",
            "alias",
            "start",
            (pl.col("start") + pl.col("alias").str.len_bytes().cast(pl.Int64)).alias("end"),
            "code",
            "level",
        )
        .unique()
    )


@functools.cache
def _village_names() -> pl.DataFrame:
    """alias -> village code, keyed by its township and county for the second pass."""
    return (
        gazetteer()
        .filter(pl.col("level") == 5)
        .select(
            "alias",
            pl.col("code").alias("village"),
            pl.col("code").str.slice(0, 9).alias("township"),
            pl.col("code").str.slice(0, 6).alias("county"),
            pl.col("alias").str.slice(0, 2).alias("first2"),
        )
    )


def _villages(result: pl.DataFrame) -> pl.DataFrame:
    """Second pass: a village named right after its township (or county) in the remaining text.

    Looked up under the parent (see `_names_at_start`), so the 600k village names never go
    through the automaton and a common village name elsewhere in the text is never a match. A
    village name followed by a road word is a road's (城中路), as in the first pass.
    """
    parents = result.filter((pl.col("address_status") == "ok") & pl.col("division_level").is_in([3, 4]))
    if parents.is_empty():
        return result
    heads = parents.select("aid", "division_code", "division_level", "address_rest")
    names = _village_names()
    hits = pl.concat(
        [
            _names_at_start(
                heads.filter(pl.col("division_level") == level),
                "address_rest",
                names.rename({key: "parent"}).drop(other),
                "division_code",
            )
            .filter(
                ~pl.col("address_rest")
                .str.slice(pl.col("alias").str.len_chars())
                .str.contains(f"^(?:{ROAD_AHEAD.pattern})")
            )
            .select("aid", pl.col("alias").str.len_chars().alias("k"), "alias", "village")
            for level, key, other in ((4, "township", "county"), (3, "county", "township"))
        ]
    )
    # The longest name wins; two villages of that name under the parent leave the parent.
    best = (
        hits.filter(pl.col("k") == pl.col("k").max().over("aid"))
        .group_by("aid")
        .agg(
            pl.col("village").first(),
            pl.col("village").n_unique().alias("n"),
            pl.col("alias").first().alias("village_alias"),
        )
        .filter(pl.col("n") == 1)
    )
    if best.is_empty():
        return result
    update = result.join(best, on="aid").select(
        "aid",
        pl.col("village").alias("division_code"),
        pl.lit(5, pl.Int8).alias("division_level"),
        pl.col("address_rest").str.slice(pl.col("village_alias").str.len_chars()).alias("address_rest"),
        ((pl.col("address_confidence") * pl.col("division_level") + 1) / 5)
        .clip(upper_bound=1.0)
        .alias("address_confidence"),
    )
    return result.update(update, on="aid")


def _levels(code: pl.Expr, level: pl.Expr) -> list[pl.Expr]:
    def at(lvl: int, expr: pl.Expr) -> pl.Expr:
        return pl.when(level >= lvl).then(expr)

    return [
        at(1, code.str.slice(0, 2) + "0000").alias("province_code"),
        at(2, code.str.slice(0, 4) + "00").alias("city_code"),
        at(3, code.str.slice(0, 6)).alias("county_code"),
        at(4, code.str.slice(0, 9)).alias("township_code"),
        at(5, code).alias("village_code"),
    ]
