from pathlib import Path

import pytest
from typer.testing import CliRunner

from govdb.cli import app
from govdb.cli.commands import programme_app, tasks_app

runner = CliRunner()


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli") / "home"
    result = run("demo", "--home", str(home), "--people", "120")
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "home deliveries" in result.output
    assert "issued now\t0" in result.stdout  # the second run (plain text: stdout is not a terminal)
    return home


def test_demo_then_stage_commands(demo_home: Path) -> None:
    result = run("--home", str(demo_home), "tasks", "list", "--state", "all", "--limit", "5")
    assert result.exit_code == 0 and "village" in result.output
    result = run(
        "--home",
        str(demo_home),
        "programme",
        "run",
        "senior_transit_card",
        "--as-of",
        "2030-01-01",
        "--dry-run",
    )
    assert result.exit_code == 2 and "--actor" in result.output  # a run reads personal data: who?
    result = run(
        "--home",
        str(demo_home),
        "programme",
        "run",
        "senior_transit_card",
        "--as-of",
        "2030-01-01",
        "--dry-run",
        "--actor",
        "wang@department:transport:440605",
    )
    assert result.exit_code == 0 and "eligible" in result.output
    result = run("--home", str(demo_home), "promote")
    assert result.exit_code == 0 and "promoted" in result.output


def test_ingest_and_process_from_the_command_line(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert run("--home", home, "init", "--district", "440605").exit_code == 0
    data = tmp_path / "hall.csv"
    data.write_bytes(
        "编号,姓名,身份证号,村居代码\r\nA1,张伟,11010519491231002X,440605011001\r\nA2,坏\r\n".encode("gbk")
    )
    result = run(
        "--home",
        home,
        "ingest",
        str(data),
        "--source",
        "hall",
        "--key",
        "编号",
        "--service",
        "hall.resident_registration",
    )
    assert result.exit_code == 0 and "quarantined" in result.output and "expected 4 fields" in result.output
    result = run("--home", home, "process")
    assert result.exit_code == 0 and "proposals" in result.output


def test_user_errors_are_one_clear_line_without_traceback(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    result = run("--home", home, "ingest", str(tmp_path / "nope.csv"), "--source", "x")
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output
    result = run(
        "--home",
        home,
        "prefill",
        "senior_transit_card",
        "--person",
        "11010519491231002X",
        "--actor",
        "wang@department:transport:440605",
    )
    assert result.exit_code == 1 and "is not registered" in result.output
    result = run("--home", home, "tasks", "decide", "1", "approve", "--actor", "nobody")
    assert result.exit_code == 2 and "ACTOR@UNIT" in result.output
    result = run("--home", home, "--rules", str(tmp_path), "process")
    assert result.exit_code == 2 and "no rule file of kind" in result.output


def test_every_command_has_help_with_an_example() -> None:
    for sub in (app, tasks_app, programme_app):
        for command in sub.registered_commands:
            doc = command.callback.__doc__ or ""
            assert "Example:" in doc, command.callback.__name__


def test_standardize_file_keeps_columns_and_adds_std_and_issues(tmp_path: Path) -> None:
    import polars as pl

    source = tmp_path / "people.csv"
    source.write_bytes(
        (
            "姓名,id_number,phone,address,uscc,备注\r\n"
            "张 伟,11010519491231002x,+86 138 0013 8000,广东佛山南海桂城南海大道1号,91110000600037341L,甲\r\n"
            "李娜,123,1,朝阳区,bad,乙\r\n"
        ).encode("gbk")
    )
    for out in (tmp_path / "out.csv", tmp_path / "out.parquet"):
        result = run("standardize", str(source), "--out", str(out), "--map", "姓名=name")
        assert result.exit_code == 0, result.output
        frame = pl.read_csv(out, infer_schema=False) if out.suffix == ".csv" else pl.read_parquet(out)
        assert {
            "name",
            "备注",
            "name_std",
            "name_issues",
            "name_pinyin",
            "id_number_std",
            "id_number_issues",
            "division_code",
            "division_level",
            "address_rest",
            "address_status",
            "uscc_std",
        } <= set(frame.columns)
        first, second = frame.to_dicts()
        assert (first["name_std"], first["name_pinyin"], first["id_number_std"]) == (
            "张伟",
            "zhang wei",
            "11010519491231002X",
        )
        assert (first["division_code"], first["address_rest"], first["address_status"]) == (
            "440605011",
            "南海大道1号",
            "ok",
        )
        assert second["id_number_issues"] == "id_format" and second["address_status"] == "ambiguous"
    result = run("standardize", str(source), "--out", str(tmp_path / "x.txt"))
    assert result.exit_code == 1 and ".csv or .parquet" in result.output


def test_quality_reports_error_rates_per_source_and_field(demo_home: Path) -> None:
    result = run("quality", "--home", str(demo_home))
    assert result.exit_code == 0
    assert "data quality by source and field" in result.output and "id_number" in result.output


def test_link_and_dedupe_files(tmp_path: Path) -> None:
    import json
    import sys

    import polars as pl

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import linkgen

    master, events, truth = linkgen.generate(3000, 1500, "easy", seed=4)
    # Events as a GBK CSV with Chinese headers, master as Parquet.
    events_csv = tmp_path / "hall.csv"
    events_csv.write_bytes(
        events.rename({"event_id": "受理编号", "name": "姓名"}).write_csv().encode("gb18030")
    )
    master.write_parquet(tmp_path / "master.parquet")
    out = tmp_path / "links.csv"
    model = tmp_path / "model.json"
    args = ["link", str(events_csv), "--master", str(tmp_path / "master.parquet"), "--out", str(out)]
    result = run(*args, "--map", "受理编号=event_id", "--map", "姓名=name", "--save-model", str(model))
    assert result.exit_code == 0, result.output
    assert "decision: match" in result.output and "candidate pairs" in result.output
    links = pl.read_csv(out, infer_schema=False)
    assert links.columns == [
        "event_id",
        "person_id",
        "match_probability",
        "match_weight",
        "decision",
        "explanation",
    ]
    assert links.height == events.height
    joined = links.filter(pl.col("decision") == "match").join(truth, on="event_id", suffix="_true")
    assert (joined.get_column("person_id") == joined.get_column("person_id_true")).mean() > 0.99
    assert {"name", "id_number", "birth_date", "phone", "address", "gender"} <= set(
        json.loads(links.get_column("explanation")[0])
    )
    # A saved model scores a new run without training, to the same links.
    again = tmp_path / "again.parquet"
    args = ["link", str(events_csv), "--master", str(tmp_path / "master.parquet"), "--out", str(again)]
    result = run(*args, "--map", "受理编号=event_id", "--map", "姓名=name", "--model", str(model))
    assert result.exit_code == 0 and "train" not in result.output
    assert pl.read_parquet(again).get_column("decision").to_list() == links.get_column("decision").to_list()

    result = run(
        "dedupe", str(events_csv), "--out", str(tmp_path / "c.csv"), "--id", "受理编号", "--map", "姓名=name"
    )
    assert result.exit_code == 0 and "people (clusters)" in result.output
    clusters = pl.read_csv(tmp_path / "c.csv", infer_schema=False)
    assert clusters.columns == ["受理编号", "cluster_id", "cluster_size"] and clusters.height == events.height

    bad = run(
        "link",
        str(events_csv),
        "--master",
        str(tmp_path / "master.parquet"),
        "--out",
        str(tmp_path / "x.txt"),
    )
    assert bad.exit_code == 1 and "x.txt" in bad.output and ".csv or .parquet" in bad.output
    bad = run("link", str(events_csv), "--master", str(tmp_path / "master.parquet"), "--out", str(out))
    assert bad.exit_code == 1 and "no 'event_id' column" in bad.output


def test_process_retries_invalid_events(tmp_path: Path) -> None:
    import re
    import shutil

    home = str(tmp_path / "home")
    assert run("--home", home, "init", "--district", "440605").exit_code == 0
    data = tmp_path / "hall.csv"
    data.write_bytes("编号,姓名,身份证号,居所\nA1,张伟,11010519491231002X,桂城街道花苑社区3栋\n".encode())
    service = "hall.resident_registration"
    args = ["ingest", str(data), "--source", "hall", "--key", "编号", "--service", service]
    assert run("--home", home, *args).exit_code == 0
    result = run("--home", home, "process")  # 居所 is no address header in the shipped rules
    assert result.exit_code == 0 and re.search(r"events with errors\t1", result.stdout)
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[1] / "rules", rules)
    columns = rules / "standards" / "columns.yaml"
    columns.write_text(
        columns.read_text(encoding="utf-8").replace("address: [", "address: [居所, "), encoding="utf-8"
    )
    result = run("--home", home, "--rules", str(rules), "process", "--retry", "invalid")
    assert result.exit_code == 0, result.output
    assert re.search(r"invalid events retried\t1", result.stdout)
    assert re.search(r"events with errors\t0", result.stdout)
    assert re.search(r"proposals\t1", result.stdout)
    result = run("--home", home, "process", "--retry", "invalid")  # nothing left to retry
    assert result.exit_code == 0 and re.search(r"invalid events retried\t0", result.stdout)
    bad = runner.invoke(app, ["--home", home, "process", "--retry", "proposed"])
    assert bad.exit_code == 2 and "Invalid value for '--retry'" in bad.output


def test_an_unexpected_failure_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import govdb.api

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(govdb.api.GovDB, "ingest", broken)
    path = tmp_path / "a.csv"
    path.write_text("a\n1\n", encoding="utf-8")
    result = run("--home", str(tmp_path / "home"), "ingest", str(path), "--source", "s")
    assert result.exit_code == 1
    assert "RuntimeError: boom" in result.output and "second line" not in result.output
    assert "Traceback" not in result.output
