"""Batch linkage: every event against every master person that blocking makes a candidate.

prepare both sides -> block -> (train: u from frequencies and random pairs, m by EM, the prior) ->
score the candidate pairs in chunks (hard rules first) -> the best candidate of each event and a
decision by the rules' bands -> an explanation of each comparison's level and weight.
Memory stays bounded: a chunk of pairs is gathered, scored and reduced to four numbers per pair.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from govdb.link.blocking import SkippedKey, block
from govdb.link.comparisons import COMPARISONS
from govdb.link.features import preparer
from govdb.link.model import (
    ComparisonParams,
    LinkModel,
    estimate_prior,
    estimate_u,
    expectation_maximisation,
    gather_pairs,
    patterns,
    term_frequency_tables,
    training_fields,
)
from govdb.rulebook.models import MatchingRules
from govdb.standards.gazetteer import gazetteer

CHUNK_PAIRS = 1_000_000
HARD_SAME, HARD_NONE, HARD_DIFFERENT = 1, 0, -1


@dataclass
class LinkOutput:
    """One row per left record (event_id / person_id or rid / match, plus why), and what it took."""

    links: pl.DataFrame
    model: LinkModel
    candidates: int = 0
    skipped: list[SkippedKey] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(self.links.get_column("decision").value_counts().iter_rows())


# --- training ---------------------------------------------------------------------------------


def train_model(
    left: pl.DataFrame,
    right: pl.DataFrame,
    rules: MatchingRules,
    *,
    same_frame: bool = False,
    compared: Compared | None = None,
) -> LinkModel:
    """u, m and term frequencies from these prepared frames; the prior is set by `fit_prior`.

    With `compared` (the candidate pairs already compared), a training rule that blocking covers
    takes its pairs and their levels from there instead of joining and comparing again."""
    spec = [(c.field, c.method) for c in rules.comparisons]
    u = estimate_u(
        left,
        right,
        spec,
        sample_pairs=rules.training.u_sample_pairs,
        seed=rules.training.seed,
        same_frame=same_frame,
    )
    m_start: dict[str, np.ndarray] = {f: np.array(COMPARISONS[method].m_start) for f, method in spec}
    fields: dict[str, str] = {f: f for f, _ in spec}
    estimates: dict[str, list[np.ndarray]] = {f: [] for f in fields}
    passes = []
    rng = np.random.default_rng(rules.training.seed)
    for keys in rules.training.em_blocking:
        active = training_fields(keys, fields)
        if not active:
            passes.append({"blocking": keys, "pairs": 0})
            continue
        if compared is not None and tuple(keys) in compared.agree:
            chosen = np.flatnonzero(compared.agree[tuple(keys)])
            if len(chosen) > rules.training.max_pairs:
                chosen = rng.choice(chosen, rules.training.max_pairs, replace=False)
            codes = {f: compared.codes[f][chosen] for f in active}
        else:
            codes = _training_codes(left, right, rules, keys, active, same_frame, rng)
        if len(next(iter(codes.values()))) == 0:
            passes.append({"blocking": keys, "pairs": 0})
            continue
        pattern_codes, counts = patterns(codes)
        result = expectation_maximisation(
            pattern_codes,
            counts,
            {f: m_start[f] for f in active},
            {f: u[f] for f in active},
            max_iterations=rules.training.max_iterations,
        )
        for f in active:
            estimates[f].append(result.m[f])
        passes.append(
            {
                "blocking": keys,
                "pairs": result.pairs,
                "iterations": result.iterations,
                "proportion_matched": round(result.proportion_matched, 4),
            }
        )
    # EM's m blended 99:1 with the rules' defaults, so a level no training match happened to land
    # on (a surname typo, say) keeps a finite weight instead of an arbitrarily large negative one.
    comparisons = [
        ComparisonParams(
            c.field,
            c.method,
            0.99 * np.mean(estimates[c.field], axis=0) + 0.01 * m_start[c.field]
            if estimates[c.field]
            else m_start[c.field],
            u[c.field],
            c.tf_adjust,
        )
        for c in rules.comparisons
    ]
    tf, floors = term_frequency_tables(rules, right)
    trained = {"left_rows": left.height, "right_rows": right.height, "em_passes": passes, "tf_floor": floors}
    untrained = [f for f, found in estimates.items() if not found]
    if untrained:
        trained["m_from_rules"] = untrained
    return LinkModel(comparisons, prior=1e-6, tf=tf, trained_on=trained)


def _training_codes(
    left: pl.DataFrame,
    right: pl.DataFrame,
    rules: MatchingRules,
    keys: Sequence[str],
    active: list[str],
    same_frame: bool,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Level codes of the pairs one training rule blocks (sampled down to `max_pairs`)."""
    pairs = _candidate_positions(left, right, [keys], rules.blocking.max_block, same_frame).pairs
    if pairs.height > rules.training.max_pairs:
        pairs = pairs[rng.choice(pairs.height, rules.training.max_pairs, replace=False)]
    methods = {c.field: c.method for c in rules.comparisons if c.field in active}
    gathered = gather_pairs(
        left,
        right,
        pairs.get_column("left_id").to_numpy(),
        pairs.get_column("right_id").to_numpy(),
        [c for method in methods.values() for c in COMPARISONS[method].columns],
    )
    return {f: COMPARISONS[method].compute(gathered) for f, method in methods.items()}


def fit_prior(model: LinkModel, codes: dict[str, np.ndarray], total_pairs: float) -> None:
    model.prior = estimate_prior(codes, model.comparisons, total_pairs)
    model.trained_on["prior_from_pairs"] = len(next(iter(codes.values())))


# --- blocking and scoring -----------------------------------------------------------------------


def _candidate_positions(
    left: pl.DataFrame,
    right: pl.DataFrame,
    rules: Sequence[Sequence[str]],
    max_block: int,
    same_frame: bool,
    skip_keys: Collection[str] = (),
    compatible: str | None = None,
):
    blocking = block(
        left.with_row_index("_pos"),
        right.with_row_index("_pos"),
        rules,
        left_id="_pos",
        right_id="_pos",
        max_block=max_block,
        skip_keys=skip_keys,
        compatible=compatible,
    )
    if same_frame:
        blocking.pairs = blocking.pairs.filter(pl.col("left_id") < pl.col("right_id"))
    return blocking


def _hard(pairs: pl.DataFrame, rules: MatchingRules) -> np.ndarray:
    if not rules.hard_rules:
        return np.zeros(pairs.height, dtype=np.int8)
    identifier = preparer(rules.entity)[1]
    left, right = pairs.get_column(f"{identifier}_l"), pairs.get_column(f"{identifier}_r")
    both = (left.is_not_null() & right.is_not_null()).to_numpy()
    equal = (left == right).fill_null(False).to_numpy()
    hard = np.zeros(pairs.height, dtype=np.int8)
    if "same_valid_id" in rules.hard_rules:
        hard[both & equal] = HARD_SAME
    if "different_valid_ids" in rules.hard_rules:
        hard[both & ~equal] = HARD_DIFFERENT
    return hard


def choosable_pairs(
    left: pl.DataFrame, right: pl.DataFrame, pairs: pl.DataFrame, rules: MatchingRules
) -> pl.DataFrame:
    """The candidate pairs a decision could choose. Under `different_valid_ids` a pair of two
    different valid ID numbers is never a record's best candidate nor its runner-up
    (`_best_and_runner_up` drops it): where master holds valid numbers, that is most pairs blocking
    finds by name and place, and comparing them would be the bulk of linking's work."""
    if "different_valid_ids" not in rules.hard_rules or pairs.height == 0:
        return pairs
    identifier = preparer(rules.entity)[1]
    left_ids = left.get_column(identifier).gather(pairs.get_column("left_id"))
    right_ids = right.get_column(identifier).gather(pairs.get_column("right_id"))
    possible = left_ids.is_null() | right_ids.is_null() | (left_ids == right_ids).fill_null(False)
    return pairs.filter(possible)


@dataclass
class Compared:
    """Candidate pairs (pair, left_pos, right_pos, rule, hard), every pair's level code under every
    comparison, and, per training rule that blocking covers, which pairs agree on its keys."""

    pairs: pl.DataFrame
    codes: dict[str, np.ndarray]
    agree: dict[tuple[str, ...], np.ndarray]


def covered_training_rules(rules: MatchingRules) -> list[tuple[str, ...]]:
    """Training rules whose pairs are all candidates: their keys include some blocking rule's."""
    return [
        tuple(keys)
        for keys in rules.training.em_blocking
        if any(set(b) <= set(keys) for b in rules.blocking.rules)
    ]


def compare_pairs(
    left: pl.DataFrame,
    right: pl.DataFrame,
    pairs: pl.DataFrame,
    rules: MatchingRules,
    *,
    chunk: int = CHUNK_PAIRS,
) -> Compared:
    """Compare candidate pairs chunk by chunk: levels do not depend on m and u, so this runs once,
    before training, and both training and scoring read it."""
    identifier = preparer(rules.entity)[1]
    training = covered_training_rules(rules)
    columns = [c for rule in rules.comparisons for c in COMPARISONS[rule.method].columns]
    columns += [identifier, *(k for keys in training for k in keys)]
    parts, codes, agree = [], [], []
    for start in range(0, pairs.height, chunk):
        part = pairs.slice(start, chunk)
        gathered = gather_pairs(
            left,
            right,
            part.get_column("left_id").to_numpy(),
            part.get_column("right_id").to_numpy(),
            list(dict.fromkeys(columns)),
        )
        codes.append({rule.field: COMPARISONS[rule.method].compute(gathered) for rule in rules.comparisons})
        agree.append(
            {
                keys: np.logical_and.reduce(
                    [
                        (gathered.get_column(f"{k}_l") == gathered.get_column(f"{k}_r"))
                        .fill_null(False)
                        .to_numpy()
                        for k in keys
                    ]
                )
                for keys in training
            }
        )
        parts.append(
            part.select(
                (pl.int_range(pl.len(), dtype=pl.Int64) + start).alias("pair"),
                pl.col("left_id").alias("left_pos"),
                pl.col("right_id").alias("right_pos"),
                "rule",
                pl.Series("hard", _hard(gathered, rules)),
            )
        )
    if not parts:
        empty = pl.DataFrame(
            schema={
                "pair": pl.Int64,
                "left_pos": pl.UInt32,
                "right_pos": pl.UInt32,
                "rule": pl.String,
                "hard": pl.Int8,
            }
        )
        return Compared(
            empty,
            {c.field: np.zeros(0, dtype=np.int8) for c in rules.comparisons},
            {k: np.zeros(0, bool) for k in training},
        )
    return Compared(
        pl.concat(parts),
        {f: np.concatenate([c[f] for c in codes]) for f in codes[0]},
        {k: np.concatenate([a[k] for a in agree]) for k in training},
    )


def weigh(model: LinkModel, right: pl.DataFrame, compared: Compared) -> pl.DataFrame:
    """The compared pairs with their match weight under `model`."""
    tf_columns = [p.comparison.tf_column for p in model.comparisons if p.tf_adjust and p.comparison.tf_column]
    positions = compared.pairs.get_column("right_pos")
    values = pl.DataFrame(
        {f"{c}_r": right.get_column(c).gather(positions) for c in dict.fromkeys(tf_columns) if c}
    )
    if values.width == 0:
        values = pl.DataFrame({"_n": np.zeros(compared.pairs.height)})
    return compared.pairs.with_columns(pl.Series("match_weight", model.total_weight(values, compared.codes)))


def decide(
    left: pl.DataFrame,
    right: pl.DataFrame,
    scored: pl.DataFrame,
    codes: dict[str, np.ndarray],
    model: LinkModel,
    rules: MatchingRules,
    *,
    left_id: str,
    right_id: str,
) -> pl.DataFrame:
    """The best candidate of every left record, its decision, and the explanation (from the level
    codes scoring already computed: nothing is compared twice)."""
    best = _best_and_runner_up(scored, right)
    tf_columns = [p.comparison.tf_column for p in model.comparisons if p.tf_adjust and p.comparison.tf_column]
    gathered = gather_pairs(
        left,
        right,
        best.get_column("left_pos").to_numpy(),
        best.get_column("right_pos").to_numpy(),
        [c for c in tf_columns if c],
    )
    chosen_pairs = best.get_column("pair").to_numpy()
    detail = model.score(gathered, {f: c[chosen_pairs] for f, c in codes.items()})
    chosen = _chosen(best, detail, right.get_column("rid"), rules)
    explanation = _explanation([c.field for c in model.comparisons])
    return _one_row_per_record(left, chosen, explanation, left_id=left_id, right_id=right_id)


def _best_and_runner_up(scored: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """Each left record's best candidate pair, with its runner-up's position and weight."""
    # Ties (household members who look alike) break on the candidate's id, so a batch run and an
    # online lookup, which see the candidates in different orders, choose the same one.
    candidates = scored.filter(pl.col("hard") != HARD_DIFFERENT)
    candidates = candidates.with_columns(
        right.get_column("rid").gather(candidates.get_column("right_pos")).alias("_right_id")
    )
    ranked = candidates.sort(
        ["left_pos", "hard", "match_weight", "_right_id"], descending=[False, True, True, False]
    )
    # Sorted by record, a record's best candidate is its first row and the runner-up its second.
    record = ranked.get_column("left_pos").to_numpy()
    first = np.ones(len(record), dtype=bool)
    first[1:] = record[1:] != record[:-1]
    second = np.zeros(len(record), dtype=bool)
    second[1:] = first[:-1] & ~first[1:]
    best = ranked.filter(pl.Series(first))
    runner = ranked.filter(pl.Series(second)).select(
        "left_pos",
        pl.col("right_pos").alias("runner_pos"),
        pl.col("match_weight").alias("runner_weight"),
    )
    return best.join(runner, on="left_pos", how="left")


def _decisions(best: pl.DataFrame, rules: MatchingRules) -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """(match probability, runner-up probability, decision) of each best pair, by the rules' bands."""
    weight = best.get_column("match_weight").to_numpy()
    runner_weight = best.get_column("runner_weight").fill_null(-1e3).to_numpy()
    probability = 1.0 / (1.0 + np.exp2(-weight))
    runner_p = 1.0 / (1.0 + np.exp2(-runner_weight))
    # If exactly one of the two best candidates is the person, how likely is it the best one?
    # Twins and household members that both look right leave this near 0.5: a reviewer decides.
    share = 1.0 / (1.0 + np.exp2(np.clip(runner_weight - weight, -1e3, 1e3)))
    hard = best.get_column("hard").to_numpy()
    probability = np.where(hard == HARD_SAME, 1.0, probability)
    bands = rules.bands
    decisions = ("match", "review", "new")
    decision = pl.Series(
        np.select(
            [
                hard == HARD_SAME,
                (probability >= bands.match) & (runner_p >= bands.review) & (share < bands.match),
                probability >= bands.match,
                probability >= bands.review,
            ],
            [0, 1, 0, 1],
            default=2,
        )
    ).replace_strict(dict(enumerate(decisions)), return_dtype=pl.String)
    return probability, runner_p, decision


def _chosen(
    best: pl.DataFrame, detail: pl.DataFrame, right_ids: pl.Series, rules: MatchingRules
) -> pl.DataFrame:
    """The best pairs with their decision, runner-up and each comparison's level and weight."""
    probability, runner_p, decision = _decisions(best, rules)
    return pl.concat(
        [
            best.select(
                "left_pos",
                "rule",
                "hard",
                pl.Series("candidate", right_ids.gather(best.get_column("right_pos")), dtype=pl.String),
                pl.Series("match_probability", np.round(probability, 6)),
                pl.col("match_weight").round(3),
                decision.alias("decision"),
                pl.Series("runner_up", right_ids.gather(best.get_column("runner_pos")), dtype=pl.String),
                pl.Series("runner_up_probability", np.round(runner_p, 6)),
            ),
            detail.select(
                [c for c in detail.columns if c.endswith(("_level", "_weight")) and c != "match_weight"]
            ),
        ],
        how="horizontal",
    ).with_columns(
        pl.when(pl.col("runner_up").is_not_null())
        .then(pl.col("runner_up_probability"))
        .alias("runner_up_probability")
    )


def _explanation(fields: list[str]) -> pl.Expr:
    """The explanation of a decision as JSON: candidate, blocking rule, hard rule, each
    comparison's level and weight, and the runner-up."""
    return pl.struct(
        pl.col("candidate"),
        pl.col("rule").alias("blocking"),
        pl.when(pl.col("hard") == HARD_SAME).then(pl.lit("same_valid_id")).alias("hard_rule"),
        *(
            pl.struct(pl.col(f"{f}_level").alias("level"), pl.col(f"{f}_weight").alias("weight")).alias(f)
            for f in fields
        ),
        pl.col("runner_up"),
        pl.col("runner_up_probability"),
    ).struct.json_encode()


def _one_row_per_record(
    left: pl.DataFrame, chosen: pl.DataFrame, explanation: pl.Expr, *, left_id: str, right_id: str
) -> pl.DataFrame:
    """One link row per left record, in its order; a record without a candidate is new."""
    return (
        left.select(pl.col("rid").alias(left_id))
        .with_row_index("left_pos")
        .join(
            chosen.select(
                "left_pos",
                pl.when(pl.col("decision") == "new")
                .then(None)
                .otherwise(pl.col("candidate"))
                .alias(right_id),
                "match_probability",
                "match_weight",
                "decision",
                explanation.alias("explanation"),
            ),
            on="left_pos",
            how="left",
        )
        .with_columns(
            pl.col("match_probability").fill_null(0.0),
            pl.col("decision").fill_null("new"),
            pl.col("explanation").fill_null('{"candidates":0}'),
        )
        .drop("left_pos")
    )


# --- entry points -------------------------------------------------------------------------------


def link_prepared(
    left: pl.DataFrame,
    right: pl.DataFrame,
    rules: MatchingRules,
    *,
    model: LinkModel | None = None,
    left_id: str = "event_id",
    right_id: str = "person_id",
    skip_keys: Collection[str] = (),
    all_candidates: bool = True,
) -> LinkOutput:
    """Link prepared frames (see `features.prepare`); train a model first when none is given.
    `skip_keys`: key strings too common in master when `right` holds only some of it.
    `all_candidates` False: with a model, blocking makes only the pairs a decision could choose
    (`candidates` then counts those), the same links in less time (`choosable_pairs`)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    rules_ = rules.blocking
    pruned = model is not None and not all_candidates and "different_valid_ids" in rules.hard_rules
    compatible = preparer(rules.entity)[1] if pruned else None
    blocking = _candidate_positions(left, right, rules_.rules, rules_.max_block, False, skip_keys, compatible)
    seconds["block"] = time.perf_counter() - started
    started = time.perf_counter()
    # With a model in hand nothing is trained on the pairs, so only those it could choose are compared.
    pairs = blocking.pairs if model is None or pruned else choosable_pairs(left, right, blocking.pairs, rules)
    compared = compare_pairs(left, right, pairs, rules)
    seconds["compare"] = time.perf_counter() - started
    if model is None:
        started = time.perf_counter()
        model = train_model(left, right, rules, compared=compared)
        fit_prior(model, compared.codes, float(left.height) * float(right.height))
        seconds["train"] = time.perf_counter() - started
    started = time.perf_counter()
    scored = weigh(model, right, compared)
    links = decide(left, right, scored, compared.codes, model, rules, left_id=left_id, right_id=right_id)
    seconds["decide"] = time.perf_counter() - started
    return LinkOutput(links, model, blocking.pairs.height, blocking.skipped, seconds)


def link_frames(
    events: pl.DataFrame,
    master: pl.DataFrame,
    rules: MatchingRules,
    *,
    event_id: str = "event_id",
    master_id: str = "person_id",
    mapping: Mapping[str, str] | None = None,
    model: LinkModel | None = None,
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> LinkOutput:
    """Events and master people as people wrote them -> one link row per event."""
    started = time.perf_counter()
    # The two sides are independent and polars releases the GIL: prepare them side by side, and
    # build the address gazetteer (once; the sides wait for it) while they start on names.
    prepare = preparer(rules.entity)[0]
    with ThreadPoolExecutor(3) as pool:
        pool.submit(gazetteer)  # should it fail, the sides fail on it too and say why
        left_job = pool.submit(
            prepare,
            events,
            id_column=event_id,
            today=today,
            address_hint=address_hint,
            mapping=mapping,
            source="events",
        )
        right_job = pool.submit(
            prepare,
            master,
            id_column=master_id,
            today=today,
            address_hint=address_hint,
            mapping=mapping,
            source="master",
        )
        left, right = left_job.result(), right_job.result()
    prepared = time.perf_counter() - started
    out = link_prepared(left, right, rules, model=model, left_id=event_id, right_id=master_id)
    out.seconds = {"prepare": prepared, **out.seconds}
    return out
