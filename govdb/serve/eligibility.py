"""Eligibility of proactive programmes: registered blocks, combined by all / any / not, vectorised.

A rule file states eligibility as data (`{block: age_between, params: {min: 80}}`, `{any: [...]}`,
`{not: ...}`); this module implements the eligibility blocks over a Population (master people and
credentials at a date) and judges everyone at once: each block runs once over the whole
population, and the conditions are read once per distinct pattern of block outcomes, giving
whether each holds, the reasons it holds (which branches matched, in words) and the reasons it
fails (so who a `not` kept out is reported with why).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel
from sqlalchemy import Engine, Text, cast, select

from govdb.errors import ConfigError
from govdb.rulebook import registry
from govdb.rulebook.models import AllOf, AnyOf, BlockRef, Not
from govdb.rulebook.registry import AgeParams, AgeRange, CredentialParams, DivisionParams
from govdb.standards.ids import age_at
from govdb.store.bulk import read_frame
from govdb.store.master import Credential, Division, Person

WORDS = pl.List(pl.String)


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


MAX_BLOCKS = 62  # a person's outcome on every block packs into one 64-bit integer


@dataclass(frozen=True)
class Outcome:
    """A condition for one pattern of block outcomes: whether it holds, and why (not) in words."""

    holds: bool
    why: list[str]  # where it holds: the conditions that made it hold
    why_not: list[str]  # where it fails: the ones that made it fail


@dataclass
class Judgement:
    """Everyone the eligibility (or, ignoring every `not`, its exclusions) concerns, with columns
    eligible, before (eligible were no `not` applied), home, why, why_not and home_why; and the
    words of each credential block with its kind (withheld from readers not granted that kind)."""

    people: pl.DataFrame
    credential_words: dict[str, str] = field(default_factory=dict)


def _leaves(nodes: Sequence[Any]) -> list[BlockRef]:
    """The blocks of the conditions in walking order (the order `_outcome` meets them)."""
    out: list[BlockRef] = []
    for node in nodes:
        if isinstance(node, BlockRef):
            out.append(node)
        elif isinstance(node, AllOf | AnyOf):
            out.extend(_leaves(node.all if isinstance(node, AllOf) else node.any))
        elif isinstance(node, Not):
            out.extend(_leaves([node.negated]))
    return out


def _outcome(node: Any, bits: Iterator[tuple[bool, str]], skip_negations: bool) -> Outcome:
    """One condition over one pattern of block outcomes (each block's bit and words, in order)."""
    if isinstance(node, BlockRef):
        holds, words = next(bits)
        return Outcome(holds, [words] if holds else [], [] if holds else [f"not: {words}"])
    if isinstance(node, Not):
        inner = _outcome(node.negated, bits, skip_negations)
        if skip_negations:
            return Outcome(True, [], [])
        return Outcome(not inner.holds, inner.why_not, [f"excluded: {w}" for w in inner.why])
    children = [
        _outcome(c, bits, skip_negations) for c in (node.all if isinstance(node, AllOf) else node.any)
    ]
    return _together(children, every=isinstance(node, AllOf))


def _together(children: Sequence[Outcome], *, every: bool) -> Outcome:
    holds = all(c.holds for c in children) if every else any(c.holds for c in children)
    why = [w for c in children for w in c.why] if holds else []
    return Outcome(holds, why, [] if holds else [w for c in children for w in c.why_not])


def _all(conditions: Sequence[Any], bits: Iterator[tuple[bool, str]], *, skip_negations: bool) -> Outcome:
    """A programme's list of conditions (all must hold), the blocks' bits taken in walking order."""
    return _together([_outcome(c, bits, skip_negations) for c in conditions], every=True)


def judge(pop: Population, eligibility: Sequence[Any], home_if: Sequence[Any] = ()) -> Judgement:
    """Who is eligible, excluded by a `not`, delivered at home, and why, over the whole population.

    Each block runs once over everyone (vectorised); a person's outcome on every block packs into
    one integer, and the conditions are read once per distinct pattern (a handful), not per person;
    the people eligible or excluded then take their pattern's verdict and words by a join."""
    leaves = [*_leaves(eligibility), *_leaves(home_if)]
    if len(leaves) > MAX_BLOCKS:
        raise ConfigError(
            f"a programme names {len(leaves)} blocks; at most {MAX_BLOCKS} are evaluated together"
        )
    words: list[str] = []
    kinds: dict[str, str] = {}
    code = pl.Series("code", [0] * pop.people.height, dtype=pl.Int64)
    for i, ref in enumerate(leaves):
        block = registry.get("eligibility", ref.block)
        assert block is not None  # checked when the rules were loaded
        mask, text = block.function(pop, block.params.model_validate(ref.params))
        code = code + mask.fill_null(False).cast(pl.Int64) * (1 << i)
        words.append(text)
        if ref.block == "has_credential":
            kinds[text] = str(ref.params["kind"])
    n = len(_leaves(eligibility))
    rows = []
    for pattern in code.unique().to_list():
        bits = [(bool(pattern >> i & 1), w) for i, w in enumerate(words)]
        now = _all(eligibility, iter(bits), skip_negations=False)
        before = _all(eligibility, iter(bits), skip_negations=True)
        home = _all(home_if, iter(bits[n:]), skip_negations=False) if home_if else None
        rows.append(
            {
                "code": pattern,
                "eligible": now.holds,
                "before": before.holds,
                "home": bool(home and home.holds),
                "why": now.why,
                "why_not": now.why_not,
                "home_why": home.why if home and home.holds else [],
            }
        )
    verdicts = pl.DataFrame(
        rows,
        schema={
            "code": pl.Int64,
            "eligible": pl.Boolean,
            "before": pl.Boolean,
            "home": pl.Boolean,
            "why": WORDS,
            "why_not": WORDS,
            "home_why": WORDS,
        },
    )
    concerned = verdicts.filter(pl.col("eligible") | pl.col("before"))
    people = (
        pop.people.with_columns(code)
        .filter(pl.col("code").is_in(concerned.get_column("code").implode()))
        .join(concerned, on="code", how="left", maintain_order="left")
        .drop("code")
    )
    return Judgement(people, kinds)


def population(master: Engine, as_of: dt.date, within: str = "") -> Population:
    """Master people (of the division prefix `within`) and their credentials at `as_of`."""
    person = Person.__table__  # type: ignore[attr-defined]
    credential = Credential.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        # Read through the driver's cursor: a county's million people as plain tuples.
        people = read_frame(
            conn,
            select(
                person.c.person_id,
                person.c.name,
                person.c.birth_date,
                person.c.death_date,
                person.c.division_code,
                person.c.address,
            ).where(person.c.division_code.startswith(within, autoescape=True)),
            {
                "person_id": pl.String,
                "name": pl.String,
                "birth_date": pl.Date,
                "death_date": pl.Date,
                "division_code": pl.String,
                "address": pl.String,
            },
        )
        # Attributes stay JSON text: conditions read them with json_path_match.
        creds = read_frame(
            conn,
            select(
                credential.c.person_id,
                credential.c.kind,
                cast(credential.c.attributes, Text).label("attributes"),
                credential.c.valid_to,
            ),
            {"person_id": pl.String, "kind": pl.String, "attributes": pl.String, "valid_to": pl.Date},
        )
        served = list(conn.execute(select(Division.__table__.c.code)).scalars())  # type: ignore[attr-defined]
    return Population(people, creds, served, as_of)
