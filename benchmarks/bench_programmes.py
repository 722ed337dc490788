"""What expressive eligibility costs: the condition tree (reasons per person, exclusions) against the
flat AND of blocks it replaced, over the same synthetic county population, side by side.

    python benchmarks/bench_programmes.py --people 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time
from typing import Any

import polars as pl

from govdb.rulebook import load_rulebook, registry
from govdb.serve.eligibility import Population, judge

AS_OF = dt.date(2026, 11, 23)


def population(n: int, seed: int = 7) -> Population:
    rng = random.Random(seed)
    villages = [f"440605{t:03d}{v:03d}" for t in range(1, 12) for v in range(1, 30)]
    people = pl.DataFrame(
        {
            "person_id": [f"P{i:015d}" for i in range(n)],
            "name": ["某某"] * n,
            "birth_date": [AS_OF - dt.timedelta(days=rng.randrange(0, 100 * 365)) for _ in range(n)],
            "death_date": [AS_OF if rng.random() < 0.01 else None for _ in range(n)],
            "division_code": [rng.choice(villages) for _ in range(n)],
            "address": ["桂城街道"] * n,
        },
        schema_overrides={"death_date": pl.Date},
    )
    holders = rng.sample(range(n), n // 50)
    creds = pl.DataFrame(
        {
            "person_id": [f"P{i:015d}" for i in holders],
            "kind": [rng.choice(["care_home_resident", "disability_certificate"]) for _ in holders],
            "attributes": [json.dumps({"disability_category": "肢体"}, ensure_ascii=False)] * len(holders),
            "valid_to": [None] * len(holders),
        },
        schema_overrides={"valid_to": pl.Date},
    )
    return Population(people, creds, villages, AS_OF)


def flat_and(pop: Population, refs: list[Any], home_if: list[Any]) -> pl.DataFrame:
    """The evaluation before this change: every block's mask ANDed (eligibility, then home
    delivery), one reason list for everyone; the eligible people with their home flag."""

    def mask_of(refs: list[Any]) -> pl.Series:
        mask = pl.Series([True] * pop.people.height, dtype=pl.Boolean)
        for ref in refs:
            block = registry.get("eligibility", ref.block)
            assert block is not None
            selected, _ = block.function(pop, block.params.model_validate(ref.params))
            mask = mask & selected
        return mask

    home = mask_of(home_if) if home_if else pl.Series([False] * pop.people.height)
    frame = pop.people.with_columns(mask_of(refs).alias("eligible"), home.alias("home"))
    return frame.filter(pl.col("eligible"))


def timed(function: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rules = load_rulebook()
    pop = population(args.people)
    card = rules.programmes["senior_transit_card"]
    allowance = rules.programmes["elderly_allowance"]
    rows = []
    for programme in (card, allowance):
        refs, home_if = list(programme.eligibility), list(programme.delivery.home_if)
        flat = all(type(r).__name__ == "BlockRef" for r in refs)
        before, chosen = (
            timed(lambda r=refs, h=home_if: flat_and(pop, r, h), args.repeat) if flat else (None, None)
        )
        after, judged = timed(lambda r=refs, h=home_if: judge(pop, r, h), args.repeat)
        selected = judged.people.filter(pl.col("eligible"))
        if chosen is not None:  # the same people, the same home deliveries
            assert selected.select("person_id", "home").equals(chosen.select("person_id", "home"))
        label = f"{programme.name} ({len(refs)} conditions{', flat' if flat else ', with not'})"
        rows.append((label, before, after, selected.height, judged.people.height - selected.height))
    print(f"{args.people:,} people, median of {args.repeat}")
    print("| programme | flat AND (before) | conditions with reasons (now) | ratio | selected | excluded |")
    print("|---|---|---|---|---|---|")
    for name, before, after, selected, excluded in rows:
        ratio = f"{after / before:.2f}" if before else "-"
        shown = f"{before:.3f} s" if before else "-"
        print(f"| {name} | {shown} | {after:.3f} s | {ratio} | {selected:,} | {excluded:,} |")


if __name__ == "__main__":
    main()
