"""The command line as scripts use it: every reporting or listing command with --json (and --csv
where it lists) parses; piped output is plain and never truncated; exit codes are documented;
help and --version load none of the heavy libraries."""

import csv
import dataclasses
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from govdb.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
TRANSPORT = "wang@department:transport:440605"
HALL = "chen@department:service_hall:440605"
BUREAU = "zhou@department:data_bureau:440605"


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def json_commands() -> set[tuple[str, ...]]:
    """Every command (as its words, e.g. ("tasks", "list")) that takes --json."""
    import typer.main

    def walk(command: Any, path: tuple[str, ...]) -> Any:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        elif any("--json" in p.opts for p in command.params):
            yield path

    return set(walk(typer.main.get_command(app), ()))


PARSED: set[tuple[str, ...]] = set()  # the commands whose --json output a test parsed


def _parsed(args: tuple[str, ...]) -> None:
    for path in json_commands():
        if any(args[i : i + len(path)] == path for i in range(len(args))):
            PARSED.add(path)


def document(*args: str) -> Any:
    """The one JSON document a report prints on stdout (messages go to stderr)."""
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    _parsed(args)
    return data


def json_lines(*args: str) -> list[dict[str, Any]]:
    """The JSON Lines a listing prints: one object a line."""
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(isinstance(row, dict) for row in rows)
    _parsed(args)
    return rows


def csv_rows(*args: str) -> list[dict[str, str]]:
    result = run(*args, "--csv")
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def govdb(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess, its stdout a pipe (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-c", "from govdb.cli import main; main()", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A demo home, and the demo's own report as one JSON document."""
    home = tmp_path_factory.mktemp("scripts") / "home"
    report = document("demo", "--home", str(home), "--people", "120")
    return home, report


def _an_id_number(home: Path) -> str:
    """An 18-character ID number of someone over 60 in master."""
    with sqlite3.connect(home / "govdb.master.sqlite") as conn:
        (id_number,) = conn.execute(
            "SELECT id_number FROM person WHERE birth_date < '1960-01-01' AND division_code LIKE '440605%'"
            " ORDER BY id_number LIMIT 1"
        ).fetchone()
    assert len(id_number) == 18
    return str(id_number)


def test_demo_reports_as_one_document(demo: tuple[Path, dict[str, Any]]) -> None:
    _, report = demo
    assert report["district"]["county_code"] == "440605" and report["people_loaded"] == 120
    assert report["promote"]["promoted"] > 0 and "promoted_ids" not in report["promote"]
    assert report["second_run"]["issued"] == 0 and report["audit"]["ok"] is True
    assert {"rows", "error_rows", "by_reason"} <= set(report["process"]["validation"])


def test_every_reporting_and_listing_command_speaks_json(demo: tuple[Path, dict[str, Any]]) -> None:
    home, _ = demo
    h = ("--home", str(home))
    person = _an_id_number(home)

    tasks = json_lines(*h, "tasks", "list", "--state", "all", "--limit", "500")
    assert tasks and {"task_id", "unit_id", "state", "id_number", "payload", "created_at"} <= set(tasks[0])
    assert [r["task_id"] for r in csv_rows(*h, "tasks", "list", "--state", "all", "--limit", "500")] == [
        str(t["task_id"]) for t in tasks
    ]
    units = json_lines(*h, "units")
    assert {u["level"] for u in units} == {"village", "street", "department"}
    streets = csv_rows(*h, "units", "--level", "street")
    assert streets and {u["level"] for u in streets} == {"street"}
    assert {u["unit_id"] for u in streets} == {u["unit_id"] for u in units if u["level"] == "street"}

    form = document(*h, "prefill", "senior_transit_card", "--person", person, "--actor", TRANSPORT)
    assert {f["name"]: f["value"] for f in form["fields"]}["id_number"] == person
    fields = csv_rows(*h, "prefill", "senior_transit_card", "--person", person, "--actor", TRANSPORT)
    assert {f["name"]: f["value"] for f in fields}["id_number"] == person

    with sqlite3.connect(home / "govdb.master.sqlite") as conn:
        (uscc, enterprise_id) = conn.execute("SELECT uscc, enterprise_id FROM enterprise LIMIT 1").fetchone()
    market = "zhou@department:market_regulation:440605"
    licence = document(*h, "prefill", "food_business_licence", "--uscc", uscc, "--actor", market)
    assert licence["enterprise_id"] == enterprise_id and len(licence["fields"]) >= 10
    assert {f["name"]: f["value"] for f in licence["fields"]}["uscc"] == uscc
    rows = csv_rows(*h, "prefill", "food_business_licence", "--enterprise", enterprise_id, "--actor", market)
    assert {f["name"]: f["value"] for f in rows}["uscc"] == uscc

    programme = ("programme", "run", "senior_transit_card", "--as-of", "2030-01-01", "--dry-run")
    run_ = document(*h, *programme, "--actor", TRANSPORT)
    assert run_["eligible"] >= len(run_["selected"]) > 0 and run_["as_of"] == "2030-01-01"
    selected = csv_rows(*h, *programme, "--actor", TRANSPORT)
    assert [s["person_id"] for s in selected] == [s["person_id"] for s in run_["selected"]]
    assert json.loads(selected[0]["reasons"]) == run_["selected"][0]["reasons"]
    with sqlite3.connect(home / "govdb.master.sqlite") as conn:
        (offered,) = conn.execute("SELECT id FROM issuance WHERE status = 'offered' LIMIT 1").fetchone()
    mark = ("programme", "mark", str(offered), "--actor", TRANSPORT, "--to")
    assert document(*h, *mark, "accepted")["moved"] == [offered]
    delivered = document(*h, *mark, "delivered")
    assert delivered["moved"] == [offered] and delivered["credentials"][0]["kind"] == "senior_transit_card"
    again = run(*h, *mark, "declined", "--json")
    assert again.exit_code == 1 and not again.stdout and "delivered" in again.stderr
    assert run(*h, *mark, "offered").exit_code == 2  # not a state to move to

    file = document(*h, "profile", person, "--actor", TRANSPORT, "--purpose", "senior_transit_card")
    assert {f["name"]: f["value"] for f in file["fields"]}["id_number"] == person

    reads = json_lines(*h, "audit", "who-read", person, "--actor", HALL)
    assert {r["action"] for r in reads} >= {"prefill:senior_transit_card", "profile"}
    assert len(csv_rows(*h, "audit", "who-read", person, "--actor", HALL)) == len(reads) + 1  # asking is read
    chain = document(*h, "audit", "verify")
    assert chain["ok"] is True and chain["entries"] >= len(reads)
    rules = document(*h, "rules", "show")
    assert rules["differs"] is False and rules["applied"]["fingerprint"] == rules["governed_fingerprint"]

    quality = json_lines(*h, "quality")
    assert quality and {"source", "field", "events", "errors", "error_rate"} <= set(quality[0])
    assert len(csv_rows(*h, "quality")) == len(quality)

    # Stages that write: a new register, a hall file, process, decisions, promote, rules again.
    register = home.parent / "register.csv"
    register.write_text("姓名,身份证号\n张伟,11010519491231002X\n坏,123\n", encoding="utf-8")
    load = document(*h, "load", "people", str(register), "--source", "public_security")
    assert (load["read"], load["loaded"], load["refused_rows"]) == (2, 1, 1)
    assert load["refused"][0]["line"] == 3
    hall = home.parent / "hall.csv"
    hall.write_text("编号,姓名,身份证号,住址\nX1,张伟,11010519491231002X,桂城街道\nX2,坏\n", encoding="utf-8")
    ingest = (
        "ingest",
        str(hall),
        "--source",
        "hall",
        "--key",
        "编号",
        "--service",
        "hall.resident_registration",
    )
    report = document(*h, *ingest)
    assert (report["read"], report["stored"], report["quarantined"]) == (2, 1, 1)
    assert report["quarantine"][0]["line"] == 3
    assert csv_rows(*h, *ingest) == [{"line": "3", "reason": report["quarantine"][0]["reason"]}]
    processed = document(*h, "process")
    assert processed["validation"]["rows"] == 1 and "proposals" in processed["proposals"]
    open_tasks = json_lines(*h, "tasks", "list", "--limit", "500")
    if open_tasks:
        first = open_tasks[0]
        decided = document(
            *h, "tasks", "decide", str(first["task_id"]), "approve", "--actor", f"li@{first['unit_id']}"
        )
        assert decided["task_id"] == first["task_id"] and decided["outcome"] == "approve"
    batch = home.parent / "batch.csv"
    batch.write_text("task_id,outcome,reason,amendments\n999999,approve,,\n", encoding="utf-8")
    both = document(*h, "tasks", "decide", "--from", str(batch), "--actor", "li@village:440605011001",
                    "--allow-refusals")  # fmt: skip
    assert both["decided"] == [] and both["refused"][0]["line"] == 2
    promoted = document(*h, "promote")
    assert set(promoted) >= {"promoted", "people_created", "conflicts"}
    token = document(*h, "sources", "register", "hall_window_system")
    assert token["source"] == "hall_window_system" and len(token["token"]) > 20
    applied = document(*h, "rules", "apply", "--actor", BUREAU)
    assert applied["fingerprint"] == rules["governed_fingerprint"] and applied["changed"] == []


def test_file_commands_report_json(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "编号,姓名,身份证号,电话\nA1,张伟,11010519491231002X,13800138000\n"
        "A2,张伟,11010519491231002X,13800138000\nA3,李娜,440605196001011234,1\n",
        encoding="utf-8",
    )
    out = tmp_path / "std.csv"
    report = document("standardize", str(people), "--out", str(out), "--map", "姓名=name")
    assert report["rows"] == 3 and "name" in report["columns"] and report["out"] == str(out)
    assert isinstance(report["issues"], list)
    clusters = document(
        "dedupe", str(people), "--out", str(tmp_path / "c.csv"), "--id", "编号", "--map", "姓名=name",
        "--map", "身份证号=id_number", "--map", "电话=phone",
    )  # fmt: skip
    assert clusters["records"] == 3 and clusters["clusters"] == 2


def test_piped_output_is_plain_and_never_truncated(demo: tuple[Path, dict[str, Any]]) -> None:
    home, _ = demo
    person = _an_id_number(home)
    listing = govdb("--home", str(home), "tasks", "list", "--state", "all", "--limit", "500")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[:2] == ["tasks", "task\tlevel\tunit\tstate\tchange\tdivision\tname\tid number"]
    ids = [line.split("\t")[7] for line in lines[2:] if line]
    assert any(len(i) == 18 for i in ids), ids  # whole ID numbers, not 4406051940…
    assert "…" not in listing.stdout and "│" not in listing.stdout and "─" not in listing.stdout
    assert max(len(line) for line in lines) > 80  # nothing cut to a terminal's width
    form = govdb(
        "--home", str(home), "prefill", "senior_transit_card", "--person", person, "--actor", TRANSPORT
    )
    assert form.returncode == 0, form.stderr
    assert f"公民身份号码\t{person}\t" in form.stdout and "│" not in form.stdout
    # JSON through a real pipe: data only on stdout.
    units = govdb("--home", str(home), "units", "--level", "department", "--json")
    assert units.returncode == 0 and [json.loads(line)["level"] for line in units.stdout.splitlines()] == [
        "department"
    ] * len(units.stdout.splitlines())


def test_exit_codes_for_scripts(tmp_path: Path, demo: tuple[Path, dict[str, Any]]) -> None:
    home, _ = demo
    h = ("--home", str(home))
    bogus = run(*h, "tasks", "list", "--state", "bogus")
    assert bogus.exit_code == 2 and "'bogus' is not one of" in bogus.output and not bogus.stdout.strip()
    both = run(*h, "tasks", "list", "--json", "--csv")
    assert both.exit_code == 2 and "--json or --csv" in both.output
    level = run(*h, "units", "--level", "county")
    assert level.exit_code == 2
    outcome = run(*h, "tasks", "decide", "1", "maybe", "--actor", "li@village:440605011001")
    assert outcome.exit_code == 2 and "maybe" in outcome.output
    missing = run(*h, "prefill", "senior_transit_card", "--person", "11010519491231002X", "--actor",
                  "wang@department:transport:110105", "--json")  # fmt: skip
    assert missing.exit_code == 1 and not missing.stdout.strip() and "error:" in missing.stderr
    assert run("--home", str(tmp_path / "h"), "--rules", str(tmp_path), "units").exit_code == 2
    version = run("--version")
    assert version.exit_code == 0 and version.stdout.startswith("govdb ")


def test_cli_choices_follow_the_library() -> None:
    from govdb.access.audit import ReadRecord
    from govdb.cli.audit import READ_KEYS
    from govdb.cli.commands import RetryChoice
    from govdb.cli.programmes import Target as IssuanceChoice
    from govdb.cli.verification import OutcomeChoice, TaskStateChoice
    from govdb.store.states import IssuanceStatus, Outcome, TaskState
    from govdb.validate import Retry

    assert {c.value for c in TaskStateChoice} == {s.value for s in TaskState} | {"all"}
    assert [c.value for c in OutcomeChoice] == [o.value for o in Outcome]
    assert [c.value for c in IssuanceChoice] == [
        s.value for s in IssuanceStatus if s != IssuanceStatus.offered
    ]
    assert [c.value for c in RetryChoice] == [r.value for r in Retry]
    assert [f.name for f in dataclasses.fields(ReadRecord)] == READ_KEYS


def test_help_and_version_import_nothing_heavy() -> None:
    code = (
        "import sys, govdb.cli\n"
        "heavy = ['polars', 'sqlmodel', 'sqlalchemy', 'pandera', 'pyarrow', 'govdb.api', 'govdb.store']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    version = govdb("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("govdb 0.")
    helped = govdb("--help")
    assert helped.returncode == 0 and "units" in helped.stdout and "--version" in helped.stdout


def test_file_commands_read_headers_through_the_aliases_and_map(tmp_path: Path) -> None:
    """A hall file with Chinese headers links and dedupes without a --map; --map names what the
    aliases do not know; a file with no standard column is processed with a warning, not silently."""
    import polars as pl

    sys.path.insert(0, str(REPO / "benchmarks"))
    import linkgen

    master, events, _ = linkgen.generate(600, 300, "easy", seed=5)
    chinese = {"name": "姓名", "gender": "性别", "birth_date": "出生日期", "id_number": "身份证号",
               "phone": "联系电话", "address": "住址"}  # fmt: skip
    hall = tmp_path / "hall.csv"
    events.rename({"event_id": "受理编号", **chinese}).write_csv(hall)
    master.write_parquet(tmp_path / "master.parquet")
    links = tmp_path / "links.csv"
    report = document("link", str(hall), "--master", str(tmp_path / "master.parquet"), "--out", str(links),
                      "--event-id", "受理编号")  # fmt: skip
    assert report["candidates"] > 0 and report["decisions"].get("match", 0) > 100, report
    assert report["warnings"] == []
    assert pl.read_csv(links).height == events.height
    clusters = document("dedupe", str(hall), "--out", str(tmp_path / "c.csv"), "--id", "受理编号")
    assert clusters["records"] == events.height and clusters["clusters"] < events.height

    # No header the rules know: a warning on stderr (and in the JSON), no silent zero.
    odd = tmp_path / "odd.csv"
    events.rename({"event_id": "受理编号", "name": "申请者", "id_number": "证号"}).select(
        "受理编号", "申请者", "证号"
    ).write_csv(odd)
    result = run("link", str(odd), "--master", str(tmp_path / "master.parquet"), "--out", str(links),
                 "--event-id", "受理编号", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no standard column found" in result.stderr and "申请者" in result.stderr
    assert json.loads(result.stdout)["warnings"] and json.loads(result.stdout)["candidates"] == 0
    mapped = document("link", str(odd), "--master", str(tmp_path / "master.parquet"), "--out", str(links),
                      "--event-id", "受理编号", "--map", "申请者=name", "--map", "证号=id_number",
                      )  # fmt: skip
    assert mapped["candidates"] > 0 and mapped["warnings"] == []

    firms = tmp_path / "firms.csv"
    firms.write_text("企业名称,统一社会信用代码\n甲公司,91110000600037341L\n乙公司,bad\n", encoding="utf-8")
    out = tmp_path / "firms.std.csv"
    known = document("standardize", str(firms), "--out", str(out))  # 统一社会信用代码 is an alias
    assert known["columns"] == ["uscc"] and known["warnings"] == []
    std = document("standardize", str(firms), "--out", str(out), "--map", "统一社会信用代码=uscc")
    assert std["columns"] == ["uscc"] and std["warnings"] == []
    assert pl.read_csv(out, infer_schema=False).get_column("uscc_std").to_list() == [
        "91110000600037341L",
        None,
    ]
    bad = run("standardize", str(firms), "--out", str(out), "--map", "统一社会信用代码=credit")
    assert bad.exit_code == 1 and "'credit' is not a column govdb reads" in bad.output
    missing = run("standardize", str(firms), "--out", str(out), "--map", "信用代码=uscc")
    assert missing.exit_code == 1 and "not in the header" in missing.output


def test_ingest_keeps_its_map_for_process(tmp_path: Path) -> None:
    """`ingest --map` names a column the aliases do not know; process reads that batch through it."""
    home = tmp_path / "home"
    h = ("--home", str(home))
    init = document(*h, "init", "--district", "440605")
    assert init["district"]["villages"] > 100 and init["master_url"].endswith("govdb.master.sqlite")
    odd = tmp_path / "odd.csv"
    odd.write_text("编号,申请者,证号\nA1,张伟,11010519491231002X\n", encoding="utf-8")  # not mapped
    ingest = (
        "ingest",
        str(odd),
        "--source",
        "hall",
        "--key",
        "编号",
        "--service",
        "hall.resident_registration",
    )
    warned = run(*h, *ingest, "--json")
    assert warned.exit_code == 0 and "no standard column found" in warned.stderr
    assert any("no standard column" in w for w in json.loads(warned.stdout)["warnings"])
    odd.write_text("编号,申请者,证号\nA2,李娜,11010519491231002X\n", encoding="utf-8")
    mapped = document(*h, *ingest, "--map", "申请者=name", "--map", "证号=id_number")
    assert mapped["stored"] == 1 and not any("no standard column" in w for w in mapped["warnings"])
    refused = run(*h, *ingest, "--map", "姓名=name")
    assert refused.exit_code == 1 and "not in the header" in refused.output
    register = ("load", "people", str(odd), "--source", "public_security")
    assert "not in the header" in run(*h, *register, "--map", "身份证=id_number").output
    assert "'nickname' is not a column" in run(*h, *register, "--map", "申请者=nickname").output
    run(*h, "process", "--json")
    with sqlite3.connect(home / "govdb.events.sqlite") as conn:
        standardized = dict(conn.execute("SELECT source_key, standardized FROM event").fetchall())
    assert json.loads(standardized["A2"])["id_number"] == "11010519491231002X"
    assert json.loads(standardized["A2"])["name"] == "李娜"
    assert "id_number" not in json.loads(standardized["A1"] or "{}")


def test_a_store_that_cannot_be_reached_is_one_line_without_the_password(tmp_path: Path) -> None:
    down = "postgresql+psycopg://u:secret@127.0.0.1:1/x"
    result = govdb("--home", str(tmp_path / "h"), "--master-url", down, "--events-url", down + "y", "units")
    assert result.returncode == 1 and not result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "secret" not in result.stderr and "postgresql+psycopg://u:***@127.0.0.1:1/x" in lines[0]
    assert "is the database server running" in lines[0]


def test_shell_completion_is_offered_and_completes_commands_and_choices() -> None:
    script = Path(sys.executable).with_name("govdb")
    if not script.exists():
        pytest.skip("the govdb console script is not installed next to this Python")
    shown = subprocess.run([script, "--show-completion", "bash"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0 and "_govdb_completion" in shown.stdout
    assert "--install-completion" in subprocess.run([script, "--help"], capture_output=True, text=True).stdout

    def complete(words: str, index: int) -> list[str]:
        env = {
            **os.environ,
            "_GOVDB_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(index),
        }
        done = subprocess.run([script], capture_output=True, text=True, env=env, check=False)
        return done.stdout.split()

    assert complete("govdb prog", 1) == ["programme"]
    assert complete("govdb programme mark 1 --to ", 5) == ["accepted", "declined", "delivered"]


def test_corrections_and_programme_listings_speak_json(demo: tuple[Path, dict[str, Any]]) -> None:
    home, _ = demo
    h = ("--home", str(home))
    police = "zhao@department:public_security:440605"
    changes = json_lines(*h, "changes", "--since", "0", "--limit", "3")
    assert [c["seq"] for c in changes[:-1]] == [1, 2, 3] and changes[-1]["cursor"] == "3"
    conflicts = json_lines(*h, "conflicts", "list", "--actor", police, "--status", "all")
    assert all(c["owner_department"] == "public_security" for c in conflicts)
    offers = json_lines(*h, "programme", "offers", "senior_transit_card", "--actor", TRANSPORT)
    assert offers and {"status", "person_id", "cycle"} <= set(offers[0])
    exported = json_lines(*h, "programme", "export", "senior_transit_card", "--actor", TRANSPORT)
    assert {e["person_id"] for e in exported} >= {o["person_id"] for o in offers}
    with sqlite3.connect(home / "govdb.master.sqlite") as conn:
        person_id, proposal_id = conn.execute(
            "SELECT entity_id, proposal_id FROM promotion p"
            " WHERE entity_kind = 'person' AND reverted_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM fieldhistory f WHERE f.proposal_id = p.proposal_id"
            " AND f.valid_to IS NOT NULL) AND EXISTS (SELECT 1 FROM fieldhistory f"
            " WHERE f.entity_id = p.entity_id AND f.bulk_load_id IS NOT NULL) ORDER BY applied_at LIMIT 1"
        ).fetchone()
    values = json_lines(*h, "as-of", "person", person_id, "--actor", police, "--purpose", "identity_lookup")
    assert values and all({"field", "value", "valid_from", "recorded_at"} <= set(v) for v in values)
    reverted = document(*h, "revert", proposal_id, "--actor", BUREAU, "--reason", "误录")
    assert reverted["proposal_id"] == proposal_id and reverted["restored"] + reverted["cleared"]
    if conflicts and conflicts[0]["status"] == "open":
        resolved = document(
            *h, "conflicts", "resolve", str(conflicts[0]["conflict_id"]), "keep", "--actor", police
        )
        assert resolved["resolution"] == "keep"
    else:
        # The demo has no conflict; tests/test_correct.py parses `conflicts resolve --json`.
        _parsed(("conflicts", "resolve"))
    with sqlite3.connect(home / "govdb.events.sqlite") as conn:
        found = conn.execute(
            "SELECT p.entity_id, p.event_id FROM proposal p WHERE p.state = 'promoted'"
            " AND p.change = 'update_person' AND p.entity_id <> ? LIMIT 1",
            (person_id,),
        ).fetchone()
    assert found, "the demo promotes updates of people"
    split = document(*h, "split", found[0], "--event", str(found[1]), "--actor", BUREAU, "--reason", "错并")
    assert split["event_ids"] == [found[1]]


def test_every_command_with_json_was_run_and_parsed(request: pytest.FixtureRequest) -> None:
    """Runs last: each command that takes --json had its output parsed by a test of this file."""
    ran = {item.name for item in request.session.items if item.module is request.module}
    if not {name for name in globals() if name.startswith("test_")} <= ran:
        pytest.skip("run with the whole file: the other tests parse the commands' output")
    # The analytics commands' JSON is parsed by tests/test_analytics_cli.py, on a seeded hotline.
    elsewhere = {path for path in json_commands() if path[0] == "analytics"}
    source = (Path(__file__).parent / "test_analytics_cli.py").read_text(encoding="utf-8")
    assert all(f'"analytics", "{path[1]}"' in source for path in elsewhere)
    assert sorted(json_commands() - PARSED - elsewhere) == []
