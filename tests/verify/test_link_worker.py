"""A large `process` run links in a second process (govdb.link.worker) while it plans: it must
store exactly what linking in one process stores, report a linking process that dies as a govdb
error (the rerun finishes), leave no linking process behind, and never run a caller's script twice."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from govdb import GovDB, GovdbError
from govdb.demo import make_people
from govdb.link.worker import LinkWorker, LinkWorkerError, child_command
from govdb.store.events import Event, Link, Proposal, Task

from ..conftest import BACKENDS, TODAY, open_backend
from ..test_verify import _linking_records

INGEST = {"source": "hall", "key_column": "受理编号", "service_code": "hall.contact_update"}


def _county(db: GovDB) -> None:
    register = make_people(300, seed=31, today=TODAY)
    register = register.with_columns(pl.format("P{}", pl.int_range(pl.len())).alias("person_id"))
    db.serve_district("440605")
    db.load_people(register, source="public_security")
    db.ingest_frame(_linking_records(register), **INGEST)


def _outcome(db: GovDB) -> dict[str, Any]:
    """What `process` stored, without the ids a run draws."""
    with db.events.connect() as conn:
        links = conn.execute(
            select(Link.event_id, Link.entity_id, Link.decision, Link.score, Link.explanation).order_by(
                Link.event_id, Link.id
            )
        ).all()
        proposals = conn.execute(
            select(
                Proposal.event_id, Proposal.entity_id, Proposal.change, Proposal.state, Proposal.payload
            ).order_by(Proposal.event_id, Proposal.change)
        ).all()
        tasks = conn.execute(
            select(Proposal.event_id, Task.step, Task.unit_id, Task.state)
            .join(Proposal, Proposal.proposal_id == Task.proposal_id)
            .order_by(Proposal.event_id, Task.step)
        ).all()
        events = conn.execute(select(Event.event_id, Event.status).order_by(Event.event_id)).all()
    return {
        name: [tuple(r) for r in rows]
        for name, rows in (("links", links), ("proposals", proposals), ("tasks", tasks), ("events", events))
    }


class _Spy:
    """Counts the linking processes started and the chunks each was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workers: list[LinkWorker] = []
        self.chunks = 0
        init, submit = LinkWorker.__init__, LinkWorker.submit

        def spied_init(worker: LinkWorker, *args: Any) -> None:
            init(worker, *args)
            self.workers.append(worker)

        def spied_submit(worker: LinkWorker, records: pl.DataFrame) -> None:
            self.chunks += 1
            submit(worker, records)

        monkeypatch.setattr(LinkWorker, "__init__", spied_init)
        monkeypatch.setattr(LinkWorker, "submit", spied_submit)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_linked_in_a_second_process_stores_what_one_process_stores(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import govdb.verify.pipeline as pipeline

    spy = _Spy(monkeypatch)
    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)
    monkeypatch.setattr(pipeline, "CHUNK", 37)  # several chunks in the pipeline
    seen = {}
    for worker in (False, True):
        monkeypatch.setenv("GOVDB_LINK_PROCESS", "1" if worker else "0")  # 0: the deployment's opt-out
        with open_backend(backend, tmp_path / str(worker), rules) as db:
            _county(db)
            report = db.process(today=TODAY)
            seen[worker] = (report.proposals.proposals, report.proposals.linked, _outcome(db))
    assert len(spy.workers) == 1 and spy.chunks >= 9  # only the second run linked in a second process
    assert spy.workers[0]._child.poll() == 0  # and it exited when the run ended
    links = seen[False][2]["links"]
    assert {"match", "new"} <= {r[2] for r in links} and seen[False][0] > 0
    assert seen[True] == seen[False]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_linking_process_that_dies_stops_the_run_with_a_govdb_error_and_the_rerun_finishes(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import govdb.verify.pipeline as pipeline

    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)
    monkeypatch.setattr(pipeline, "CHUNK", 37)
    with open_backend(backend, tmp_path / "clean", rules) as db:
        _county(db)
        db.process(today=TODAY)
        clean = _outcome(db)
    spy = _Spy(monkeypatch)
    submit = LinkWorker.submit

    def kill_at_third(worker: LinkWorker, records: pl.DataFrame) -> None:
        submit(worker, records)
        if spy.chunks == 3:
            os.kill(worker._child.pid, signal.SIGKILL)

    monkeypatch.setattr(LinkWorker, "submit", kill_at_third)
    with open_backend(backend, tmp_path / "killed", rules) as db:
        _county(db)
        stopped = r"linking process of this run stopped.*run `govdb process` again"
        with pytest.raises(LinkWorkerError, match=stopped):
            db.process(today=TODAY)
        assert spy.workers[0]._child.poll() is not None
        partly = _outcome(db)
        assert 0 < len(partly["links"]) < len(clean["links"])  # the chunks before it were kept
        monkeypatch.setattr(LinkWorker, "submit", submit)
        db.process(today=TODAY)
        assert _outcome(db) == clean


def test_a_large_run_starts_its_linking_process_before_validating(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The linking process reads everyone's features while the caller standardizes: it is
    started, and asked for the stored or default model (built when the first chunk needs it),
    before validation; one per run."""
    import govdb.verify.pipeline as pipeline

    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)
    spy = _Spy(monkeypatch)
    seen: list[tuple[int, bool]] = []
    chunks = pipeline.validate_stage.Standardizing.chunks

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append((len(spy.workers), bool(spy.workers) and spy.workers[0]._model_asked))
        return chunks(*args, **kwargs)

    monkeypatch.setattr(pipeline.validate_stage.Standardizing, "chunks", watched)
    _county(db)
    report = db.process(today=TODAY)
    assert seen == [(1, True)] and len(spy.workers) == 1 and spy.chunks >= 1
    assert report.proposals.proposals > 0 and report.proposals.linked > 0
    assert spy.workers[0]._child.poll() == 0


def test_master_grown_during_validation_is_linked_as_one_process_links_it(
    tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The linking process starts before validation, but builds its model when the first chunk
    needs it: people loaded meanwhile count in it (u, term frequencies, prior) as they do when the
    run links in one process (an outsider's review found 75 matches turned reviews otherwise)."""
    import govdb.verify.pipeline as pipeline

    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)
    register = make_people(300, seed=31, today=TODAY)
    register = register.with_columns(pl.format("P{}", pl.int_range(pl.len())).alias("person_id"))
    chunks = pipeline.validate_stage.Standardizing.chunks
    seen = {}
    for worker in (False, True):
        monkeypatch.setenv("GOVDB_LINK_PROCESS", "1" if worker else "0")
        with open_backend("sqlite", tmp_path / str(worker), rules) as db:
            db.serve_district("440605")
            db.load_people(register.head(2), source="public_security")
            db.ingest_frame(_linking_records(register), **INGEST)

            def during(*args: Any, db: GovDB = db, **kwargs: Any) -> Any:
                time.sleep(3)  # the linking process has read master's two people (and no more)
                db.load_people(register.slice(2), source="public_security")  # another process's load
                return chunks(*args, **kwargs)

            monkeypatch.setattr(pipeline.validate_stage.Standardizing, "chunks", during)
            report = db.process(today=TODAY)
            monkeypatch.setattr(pipeline.validate_stage.Standardizing, "chunks", chunks)
            seen[worker] = (report.proposals.linked, _outcome(db))
    assert seen[False][0] > 200
    assert seen[True] == seen[False]


def test_an_error_in_the_linking_process_reaches_the_caller_as_a_govdb_error(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    import govdb.verify.pipeline as pipeline

    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)

    def bad_model(worker: LinkWorker) -> None:
        worker._send(("use", "not a model"))
        worker._model_asked = True

    monkeypatch.setattr(LinkWorker, "build_model", bad_model)
    _county(db)
    with pytest.raises(LinkWorkerError, match="failed: TypeError") as raised:
        db.process(today=TODAY)
    assert isinstance(raised.value, GovdbError)
    with db.events.connect() as conn:  # nothing was proposed, every event waits for the next run
        assert conn.execute(select(Proposal.proposal_id)).first() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_linking_process_builds_the_model_the_caller_would(
    backend: str, tmp_path: Path, rules: Any
) -> None:
    """The caller never reads everyone's features when a linking process holds them: that process
    builds the default model (u from master itself) as GovDB.linkage_model does, and hands back the
    stored model once one is trained."""
    from govdb.link.reads import FeatureCache
    from govdb.link.stored import store_model

    with open_backend(backend, tmp_path, rules) as db:
        _county(db)
        matching = db.rules.matching["person"]
        features = FeatureCache()
        with db.master.connect() as conn:
            assert features.load_everyone(conn)
        here = db.linkage_model(features=features.all()).to_dict()
        with LinkWorker(db.master, matching, db.served_county()) as worker:
            worker.build_model()
            assert worker.model().to_dict() == here
        model = db.linkage_model()  # stored: a trained model (here the default one, its prior halved)
        model.prior = model.prior / 2
        store_model(db.master, model)
        with LinkWorker(db.master, matching, db.served_county()) as worker:
            worker.build_model()
            assert worker.model().to_dict() == model.to_dict()
        with LinkWorker(db.master, matching, None) as worker, pytest.raises(GovdbError, match="no model"):
            worker.model()


def test_the_linking_process_exits_when_its_caller_is_killed(tmp_path: Path) -> None:
    """Killed callers leave no linking process behind: its input closes and it leaves."""
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            from govdb import GovDB
            from govdb.link.worker import LinkWorker
            db = GovDB.open({str(tmp_path / "home")!r})
            worker = LinkWorker(db.master, db.rules.matching["person"], None)
            print(worker._child.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        ),
        encoding="utf-8",
    )
    caller = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert caller.returncode == -signal.SIGKILL, caller.stderr
    child = int(caller.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    """The linking process is `python -m govdb.link.worker`: a caller's script is not imported
    again in it (multiprocessing's spawn would run an unguarded script's work a second time)."""
    marks = tmp_path / "runs"
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, pathlib
            import polars as pl
            import govdb.verify.pipeline as pipeline
            from govdb import GovDB
            from govdb.demo import make_people
            with open({str(marks)!r}, "a") as runs:
                runs.write("ran\\n")
            pipeline.IN_MEMORY_EVENTS = 0
            db = GovDB.open({str(tmp_path / "home")!r})
            db.serve_district("440605")
            people = make_people(50, seed=3, today=__import__("datetime").date(2026, 11, 23))
            db.load_people(people, source="public_security")
            records = people.select(
                pl.format("K{{}}", pl.int_range(pl.len())).alias("受理编号"),
                pl.col("name").alias("姓名"),
                pl.col("id_number").alias("身份证号"),
                pl.lit("13900001111").alias("联系电话"),
            )
            db.ingest_frame(records, source="hall", key_column="受理编号", service_code="hall.contact_update")
            report = db.process(today=__import__("datetime").date(2026, 11, 23))
            print(json.dumps({{"linked": report.proposals.linked}}))
            """
        ),
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"linked": 50}
    assert marks.read_text() == "ran\n"


def _processed_both_ways(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch, setup: Callable[[GovDB], None]
) -> dict[bool, dict[str, Any]]:
    """What `process` stored after `setup`, linked in one process (False) and in two (True)."""
    seen = {}
    for worker in (False, True):
        monkeypatch.setenv("GOVDB_LINK_PROCESS", "1" if worker else "0")
        with open_backend(backend, tmp_path / str(worker), rules) as db:
            setup(db)
            db.process(today=TODAY)
            seen[worker] = _outcome(db)
    return seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_against_an_empty_master_needs_no_model(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody in master: nothing to compare with, so no model is built (the default one needs
    people) and every event is about someone new, linked in a second process or not."""
    import govdb.verify.pipeline as pipeline

    spy = _Spy(monkeypatch)
    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)

    def nobody_in_master(db: GovDB) -> None:
        db.serve_district("440605")
        db.ingest_frame(_linking_records(make_people(40, seed=5, today=TODAY)), **INGEST)

    seen = _processed_both_ways(backend, tmp_path, rules, monkeypatch, nobody_in_master)
    assert len(spy.workers) == 1 and spy.chunks >= 1
    assert {r[2] for r in seen[False]["links"]} == {"new"}
    assert len(seen[False]["links"]) == len(seen[False]["events"]) >= 40
    assert seen[True] == seen[False]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_links_with_the_model_its_govdb_holds(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived GovDB links with the model it holds (read or trained before), in a second
    process or not; a subclass's own model is built and used in this process."""
    import govdb.verify.pipeline as pipeline

    spy = _Spy(monkeypatch)
    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)

    def holding_a_model(db: GovDB) -> None:
        _county(db)
        held = db.linkage_model()
        held.prior = held.prior / 1000  # held, not stored: only this GovDB links with it

    seen = _processed_both_ways(backend, tmp_path, rules, monkeypatch, holding_a_model)
    assert len(spy.workers) == 1
    assert seen[True] == seen[False]
    with open_backend(backend, tmp_path / "default", rules) as db:
        _county(db)
        db.process(today=TODAY)
        assert _outcome(db)["links"] != seen[True]["links"]  # the held model made a difference

    class OwnModel(GovDB):
        def linkage_model(self, features: pl.DataFrame | None = None) -> Any:
            model = copy.deepcopy(super().linkage_model(features))  # the base one stays held
            model.prior = model.prior / 1000
            return model

    started = len(spy.workers)
    with open_backend(backend, tmp_path / "subclass", rules) as db:
        db.__class__ = OwnModel
        _county(db)
        db.linkage_model()  # a look-up before: the base model is held, the subclass's is used
        db.process(today=TODAY)
        assert len(spy.workers) == started  # linked here: its model is this process's
        assert _outcome(db) == seen[False]


def test_the_linking_process_imports_only_what_its_caller_would(
    tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not from the current folder (`python -m` would put it first: a `polars.py` in a shared
    folder a clerk's job runs from would run with the store's password), nor from PYTHONPATH set
    after the caller started, nor from an empty path entry that meant the caller's start folder."""
    marker = tmp_path / "hijacked"
    planted = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\nraise SystemExit(3)\n"
    folders = {name: tmp_path / name for name in ("shared", "variable")}
    for folder in folders.values():
        (folder / "govdb").mkdir(parents=True)
        (folder / "polars.py").write_text(planted)
        (folder / "govdb" / "__init__.py").write_text(planted)
    with open_backend("sqlite", tmp_path / "home", rules) as db:
        _county(db)
        monkeypatch.chdir(folders["shared"])
        monkeypatch.setenv("PYTHONPATH", f"{folders['variable']}{os.pathsep}")
        monkeypatch.setattr(sys, "path", ["", *sys.path])
        command = child_command()
        assert command[1] == "-I" and str(folders["shared"]) not in command[-1]
        with LinkWorker(db.master, db.rules.matching["person"], "440605") as worker:
            worker.build_model()
            assert worker.model().prior > 0
    assert not marker.exists()


def test_a_message_the_linking_process_cannot_read_stops_the_run_saying_why(
    tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held model of a class only the caller's script defines cannot be read in the linking
    process: the caller hears why, and no linking process is left."""
    from govdb.link.model import LinkModel

    held = type("ScriptModel", (LinkModel,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "ScriptModel", held, raising=False)
    with open_backend("sqlite", tmp_path / "home", rules) as db:
        _county(db)
        model = db.linkage_model()
        model.__class__ = held
        with (
            pytest.raises(LinkWorkerError, match=r"could not be read.*ScriptModel"),
            LinkWorker(db.master, db.rules.matching["person"], "440605") as worker,
        ):
            worker.use_model(model)
            worker.submit(_linking_records(make_people(5, seed=1, today=TODAY)).head(0))
            worker.collect()
        assert worker._child.poll() is not None


def test_only_a_store_another_process_can_open_is_linked_in_one(tmp_path: Path) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    opened = {
        f"sqlite:///{tmp_path / 'master.db'}": True,
        "sqlite://": False,
        "sqlite:///:memory:": False,
        "sqlite:///file::memory:?cache=shared&uri=true": False,
        "sqlite:///file:master?mode=memory&cache=shared&uri=true": False,
        "sqlite:///file:master?vfs=memdb&uri=true": False,
        # Without uri=true pysqlite opens these as files of those names.
        f"sqlite:///{tmp_path / 'plain.db'}?mode=memory": True,
        "sqlite:///file::memory:": True,
    }
    for url, expected in opened.items():
        engine = create_engine(url, poolclass=NullPool)  # never connected
        try:
            assert LinkWorker.can_open(engine) is expected, url
        finally:
            engine.dispose()


@pytest.mark.parametrize(
    ("said", "wanted"),
    [("0", False), ("off", False), (" No ", False), ("false", False), ("1", True), ("", True)],
)
def test_a_deployment_can_say_no_linking_process(
    said: str, wanted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVDB_LINK_PROCESS", said)
    assert LinkWorker.wanted() is wanted


def test_a_linking_process_that_answers_nothing_is_stopped_as_hung(
    tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stuck without dying (here stopped by SIGSTOP) would keep the caller waiting for
    ever: after GOVDB_LINK_TIMEOUT seconds of silence it is killed and the run stops saying so."""
    with open_backend("sqlite", tmp_path / "home", rules) as db:
        _county(db)
        with LinkWorker(db.master, db.rules.matching["person"], "440605") as worker:
            worker.build_model()
            assert worker.model().prior > 0  # it answers while it runs
            # Read at each wait: set once the model is built (on a loaded machine that took 1.5 s).
            monkeypatch.setenv("GOVDB_LINK_TIMEOUT", "1.5")
            os.kill(worker._child.pid, signal.SIGSTOP)
            worker.submit(_linking_records(make_people(5, seed=1, today=TODAY)))
            started = time.monotonic()
            with pytest.raises(LinkWorkerError, match=r"answered nothing for 1.5 s and was stopped as hung"):
                worker.collect()
            assert 1.4 < time.monotonic() - started < 30
            assert worker._child.poll() is not None


@pytest.mark.parametrize("said", ["soon", "0", "-5", "inf", "nan"])
def test_a_link_timeout_that_is_no_number_of_seconds_is_refused_by_name(
    said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from govdb.errors import ConfigError
    from govdb.link.worker import SILENCE_SECONDS, silence_limit

    monkeypatch.setenv("GOVDB_LINK_TIMEOUT", said)
    with pytest.raises(ConfigError, match=r"GOVDB_LINK_TIMEOUT=.* is not a number of seconds"):
        silence_limit()
    monkeypatch.setenv("GOVDB_LINK_TIMEOUT", " ")
    assert silence_limit() == SILENCE_SECONDS
