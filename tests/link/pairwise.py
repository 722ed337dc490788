"""The pair-by-pair form of `govdb.link.record.best_link`, kept for tests to compare with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from govdb.link import record as one
from govdb.link.model import LinkModel
from govdb.rulebook.models import MatchingRules


def best_link_pairwise(
    record: Mapping[str, Any],
    candidates: Sequence[tuple[Mapping[str, Any], str]],
    model: LinkModel,
    rules: MatchingRules,
) -> dict[str, Any]:
    """`best_link` scoring pair by pair through `_weighs`, as it did before it scored a block a
    column at a time: the reference the library's form is tested against."""
    ranked = []
    scorer, prior_weight = one._scorer(model), model.prior_weight()
    for cand, rule in candidates:
        both = record["id_number"] is not None and cand["id_number"] is not None
        hard = 0
        if both and "same_valid_id" in rules.hard_rules and record["id_number"] == cand["id_number"]:
            hard = 1
        elif both and "different_valid_ids" in rules.hard_rules and record["id_number"] != cand["id_number"]:
            continue
        weight, detail = one._weighs(scorer, prior_weight, record, cand)
        ranked.append((-hard, -weight, cand["rid"], hard, weight, detail, rule))
    if not ranked:
        return one._nobody()
    ranked.sort(key=lambda r: r[:3])
    _, _, candidate, hard, weight, detail, rule = ranked[0]
    runner, runner_weight = (ranked[1][2], ranked[1][4]) if len(ranked) > 1 else (None, -1e3)
    return one._decided(candidate, hard, weight, detail, rule, runner, runner_weight, rules)
