import shutil
from pathlib import Path

import pytest

from govdb import GovdbError, RuleFileError, load_rulebook
from govdb.rulebook import registry

REPO = Path(__file__).resolve().parents[1]


def test_every_rules_file_loads() -> None:
    book = load_rulebook(REPO / "rules")
    files = sorted(p.name for p in (REPO / "rules").rglob("*.yaml"))
    assert len(files) == 16 and set(book.matching) == {"person", "enterprise"}
    assert set(book.survivorships) == {"person", "enterprise", "place"}
    matching = book.matching["person"]
    assert ["id_number"] in matching.blocking.rules and matching.bands.review < matching.bands.match
    assert set(book.forms) == {"senior_transit_card", "public_rental_housing", "food_business_licence"}
    assert len(book.forms["food_business_licence"].fields) >= 10
    assert len(book.forms["public_rental_housing"].fields) >= 10
    assert book.programmes["senior_transit_card"].eligibility[2].params == {"years": 60}
    assert set(book.programmes) == {p.stem for p in (REPO / "rules" / "programmes").glob("*.yaml")}
    assert [s.level for s in book.verification.routes["new_person"].steps] == [
        "village",
        "street",
        "department",
    ]


def test_matching_rules_reject_unknown_keys_methods_and_bands_out_of_order(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    person = rules / "matching" / "person.yaml"
    person.write_text(
        person.read_text(encoding="utf-8")
        .replace("- [phone]", "- [phone_number]")
        .replace("method: gender", "method: sex")
        .replace("review: 0.5", "review: 0.99"),
        encoding="utf-8",
    )
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    text = str(info.value)
    assert "person.yaml" in text
    assert "blocking.rules.2.0" in text and "phone_number" in text
    assert "comparisons.3.method" in text and "sex" in text
    assert "review (0.99) must not be above match" in text


def test_a_single_matching_file_loads_alone_and_names_its_problems(tmp_path: Path) -> None:
    from govdb.rulebook import load_matching

    assert load_matching(REPO / "rules" / "matching" / "person.yaml").entity == "person"
    bad = tmp_path / "m.yaml"
    bad.write_text("kind: form\nversion: 1\n", encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"m\.yaml"):
        load_matching(bad)
    with pytest.raises(RuleFileError, match="not found"):
        load_matching(tmp_path / "missing.yaml")


def test_registry_names_every_block_used() -> None:
    names = {(b.kind, b.name) for b in registry.blocks()}
    assert {("eligibility", "age_at_least"), ("auto_pass", "from_own_system"), ("mask", "keep_ends")} <= names


def test_the_rulebook_declares_blocks_and_the_stages_implement_every_one() -> None:
    """The registry imports no stage (tests/test_layers.py); importing govdb imports the stages,
    which implement every declared block, and a block's params are the declared ones."""
    import govdb  # noqa: F401  (the stages register their implementations when imported)

    for block in registry.blocks():
        assert callable(block.function), block.name
        assert block.doc, block.name
    with pytest.raises(GovdbError, match="declared with params AgeParams"):
        registry.register("eligibility", "age_at_least", registry.NoParams)(lambda pop, params: None)
    undeclared = registry.Block("mask", "not_a_block", registry.NoParams, "")
    with pytest.raises(GovdbError, match="declared but not implemented"):
        undeclared.function  # noqa: B018


def test_bad_files_fail_at_load_with_file_and_field_all_in_one_report(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    prog = rules / "programmes" / "senior_transit_card.yaml"
    prog.write_text(
        prog.read_text(encoding="utf-8")
        .replace("years: 60", "years: sixty")
        .replace("block: alive", "block: alive_and_well"),
        encoding="utf-8",
    )
    form = rules / "forms" / "senior_transit_card.yaml"
    form.write_text(
        form.read_text(encoding="utf-8").replace("person.name}", "person.nickname}"), encoding="utf-8"
    )
    (rules / "forms" / "broken.yaml").write_text("kind: form\nversion: 1\n  bad: [", encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    text = str(info.value)
    assert "senior_transit_card.yaml: eligibility.2.params.years" in text
    assert "no eligibility block named 'alive_and_well'" in text
    assert "broken.yaml" in text and "not valid YAML" in text
    assert len(info.value.problems) >= 3


def test_unknown_key_and_missing_department(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    routes = rules / "verification" / "routes.yaml"
    routes.write_text(
        routes.read_text(encoding="utf-8").replace(
            "department: public_security}", "department: police, colour: red}"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    assert "routes.yaml: routes.new_person.steps.2.colour" in str(info.value)


def test_matching_rules_name_only_keys_and_fields_their_entity_has(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    enterprise = rules / "matching" / "enterprise.yaml"
    enterprise.write_text(
        enterprise.read_text(encoding="utf-8")
        .replace("- [phone]", "- [birth_date]")
        .replace("{field: phone, method: phone}", "{field: gender, method: gender}"),
        encoding="utf-8",
    )
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    text = str(info.value)
    assert "enterprise.yaml" in text and "enterprise records have no fields ['gender']" in text


def test_enterprise_and_place_rules_are_checked(tmp_path: Path) -> None:
    """Survivorship per entity once, a place service names its kind, enterprise fields exist."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "survivorship" / "enterprise2.yaml").write_text(
        (rules / "survivorship" / "enterprise.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    routes = rules / "verification" / "routes.yaml"
    routes.write_text(
        routes.read_text(encoding="utf-8").replace("    place_kind: road\n", ""), encoding="utf-8"
    )
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    text = str(info.value)
    assert "enterprise2.yaml: entity" in text and "survivorship of 'enterprise' is defined twice" in text
    assert "services.hall.road_naming" in text and "place_kind" in text
    # References across files are checked once every file loads.
    shutil.rmtree(rules)
    shutil.copytree(REPO / "rules", rules)
    access = rules / "access" / "departments.yaml"
    access.write_text(
        access.read_text(encoding="utf-8").replace("enterprise.business_scope,", "enterprise.turnover,"),
        encoding="utf-8",
    )
    form = rules / "forms" / "food_business_licence.yaml"
    form.write_text(
        form.read_text(encoding="utf-8").replace("enterprise.status}", "enterprise.rating}"), encoding="utf-8"
    )
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    text = str(info.value)
    assert "unknown master field 'enterprise.turnover'" in text
    assert "unknown source 'enterprise.rating'" in text


def test_a_rule_file_nested_too_deeply_fails_with_its_name(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    deep = "{not: " * 3000 + "{block: alive}" + "}" * 3000
    path = rules / "programmes" / "senior_transit_card.yaml"
    text = path.read_text(encoding="utf-8").replace("  - {block: alive}", f"  - {deep}", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"senior_transit_card\.yaml"):
        load_rulebook(rules)
