"""Pydantic models of the rule files in rules/: strict, closed, one model per `kind`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

Level = Literal["village", "street", "department"]
MASTER_FIELDS = {
    "person": (
        "person_id",
        "id_number",
        "name",
        "gender",
        "birth_date",
        "age",
        "phone",
        "address",
        "division_code",
        "village",
        "township",
        "county",
    ),
    "enterprise": (
        "enterprise_id",
        "uscc",
        "name",
        "legal_representative",
        "address",
        "phone",
        "business_scope",
        "status",
        "division_code",
        "place_id",
        "village",
        "township",
        "county",
    ),
}


class Strict(BaseModel):
    """Unknown keys are errors; values are not coerced between types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RuleFile(Strict):
    """Fields every rule file has."""

    kind: str
    version: int = Field(ge=1)
    description: str = ""


# --- standards -------------------------------------------------------------------------------


class ColumnRules(RuleFile):
    """Headers people use for each standard column (姓名 -> name)."""

    kind: Literal["columns"]
    aliases: dict[str, list[str]]


# --- verification ----------------------------------------------------------------------------


class Department(Strict):
    name: str
    owns: list[str] = []


class BlockRef(Strict):
    """A registered building block and its params."""

    block: str
    params: dict[str, Any] = {}


class Step(Strict):
    level: Level
    department: str | None = None
    auto_pass: list[BlockRef] = []

    @model_validator(mode="after")
    def _department_level_names_department(self) -> Step:
        if self.level == "department" and not self.department:
            raise ValueError("a department step must name its department")
        if self.level != "department" and self.department:
            raise ValueError(f"only a department step names a department, not a {self.level} step")
        return self


class Route(Strict):
    title: str
    steps: list[Step] = Field(min_length=1)


class Service(Strict):
    """What an event of one service code proposes for master data, and by which route.

    A person service proposes a new person (`route`) or, when the person is already in master,
    an update of the fields that differ (`update_route`); a credential service proposes a card or
    certificate of `credential_kind` for a master person. An enterprise service does the same for
    an enterprise keyed by its unified social credit code, a place service for a place of
    `place_kind` (a building at an address, a named road).
    """

    title: str
    change: Literal["person", "credential", "enterprise", "place"]
    route: str
    update_route: str | None = None
    credential_kind: str | None = None
    credential_number: str | None = None
    place_kind: Literal["building", "road"] | None = None
    attributes: list[str] = []
    required: list[str] = []

    @model_validator(mode="after")
    def _credential_names_its_kind(self) -> Service:
        if self.change == "credential" and not (self.credential_kind and self.credential_number):
            raise ValueError("a credential service names credential_kind and credential_number (its column)")
        if (self.change == "place") != (self.place_kind is not None):
            raise ValueError("a place service, and only a place service, names place_kind (building or road)")
        return self


class Source(Strict):
    """A source system the deployment registers (invariant 9): the department that owns it and
    the routes whose department step its events may pass automatically. An ingest proves it is
    this source with the token `govdb sources register` issued; without it nothing passes."""

    title: str
    department: str
    auto_pass: list[str] = []


class VerificationRules(RuleFile):
    kind: Literal["verification"]
    departments: dict[str, Department]
    routes: dict[str, Route]
    services: dict[str, Service]
    sources: dict[str, Source] = {}


# --- serving ---------------------------------------------------------------------------------


class FormField(Strict):
    name: str
    label: str
    source: str | None = None
    locked: bool = True
    required: bool = False


class Document(Strict):
    name: str
    satisfied_by: list[str] = Field(min_length=1)


class FormRules(RuleFile):
    kind: Literal["form"]
    code: str
    title: str
    department: str
    purpose: str
    fields: list[FormField] = Field(min_length=1)
    documents: list[Document] = []


# An eligibility condition is a registered block, or all / any / not of conditions: data only,
# one key says which (a discriminated union), so a misspelt node is named, not guessed at.
NODE_KEYS = ("block", "all", "any", "not")
NODE_TAGS = tuple(f"({k})" for k in NODE_KEYS)  # in validation error paths; the loader drops them


def _node_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {BlockRef: "(block)", AllOf: "(all)", AnyOf: "(any)", Not: "(not)"}.get(type(value))
    if isinstance(value, dict):
        keys = [k for k in NODE_KEYS if k in value]
        return f"({keys[0]})" if len(keys) == 1 else None
    return None


Condition = Annotated[
    Union[  # noqa: UP007 (a forward-referenced union of tagged models)
        Annotated[BlockRef, Tag("(block)")],
        Annotated["AllOf", Tag("(all)")],
        Annotated["AnyOf", Tag("(any)")],
        Annotated["Not", Tag("(not)")],
    ],
    Discriminator(
        _node_kind,
        custom_error_type="condition",
        custom_error_message="a condition is exactly one of {block: NAME, params: {...}}, "
        "{all: [conditions]}, {any: [conditions]} or {not: condition}",
    ),
]


class AllOf(Strict):
    """Every condition holds (a person's reasons: every branch's)."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(Strict):
    """At least one condition holds (a person's reasons: the branches that matched)."""

    any: list[Condition] = Field(min_length=1)


class Not(Strict):
    """The condition does not hold (an exclusion: who it excluded is reported with why)."""

    negated: Condition = Field(alias="not")


class Delivery(Strict):
    home_if: list[Condition] = []
    default: Literal["pickup", "home", "mail"] = "pickup"


class IssuedCredential(Strict):
    """The card a delivered issuance puts in master as a credential (issuer: the department)."""

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    valid_years: int | None = Field(default=None, ge=1, le=100)


class ProgrammeRules(RuleFile):
    kind: Literal["programme"]
    name: str
    title: str
    department: str
    cycle: Literal["once", "yearly", "monthly"]
    eligibility: list[Condition] = Field(min_length=1)  # all of them
    delivery: Delivery = Delivery()
    credential: IssuedCredential | None = None


for _model in (AllOf, AnyOf, Not, Delivery, ProgrammeRules):
    _model.model_rebuild()


def blocks_of(conditions: Any) -> list[BlockRef]:
    """Every block named in a list of conditions, however deeply combined."""
    out: list[BlockRef] = []
    for node in conditions:
        if isinstance(node, BlockRef):
            out.append(node)
        elif isinstance(node, AllOf):
            out.extend(blocks_of(node.all))
        elif isinstance(node, AnyOf):
            out.extend(blocks_of(node.any))
        elif isinstance(node, Not):
            out.extend(blocks_of([node.negated]))
    return out


class FieldAccess(Strict):
    fields: list[str]
    masked: dict[str, BlockRef] = {}
    purposes: list[str] = Field(min_length=1)


class AccessRules(RuleFile):
    """Field policies per department, and which fields are derived from which.

    `derived` maps a field to the fields computed from it or embedding it (birth date and gender
    from the resident ID, a certificate number that is the ID plus digits). Masking or withholding
    a field masks everything derived from it, transitively, unless a policy gives that derived
    field a mask of its own: a masked value can never be filled back in from its neighbours."""

    kind: Literal["access"]
    departments: dict[str, FieldAccess]
    derived: dict[str, list[str]] = {}


class FieldTrust(Strict):
    owner: str
    trust: dict[str, int]


class SurvivorshipRules(RuleFile):
    kind: Literal["survivorship"]
    entity: Literal["person", "enterprise", "place"]
    default_trust: int = 1
    fields: dict[str, FieldTrust]


# --- matching --------------------------------------------------------------------------------

BlockingKey = Literal[
    "id_number",
    "id_region",
    "birth_date",
    "birth_year",
    "phone",
    "surname",
    "surname_pinyin",
    "given_name",
    "name_pinyin",
    "name_folded",
    "village_code",
    "township_code",
    "uscc",
    "name_core",
    "rep_name_pinyin",
    "county_code",
]
RecordField = Literal[
    "name", "gender", "birth_date", "id_number", "phone", "address", "uscc", "legal_representative"
]
ComparisonMethod = Literal[
    "chinese_name",
    "id_number",
    "date",
    "phone",
    "address",
    "gender",
    "uscc",
    "enterprise_name",
    "representative_name",
]
# What each entity's records carry: the blocking keys and fields its matching rules may name.
ENTITY_KEYS = {
    "person": {
        "id_number", "id_region", "birth_date", "birth_year", "phone", "surname", "surname_pinyin",
        "given_name", "name_pinyin", "name_folded", "village_code", "township_code",
    },
    "enterprise": {
        "uscc", "name_core", "rep_name_pinyin", "county_code", "phone", "village_code", "township_code",
    },
}  # fmt: skip
ENTITY_FIELDS = {
    "person": {"name", "gender", "birth_date", "id_number", "phone", "address"},
    "enterprise": {"name", "uscc", "legal_representative", "phone", "address"},
}
HardRule = Literal["same_valid_id", "different_valid_ids"]


class Blocking(Strict):
    """Candidate pairs: records equal on every key of at least one rule."""

    rules: list[list[BlockingKey]] = Field(min_length=1)
    max_block: int = Field(default=1000, ge=2)


class ComparisonRule(Strict):
    field: RecordField
    method: ComparisonMethod
    tf_adjust: bool = False


class Bands(Strict):
    """Decision by match probability: match at or above `match`, review at or above `review`,
    else new. A best candidate whose runner-up is also in the match band goes to review."""

    match: float = Field(gt=0, lt=1)
    review: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _review_below_match(self) -> Bands:
        if self.review > self.match:
            raise ValueError(f"review ({self.review}) must not be above match ({self.match})")
        return self


class Training(Strict):
    """How m and u are estimated: EM passes blocked on these keys, on at most `max_pairs` pairs
    each; u from `u_sample_pairs` random pairs (exact levels from value frequencies)."""

    em_blocking: list[list[BlockingKey]] = Field(min_length=1)
    max_pairs: int = Field(default=1_000_000, ge=1000)
    u_sample_pairs: int = Field(default=1_000_000, ge=1000)
    max_iterations: int = Field(default=50, ge=1)
    seed: int = 42


class MatchingRules(RuleFile):
    kind: Literal["matching"]
    entity: Literal["person", "enterprise"]
    blocking: Blocking
    comparisons: list[ComparisonRule] = Field(min_length=1)
    hard_rules: list[HardRule] = []
    bands: Bands
    training: Training

    @model_validator(mode="after")
    def _fields_once_and_of_the_entity(self) -> MatchingRules:
        fields = [c.field for c in self.comparisons]
        twice = sorted({f for f in fields if fields.count(f) > 1})
        if twice:
            raise ValueError(f"fields compared twice: {twice}; keep one comparison per field")
        foreign = sorted(set(fields) - ENTITY_FIELDS[self.entity])
        if foreign:
            raise ValueError(
                f"{self.entity} records have no fields {foreign}; use {sorted(ENTITY_FIELDS[self.entity])}"
            )
        keys = {k for rule in (*self.blocking.rules, *self.training.em_blocking) for k in rule}
        unknown = sorted(keys - ENTITY_KEYS[self.entity])
        if unknown:
            known = sorted(ENTITY_KEYS[self.entity])
            raise ValueError(f"{self.entity} records have no blocking keys {unknown}; use {known}")
        return self


RULE_KINDS: dict[str, type[RuleFile]] = {
    "matching": MatchingRules,
    "columns": ColumnRules,
    "verification": VerificationRules,
    "form": FormRules,
    "programme": ProgrammeRules,
    "access": AccessRules,
    "survivorship": SurvivorshipRules,
}
