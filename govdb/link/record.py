"""One record against its candidates, in plain Python: the online path of `link_one`.

Batch linkage runs whole columns through polars, which costs a fraction of a millisecond per
operation; one record needs a few hundred operations, so the online path uses scalar twins of the
same steps: `features` (see `features.prepare`), `levels` (see `comparisons`), and `best_link`
(the ranking, bands and explanation of `batch.decide`). tests/link/test_record.py holds each twin
equal to the vectorised step on generated records, and tests/link/test_online.py holds `link_one`
equal to a batch run.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rapidfuzz.distance import OSA, Hamming, Indel, JaroWinkler

from govdb.link.features import COMPOUND_SURNAMES, PERSON_FIELDS
from govdb.link.model import LinkModel
from govdb.rulebook.models import MatchingRules
from govdb.standards import record as std
from govdb.standards.hanzi import char_folds

# --- features ------------------------------------------------------------------------------------


def features(record: Mapping[str, Any], *, today: dt.date, address_hint: str | None = None) -> dict[str, Any]:
    """The row `features.prepare` makes of this record (standard fields as written)."""
    raw = {f: (None if record.get(f) in (None, "") else record[f]) for f in PERSON_FIELDS}
    valid_id, id_gender, id_birth = std.resident_id(raw["id_number"], today)
    name = std.name(raw["name"])
    parsed = std.parse_address(raw["address"], address_hint)
    birth = id_birth or std.date(raw["birth_date"], today)
    out: dict[str, Any] = {
        "rid": str(record.get("event_id", "record")),
        "name": name,
        "gender": id_gender or std.gender(raw["gender"]),
        "birth_date": birth,
        "id_number": valid_id,
        "id_text": valid_id or std.id_text(raw["id_number"], today),
        "phone": std.phone(raw["phone"]),
        "address": std.address_text(raw["address"]),
        "division_code": parsed.division_code,
        "address_rest": parsed.rest,
        **_name_parts(name),
        "birth_year": birth.year if birth else None,
        "id_region": valid_id[:6] if valid_id else None,
    }
    code = out["division_code"]
    out["village_code"] = code if code and len(code) == 12 else None
    out["township_code"] = code[:9] if code and len(code) >= 9 else None
    return out


def _name_parts(name: str | None) -> dict[str, Any]:
    if name is None:
        return dict.fromkeys(("name_pinyin", "surname", "given_name", "surname_pinyin", "name_folded"))
    syllables = std.pinyin(name)
    folds = char_folds()
    folded = "".join(folds.get(c, c) for c in name)
    if std.LATIN.fullmatch(name):
        words = name.split(" ")
        surname, given = words[0].lower(), "".join(words[1:]).lower()
        surname_pinyin = syllables.split(" ")[0]
    else:
        n = 2 if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else 1
        surname, given = folded[:n], folded[n:]
        surname_pinyin = "".join(syllables.split(" ")[:n])
    return {
        "name_pinyin": syllables.replace(" ", ""),
        "surname": surname,
        "given_name": given or None,
        "surname_pinyin": surname_pinyin,
        "name_folded": folded,
    }


# --- comparisons ---------------------------------------------------------------------------------


def _missing(a: Any, b: Any) -> bool:
    return a is None or b is None or a == "" or b == ""


def _names(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    if _missing(a["name"], b["name"]):
        return "null"
    if a["name"] == b["name"]:
        return "exact"
    if a["name_folded"] is not None and a["name_folded"] == b["name_folded"]:
        return "variant"
    if a["name_pinyin"] is not None and a["name_pinyin"] == b["name_pinyin"]:
        return "homophone"
    same_surname = a["surname_pinyin"] is not None and a["surname_pinyin"] == b["surname_pinyin"]
    if (
        same_surname
        and JaroWinkler.normalized_similarity(a["name_pinyin"] or "", b["name_pinyin"] or "") >= 0.9
    ):
        return "similar"
    return "surname_only" if same_surname else "different"


def _codes(a: str | None, b: str | None, transposed: bool = True) -> str:
    if _missing(a, b):
        return "null"
    assert a is not None and b is not None
    if a == b:
        return "exact"
    if len(a) == len(b) and Hamming.distance(a, b) == 1:
        return "one_digit"
    if transposed and len(a) == len(b) and OSA.distance(a, b) == 1:
        return "transposed"
    return "different"


def _dates(a: dt.date | None, b: dt.date | None) -> str:
    if a is None or b is None:
        return "null"
    parts = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    if parts == 3:
        return "exact"
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return "day_month_swapped"
    return "one_part" if parts == 2 else "different"


def _addresses(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    if _missing(a["address"], b["address"]):
        return "null"
    if a["address"] == b["address"]:
        return "exact"
    ca, cb = a["division_code"], b["division_code"]
    depth = min(len(ca or ""), len(cb or ""))
    deep_agree = depth >= 6 and (ca or "")[:depth] == (cb or "")[:depth]
    ra, rb = a["address_rest"], b["address_rest"]
    if deep_agree and not _missing(ra, rb) and Indel.normalized_similarity(ra or "", rb or "") >= 0.8:
        return "same_place"
    for n, level in ((12, "same_village"), (9, "same_township"), (6, "same_county")):
        if ca and cb and len(ca) >= n and len(cb) >= n and ca[:n] == cb[:n]:
            return level
    return "different"


def _genders(a: str | None, b: str | None) -> str:
    if _missing(a, b):
        return "null"
    return "exact" if a == b else "different"


def levels(method: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """The level of one pair under a comparison method (the scalar twin of `comparisons`)."""
    if method == "chinese_name":
        return _names(a, b)
    if method == "id_number":
        return _codes(a["id_text"], b["id_text"])
    if method == "date":
        return _dates(a["birth_date"], b["birth_date"])
    if method == "phone":
        return _codes(a["phone"], b["phone"], transposed=False)
    if method == "address":
        return _addresses(a, b)
    if method == "gender":
        return _genders(a["gender"], b["gender"])
    raise ValueError(f"no one-record comparison for {method!r}")


ONE_RECORD_METHODS = frozenset({"chinese_name", "id_number", "date", "phone", "address", "gender"})

# Per method: the record's own value that, missing, makes every pair's level "null".
_OWN = {"chinese_name": "name", "id_number": "id_text", "date": "birth_date", "phone": "phone",
        "address": "address", "gender": "gender"}  # fmt: skip


def column_levels(method: str, a: Mapping[str, Any], people: Sequence[Mapping[str, Any]]) -> list[str]:
    """`levels(method, a, b)` for every b of a block, the method chosen once: a village's common
    given name is hundreds of pairs with one record, most of its fields missing in some."""
    own = a[_OWN[method]]
    if own is None or (own == "" and method != "date"):  # every twin's first test
        return ["null"] * len(people)
    if method == "chinese_name":
        return [_names(a, b) for b in people]
    if method == "id_number":
        return [_codes(own, b["id_text"]) for b in people]
    if method == "date":
        return [_dates(own, b["birth_date"]) for b in people]
    if method == "phone":
        return [_codes(own, b["phone"], transposed=False) for b in people]
    if method == "address":
        return [_addresses(a, b) for b in people]
    if method == "gender":
        return [_genders(own, b["gender"]) for b in people]
    raise ValueError(f"no one-record comparison for {method!r}")


# --- the best candidate --------------------------------------------------------------------------


# Per comparison: field, method, level -> index, weight per level, (tf table, column, floor, m) or None.
Scorer = list[tuple[str, str, dict[str, int], list[float], Any]]


def _scorer(model: LinkModel) -> Scorer:
    """What scoring a pair needs, worked out once per record instead of once per pair."""
    out = []
    for params in model.comparisons:
        column = params.comparison.tf_column
        tf = None
        if params.tf_adjust and params.field in model.tf and column:
            floor = model.tf_floor(params.field)
            tf = (model.tf_lookup(params.field), column, floor, max(params.m[0], 1e-6))
        index = {level: i for i, level in reversed(list(enumerate(params.levels)))}
        out.append((params.field, params.method, index, [float(w) for w in params.weights()], tf))
    return out


def _weighs(
    scorer: Scorer,
    prior_weight: float,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
) -> tuple[float, dict[str, tuple[str, float]]]:
    """The pair's match weight and each comparison's level and weight (as `LinkModel.score`)."""
    detail: dict[str, tuple[str, float]] = {}
    weights = []
    for field, method, index_of, level_weights, tf in scorer:
        level = levels(method, a, b)
        index = index_of[level]
        weight = level_weights[index]
        if tf is not None and index == 0:
            table, column, floor, m_exact = tf
            weight = math.log2(m_exact / max(table.get(b[column], floor), 1e-9))
        weights.append(weight)
        detail[field] = (level, weight)
    return prior_weight + sum(weights), detail


def best_link(
    record: Mapping[str, Any],
    candidates: Sequence[tuple[Mapping[str, Any], str]],
    model: LinkModel,
    rules: MatchingRules,
) -> dict[str, Any]:
    """person_id, match_probability, match_weight, decision and explanation for one record, from
    (candidate features, blocking rule) pairs: `batch.decide` for one left record.

    A large block (a village's common given name, up to max_block people) cost 3-4 us a
    candidate through `_weighs`; here each comparison's levels come a column at a time
    (`column_levels`), every weight is summed as `_weighs` sums it (the same floats in the same
    order), and only the chosen candidate's explanation is built. Tests hold it equal to the
    pair-by-pair form (tests/link/pairwise.py)."""
    scorer, prior_weight = _scorer(model), model.prior_weight()
    ranked = _ranked(record, candidates, scorer, prior_weight, rules)
    if not ranked:
        return _nobody()
    # The two first of sorted(ranked), ties in the candidates' order (the index) as a stable sort.
    top = heapq.nsmallest(2, ranked)
    minus_hard, _, candidate, index = top[0]
    cand, rule = candidates[index]
    weight, detail = _weighs(scorer, prior_weight, record, cand)  # the same weight, and its parts
    runner, runner_weight = (top[1][2], -top[1][1]) if len(top) > 1 else (None, -1e3)
    return _decided(candidate, -minus_hard, weight, detail, rule, runner, runner_weight, rules)


def _ranked(
    record: Mapping[str, Any],
    candidates: Sequence[tuple[Mapping[str, Any], str]],
    scorer: Scorer,
    prior_weight: float,
    rules: MatchingRules,
) -> list[tuple[int, float, str, int]]:
    """(-hard, -weight, person id, index) of every candidate the hard rules leave, each weight
    summed as `_weighs` sums it: the same floats, in the same order."""
    same_rule, different_rule = "same_valid_id" in rules.hard_rules, "different_valid_ids" in rules.hard_rules
    own_id = record["id_number"]
    kept: list[tuple[int, int, Mapping[str, Any]]] = []
    for index, (cand, _) in enumerate(candidates):
        hard = 0
        if own_id is not None and cand["id_number"] is not None:
            if same_rule and own_id == cand["id_number"]:
                hard = 1
            elif different_rule and own_id != cand["id_number"]:
                continue
        kept.append((index, hard, cand))
    people = [cand for _, _, cand in kept]
    columns = []
    for _, method, index_of, level_weights, tf in scorer:
        found = [index_of[level] for level in column_levels(method, record, people)]
        weights = [level_weights[i] for i in found]
        if tf is not None:
            table, column, floor, m_exact = tf
            for n, i in enumerate(found):
                if i == 0:
                    weights[n] = math.log2(m_exact / max(table.get(people[n][column], floor), 1e-9))
        columns.append(weights)
    empty = [prior_weight + sum([])] * len(kept)  # no comparisons: `_weighs` sums an empty list
    totals = [prior_weight + sum(parts) for parts in zip(*columns, strict=True)] if columns else empty
    return [
        (-hard, -total, cand["rid"], index) for (index, hard, cand), total in zip(kept, totals, strict=True)
    ]


def _nobody() -> dict[str, Any]:
    return {"person_id": None, "match_probability": 0.0, "match_weight": None, "decision": "new",
            "explanation": {"candidates": 0}}  # fmt: skip


def _decided(
    candidate: str,
    hard: int,
    weight: float,
    detail: dict[str, tuple[str, float]],
    rule: str,
    runner: str | None,
    runner_weight: float,
    rules: MatchingRules,
) -> dict[str, Any]:
    """The bands, decision and explanation of the best candidate against the runner-up."""
    probability = 1.0 if hard == 1 else 1.0 / (1.0 + 2.0 ** (-weight))
    runner_p = 1.0 / (1.0 + 2.0 ** (-runner_weight))
    share = 1.0 / (1.0 + 2.0 ** min(max(runner_weight - weight, -1e3), 1e3))
    bands = rules.bands
    if hard == 1:
        decision = "match"
    elif probability >= bands.match and runner_p >= bands.review and share < bands.match:
        decision = "review"
    elif probability >= bands.match:
        decision = "match"
    elif probability >= bands.review:
        decision = "review"
    else:
        decision = "new"
    explanation = {
        "candidate": candidate,
        "blocking": rule,
        "hard_rule": "same_valid_id" if hard == 1 else None,
        **{f: {"level": level, "weight": float(np.round(w, 3))} for f, (level, w) in detail.items()},
        "runner_up": runner,
        "runner_up_probability": float(np.round(runner_p, 6)) if runner is not None else None,
    }
    return {
        "person_id": None if decision == "new" else candidate,
        "match_probability": float(np.round(probability, 6)),
        "match_weight": float(np.round(weight, 3)),
        "decision": decision,
        "explanation": explanation,
    }
