"""What every command shares: opening the stores from global options, actors, output formats,
error handling and exit codes.

Exit codes: 0 done; 1 a govdb error (a GovdbError, a store or file failure; one line on stderr);
2 a usage error (an unknown option or value, a missing argument) or invalid rule files.

Nothing here imports the library's heavy parts (polars, sqlmodel, pandera, the stores) at import
time, so `govdb --help` and `govdb --version` answer at once; commands import what they call.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from govdb.cli import _render
from govdb.cli._render import Format
from govdb.errors import GovdbError, RuleFileError

if TYPE_CHECKING:
    from govdb import Actor
    from govdb.api import GovDB

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


@dataclass
class Options:
    home: Path | None = None
    rules: Path | None = None
    master_url: str | None = None
    events_url: str | None = None

    def open(self, *, check_rules: bool = True) -> GovDB:
        from govdb.api import GovDB

        return GovDB.open(
            self.home,
            rules=self.rules,
            check_rules=check_rules,
            master_url=self.master_url,
            events_url=self.events_url,
        )


def options(ctx: typer.Context, home: Path | None = None) -> Options:
    """The global options, with a command's own --home winning over the global one."""
    obj = ctx.find_root().obj
    base = obj if isinstance(obj, Options) else Options()
    return Options(home or base.home, base.rules, base.master_url, base.events_url)


def _store_failure(exc: BaseException) -> bool:
    """A database error that the library did not name (only if SQLAlchemy was ever loaded)."""
    if "sqlalchemy.exc" not in sys.modules:
        return False
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError)


def reports_errors(function: F) -> F:
    """A GovdbError becomes one red line on stderr and exit code 1 (2 for rule files), no traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except GovdbError as exc:
            _render.error(str(exc))
            raise typer.Exit(EXIT_USAGE if isinstance(exc, RuleFileError) else EXIT_ERROR) from None
        except OSError as exc:  # a file or folder the command could not use
            where = f" {exc.filename!r}" if exc.filename else ""
            _render.error(f"cannot use{where}: {exc.strerror or exc}")
            raise typer.Exit(EXIT_ERROR) from None
        except BaseException as exc:  # a bug: one line for the user, the traceback with GOVDB_DEBUG=1
            if _store_failure(exc):  # a store failure the library did not name: still one line
                from govdb.store.engine import explain

                _, detail, hint = explain(exc) or (None, str(exc).strip().splitlines()[0], "")
                _render.error(f"the store failed: {detail}; {hint}")
                raise typer.Exit(EXIT_ERROR) from None
            cli_flow = type(exc).__module__.split(".")[0] in ("typer", "click", "_typer")
            if isinstance(exc, KeyboardInterrupt | SystemExit) or cli_flow or os.environ.get("GOVDB_DEBUG"):
                raise
            detail = (str(exc).strip().splitlines() or [""])[0]
            _render.error(
                f"govdb failed unexpectedly ({type(exc).__name__}: {detail}); this is a bug in govdb: "
                "run again with GOVDB_DEBUG=1 for the details and report them"
            )
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the result as JSON: one document for a report, one object a line for a listing.",
        rich_help_panel="Output",
    ),
]
CsvOption = Annotated[
    bool,
    typer.Option(
        "--csv",
        help="Print the rows as CSV on stdout (a header of field names first).",
        rich_help_panel="Output",
    ),
]


def output_format(as_json: bool, as_csv: bool = False) -> Format:
    """The format the flags ask for: json, csv or text (a table, plain when piped)."""
    if as_json and as_csv:
        raise typer.BadParameter("give --json or --csv, not both", param_hint="--json / --csv")
    return "json" if as_json else "csv" if as_csv else "text"


def print_json(data: Any) -> None:
    """One JSON document on stdout (dates as ISO text, Chinese as written) for scripts."""
    _render.document(data)


def parse_actor(text: str) -> Actor:
    """ACTOR@UNIT, e.g. li.ming@village:440605011001."""
    actor, sep, unit = text.partition("@")
    if not sep or not actor or not unit:
        raise typer.BadParameter(f"{text!r} is not ACTOR@UNIT, e.g. li.ming@village:440605011001")
    from govdb import Actor

    return Actor(actor, unit)


HomeOption = Annotated[
    Path | None, typer.Option("--home", envvar="GOVDB_HOME", help="Folder of the SQLite stores.")
]
RulesOption = Annotated[
    Path | None, typer.Option("--rules", envvar="GOVDB_RULES", help="Folder of rule files.")
]
MasterUrlOption = Annotated[
    str | None,
    typer.Option(
        "--master-url",
        envvar="GOVDB_MASTER_URL",
        help="Master store URL, e.g. postgresql+psycopg://USER@HOST:5432/DB (default: SQLite in --home).",
        show_envvar=True,
    ),
]
EventsUrlOption = Annotated[
    str | None,
    typer.Option(
        "--events-url",
        envvar="GOVDB_EVENTS_URL",
        help="Event store URL (default: SQLite in --home).",
        show_envvar=True,
    ),
]


MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="HEADER=column where the rules' column aliases do not know a header, e.g. 统一社会信用代码=uscc "
        "(repeatable).",
    ),
]


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    mapping = {}
    for item in items or []:
        column, sep, target = item.partition("=")
        if not sep or not column or not target:
            raise typer.BadParameter(f"{item!r} is not column=field", param_hint="--map")
        mapping[column] = target
    return mapping
