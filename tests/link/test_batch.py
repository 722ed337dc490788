import json
import sys
from pathlib import Path

import polars as pl
import pytest

from govdb.link import link_frames
from govdb.link.clusters import connected_components, dedupe_frame
from govdb.rulebook import Rulebook

from ..conftest import REPO, TODAY

sys.path.insert(0, str(REPO / "benchmarks"))
import linkgen

OUTPUT = ["event_id", "person_id", "match_probability", "match_weight", "decision", "explanation"]


@pytest.fixture(scope="module")
def generated() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return linkgen.generate(6000, 6000, "hard", seed=11)


def f1(links: pl.DataFrame, truth: pl.DataFrame) -> float:
    joined = links.join(truth, on="event_id", suffix="_true")
    chosen = joined.filter(pl.col("decision") == "match")
    tp = chosen.filter(pl.col("person_id") == pl.col("person_id_true")).height
    precision = tp / chosen.height
    recall = tp / truth.get_column("person_id").is_not_null().sum()
    return 2 * precision * recall / (precision + recall)


def test_batch_links_generated_hard_records_accurately(rules: Rulebook, generated) -> None:
    master, events, truth = generated
    out = link_frames(events, master, rules.matching["person"], today=TODAY)
    assert out.links.columns == OUTPUT and out.links.height == events.height
    assert f1(out.links, truth) > 0.95
    # EM ran on both training passes and estimated every comparison.
    passes = out.model.trained_on["em_passes"]
    assert [p["blocking"] for p in passes] == [["id_number"], ["name_pinyin", "birth_date"]]
    assert "m_from_rules" not in out.model.trained_on
    matched = out.links.filter(pl.col("decision") == "match").get_column("match_probability")
    assert matched.min() >= rules.matching["person"].bands.match


def household() -> tuple[pl.DataFrame, pl.DataFrame]:
    address = "广东省佛山市南海区桂城街道夏西社区居民委员会12号"
    master = pl.DataFrame(
        {
            "person_id": ["P1", "P2"],
            "name": ["张伟", "张小伟"],
            "gender": ["男", "男"],
            "birth_date": ["1960-05-01", "1988-09-09"],
            "id_number": ["440605196005011234", "440605198809091212"],
            "phone": ["13800138000", "13800138000"],
            "address": [address, address],
        }
    )
    events = pl.DataFrame(
        {
            "event_id": ["E1", "E2", "E3", "E4"],
            # E1: the father, traditional characters, no ID; E2: his ID with a homophone name;
            # E3: a new household member (own valid ID) sharing surname, address and phone;
            # E4: nobody here.
            "name": ["張偉", "张玮", "张伟", "李娜"],
            "gender": ["男", None, "男", "女"],
            "birth_date": ["1960年5月1日", None, "1960-05-01", "1990-01-01"],
            "id_number": [None, "440605196005011234", "44060519600501125X", None],
            "phone": ["13800138000", None, "13800138000", "13912345678"],
            "address": ["南海区桂城街道夏西社区居民委员会12号", None, address, "北京市朝阳区望京街道"],
        }
    )
    return master, events


def valid(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


def test_hard_rules_and_explanations(rules: Rulebook, generated) -> None:
    master, events = household()
    master = master.with_columns(
        pl.Series("id_number", [valid("44060519600501123"), valid("44060519880909121")])
    )
    events = events.with_columns(
        pl.Series("id_number", [None, valid("44060519600501123"), valid("44060519600501125"), None])
    )
    # Enough other people for u and the prior to mean something.
    other_master, other_events, _ = generated
    model = link_frames(other_events, other_master, rules.matching["person"], today=TODAY).model
    out = link_frames(events, master, rules.matching["person"], model=model, today=TODAY)
    rows = {r["event_id"]: r for r in out.links.iter_rows(named=True)}
    assert (rows["E1"]["person_id"], rows["E1"]["decision"]) == ("P1", "match")
    e1 = json.loads(rows["E1"]["explanation"])
    assert e1["name"]["level"] == "variant" and e1["birth_date"]["level"] == "exact"
    assert e1["address"]["level"] == "same_place" and e1["id_number"] == {"level": "null", "weight": 0.0}
    assert all(isinstance(e1[f]["weight"], float) for f in ("name", "phone", "address", "gender"))
    # The same valid ID decides, whatever the name.
    assert (rows["E2"]["person_id"], rows["E2"]["decision"]) == ("P1", "match")
    assert json.loads(rows["E2"]["explanation"])["hard_rule"] == "same_valid_id"
    # Same name, birth date, address and phone as P1, but a different valid ID: a different person.
    assert rows["E3"]["person_id"] is None and rows["E3"]["decision"] == "new"
    assert json.loads(rows["E3"]["explanation"]).get("candidate") != "P1"
    assert rows["E4"]["decision"] == "new" and rows["E4"]["match_probability"] < 0.5


def test_a_model_given_is_used_as_is(rules: Rulebook, generated) -> None:
    master, events, _ = generated
    first = link_frames(events.head(2000), master, rules.matching["person"], today=TODAY)
    again = link_frames(events.head(2000), master, rules.matching["person"], model=first.model, today=TODAY)
    assert again.links.equals(first.links) and "train" not in again.seconds


def test_connected_components_join_chains_and_leave_singletons() -> None:
    labels = connected_components(6, pl.Series([0, 1, 4]).to_numpy(), pl.Series([1, 2, 3]).to_numpy())
    assert labels.tolist() == [0, 0, 0, 3, 3, 5]
    assert connected_components(
        3, pl.Series([], dtype=pl.Int64).to_numpy(), pl.Series([], dtype=pl.Int64).to_numpy()
    ).tolist() == [0, 1, 2]


def test_dedupe_clusters_repeated_submissions(rules: Rulebook, generated) -> None:
    _, events, truth = generated
    sample = events.head(3000)
    out = dedupe_frame(sample, rules.matching["person"], id_column="event_id", today=TODAY)
    clusters = out.clusters.join(truth, on="event_id")
    assert clusters.height == sample.height
    # Records put together are the same person (when that person is known).
    together = clusters.filter(pl.col("cluster_size") > 1, pl.col("person_id").is_not_null())
    purity = together.group_by("cluster_id").agg(pl.col("person_id").n_unique().alias("people"))
    assert together.height > 0 and (purity.get_column("people") == 1).mean() > 0.95
    # And most repeated submissions of a known person end up together (both copies corrupted
    # independently, most without an ID: harder than linking to clean master records).
    repeated = (
        clusters.filter(pl.col("person_id").is_not_null())
        .group_by("person_id")
        .agg(pl.col("cluster_id").n_unique().alias("clusters"), pl.len().alias("records"))
        .filter(pl.col("records") > 1)
    )
    assert (repeated.get_column("clusters") == 1).mean() > 0.7


def test_bad_input_names_the_file_and_the_column(rules: Rulebook, tmp_path: Path) -> None:
    from govdb.errors import InputFileError

    master, events = household()
    with pytest.raises(InputFileError, match="events: no 'event_id' column"):
        link_frames(events.drop("event_id"), master, rules.matching["person"])
    with pytest.raises(InputFileError, match="master: row 2 has an empty 'person_id'"):
        link_frames(
            events, master.with_columns(pl.Series("person_id", ["P1", None])), rules.matching["person"]
        )


def test_the_generator_gives_the_same_records_in_every_process(tmp_path: Path) -> None:
    import os
    import subprocess

    sizes = ["--master", "800", "--events", "800", "--profile", "hard", "--seed", "3"]
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "linkgen.py"), *sizes, "--out", str(tmp_path / seed)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},  # set order differs between the two
        )
    for name in ("master", "events", "truth"):
        assert pl.read_parquet(tmp_path / "1" / f"{name}.parquet").equals(
            pl.read_parquet(tmp_path / "2" / f"{name}.parquet")
        ), name


def test_linking_twice_gives_the_same_links(rules: Rulebook, generated) -> None:
    master, events, _ = generated
    person = rules.matching["person"]
    first = link_frames(events, master, person, today=TODAY).links
    assert first.equals(link_frames(events, master, person, today=TODAY).links)


def test_pairs_no_decision_could_choose_are_not_compared(rules: Rulebook, generated, monkeypatch) -> None:
    """Under `different_valid_ids`, a pair of two different valid ID numbers is never chosen nor a
    runner-up: with a model given it is dropped before comparing, and every link stays the same."""
    import govdb.link.batch as batch

    master, events, _ = generated
    person = rules.matching["person"]
    model = link_frames(events, master, person, today=TODAY).model
    compared: list[int] = []
    real_compare = batch.compare_pairs

    def counting(left, right, pairs, rules_, **kw):
        compared.append(pairs.height)
        return real_compare(left, right, pairs, rules_, **kw)

    monkeypatch.setattr(batch, "compare_pairs", counting)
    pruned = link_frames(events, master, person, model=model, today=TODAY)
    monkeypatch.setattr(batch, "choosable_pairs", lambda left, right, pairs, rules_: pairs)
    everything = link_frames(events, master, person, model=model, today=TODAY)
    assert pruned.links.equals(everything.links)
    assert pruned.candidates == everything.candidates == compared[1]
    assert compared[0] < compared[1]  # pairs of two different valid numbers were left out
    # A record without a valid number keeps every candidate, and is still linked the same.
    missing = events.with_columns(pl.lit(None, pl.String).alias("id_number"))
    monkeypatch.undo()
    pruned = link_frames(missing.head(500), master, person, model=model, today=TODAY).links
    monkeypatch.setattr(batch, "choosable_pairs", lambda left, right, pairs, rules_: pairs)
    assert pruned.equals(link_frames(missing.head(500), master, person, model=model, today=TODAY).links)


def test_blocking_that_makes_only_choosable_pairs_links_the_same(rules: Rulebook, generated) -> None:
    """`all_candidates=False` drops the pairs of two different valid ID numbers inside blocking's
    joins: every link is the same, and `candidates` counts the pairs compared."""
    import govdb.link.batch as batch
    from govdb.link.features import prepare

    master, events, _ = generated
    person = rules.matching["person"]
    model = link_frames(events, master, person, today=TODAY).model
    left = prepare(events, id_column="event_id", today=TODAY, source="events")
    right = prepare(master, id_column="person_id", today=TODAY, source="master")
    every = batch.link_prepared(left, right, person, model=model)
    pruned = batch.link_prepared(left, right, person, model=model, all_candidates=False)
    assert pruned.links.equals(every.links)
    chosen = batch.choosable_pairs(
        left,
        right,
        batch._candidate_positions(
            left, right, person.blocking.rules, person.blocking.max_block, False
        ).pairs,
        person,
    )
    assert pruned.candidates == chosen.height < every.candidates
    # Without a model (training needs every pair) nothing is pruned.
    assert batch.link_prepared(left, right, person, all_candidates=False).candidates == every.candidates
