"""The only module that prints: rich tables on stdout, progress and errors on stderr."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from govdb.readers import plain_text

out = Console(soft_wrap=True)
err = Console(stderr=True)


def _text(value: Any) -> str:
    """Printable text with rich markup escaped, so `[1,2]` in a value prints as it is."""
    return escape(plain_text(str(value)))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=_text(title), title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if v is None else _text(v) for v in row))
    out.print(t)


def facts(title: str, pairs: dict[str, Any]) -> None:
    table(title, ["", ""], [(k, v) for k, v in pairs.items()])


def line(text: str) -> None:
    out.print(plain_text(str(text)), markup=False)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {_text(message)}", highlight=False, soft_wrap=True)


def warning(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_text(message)}", highlight=False, soft_wrap=True)


@contextmanager
def progress(description: str) -> Iterator[Any]:
    """A progress bar on stderr; yields a callback (done, total)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
