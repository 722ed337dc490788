"""Enterprise matching from rules/matching/enterprise.yaml: USCC, name core, representative."""

from __future__ import annotations

import json
import random

import polars as pl

from govdb.link import link_frames
from govdb.link.features import prepare_enterprises
from govdb.rulebook import Rulebook
from govdb.standards.uscc import ALPHABET, WEIGHTS

from ..conftest import TODAY

CORES = list("华强五金宏达建材兴旺食品永安物流金源电子恒丰纺织博远科技瑞祥家具")
FORMS = ["有限公司", "有限责任公司", "股份有限公司"]
REPS = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴霞"]


def uscc(rng: random.Random) -> str:
    body = "91" + "440605" + "".join(rng.choice(ALPHABET[:10]) for _ in range(9))
    body = body[:17]
    total = sum(ALPHABET.index(c) * w for c, w in zip(body, WEIGHTS, strict=True))
    return body + ALPHABET[(31 - total % 31) % 31]


def registry(n: int, seed: int = 3) -> pl.DataFrame:
    rng = random.Random(seed)
    rows, cores = [], set()
    while len(rows) < n:
        core = "".join(rng.sample(CORES, 4))
        if core in cores:
            continue
        cores.add(core)
        rows.append(
            {
                "enterprise_id": f"E{len(rows):04d}",
                "name": f"佛山市南海区{core}{rng.choice(FORMS)}",
                "uscc": uscc(rng),
                "legal_representative": rng.choice(REPS) + rng.choice("明华军"),
                "phone": f"0757-8{rng.randrange(1000000, 9999999)}",
                "address": f"广东省佛山市南海区桂城街道夏西社区居民委员会{rng.randrange(1, 300)}号",
            }
        )
    return pl.DataFrame(rows)


def test_core_names_drop_legal_forms_and_leading_places() -> None:
    frame = prepare_enterprises(
        pl.DataFrame(
            {
                "id": ["1", "2", "3"],
                "name": [
                    "佛山市南海区华强五金有限公司",
                    "华强五金有限责任公司",
                    "广东省佛山市 华强五金（南海）分公司",
                ],
            }
        ),
        id_column="id",
    )
    assert frame.get_column("name_core").to_list() == ["华强五金", "华强五金", "华强五金(南海)分公司"]


def test_enterprise_records_link_by_code_name_and_representative(rules: Rulebook) -> None:
    master = registry(300)
    rng = random.Random(9)
    picks = master.sample(40, seed=1)
    events = []
    for i, row in enumerate(picks.iter_rows(named=True)):
        core = row["name"].removeprefix("佛山市南海区")
        kind = i % 4
        code = row["uscc"]
        if kind == 1:  # one character mistyped
            k = rng.randrange(8, 16)
            code = code[:k] + ("1" if code[k] != "1" else "2") + code[k + 1 :]
        events.append(
            {
                "case_id": f"C{i}",
                "name": core if kind != 2 else core.replace("有限公司", "有限责任公司"),
                "uscc": None if kind in (2, 3) else code,
                "legal_representative": row["legal_representative"],
                "phone": row["phone"] if kind != 3 else None,
                "address": row["address"],
                "truth": row["enterprise_id"],
            }
        )
    # A branch: the same name and representative as its head office, its own valid code.
    head = master.row(0, named=True)
    events.append(
        {
            "case_id": "BRANCH",
            "name": head["name"],
            "uscc": uscc(random.Random(99)),
            "legal_representative": head["legal_representative"],
            "phone": head["phone"],
            "address": head["address"],
            "truth": None,
        }
    )
    frame = pl.DataFrame(events)
    out = link_frames(
        frame.drop("truth"),
        master,
        rules.matching["enterprise"],
        event_id="case_id",
        master_id="enterprise_id",
        today=TODAY,
    )
    links = out.links.join(frame.select("case_id", "truth"), on="case_id")
    known = links.filter(pl.col("truth").is_not_null())
    assert (known.get_column("enterprise_id") == known.get_column("truth")).mean() >= 0.95
    assert (known.get_column("decision") == "match").mean() >= 0.9
    branch = links.row(by_predicate=pl.col("case_id") == "BRANCH", named=True)
    assert branch["enterprise_id"] is None and branch["decision"] == "new"
    typo = json.loads(links.row(by_predicate=pl.col("case_id") == "C1", named=True)["explanation"])
    assert typo["uscc"]["level"] == "one_digit" and typo["name"]["level"] in ("exact", "same_core")


def test_link_one_is_for_people(rules: Rulebook) -> None:
    import pytest

    from govdb.errors import ConfigError
    from govdb.link.online import link_one

    with pytest.raises(ConfigError, match="link_one links people"):
        link_one(None, {"name": "华强五金"}, rules.matching["enterprise"], None)  # type: ignore[arg-type]
