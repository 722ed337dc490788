"""The command line as scripts use it: every reporting or listing command with --json (and --csv
where it lists) parses; piped output is plain and never truncated; exit codes are documented;
help and --version load none of the heavy libraries."""

import csv
import dataclasses
import io
import json
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


def document(*args: str) -> Any:
    """The one JSON document a report prints on stdout (messages go to stderr)."""
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def json_lines(*args: str) -> list[dict[str, Any]]:
    """The JSON Lines a listing prints: one object a line."""
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(isinstance(row, dict) for row in rows)
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
    from govdb.cli.verification import OutcomeChoice, TaskStateChoice
    from govdb.store.states import Outcome, TaskState
    from govdb.validate import Retry

    assert {c.value for c in TaskStateChoice} == {s.value for s in TaskState} | {"all"}
    assert [c.value for c in OutcomeChoice] == [o.value for o in Outcome]
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
