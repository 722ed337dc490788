import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from govdb.errors import InputFileError
from govdb.link.model import (
    ComparisonParams,
    LinkModel,
    estimate_prior,
    exact_u,
    expectation_maximisation,
    patterns,
    training_fields,
)


def simulate(n: int, lam: float, m: dict[str, list[float]], u: dict[str, list[float]], seed: int = 1):
    """Comparison codes of n pairs drawn from a known two-class model (last level = null, 10%)."""
    rng = np.random.default_rng(seed)
    is_match = rng.random(n) < lam
    codes = {}
    for field in m:
        k = len(m[field])
        drawn = np.where(is_match, rng.choice(k, n, p=m[field]), rng.choice(k, n, p=u[field])).astype(np.int8)
        drawn[rng.random(n) < 0.1] = k  # null: no evidence either way
        codes[field] = drawn
    return codes, is_match


def test_em_recovers_known_m_and_the_proportion_of_matches() -> None:
    m = {"name": [0.85, 0.1, 0.05], "dob": [0.9, 0.07, 0.03], "phone": [0.6, 0.4]}
    u = {"name": [0.01, 0.04, 0.95], "dob": [0.002, 0.05, 0.948], "phone": [0.001, 0.999]}
    codes, is_match = simulate(300_000, 0.2, m, u)
    pattern_codes, counts = patterns(codes)
    assert counts.sum() == 300_000 and len(counts) <= 4 * 4 * 3
    start = {f: np.full(len(v), 1 / len(v)) for f, v in m.items()}
    result = expectation_maximisation(pattern_codes, counts, start, {f: np.array(v) for f, v in u.items()})
    assert result.proportion_matched == pytest.approx(is_match.mean(), abs=0.005)
    for field, truth in m.items():
        np.testing.assert_allclose(result.m[field], truth, atol=0.01)


def test_prior_is_the_share_of_matches_among_all_pairs_from_the_candidates_alone() -> None:
    m = {"name": [0.9, 0.1], "dob": [0.95, 0.05], "phone": [0.7, 0.3]}
    u = {"name": [0.001, 0.999], "dob": [0.0005, 0.9995], "phone": [0.0001, 0.9999]}
    codes, is_match = simulate(2_000_000, 0.002, m, u, seed=2)
    params = [ComparisonParams(f, "gender", np.array(m[f]), np.array(u[f])) for f in m]
    # Blocking keeps the pairs agreeing on something; the prior still refers to all pairs.
    blocked = (codes["name"] == 0) | (codes["dob"] == 0) | (codes["phone"] == 0)
    prior = estimate_prior({f: c[blocked] for f, c in codes.items()}, params, float(len(is_match)))
    assert prior == pytest.approx(is_match.mean(), rel=0.05)


def test_exact_u_is_the_chance_two_random_records_agree() -> None:
    left = pl.Series("v", ["a", "a", "b", None])
    right = pl.Series("v", ["a", "b", "b", "c"])
    # p_left: a 2/3, b 1/3; p_right: a 1/4, b 2/4, c 1/4
    assert exact_u(left, right) == pytest.approx(2 / 3 * 1 / 4 + 1 / 3 * 2 / 4)


EXACT_U_IN_A_PROCESS = """
import numpy as np, polars as pl
from govdb.link.model import exact_u
rng = np.random.default_rng(4)
values = pl.Series("v", rng.integers(0, 150_000, 400_000).astype(str))
print(repr(exact_u(values, values.sample(fraction=1.0, shuffle=True, seed=2))))
"""


def test_exact_u_is_the_same_float_whatever_the_number_of_threads() -> None:
    """polars sums a column a piece per thread: a 16-core server and a 2-core one built models
    differing in the last bits. The sum is numpy's now, in value order."""
    import os
    import subprocess
    import sys

    sums = set()
    for threads in ("1", "3", "8"):
        env = {**os.environ, "POLARS_MAX_THREADS": threads}
        run = subprocess.run(
            [sys.executable, "-c", EXACT_U_IN_A_PROCESS], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr[-2000:]
        sums.add(run.stdout.strip())
    assert len(sums) == 1, sums


def test_a_training_pass_leaves_alone_the_fields_it_blocks_on() -> None:
    fields = {"name": "name", "birth_date": "birth_date", "phone": "phone", "id_number": "id_number"}
    assert training_fields(["name_pinyin", "birth_date"], fields) == ["phone", "id_number"]
    assert training_fields(["id_number"], fields) == ["name", "birth_date", "phone"]


def model() -> LinkModel:
    return LinkModel(
        [
            ComparisonParams("name", "chinese_name", np.array([0.8, 0.05, 0.05, 0.04, 0.03, 0.03]),
                             np.array([0.001, 0.0001, 0.0005, 0.005, 0.05, 0.9434]), tf_adjust=True),
            ComparisonParams("gender", "gender", np.array([0.98, 0.02]), np.array([0.5, 0.5])),
        ],
        prior=1e-5,
        tf={"name": pl.DataFrame({"value": ["张伟"], "u_tf": [0.01]})},
        trained_on={"tf_floor": {"name": 1e-6}},
    )  # fmt: skip


def pair_frame(names: list[tuple[str, str]]) -> pl.DataFrame:
    from govdb.link.features import prepare

    left = prepare(
        pl.DataFrame({"rid": [str(i) for i in range(len(names))], "name": [a for a, _ in names]}),
        id_column="rid",
    )
    right = prepare(
        pl.DataFrame({"rid": [str(i) for i in range(len(names))], "name": [b for _, b in names]}),
        id_column="rid",
    )
    return pl.concat(
        [
            left.rename({c: f"{c}_l" for c in left.columns}),
            right.rename({c: f"{c}_r" for c in right.columns}),
        ],
        how="horizontal",
    )


def test_a_common_name_agreeing_is_weaker_evidence_than_a_rare_one() -> None:
    scored = model().score(pair_frame([("张伟", "张伟"), ("欧阳娜娜", "欧阳娜娜"), ("张伟", "李伟")]))
    common, rare, different = scored.get_column("name_weight").to_list()
    assert common == pytest.approx(np.log2(0.8 / 0.01), abs=1e-3)
    assert rare == pytest.approx(np.log2(0.8 / 1e-6), abs=1e-3)
    assert different < 0 < common < rare
    assert scored.get_column("name_level").to_list() == ["exact", "exact", "different"]


def test_a_model_survives_json_and_scores_the_same(tmp_path: Path) -> None:
    frame = pair_frame([("张伟", "张伟"), ("张伟", "张玮")])
    path = tmp_path / "model.json"
    model().save(path)
    again = LinkModel.load(path)
    assert again.score(frame).equals(model().score(frame))
    assert json.loads(path.read_text(encoding="utf-8"))["comparisons"][0]["levels"]["exact"] == [0.8, 0.001]


def test_a_file_that_is_not_a_model_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "links.json"
    path.write_text('{"prior": 0.1}', encoding="utf-8")
    with pytest.raises(InputFileError, match=r"links\.json: not a govdb linkage model"):
        LinkModel.load(path)


def test_weights_are_added_as_numpy_adds_them_without_touching_them() -> None:
    """A pair's total weight adds each comparison's weight in order into one buffer: bit for bit
    what summing the stacked weights gives, and the weights themselves are left as they were."""
    import numpy as np

    from govdb.link.model import _summed

    rng = np.random.default_rng(3)
    for count in (1, 2, 6, 9):
        arrays = [rng.normal(size=10_001) * 10.0 ** rng.integers(-3, 4) for _ in range(count)]
        kept = [a.copy() for a in arrays]
        assert np.array_equal(_summed(arrays), np.sum(arrays, axis=0))
        assert all(np.array_equal(a, b) for a, b in zip(arrays, kept, strict=True))
    with pytest.raises(ValueError, match="no weights"):
        _summed([])
