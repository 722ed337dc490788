"""JSON objects written on whole polars columns, byte for byte as json.dumps(ensure_ascii=False).

Ingest hashes and stores every payload as JSON, and standardization stores every event's fields as
JSON: a million `json.dumps` calls (and the dicts they need) cost more than the columns' work.
"""

from __future__ import annotations

import json

import polars as pl

_JSON_ESCAPES = {
    chr(c): {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}.get(chr(c), f"\\u{c:04x}")
    for c in range(32)
}


def json_string(column: pl.Expr, escape: bool, control: bool) -> pl.Expr:
    """A text column as JSON string literals, exactly as json.dumps(ensure_ascii=False) writes them."""
    return pl.concat_str(_json_string_parts(column, escape, control, ""))


def _json_string_parts(column: pl.Expr, escape: bool, control: bool, before: str) -> list[pl.Expr]:
    """`before` and a text column as a JSON string literal, as pieces for one concat_str (chained
    `+` would build a new column of texts at every step).

    Only columns holding a backslash, a quote or a control character (`escape`) pay for the
    replacements, and only those holding a control character (`control`, rare) for all 32 of them.
    """
    out = column
    if escape:
        out = out.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    if control:
        for char, escaped in _JSON_ESCAPES.items():
            out = out.str.replace_all(char, escaped, literal=True)
    return [pl.lit(before + '"'), out, pl.lit('"')]


def json_objects(
    frame: pl.DataFrame,
    keys: dict[str, str],
    *,
    separators: tuple[str, str] = (", ", ": "),
    omit_nulls: bool = False,
) -> pl.Series:
    """One JSON object per row of `frame`'s text columns: `keys` maps column -> key, in the order
    the object lists them. A null is written `null`, or left out of the object with `omit_nulls`
    (an object of nothing but nulls is `{}`). `separators` as json.dumps takes them."""
    if frame.is_empty():
        return pl.Series("json", [], dtype=pl.String)
    if not keys:
        return pl.Series("json", ["{}"] * frame.height, dtype=pl.String)
    wrong = {c: str(frame.schema[c]) for c in keys if frame.schema[c] != pl.String}
    if wrong:
        raise TypeError(f"json_objects writes text columns only, not {wrong}")
    # Positional names, and columns taken by exact name: a header may be `*` or `^a$`, which
    # pl.col (and select) reads as all columns or a regular expression.
    names = {column: f"c{i}" for i, column in enumerate(keys)}
    frame = pl.DataFrame([frame.get_column(column).alias(name) for column, name in names.items()])
    escape = frame.select(pl.all().str.contains(r'[\x00-\x1f"\\]').any()).row(0, named=True)
    control = dict.fromkeys(frame.columns, False)
    if any(escape.values()):
        control = frame.select(pl.all().str.contains(r"[\x00-\x1f]").any()).row(0, named=True)
    nulls = frame.null_count().row(0, named=True)
    item, pair = separators
    parts: list[pl.Expr] = []
    for n, (column, key) in enumerate(keys.items()):
        name = names[column]
        label = json.dumps(key, ensure_ascii=False) + pair
        if omit_nulls:
            # Every present field starts with the item separator; the object drops the first one.
            part = pl.concat_str(_json_string_parts(pl.col(name), escape[name], control[name], item + label))
            parts.append(
                pl.when(pl.col(name).is_not_null()).then(part).otherwise(pl.lit("")) if nulls[name] else part
            )
            continue
        before = ("{" if n == 0 else item) + label
        if nulls[name]:
            value = json_string(pl.col(name), escape[name], control[name])
            parts += [pl.lit(before), pl.when(pl.col(name).is_null()).then(pl.lit("null")).otherwise(value)]
        else:
            parts += _json_string_parts(pl.col(name), escape[name], control[name], before)
    if omit_nulls:
        body = pl.concat_str(parts).str.strip_prefix(item)
        return frame.select((pl.lit("{") + body + pl.lit("}")).alias("json")).to_series()
    return frame.select(pl.concat_str([*parts, pl.lit("}")]).alias("json")).to_series()
