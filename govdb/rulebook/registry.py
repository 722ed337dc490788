"""Named building blocks that rule files may use; rules name them and never contain code.

A block has a kind (eligibility, auto_pass, mask), a name, a pydantic model for its params, a
description and an implementation. The rulebook owns the vocabulary: every built-in block is
*declared* here (name, params, description), so the loader checks each name and params a rule
file uses without importing any stage. The stage that runs a kind of block *implements* it with
`register` when its module is imported (serve.programmes: eligibility; verify.routes: auto_pass;
access.policy: mask), and only that stage calls it, so the implementation is there when used.

A deployment may add a block of its own: `register(kind, name, Params)` on a function declares
and implements it at once (its description is the function's docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from govdb.errors import ConfigError

BlockKind = Literal["eligibility", "auto_pass", "mask"]


class NoParams(BaseModel):
    """Params of a block that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Block:
    """A declared building block; `function` is its implementation, registered by its stage."""

    kind: BlockKind
    name: str
    params: type[BaseModel]
    doc: str

    @property
    def function(self) -> Callable[..., Any]:
        function = _IMPLEMENTATIONS.get((self.kind, self.name))
        if function is None:
            raise ConfigError(
                f"{self.kind} block {self.name!r} is declared but not implemented; "
                "import the stage module that registers it"
            )
        return function


_BLOCKS: dict[tuple[BlockKind, str], Block] = {}
_IMPLEMENTATIONS: dict[tuple[BlockKind, str], Callable[..., Any]] = {}


def declare(kind: BlockKind, name: str, params: type[BaseModel] = NoParams, doc: str = "") -> Block:
    """Make `name` a block rule files may use (its implementation is registered by a stage)."""
    block = Block(kind, name, params, doc)
    _BLOCKS[(kind, name)] = block
    return block


def register(
    kind: BlockKind, name: str, params: type[BaseModel] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: implement the block `name` with `function` (declaring it first if it is new)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        declared = _BLOCKS.get((kind, name))
        if declared is None:
            declare(kind, name, params or NoParams, (function.__doc__ or "").strip())
        elif params is not None and params is not declared.params:
            raise ConfigError(f"{kind} block {name!r} is declared with params {declared.params.__name__}")
        _IMPLEMENTATIONS[(kind, name)] = function
        return function

    return decorate


def blocks(kind: BlockKind | None = None) -> list[Block]:
    """Every declared block (of one kind), sorted by name."""
    return sorted((b for b in _BLOCKS.values() if kind in (None, b.kind)), key=lambda b: (b.kind, b.name))


def get(kind: BlockKind, name: str) -> Block | None:
    """The block, or None when no block of that kind has that name."""
    return _BLOCKS.get((kind, name))


# Built-in blocks: their params and what they do. Implementations: govdb.serve.programmes
# (eligibility), govdb.verify.routes (auto_pass), govdb.access.policy (mask).


class AgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    years: int = Field(ge=0, le=150)


class AgeRange(BaseModel):
    """Ages in whole years, both ends included; leave one end out for an open range."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    min: int | None = Field(default=None, ge=0, le=150)
    max: int | None = Field(default=None, ge=0, le=150)

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both (ages in whole years, both included)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class DivisionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    codes: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _digits(self) -> DivisionParams:
        bad = [c for c in self.codes if not (c.isdigit() and c.isascii() and 2 <= len(c) <= 12)]
        if bad:
            raise ValueError(f"division codes are 2 to 12 digits (a prefix covers its subtree), not {bad}")
        return self


class CredentialParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    attributes: dict[str, list[str]] = {}


class KeepEnds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    head: int = Field(ge=0)
    tail: int = Field(ge=0)


declare("eligibility", "alive", doc="No death date on or before the as-of date.")
declare("eligibility", "resident_in_jurisdiction", doc="Registered in a division this deployment serves.")
declare("eligibility", "age_at_least", AgeParams, "Aged at least `years` on the as-of date.")
declare(
    "eligibility",
    "age_between",
    AgeRange,
    "Aged between `min` and `max` years (both included) on the as-of date; one end may be left out.",
)
declare(
    "eligibility",
    "lives_in",
    DivisionParams,
    "Registered in one of the divisions `codes` (a code prefix covers the divisions under it).",
)
declare(
    "eligibility",
    "has_credential",
    CredentialParams,
    "Holds a valid credential of `kind` whose attributes take one of the listed values.",
)
declare(
    "auto_pass",
    "from_own_system",
    doc="Pass a department step when the event came from that department's own registered system, "
    "proven by its token, and the rules let that system pass this route.",
)
declare(
    "mask",
    "keep_ends",
    KeepEnds,
    "Show the first `head` and last `tail` characters, star the rest (440605********123X).",
)
declare("mask", "hide", doc="Show nothing but that a value exists.")
