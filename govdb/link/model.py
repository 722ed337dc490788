"""The Fellegi-Sunter model: m and u per comparison level, a prior, and match weights.

- u (how often two random records land on a level) comes from the data itself: exact levels from
  value frequencies over both whole columns (sum of p_left(v) * p_right(v), no sampling), the
  other levels from one vectorised pass over random pairs. Seconds, not minutes.
- m (how often a true match lands on a level) comes from EM over candidate pairs of each training
  blocking rule, aggregated to distinct comparison patterns first, so an iteration costs
  microseconds. A comparison of a field the training rule blocks on agrees by construction, so that
  pass leaves its m alone; the m of each comparison is the mean over the passes that estimated it.
- The prior (probability that two random records match) is the fixed point of EM over all
  candidate pairs with m and u held.
- Term frequencies: an exact agreement on a common name (张伟) is weaker evidence than on a rare one,
  so the exact level's u is replaced by the value's own frequency on the right-hand side.

A model serialises to JSON (with its term-frequency tables), so a batch run and `link_one` score with
the same numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from govdb.errors import ConfigError, InputFileError
from govdb.link.comparisons import COMPARISONS, Comparison
from govdb.link.features import BLOCKING_KEYS, ENTERPRISE_KEYS

U_FLOOR = 1e-9
M_FLOOR = 1e-6


@dataclass
class ComparisonParams:
    """One comparison of the model: which field, which method, m and u of each non-null level."""

    field: str
    method: str
    m: np.ndarray
    u: np.ndarray
    tf_adjust: bool = False

    @property
    def comparison(self) -> Comparison:
        return COMPARISONS[self.method]

    @property
    def levels(self) -> tuple[str, ...]:
        return self.comparison.levels

    def weights(self) -> np.ndarray:
        """log2(m/u) per level, 0 for null (the last level)."""
        return np.append(np.log2(np.maximum(self.m, M_FLOOR) / np.maximum(self.u, U_FLOOR)), 0.0)


@dataclass
class LinkModel:
    """Everything needed to score a candidate pair, and nothing about any particular pair."""

    comparisons: list[ComparisonParams]
    prior: float
    tf: dict[str, pl.DataFrame] = field(default_factory=dict)  # field -> (value, u_tf)
    trained_on: dict[str, Any] = field(default_factory=dict)

    # --- scoring ---------------------------------------------------------------------------

    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def weights(self, pairs: pl.DataFrame, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each comparison's weight for every pair (term-frequency adjusted where asked)."""
        out = {}
        for params in self.comparisons:
            weight = params.weights()[codes[params.field]]
            if params.tf_adjust and params.field in self.tf:
                weight = self._tf_adjusted(params, pairs, codes[params.field], weight)
            out[params.field] = weight
        return out

    def total_weight(self, pairs: pl.DataFrame, codes: dict[str, np.ndarray]) -> np.ndarray:
        """The match weight of every pair (prior + every comparison's weight), nothing else."""
        return self.prior_weight() + _summed(self.weights(pairs, codes).values())

    def codes(self, pairs: pl.DataFrame) -> dict[str, np.ndarray]:
        """Level index of every pair under every comparison."""
        return {c.field: c.comparison.compute(pairs) for c in self.comparisons}

    def score(self, pairs: pl.DataFrame, codes: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
        """Per pair: each comparison's level and weight, the total match weight and probability
        (`codes`, when already computed, are the pairs' level indices)."""
        codes = codes if codes is not None else self.codes(pairs)
        weights = self.weights(pairs, codes)
        total = self.prior_weight() + _summed(weights.values())
        columns: dict[str, Any] = {}
        for params in self.comparisons:
            columns[f"{params.field}_level"] = params.comparison.labels(codes[params.field])
            columns[f"{params.field}_weight"] = pl.Series(np.round(weights[params.field], 3))
        return pl.DataFrame(columns).with_columns(
            pl.Series("match_weight", total),
            pl.Series("match_probability", 1.0 / (1.0 + np.exp2(-total))),
        )

    def _tf_adjusted(
        self, params: ComparisonParams, pairs: pl.DataFrame, codes: np.ndarray, weight: np.ndarray
    ) -> np.ndarray:
        """Exact agreements weighted by the value's own frequency instead of the average u."""
        column = params.comparison.tf_column
        assert column is not None
        u_tf = (
            pairs.select(pl.col(f"{column}_r").alias("value"))
            .join(self.tf[params.field], on="value", how="left", maintain_order="left")
            .get_column("u_tf")
            .to_numpy()
        )
        u_tf = np.where(np.isnan(u_tf), self.tf_floor(params.field), u_tf)
        exact = codes == 0
        adjusted = np.log2(max(params.m[0], M_FLOOR) / np.maximum(u_tf, U_FLOOR))
        return np.where(exact, adjusted, weight)

    def tf_lookup(self, field_name: str) -> dict[str, float]:
        """The term-frequency table of a field as a dict (built once, for one-record scoring)."""
        cache = self.__dict__.setdefault("_tf_dicts", {})
        if field_name not in cache:
            cache[field_name] = dict(self.tf[field_name].iter_rows())
        return cache[field_name]

    def tf_floor(self, field_name: str) -> float:
        """The u of a value the frequency table does not list (seen once)."""
        return float(self.trained_on.get("tf_floor", {}).get(field_name, U_FLOOR))

    def describe(self) -> pl.DataFrame:
        """One row per comparison level: m, u and weight (for reviewers and the CLI)."""
        rows = []
        for params in self.comparisons:
            for i, level in enumerate(params.levels[:-1]):
                rows.append(
                    {
                        "field": params.field,
                        "level": level,
                        "m": float(params.m[i]),
                        "u": float(params.u[i]),
                        "weight": float(params.weights()[i]),
                    }
                )
        return pl.DataFrame(rows)

    # --- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "comparisons": [
                {
                    "field": c.field,
                    "method": c.method,
                    "tf_adjust": c.tf_adjust,
                    "levels": dict(
                        zip(c.levels[:-1], zip(c.m.tolist(), c.u.tolist(), strict=True), strict=True)
                    ),
                }
                for c in self.comparisons
            ],
            "tf": {k: dict(v.iter_rows()) for k, v in self.tf.items()},
            "trained_on": self.trained_on,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> LinkModel:
        try:
            comparisons = []
            for c in data["comparisons"]:
                method = COMPARISONS[c["method"]]
                m = np.array([c["levels"][level][0] for level in method.levels[:-1]])
                u = np.array([c["levels"][level][1] for level in method.levels[:-1]])
                comparisons.append(ComparisonParams(c["field"], c["method"], m, u, c["tf_adjust"]))
            tf = {
                k: pl.DataFrame(
                    {"value": list(v), "u_tf": list(v.values())},
                    schema={"value": pl.String, "u_tf": pl.Float64},
                )
                for k, v in data.get("tf", {}).items()
            }
            return cls(comparisons, float(data["prior"]), tf, data.get("trained_on", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(
                f"{source}: not a govdb linkage model ({type(exc).__name__}: {exc}); "
                "train one with `govdb link ... --save-model FILE`"
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> LinkModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{path}: cannot read the linkage model: {exc}") from exc
        return cls.from_dict(data, str(path))


# --- u -----------------------------------------------------------------------------------------


def gather_pairs(
    left: pl.DataFrame,
    right: pl.DataFrame,
    left_index: np.ndarray,
    right_index: np.ndarray,
    columns: Sequence[str],
) -> pl.DataFrame:
    """A pairs frame (`<column>_l`, `<column>_r`) for row positions on each side."""
    cols = list(dict.fromkeys(columns))
    lhs = left.select(cols)[pl.Series(left_index)].rename({c: f"{c}_l" for c in cols})
    rhs = right.select(cols)[pl.Series(right_index)].rename({c: f"{c}_r" for c in cols})
    return pl.concat([lhs, rhs], how="horizontal")


def _present(column: pl.Series) -> pl.Series:
    """The non-null, non-empty values of a column."""
    values = column.drop_nulls()
    return values.filter(values != "") if values.dtype == pl.String else values


def value_frequencies(column: pl.Series) -> pl.DataFrame:
    """(value, p) over the non-null, non-empty values of a column."""
    values = _present(column)
    counts = values.value_counts(name="n")
    return counts.select(pl.col(column.name).alias("value"), (pl.col("n") / max(values.len(), 1)).alias("p"))


def exact_u(left: pl.Series, right: pl.Series) -> float:
    """P(two random records agree exactly) = sum over values of p_left(v) * p_right(v).

    Values are counted by their 64-bit hash, several times faster than counting text; two values
    sharing a hash (odds about n^2 / 2^64) would only nudge an estimate.
    """
    # Missing values first: a null or an empty text has a hash too and would count as a value.
    hashed = [value_frequencies(_present(side).hash(seed=0).rename("h")) for side in (left, right)]
    # Summed in value order by numpy: counts come back in no fixed order, and polars sums a
    # column a piece per thread, so the float sum depended on both (a 16-core server's model
    # differed from a 2-core one's in the last bits).
    joined = hashed[0].join(hashed[1], on="value", suffix="_r").sort("value")
    return float((joined.get_column("p") * joined.get_column("p_r")).to_numpy().sum())


EXACT_COLUMN = {
    "chinese_name": "name",
    "id_number": "id_text",
    "date": "birth_date",
    "phone": "phone",
    "address": "address",
    "gender": "gender",
    "uscc": "uscc_text",
    "enterprise_name": "name",
    "representative_name": "rep_name",
}


def estimate_u(
    left: pl.DataFrame,
    right: pl.DataFrame,
    comparisons: Sequence[tuple[str, str]],
    *,
    sample_pairs: int = 1_000_000,
    seed: int = 42,
    same_frame: bool = False,
    order: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """u per level of each (field, method): exact levels from value frequencies, the rest from a
    random sample of pairs (add-half smoothed, so a level never seen still has a small u).
    `order` (with `same_frame`): the rows' positions in a fixed order, so the pairs drawn do not
    depend on the order the rows came in."""
    if left.height == 0 or right.height == 0:
        raise InputFileError("cannot estimate u probabilities from an empty file")
    rng = np.random.default_rng(seed)
    li = rng.integers(0, left.height, sample_pairs)
    ri = rng.integers(0, right.height, sample_pairs)
    if order is not None:
        li, ri = order[li], order[ri]
    if same_frame:
        keep = li != ri
        li, ri = li[keep], ri[keep]
    columns = [c for _, method in comparisons for c in COMPARISONS[method].columns]
    sample = gather_pairs(left, right, li, ri, columns)
    out: dict[str, np.ndarray] = {}
    for field_name, method in comparisons:
        comparison = COMPARISONS[method]
        k = len(comparison.levels) - 1
        counts = np.bincount(comparison.compute(sample), minlength=k + 1)[:k].astype(float)
        exact_column = EXACT_COLUMN.get(method)
        if exact_column is not None:
            u_exact = exact_u(left.get_column(exact_column), right.get_column(exact_column))
            rest = counts[1:] + 0.5
            u = np.concatenate([[u_exact], (1 - u_exact) * rest / rest.sum()])
        else:
            smoothed = counts + 0.5
            u = smoothed / smoothed.sum()
        out[field_name] = np.maximum(u, U_FLOOR)
    return out


def term_frequency_tables(
    rules: Any, right: pl.DataFrame
) -> tuple[dict[str, pl.DataFrame], dict[str, float]]:
    """Term-frequency tables (and the u of a value seen once) of every comparison asking for them."""
    tables, floors = {}, {}
    for c in rules.comparisons:
        column = COMPARISONS[c.method].tf_column
        if c.tf_adjust and column:
            tables[c.field], floors[c.field] = term_frequencies(right, column)
    return tables, floors


def term_frequencies(right: pl.DataFrame, column: str) -> tuple[pl.DataFrame, float]:
    """(value, u_tf) for values seen more than once on the right, and the u of a value seen once."""
    freq = value_frequencies(right.get_column(column))
    total = max(int(right.get_column(column).drop_nulls().len()), 1)
    once = 1.0 / total
    return freq.filter(pl.col("p") > once * 1.5).rename({"p": "u_tf"}).with_columns(
        pl.col("value").cast(pl.String)
    ), once


# --- m by EM -----------------------------------------------------------------------------------


@dataclass
class EMResult:
    m: dict[str, np.ndarray]
    proportion_matched: float
    iterations: int
    pairs: int


def patterns(codes: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distinct comparison patterns and how many pairs have each (EM works on these)."""
    frame = pl.DataFrame({k: pl.Series(v, dtype=pl.Int8) for k, v in codes.items()})
    grouped = frame.group_by(list(codes)).len("n")
    return {k: grouped.get_column(k).to_numpy() for k in codes}, grouped.get_column("n").to_numpy().astype(
        float
    )


def expectation_maximisation(
    pattern_codes: dict[str, np.ndarray],
    counts: np.ndarray,
    m_start: dict[str, np.ndarray],
    u: dict[str, np.ndarray],
    *,
    proportion_start: float = 0.3,
    max_iterations: int = 50,
    tolerance: float = 1e-5,
) -> EMResult:
    """m per level and the proportion of matches among these pairs, u held fixed.

    Levels are indices into each comparison's levels; the last (null) carries no evidence."""
    m = {k: np.asarray(v, dtype=float).copy() for k, v in m_start.items()}
    lam = proportion_start
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        log_ratio = np.full(counts.shape, math.log(lam / (1 - lam)))
        for k, codes in pattern_codes.items():
            km = np.append(np.log(np.maximum(m[k], M_FLOOR)), 0.0)
            ku = np.append(np.log(np.maximum(u[k], U_FLOOR)), 0.0)
            log_ratio += km[codes] - ku[codes]
        p = 1.0 / (1.0 + np.exp(-np.clip(log_ratio, -700, 700)))
        matched = counts * p
        new_lam = float(np.clip(matched.sum() / counts.sum(), 1e-9, 1 - 1e-9))
        change = abs(new_lam - lam)
        for k, codes in pattern_codes.items():
            levels = len(m[k])
            per_level = np.bincount(codes, weights=matched, minlength=levels + 1)[:levels]
            if per_level.sum() > 0:
                new_m = per_level / per_level.sum()
                change = max(change, float(np.abs(new_m - m[k]).max()))
                m[k] = new_m
        lam = new_lam
        if change < tolerance:
            break
    return EMResult(m, lam, iterations, int(counts.sum()))


def training_fields(keys: Sequence[str], comparison_fields: dict[str, str]) -> list[str]:
    """Comparisons (by field) a training pass blocked on `keys` can estimate: those of fields the
    keys are not derived from."""
    known = {**BLOCKING_KEYS, **ENTERPRISE_KEYS}
    for key in keys:
        if key not in known:
            raise ConfigError(f"unknown blocking key {key!r}; known: {sorted(known)}")
    blocked = {f for key in keys for f in known[key]}
    return [name for name, field_ in comparison_fields.items() if field_ not in blocked]


def estimate_prior(
    codes: dict[str, np.ndarray],
    params: Sequence[ComparisonParams],
    total_pairs: float,
    *,
    start: float = 1e-6,
    max_iterations: int = 50,
) -> float:
    """P(two random records match): expected matches among candidate pairs (m and u held) over all
    pairs, iterated to its fixed point."""
    pattern_codes, counts = patterns(codes)
    base = np.zeros(counts.shape)
    for c in params:
        base += (
            np.append(np.log(np.maximum(c.m, M_FLOOR)), 0.0)
            - np.append(np.log(np.maximum(c.u, U_FLOOR)), 0.0)
        )[pattern_codes[c.field]]
    prior = start
    for _ in range(max_iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(base + math.log(prior / (1 - prior)), -700, 700)))
        new_prior = float(np.clip((counts * p).sum() / total_pairs, 1e-12, 0.5))
        if abs(new_prior - prior) / prior < 1e-4:
            return new_prior
        prior = new_prior
    return prior


def _summed(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Element-wise sum of equal-length arrays, added in order into one buffer: what
    `np.sum(list(arrays), axis=0)` gives, bit for bit, without stacking a chunk's tens of
    millions of pairs once per comparison first."""
    total: np.ndarray | None = None
    for array in arrays:
        total = np.array(array, dtype=np.float64) if total is None else np.add(total, array, out=total)
    if total is None:
        raise ValueError("no weights to add: a model has at least one comparison")
    return total
