"""What every command shares: opening the stores from global options, actors, error handling."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import DBAPIError

from govdb.api import GovDB
from govdb.cli import _render
from govdb.errors import GovdbError, RuleFileError
from govdb.verify import Actor

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    home: Path | None = None
    rules: Path | None = None

    def open(self, *, check_rules: bool = True) -> GovDB:
        return GovDB.open(self.home, rules=self.rules, check_rules=check_rules)


def options(ctx: typer.Context, home: Path | None = None) -> Options:
    """The global options, with a command's own --home winning over the global one."""
    obj = ctx.find_root().obj
    base = obj if isinstance(obj, Options) else Options()
    return Options(home or base.home, base.rules)


def reports_errors(function: F) -> F:
    """A GovdbError becomes one red line on stderr and exit code 1 (2 for rule files), no traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except GovdbError as exc:
            _render.error(str(exc))
            raise typer.Exit(2 if isinstance(exc, RuleFileError) else 1) from None
        except DBAPIError as exc:  # a store failure the library did not name: still one line
            _render.error(f"the store failed: {str(exc.orig or exc).strip().splitlines()[0]}")
            raise typer.Exit(1) from None
        except OSError as exc:  # a file or folder the command could not use
            where = f" {exc.filename!r}" if exc.filename else ""
            _render.error(f"cannot use{where}: {exc.strerror or exc}")
            raise typer.Exit(1) from None
        except BaseException as exc:  # a bug: one line for the user, the traceback with GOVDB_DEBUG=1
            cli_flow = type(exc).__module__.split(".")[0] in ("typer", "click", "_typer")
            if isinstance(exc, KeyboardInterrupt | SystemExit) or cli_flow or os.environ.get("GOVDB_DEBUG"):
                raise
            detail = (str(exc).strip().splitlines() or [""])[0]
            _render.error(
                f"govdb failed unexpectedly ({type(exc).__name__}: {detail}); this is a bug in govdb: "
                "run again with GOVDB_DEBUG=1 for the details and report them"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def print_json(data: Any) -> None:
    """One JSON document on stdout (dates as ISO text, Chinese as written) for scripts."""
    _render.out.print_json(data=data, default=_iso, ensure_ascii=False, highlight=False)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def parse_actor(text: str) -> Actor:
    """ACTOR@UNIT, e.g. li.ming@village:440605011001."""
    actor, sep, unit = text.partition("@")
    if not sep or not actor or not unit:
        raise typer.BadParameter(f"{text!r} is not ACTOR@UNIT, e.g. li.ming@village:440605011001")
    return Actor(actor, unit)


HomeOption = Annotated[
    Path | None, typer.Option("--home", envvar="GOVDB_HOME", help="Folder of the SQLite stores.")
]
RulesOption = Annotated[
    Path | None, typer.Option("--rules", envvar="GOVDB_RULES", help="Folder of rule files.")
]


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    mapping = {}
    for item in items or []:
        column, sep, target = item.partition("=")
        if not sep or not column or not target:
            raise typer.BadParameter(f"{item!r} is not column=field", param_hint="--map")
        mapping[column] = target
    return mapping
