"""Hot words of 诉求内容: jieba segmentation with the rules' user dictionary and stop words, TF-IDF
against a baseline, and burst detection, per division and period.

The tokenizer is a `jieba.Tokenizer` of our own (the global one is left alone), loaded with
rules/analytics/hotwords.yaml, and cuts with its HMM off: only words of jieba's dictionary and of
the rules' user words come out (the HMM invents words for unknown runs of characters, which is
where names nobody listed come from). A ticket counts a word once (document frequency), so one long
complaint cannot make a word hot. A published word is met in at least `min_cell` tickets from at
least `min_cell` distinct callers (the facts' salted caller hash; a ticket without a caller counts
for no caller, since nothing tells two of them from one person), so one caller repeating his own
name cannot make it hot. It holds no digit or Latin letter (a phone, an ID or a plate number never
comes out), is no word jieba tags as a person's name, a numeral (一三八 written out), a place or
another proper noun (jieba tags many full names as places: 马建国, 于洋), is no word of 2 to 4
characters starting with a compound surname (欧阳, 司马: jieba tags such names as places or plain
words) nor the given name cut off after one (欧阳/建华), and is no 小X / 老X with X a common single
surname (小张, 老王), unless the rules' dictionary lists it.

Windows are whole periods (see measures.snap) and named in `window_start`/`window_end`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from functools import lru_cache

import polars as pl

from govdb.analytics.facts import UNVERIFIED
from govdb.analytics.measures import add_names, period_start, snap, with_dimensions
from govdb.errors import ConfigError
from govdb.rulebook.analytics import HotwordRules

_HAN = re.compile(r"^[\u3400-\u9fff]+$")
_NUMERALS = re.compile(r"^[零〇一二三四五六七八九十百千万两幺壹贰叁肆伍陆柒捌玖拾]+$")  # digits written out


@lru_cache(maxsize=4)
def _tokenizer(words: tuple[tuple[str, int | None, str | None], ...]) -> object:
    import jieba
    import jieba.posseg

    logging.getLogger("jieba").setLevel(logging.WARNING)  # jieba logs its dictionary load at DEBUG
    tokenizer = jieba.Tokenizer()
    for word, freq, tag in words:
        tokenizer.add_word(word, freq, tag)
    # Tagged, so that person names and numerals (a phone written 一三八...) are never published.
    return jieba.posseg.POSTokenizer(tokenizer)


# Part-of-speech tags never published: person names (nr, nrfg, nrt), numerals (m, mq), and place
# names and other proper nouns (ns, nz): jieba tags many full names so (马建国, 于洋 ns; 德华 nz),
# and places are table dimensions already (below the village a place name is location data).
PERSONAL_TAGS = frozenset({"nr", "nrfg", "nrt", "m", "mq", "ns", "nz"})


def tokenizer_for(rules: HotwordRules) -> object:
    return _tokenizer(tuple((w.word, w.freq, w.tag) for w in rules.user_words))


def _surnamed(rules: HotwordRules) -> re.Pattern[str]:
    """A word of 2 to 4 characters starting with a compound surname (a surname with a one- or
    two-character given name, or the surname alone), or 小 / 老 and a common single surname."""
    surnames = "|".join(re.escape(s) for s in rules.compound_surnames) or "(?!)"
    single = "".join(re.escape(s) for s in rules.single_surnames)
    nickname = f"|^[小老][{single}]$" if single else ""  # 小张, 老王: a person called by surname
    return re.compile(rf"^(?:{surnames})[\u3400-\u9fff]{{0,2}}${nickname}")


def segment(texts: Sequence[str], rules: HotwordRules) -> list[list[str]]:
    """Each text's distinct publishable words: dictionary words only (HMM off), without stop words,
    short words, words with digits or Latin, names and numerals (tags), compound-surname words, and
    the one or two characters right after a lone compound surname (its given name: 欧阳/建华)."""
    tokenizer = tokenizer_for(rules)
    stop = set(rules.stop_words)
    listed = {w.word for w in rules.user_words}
    surnamed = _surnamed(rules)
    surnames = set(rules.compound_surnames) - listed
    out = []
    for text in texts:
        tokens = tokenizer.lcut(text or "", HMM=False)  # type: ignore[attr-defined]
        given = {i + 1 for i, (w, _) in enumerate(tokens) if w in surnames}
        words = {
            w
            for i, (w, tag) in enumerate(tokens)
            if len(w) >= rules.min_length
            and w not in stop
            and (
                w in listed
                or (
                    _HAN.match(w)
                    and tag not in PERSONAL_TAGS
                    and not _NUMERALS.match(w)
                    and not surnamed.match(w)
                    and not (i in given and len(w) <= 2)
                )
            )
        }
        out.append(sorted(words))
    return out


def ticket_words(facts: pl.DataFrame, rules: HotwordRules) -> pl.DataFrame:
    """(event_id, word): each ticket's distinct words; each distinct text is segmented once
    (the per-text loop is jieba's own, a Python tokenizer)."""
    texts = facts.select("content").unique().drop_nulls()
    contents = texts.get_column("content").to_list()
    words = pl.DataFrame(
        {"content": contents, "word": segment(contents, rules)},
        schema={"content": pl.String, "word": pl.List(pl.String)},
    )
    return (
        facts.select("event_id", "content")
        .join(words, on="content", how="inner")
        .explode("word")
        .drop_nulls("word")
        .select("event_id", "word")
    )


def hotwords(
    facts: pl.DataFrame,
    rules: HotwordRules,
    *,
    min_cell: int,
    by: str | None = "street",
    period: str = "week",
    baseline_periods: int = 4,
    start: dt.date | None = None,
    end: dt.date | None = None,
    withheld: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Words ranked per (period, division) by TF-IDF against the previous `baseline_periods` periods
    of the same division, with a burst flag (rate up `burst_ratio`-fold and a Poisson z-score of at
    least `burst_z`). The whole periods holding `start`..`end` are reported (the facts must cover
    them whole); earlier ones serve as baseline. `withheld` lists the (period, division) cells
    whose ticket count the KPI table withholds: score, ratio and z are withheld where the cell or
    one of its baseline periods is (see the end)."""
    if period not in ("day", "week", "month"):
        raise ConfigError(f"hot words need a period of day, week or month, not {period!r}")
    if by not in (None, "county", "street", "village"):
        raise ConfigError(f"hot words group by county, street or village, not {by!r}")
    placed = with_dimensions(facts, [by] if by else []).with_columns(
        period_start(pl.col("received"), period).alias("period")
    )
    group = [by] if by else []
    first, last = snap(start, end, period)
    placed = placed.select("event_id", "period", *group, "content", "caller")
    words = ticket_words(placed, rules).join(
        placed.select("event_id", "period", *group, "caller"), on="event_id"
    )
    keys = ["period", *group]
    tickets = placed.group_by(keys).len().rename({"len": "tickets"})
    df = words.group_by([*keys, "word"]).agg(
        pl.len().alias("df"), pl.col("caller").drop_nulls().n_unique().alias("callers")
    )
    step = {"day": "1d", "week": "1w", "month": "1mo"}[period]
    # The baseline of each reported period: the sums over the `baseline_periods` periods before it.
    shifted_t, shifted_w = [], []
    for k in range(1, baseline_periods + 1):
        move = pl.col("period").dt.offset_by(f"{k}{step[1:]}")
        shifted_t.append(tickets.with_columns(move))
        shifted_w.append(df.drop("callers").with_columns(move))
    base_t = pl.concat(shifted_t).group_by(keys).agg(pl.col("tickets").sum().alias("base_tickets"))
    base_w = pl.concat(shifted_w).group_by([*keys, "word"]).agg(pl.col("df").sum().alias("base_df"))
    out = (
        df.join(tickets, on=keys, how="left", nulls_equal=True)
        .join(base_t, on=keys, how="left", nulls_equal=True)
        .join(base_w, on=[*keys, "word"], how="left", nulls_equal=True)
        .with_columns(pl.col("base_tickets").fill_null(0), pl.col("base_df").fill_null(0))
    )
    rate_base = (pl.col("base_df") + 0.5) / (pl.col("base_tickets") + 1.0)
    expected = pl.col("tickets") * rate_base
    out = out.with_columns(
        (
            (pl.col("df") / pl.col("tickets"))
            * (((pl.col("base_tickets") + 1) / (pl.col("base_df") + 1)).log() + 1)
        ).alias("score"),
        expected.alias("expected"),
        ((pl.col("df") / pl.col("tickets")) / rate_base).alias("ratio"),
        ((pl.col("df") - expected) / expected.sqrt()).alias("z"),
    ).with_columns(
        (
            (pl.col("ratio") >= rules.burst_ratio)
            & (pl.col("z") >= rules.burst_z)
            & (pl.col("base_tickets") > 0)
        ).alias("burst")
    )
    if first is not None:
        out = out.filter(pl.col("period") >= first)
    if last is not None:
        out = out.filter(pl.col("period") <= last)
    if first is None or last is None:  # the window the data gives, in whole periods
        seen = snap(placed.get_column("period").min(), placed.get_column("period").max(), period)  # type: ignore[arg-type]
        first, last = first or seen[0], last or seen[1]
    # Small cells: a word met in fewer than min_cell tickets, or from fewer than min_cell callers
    # (one caller repeating his own name), is never published.
    out = out.filter(pl.col("df") >= min_cell, pl.col("callers") >= min_cell, pl.col("tickets") >= min_cell)
    # rank by score; ties by more tickets, then the word (a stable order for reports)
    out = out.sort([*keys, "score", "df", "word"], descending=[*([False] * len(keys)), True, True, False])
    out = out.with_columns(pl.int_range(1, pl.len() + 1).over(keys).cast(pl.Int64).alias("rank"))
    out = out.filter(pl.col("rank") <= rules.top).sort([*keys, "rank"])
    if by:
        out = add_names(out, [by])
    # The cell's ticket count is not published (the KPI table may withhold it as a complement).
    # score, ratio and z are functions of df, tickets and the baseline's two counts: ratio (or z)
    # gives tickets / base_tickets, and score then gives tickets itself; a small baseline count
    # would come out with them too. So they are withheld where the baseline's counts are small, or
    # where the KPI table withholds the cell's tickets or a baseline period's (the burst flag, one
    # bit, stays).
    hidden = (pl.col("base_df") > 0) & (pl.col("base_df") < min_cell) | (pl.col("base_tickets") > 0) & (
        pl.col("base_tickets") < min_cell
    )
    if withheld is not None and not withheld.is_empty():
        spans = [
            withheld.select(pl.col("period").dt.offset_by(f"{k}{step[1:]}"), *group)
            for k in range(baseline_periods + 1)
        ]
        flagged = pl.concat(spans).unique().with_columns(pl.lit(True).alias("_kpi_withheld"))
        out = out.join(flagged, on=keys, how="left", nulls_equal=True, maintain_order="left")
        hidden = hidden | pl.col("_kpi_withheld").fill_null(False)
    return out.select(
        *keys,
        *([f"{by}_name"] if by else []),
        "rank",
        "word",
        "df",
        *(
            pl.when(hidden).then(None).otherwise(pl.col(name).round(places)).alias(name)
            for name, places in (("score", 4), ("ratio", 2), ("z", 2))
        ),
        "burst",
        pl.lit(first, pl.Date).alias("window_start"),
        pl.lit(last, pl.Date).alias("window_end"),
        pl.lit(UNVERIFIED).alias("data_status"),
    )
