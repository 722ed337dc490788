"""Named building blocks that rule files may use; rules name them and never contain code.

Each block has a kind (eligibility, auto_pass, mask), a name, a pydantic model for its params
and an implementation. Stage modules register their blocks with `register`; the loader checks
every name and params a rule file uses against this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

BlockKind = Literal["eligibility", "auto_pass", "mask"]

# Modules that register built-in blocks when imported.
_BUILTIN_MODULES = ("govdb.serve.programmes", "govdb.verify.routes", "govdb.access")


class NoParams(BaseModel):
    """Params of a block that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Block:
    """A registered building block."""

    kind: BlockKind
    name: str
    params: type[BaseModel]
    function: Callable[..., Any]
    doc: str


_BLOCKS: dict[tuple[BlockKind, str], Block] = {}


def register(
    kind: BlockKind, name: str, params: type[BaseModel] = NoParams
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make `function` available to rule files as `name`."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        _BLOCKS[(kind, name)] = Block(kind, name, params, function, (function.__doc__ or "").strip())
        return function

    return decorate


def blocks(kind: BlockKind | None = None) -> list[Block]:
    """Every registered block (of one kind), sorted by name."""
    _load_builtins()
    return sorted((b for b in _BLOCKS.values() if kind in (None, b.kind)), key=lambda b: (b.kind, b.name))


def get(kind: BlockKind, name: str) -> Block | None:
    """The block, or None when no block of that kind has that name."""
    _load_builtins()
    return _BLOCKS.get((kind, name))


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
