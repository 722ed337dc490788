"""The only module that prints: results on stdout, progress, warnings and errors on stderr.

Three shapes of output, one per format a command offers:

- text: rich tables on a terminal; when stdout is not a terminal (a pipe, a file), plain lines
  with tab-separated cells, never cut to the terminal's width and never with box drawing;
- `--json`: one JSON document for a report, JSON Lines (one object a line) for a listing;
- `--csv`: a header line of field names, then one line a row (UTF-8, `\\n` line ends).

JSON and CSV use field names (`id_number`), text uses labels (`id number`). Dates and times are
ISO text, Chinese is kept as it is. Nothing here imports polars or the stores: values that are
frames are recognised by their `to_dicts` method.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import PurePath
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape

Format = Literal["text", "json", "csv"]

out = Console(soft_wrap=True)
err = Console(stderr=True)


def _plain(text: str) -> str:
    """Text any terminal or pipe can hold (undecodable bytes and lone surrogates as escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        from govdb.readers.records import plain_text

        return plain_text(text)
    return text.replace("\x00", "\\x00")


def _text(value: Any) -> str:
    """Printable text with rich markup escaped, so `[1,2]` in a value prints as it is."""
    return escape(_plain(str(value)))


def _write(text: str) -> None:
    sys.stdout.write(text)


def plain_stdout() -> bool:
    """True when stdout is not a terminal: text output is then plain, tab-separated lines."""
    return not out.is_terminal


# -- values for machines ---------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """`value` as JSON data: dataclasses and models as objects, frames as lists of objects,
    dates as ISO text, enums as their values, paths as text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _plain(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, PurePath):
        return _plain(str(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "to_dicts") and hasattr(value, "columns"):  # a polars frame
        return [jsonable(row) for row in value.to_dicts()]
    if hasattr(value, "model_dump"):  # a pydantic or SQLModel model
        return jsonable(value.model_dump())
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    return _plain(str(value))


def _cell(value: Any) -> str:
    """One CSV or plain-text cell: nested data as compact JSON, None as empty."""
    if value is None:
        return ""
    data = jsonable(value)
    if isinstance(data, dict | list):
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if isinstance(data, bool):
        return "true" if data else "false"
    return str(data)


def _tsv(value: Any) -> str:
    """A plain-text cell on one line: tabs and line breaks inside a value shown as escapes."""
    return _cell(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def document(data: Any) -> None:
    """One JSON document on stdout (a report)."""
    _write(json.dumps(jsonable(data), ensure_ascii=False, indent=2) + "\n")


def json_lines(records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object a line on stdout (a listing)."""
    for record in records:
        _write(json.dumps(jsonable(record), ensure_ascii=False, separators=(",", ":")) + "\n")


def csv_rows(keys: Sequence[str], records: Iterable[Mapping[str, Any]]) -> None:
    """A header of field names, then one CSV line a record, on stdout."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(keys)
    for record in records:
        writer.writerow([_cell(record.get(key)) for key in keys])


# -- text for people ---------------------------------------------------------------------------


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A titled table: rich on a terminal (cells folded, never cut), plain lines otherwise."""
    if plain_stdout():
        _write(_plain(title) + "\n" + "\t".join(columns) + "\n")
        for row in rows:
            _write("\t".join(_tsv(v) for v in row) + "\n")
        _write("\n")
        return
    from rich.table import Table

    t = Table(title=_text(title), title_justify="left")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else _text(_cell(v)) for v in row))
    out.print(t)


def facts(title: str, pairs: Mapping[str, Any]) -> None:
    """A titled list of label / value pairs."""
    if plain_stdout():
        _write(_plain(title) + "\n")
        for key, value in pairs.items():
            _write(f"{_tsv(key)}\t{_tsv(value)}\n")
        _write("\n")
        return
    table(title, ["", ""], [(k, v) for k, v in pairs.items()])


def line(text: str) -> None:
    if plain_stdout():
        _write(_plain(str(text)) + "\n")
    else:
        out.print(_plain(str(text)), markup=False, highlight=False)


def rows(
    fmt: Format,
    title: str,
    columns: Mapping[str, str],
    records: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str] | None = None,
) -> None:
    """A listing in `fmt`: `columns` (field -> label) are the text table's; JSON Lines carry
    every field of each record, CSV the fields `keys` (default: those of `columns`)."""
    if fmt == "json":
        json_lines(records)
    elif fmt == "csv":
        csv_rows(list(keys or columns), records)
    else:
        table(title, list(columns.values()), [[r.get(k) for k in columns] for r in records])


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {_text(message)}", highlight=False, soft_wrap=True)


def warning(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_text(message)}", highlight=False, soft_wrap=True)


@contextmanager
def progress(description: str) -> Iterator[Any]:
    """A progress bar on stderr; yields a callback (done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
