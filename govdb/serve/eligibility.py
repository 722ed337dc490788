"""Eligibility of proactive programmes: registered blocks, combined by all / any / not, vectorised.

A rule file states eligibility as data (`{block: age_between, params: {min: 80}}`, `{any: [...]}`,
`{not: ...}`); this module implements the eligibility blocks over a Population (master people and
credentials at a date) and evaluates a condition tree over the whole population at once: each
node gives a boolean per person, the reasons it holds (which branches matched, in words) and the
reasons it fails (so who a `not` kept out is reported with why).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel
from sqlalchemy import Engine, select

from govdb.rulebook import registry
from govdb.rulebook.models import AllOf, AnyOf, BlockRef, Not
from govdb.rulebook.registry import AgeParams, AgeRange, CredentialParams, DivisionParams
from govdb.standards.ids import age_at
from govdb.store.master import Credential, Division, Person

WORDS = pl.List(pl.String)
NONE = pl.lit([], dtype=WORDS)


@dataclass(frozen=True)
class Population:
    """What eligibility blocks see: master people and credentials, and the as-of date."""

    people: pl.DataFrame
    credentials: pl.DataFrame
    served_divisions: list[str]
    as_of: dt.date


Selection = tuple[pl.Series, str]  # (bool per person, the condition in words)


@registry.register("eligibility", "alive")
def alive(pop: Population, params: BaseModel) -> Selection:
    """No death date on or before the as-of date."""
    mask = pop.people.select(
        (pl.col("death_date").is_null() | (pl.col("death_date") > pop.as_of)).alias("m")
    ).to_series()
    return mask, "alive"


@registry.register("eligibility", "resident_in_jurisdiction")
def resident_in_jurisdiction(pop: Population, params: BaseModel) -> Selection:
    """Registered in a division this deployment serves."""
    codes = pop.people.get_column("division_code")
    mask = codes.is_in(pop.served_divisions).fill_null(False)
    return mask, "resident in the jurisdiction"


@registry.register("eligibility", "age_at_least")
def age_at_least(pop: Population, params: AgeParams) -> Selection:
    """Aged at least `years` on the as-of date."""
    mask = pop.people.select(
        (age_at(pl.col("birth_date"), pop.as_of) >= params.years).fill_null(False)
    ).to_series()
    return mask, f"aged {params.years} or over on {pop.as_of.isoformat()}"


@registry.register("eligibility", "age_between")
def age_between(pop: Population, params: AgeRange) -> Selection:
    """Aged between `min` and `max` years (both included) on the as-of date."""
    age = age_at(pl.col("birth_date"), pop.as_of)
    low = age >= params.min if params.min is not None else pl.lit(True)
    high = age <= params.max if params.max is not None else pl.lit(True)
    mask = pop.people.select((low & high).fill_null(False).alias("m")).to_series()
    if params.min is not None and params.max is not None:
        words = f"aged {params.min} to {params.max}"
    elif params.min is not None:
        words = f"aged {params.min} or over"
    else:
        words = f"aged {params.max} or under"
    return mask, f"{words} on {pop.as_of.isoformat()}"


@registry.register("eligibility", "lives_in")
def lives_in(pop: Population, params: DivisionParams) -> Selection:
    """Registered in one of the divisions `codes` (a prefix covers the divisions under it)."""
    codes = pl.col("division_code")
    hit = pl.any_horizontal(*(codes.str.starts_with(c) for c in params.codes))
    mask = pop.people.select(hit.fill_null(False).alias("m")).to_series()
    return mask, f"registered in {', '.join(params.codes)}"


@registry.register("eligibility", "has_credential")
def has_credential(pop: Population, params: CredentialParams) -> Selection:
    """Holds a valid credential of `kind` whose attributes take one of the listed values."""
    creds = pop.credentials.filter(
        (pl.col("kind") == params.kind) & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= pop.as_of))
    )
    for name, allowed in params.attributes.items():
        creds = creds.filter(pl.col("attributes").str.json_path_match(f"$.{name}").is_in(allowed))
    mask = pop.people.get_column("person_id").is_in(creds.get_column("person_id").implode())
    described = ", ".join("/".join(v) for v in params.attributes.values())
    return mask, f"holds a {params.kind}" + (f" ({described})" if described else "")


@dataclass
class Verdict:
    """A condition over the population: whether it holds per person, and why (not) in words.

    `why` lists, where it holds, the conditions that made it hold; `why_not`, where it fails,
    the ones that made it fail. `credential_words` maps the words of each credential block to its
    kind, so a reader not granted that kind has those reasons withheld."""

    mask: pl.Series
    why: pl.Series
    why_not: pl.Series
    credential_words: dict[str, str] = field(default_factory=dict)


def _words(mask: pl.Series, words: str) -> pl.Series:
    frame = pl.DataFrame({"m": mask})
    return frame.select(
        pl.when("m").then(pl.lit([words], dtype=WORDS)).otherwise(NONE).alias("w")
    ).to_series()


def _concat(parts: Sequence[pl.Series]) -> pl.Series:
    frame = pl.DataFrame({f"p{i}": p for i, p in enumerate(parts)})
    return frame.select(pl.concat_list(frame.columns).alias("w")).to_series()


def _prefix(words: pl.Series, prefix: str) -> pl.Series:
    return words.list.eval(pl.lit(prefix) + pl.element())


def evaluate(pop: Population, node: Any, *, skip_negations: bool = False) -> Verdict:
    """Evaluate one condition over everyone at once. With `skip_negations`, every `not` holds
    (the population before exclusions: compared with the full verdict it names who was excluded)."""
    height = pop.people.height
    if isinstance(node, BlockRef):
        block = registry.get("eligibility", node.block)
        assert block is not None  # checked when the rules were loaded
        mask, words = block.function(pop, block.params.model_validate(node.params))
        mask = mask.fill_null(False).alias("m")
        kinds = {words: node.params["kind"]} if node.block == "has_credential" else {}
        return Verdict(mask, _words(mask, words), _words(~mask, f"not {words}"), kinds)
    if isinstance(node, Not):
        if skip_negations:
            empty = _words(pl.Series([False] * height), "")
            return Verdict(pl.Series("m", [True] * height, dtype=pl.Boolean), empty, empty)
        inner = evaluate(pop, node.negated)
        # Holds where the inner condition fails (its reasons to fail are the reasons here).
        return Verdict(~inner.mask, inner.why_not, _prefix(inner.why, "excluded: "), inner.credential_words)
    if isinstance(node, AllOf | AnyOf):
        children = [
            evaluate(pop, c, skip_negations=skip_negations)
            for c in (node.all if isinstance(node, AllOf) else node.any)
        ]
        return combine(children, every=isinstance(node, AllOf))
    raise TypeError(f"not an eligibility condition: {node!r}")


def combine(children: Sequence[Verdict], *, every: bool) -> Verdict:
    """All (every=True) or any of the children: an AND or OR of masks, their reasons together."""
    mask = children[0].mask
    for child in children[1:]:
        mask = (mask & child.mask) if every else (mask | child.mask)
    kinds = {k: v for c in children for k, v in c.credential_words.items()}
    mask = mask.alias("m")
    why = _where(mask, _concat([c.why for c in children]))
    return Verdict(mask, why, _where(~mask, _concat([c.why_not for c in children])), kinds)


def _where(mask: pl.Series, words: pl.Series) -> pl.Series:
    """The words where `mask` holds, none elsewhere (a branch that held says nothing of failing)."""
    frame = pl.DataFrame({"m": mask, "w": words})
    return frame.select(pl.when("m").then(pl.col("w")).otherwise(NONE).alias("w")).to_series()


def evaluate_all(pop: Population, nodes: Sequence[Any], *, skip_negations: bool = False) -> Verdict:
    """The programme's top-level list: every condition must hold."""
    return combine([evaluate(pop, n, skip_negations=skip_negations) for n in nodes], every=True)


def population(master: Engine, as_of: dt.date, within: str = "") -> Population:
    """Master people (of the division prefix `within`) and their credentials at `as_of`."""
    person = Person.__table__  # type: ignore[attr-defined]
    credential = Credential.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        rows = conn.execute(
            select(
                person.c.person_id,
                person.c.name,
                person.c.birth_date,
                person.c.death_date,
                person.c.division_code,
                person.c.address,
            ).where(person.c.division_code.startswith(within, autoescape=True))
        ).mappings()
        people = pl.DataFrame(
            [dict(r) for r in rows],
            schema={
                "person_id": pl.String,
                "name": pl.String,
                "birth_date": pl.Date,
                "death_date": pl.Date,
                "division_code": pl.String,
                "address": pl.String,
            },
        )
        creds = pl.DataFrame(
            [
                {**r, "attributes": json.dumps(r["attributes"], ensure_ascii=False)}
                for r in conn.execute(
                    select(
                        credential.c.person_id,
                        credential.c.kind,
                        credential.c.attributes,
                        credential.c.valid_to,
                    )
                ).mappings()
            ],
            schema={"person_id": pl.String, "kind": pl.String, "attributes": pl.String, "valid_to": pl.Date},
        )
        served = list(conn.execute(select(Division.__table__.c.code)).scalars())  # type: ignore[attr-defined]
    return Population(people, creds, served, as_of)
