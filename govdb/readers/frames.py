"""XLSX, Parquet and in-memory frames: typed values made plain JSON, one record per row."""

from __future__ import annotations

import io
import json

import polars as pl

from govdb.errors import InputFileError
from govdb.readers.records import (
    FileRecords,
    Unreadable,
    _payload_problem,
    jsonable,
    unique_names,
)


def _frame_records(
    frame: pl.DataFrame, fmt: str, first_line: int, columns: list[str] | None = None
) -> FileRecords:
    """Records of a polars frame (typed values made plain JSON); rows with no value at all are blank."""
    records = FileRecords(fmt, None)
    records.columns = columns or list(frame.columns)
    for offset, row in enumerate(frame.iter_rows()):
        if all(v is None for v in row):
            records.blank += 1
            continue
        payload = {name: jsonable(v) for name, v in zip(records.columns, row, strict=True)}
        problem = _payload_problem(payload)
        if problem is None and all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
            problem = "the row holds no values (only blanks)"
        if problem:
            text = json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace").decode("utf-8")
            records.bad.append(Unreadable(first_line + offset, text, text.encode(), problem))
            continue
        records.lines.append(first_line + offset)
        records.texts.append(None)
        records.payloads.append(payload)
    return records


def records_of_frame(frame: pl.DataFrame) -> FileRecords:
    """Records of an in-memory polars frame (a service-hall backend's batch), lines from 1."""
    return _frame_records(frame, "frame", first_line=1)


def _read_xlsx(data: bytes) -> FileRecords:
    sheets = pl.read_excel(
        io.BytesIO(data),
        sheet_id=0,
        has_header=False,
        infer_schema_length=0,
        drop_empty_rows=False,
        drop_empty_cols=False,
        raise_if_empty=False,
    )
    filled = [name for name, frame in sheets.items() if not frame.is_empty()]
    if len(filled) > 1:
        raise InputFileError(
            f"the workbook has {len(filled)} sheets with data ({', '.join(filled)}); govdb reads one "
            "sheet per file, so save each sheet as its own file"
        )
    sheet = sheets[filled[0]] if filled else next(iter(sheets.values()), pl.DataFrame())
    if sheet.height == 0:
        raise InputFileError("the sheet is empty: no header row was found")
    warnings: list[str] = []
    header = ["" if v is None else str(v).strip() for v in sheet.row(0)]
    columns = unique_names(header, warnings)
    records = _frame_records(sheet.slice(1), "xlsx", first_line=2, columns=columns)
    records.warnings = warnings
    return records


def _read_parquet(data: bytes) -> FileRecords:
    return _frame_records(pl.read_parquet(io.BytesIO(data)), "parquet", first_line=1)
