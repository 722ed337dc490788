"""Reading input files record by record, losing nothing: the bottom layer under ingest, standardize and link.

Every record a file holds ends in exactly one place: read (its line, its text exactly as received
and its payload, header name -> value), unreadable (its line, text, exact bytes and the reason),
or counted as blank (an empty line, which holds nothing). Rules that keep it lossless:

- the encoding is decided per file from evidence (UTF-8 with or without BOM, else GB18030, the
  superset of GBK), and only the lines that do not decode in it are unreadable;
- records break at LF (or CR where a file has no LF) only: U+2028, U+0085, VT, FF, FS/GS/RS and
  the like stay inside their cell;
- a quote that opens a cell and never closes swallows nothing: when a record spanning several
  lines (or the last one) does not parse strictly, its first line is unreadable and reading
  restarts on the next line;
- duplicate header names are kept, the second becoming `name_2` (CSV, TSV, XLSX and JSON alike);
- values a store cannot hold (NUL, lone surrogates) make the record unreadable, with its bytes;
  non-finite floats become the strings "NaN", "Infinity", "-Infinity".

Modules: `records` (what a file held, encodings, text a store can hold), `delimited` (CSV, TSV),
`jsonl` (JSON Lines), `frames` (XLSX, Parquet, in-memory frames).
"""

from __future__ import annotations

from pathlib import Path

from govdb.errors import InputFileError
from govdb.readers.delimited import _read_delimited
from govdb.readers.frames import _read_parquet, _read_xlsx, records_of_frame
from govdb.readers.jsonl import _read_jsonl
from govdb.readers.records import FileRecords, Unreadable, detect_encoding, jsonable, plain_text, unique_names

__all__ = [
    "FORMATS",
    "FileRecords",
    "Unreadable",
    "detect_encoding",
    "jsonable",
    "plain_text",
    "read_records",
    "records_of_frame",
    "unique_names",
]

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def read_records(path: Path) -> tuple[FileRecords, bytes]:
    """Every record of a CSV/TSV, XLSX, Parquet or JSON Lines file, and the file's bytes."""
    if path.is_dir():
        raise InputFileError(f"{str(path)!r} is a folder; name one file in it")
    if not path.is_file():
        raise InputFileError(f"input file {str(path)!r} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(
            f"cannot read {str(path)!r}: unknown extension {path.suffix!r}; use one of {sorted(FORMATS)}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        if fmt in ("csv", "tsv"):
            return _read_delimited(data, "," if fmt == "csv" else "\t", fmt), data
        if fmt == "jsonl":
            return _read_jsonl(data), data
        if fmt == "xlsx":
            return _read_xlsx(data), data
        return _read_parquet(data), data
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the format library could not open the file (a Rust panic included)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(f"cannot read {str(path)!r} as {fmt}: {detail}") from exc
