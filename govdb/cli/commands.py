"""Commands of every stage, registered on one typer app (sub-apps for tasks and programmes)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import (
    CsvOption,
    EventsUrlOption,
    HomeOption,
    JsonOption,
    MapOption,
    MasterUrlOption,
    Options,
    RulesOption,
    options,
    output_format,
    parse_actor,
    parse_mapping,
    reports_errors,
)
from govdb.cli.analytics import analytics_app
from govdb.cli.audit import audit_app
from govdb.cli.correct import as_of_command, changes_command, conflicts_app, revert_command, split_command
from govdb.cli.files import dedupe, link, standardize
from govdb.cli.profile import profile_command
from govdb.cli.programmes import programme_app, render_programme
from govdb.cli.rules import rules_app
from govdb.cli.verification import load_app, sources_app, tasks_app, units_command

SETUP, PATH, CHECKS, CORRECTIONS, SERVING, FILES, GOVERNANCE = (
    "Set up",
    "Data path",
    "Verification",
    "After promotion",
    "Serving",
    "Files (no stores)",
    "Audit and rules",
)

app = typer.Typer(
    no_args_is_help=True,
    help=__doc__ and "govdb: verified master data and unverified event data for service halls.",
)
app.add_typer(tasks_app, name="tasks", rich_help_panel=CHECKS)
app.add_typer(programme_app, name="programme", rich_help_panel=SERVING)
app.add_typer(load_app, name="load", rich_help_panel=SETUP)
app.add_typer(sources_app, name="sources", rich_help_panel=SETUP)
app.add_typer(audit_app, name="audit", rich_help_panel=GOVERNANCE)
app.add_typer(rules_app, name="rules", rich_help_panel=GOVERNANCE)
app.add_typer(analytics_app, name="analytics", rich_help_panel=SERVING)
app.command(rich_help_panel=FILES)(standardize)
app.command(rich_help_panel=FILES)(link)
app.command(rich_help_panel=FILES)(dedupe)


class RetryChoice(StrEnum):
    """The statuses `process --retry` takes (govdb.validate.Retry, kept here so help loads fast)."""

    invalid = "invalid"


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("govdb")
    except PackageNotFoundError:  # a source tree that is not installed
        from govdb import __version__ as number
    sys.stdout.write(f"govdb {number}\n")
    raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: HomeOption = None,
    rules: RulesOption = None,
    master_url: MasterUrlOption = None,
    events_url: EventsUrlOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print govdb's version and exit."),
    ] = False,
) -> None:
    """govdb: verified master data (基础主数据库) and unverified event data (业务动态数据库).

    For scripts: --json or --csv on commands that report or list; data on stdout, messages on
    stderr; exit 0 done, 1 a govdb error, 2 a usage error or invalid rule files.
    """
    ctx.obj = Options(home, rules, master_url, events_url)


@app.command(rich_help_panel=SETUP)
@reports_errors
def init(
    ctx: typer.Context,
    district: Annotated[str | None, typer.Option(help="County code to serve, e.g. 440605 (南海区).")] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Create or migrate both stores; with --district, register its divisions and checking units.

    Example: govdb init --district 440605
    """
    fmt = output_format(as_json)
    with options(ctx, home).open() as db:
        from govdb.store.engine import hidden_password

        urls = hidden_password(db.config.master_url), hidden_password(db.config.events_url)
        facts: dict[str, Any] = {"master store": urls[0], "event store": urls[1]}
        data: dict[str, Any] = {"master_url": urls[0], "events_url": urls[1]}
        if district:
            report = db.serve_district(district)
            data["district"] = report
            facts.update(
                {
                    "district": f"{report.county_name} ({report.county_code})",
                    "villages": report.villages,
                    "streets": report.streets,
                    "departments": report.departments,
                }
            )
    if fmt == "json":
        _render.document(data)
    else:
        _render.facts("govdb init", facts)


@app.command(rich_help_panel=PATH)
@reports_errors
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, TSV, XLSX, Parquet or JSON Lines file.")],
    source: Annotated[str, typer.Option(help="Source system the file came from.")],
    key: Annotated[str | None, typer.Option(help="Column holding the source's own record key.")] = None,
    service: Annotated[
        str | None, typer.Option(help="Service code, e.g. hall.resident_registration.")
    ] = None,
    department: Annotated[
        str | None, typer.Option(help="Department the file says it came from (a claim: it earns no pass).")
    ] = None,
    source_token: Annotated[
        str | None,
        typer.Option(
            envvar="GOVDB_SOURCE_TOKEN",
            help="Token of a registered source (`govdb sources register`); prefer the environment variable.",
            show_default=False,
        ),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Channel: window, online, hotline, system...")] = None,
    occurred_at: Annotated[str | None, typer.Option(help="Column holding when the service happened.")] = None,
    map_: MapOption = None,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv", help="Print the quarantined rows as CSV (line, reason).", rich_help_panel="Output"
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Store every row of FILE as an event (raw kept; repeats stored once; bad rows quarantined).

    --json prints the whole report (counts, quarantined rows, new versions) as one document.

    Example: govdb ingest hall.csv --source hall-window --key 受理编号 --service hall.resident_registration
    """
    fmt = output_format(as_json, as_csv)
    with options(ctx, home).open() as db, _render.progress(f"ingest {file.name}") as step:
        report = db.ingest(
            file,
            source=source,
            source_token=source_token,
            key_column=key,
            service_code=service,
            department=department,
            channel=channel,
            occurred_at_column=occurred_at,
            mapping=parse_mapping(map_),
            progress=step,
        )
    for warning in report.warnings:
        _render.warning(warning)
    if fmt == "json":
        _render.document(report)
        return
    if fmt == "csv":
        _render.csv_rows(
            ["line", "reason"], [{"line": q.line, "reason": q.reason} for q in report.quarantine]
        )
        return
    _render.facts(
        f"ingest {file}",
        {
            "encoding": report.encoding,
            "read": report.read,
            "stored": report.stored,
            "new versions": report.new_versions,
            "duplicate": report.duplicate,
            "quarantined": report.quarantined,
            "blank lines": report.blank,
        },
    )
    if report.versions:
        _render.table(
            "new versions of known records",
            ["line", "key", "version"],
            [(v.line, v.key, v.version) for v in report.versions[:50]],
        )
    if report.quarantine:
        _render.table(
            "quarantined rows", ["line", "reason"], [(q.line, q.reason) for q in report.quarantine[:50]]
        )


def _process_document(report: Any) -> dict[str, Any]:
    """A process report for scripts: the counts and the quality issues by reason (not every failure)."""
    return {
        "retried": report.retried,
        "validation": {
            "rows": report.validation.rows,
            "error_rows": report.validation.error_rows,
            "by_reason": report.validation.by_reason(),
        },
        "proposals": report.proposals,
    }


@app.command(rich_help_panel=PATH)
@reports_errors
def process(
    ctx: typer.Context,
    retry: Annotated[
        RetryChoice | None,
        typer.Option(help="Take these events again first: invalid ones, once their data or rules are fixed."),
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Standardize and validate received events, link them to master, propose changes, open tasks.

    Example: govdb process --retry invalid
    """
    fmt = output_format(as_json)
    with options(ctx, home).open() as db, _render.progress("linking and proposing") as step:
        report = db.process(retry=retry.value if retry else None, progress=step)
    if fmt == "json":
        _render.document(_process_document(report))
        return
    p = report.proposals
    _render.facts(
        "process",
        {
            **({f"{retry.value} events retried": report.retried} if retry else {}),
            "events validated": report.validation.rows,
            "events with errors": report.validation.error_rows,
            "linked to master": p.linked,
            "identity reviews": p.identity_reviews,
            "new people": p.new_people,
            "unchanged": p.unchanged,
            "unlinked": p.unlinked,
            "proposals": p.proposals,
            "auto-approved": p.auto_approved,
            "unroutable": p.unroutable,
            "refused (values master cannot store)": p.refused,
        },
    )
    if p.refused_events:
        _render.table("refused events", ["event", "why"], list(p.refused_events.items()))
    reasons = report.validation.by_reason()
    if reasons.height:
        _render.table("quality issues", reasons.columns, reasons.rows())


def _promote_document(r: Any) -> dict[str, Any]:
    """A promote report for scripts: the counts (the promoted ids are in master's lineage)."""
    return {k: v for k, v in _render.jsonable(r).items() if k not in ("promoted_ids", "person_ids")}


@app.command(rich_help_panel=PATH)
@reports_errors
def promote(ctx: typer.Context, as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Apply approved proposals to master data (idempotent; completes an interrupted run).

    Example: govdb promote
    """
    fmt = output_format(as_json)
    with options(ctx, home).open() as db, _render.progress("promoting") as step:
        r = db.promote(progress=step)
    if fmt == "json":
        _render.document(_promote_document(r))
        return
    _render.facts(
        "promote",
        {
            "promoted": r.promoted,
            "people created": r.people_created,
            "fields updated": r.fields_updated,
            "past values kept as history": r.past_values,
            "credentials": r.credentials,
            "conflicts for owners": r.conflicts,
            "completed after a crash": r.completed_after_crash,
            "people re-keyed for linkage": r.keys_refreshed,
            "set aside (values master cannot store)": r.set_aside,
        },
    )
    if r.set_aside_reasons:
        _render.table("set aside", ["proposal", "why"], list(r.set_aside_reasons.items()))


@app.command(rich_help_panel=SERVING)
@reports_errors
def prefill(
    ctx: typer.Context,
    form: Annotated[str, typer.Argument(help="Form code, e.g. senior_transit_card.")],
    actor: Annotated[str, typer.Option(help="ACTOR@UNIT of the department filling the form.")],
    person: Annotated[str | None, typer.Option(help="The applicant's resident ID number.")] = None,
    uscc: Annotated[
        str | None, typer.Option(help="An enterprise form: the enterprise's unified social credit code.")
    ] = None,
    enterprise: Annotated[
        str | None, typer.Option(help="An enterprise form: the master enterprise id.")
    ] = None,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print the form's fields as CSV.", rich_help_panel="Output")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Fill FORM from master data only, each field with its source and verification (audited).

    Example: govdb prefill senior_transit_card --person 440605196001011234
    --actor wang@department:transport:440605; an enterprise form takes --uscc CODE or --enterprise ID.
    """
    fmt = output_format(as_json, as_csv)
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        result = db.prefill(form, id_number=person, uscc=uscc, enterprise_id=enterprise, actor=who)
    if fmt == "json":
        _render.document(result)
    elif fmt == "csv":
        fields = [_render.jsonable(f) for f in result.fields]
        _render.csv_rows(list(fields[0]) if fields else ["name", "label", "value"], fields)
    else:
        render_prefill(result)


def render_prefill(result: Any) -> None:
    _render.table(
        f"{result.title} ({result.form}) for {getattr(result, 'person_id', None) or result.enterprise_id}",
        ["field", "value", "source", "verified by", "date", "locked"],
        [
            (
                f.label,
                ("(masked) " if f.masked else "") + ("" if f.value is None else str(f.value)),
                f.source,
                "; ".join(f.verified_by),
                f.verified_at,
                "yes" if f.locked else "",
            )
            for f in result.fields
        ],
    )
    _render.line(f"documents no longer needed: {', '.join(result.documents_waived) or 'none'}")
    _render.line(
        f"still to fill in: {', '.join(result.missing) or 'nothing'}   (audit entry {result.audit_seq})"
    )


def _demo_document(r: Any) -> dict[str, Any]:
    return {
        "home": r.home,
        "district": r.district,
        "people_loaded": r.people_loaded,
        "ingests": r.ingests,
        "reingest": r.reingest,
        "process": _process_document(r.process),
        "decisions": r.decisions,
        "auto_approved": r.auto_approved,
        "rejected": r.rejected,
        "refused": r.refused,
        "promote": _promote_document(r.promote),
        "prefill": r.prefill,
        "enterprise_prefill": r.enterprise_prefill,
        "first_run": r.first_run,
        "second_run": r.second_run,
        "counts": r.counts,
        "audit": r.audit,
    }


@app.command(rich_help_panel=SETUP)
@reports_errors
def demo(
    ctx: typer.Context,
    people: Annotated[
        int, typer.Option(min=20, max=200_000, help="Residents in the synthetic district.")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Run the whole data path on a synthetic district (南海区) in --home (default ./govdb-data).

    Example: govdb demo --home /tmp/govdb-demo --people 500
    """
    from govdb.demo import run_demo

    fmt = output_format(as_json)
    home = options(ctx, home).home or Path("govdb-data")
    with _render.err.status("running the demo..."):
        r = run_demo(home, people=people, seed=seed)
    if fmt == "json":
        _render.document(_demo_document(r))
        return
    _render.facts(
        "1. district and population register",
        {
            "district": f"{r.district.county_name} ({r.district.county_code})",
            "checking units": f"{r.district.villages} villages, {r.district.streets} streets, "
            f"{r.district.departments} departments",
            "people loaded (public_security register)": r.people_loaded,
        },
    )
    _render.table(
        "2. ingest",
        ["file", "encoding", "read", "stored", "new versions", "duplicate", "quarantined"],
        [
            (
                Path(i.source_file or "").name,
                i.encoding,
                i.read,
                i.stored,
                i.new_versions,
                i.duplicate,
                i.quarantined,
            )
            for i in [*r.ingests, r.reingest]
        ],
    )
    for i in r.ingests:
        for q in i.quarantine:
            _render.line(f"   quarantined: {Path(i.source_file or '').name} line {q.line}: {q.reason}")
    p = r.process.proposals
    _render.facts(
        "3. process",
        {
            "events": r.process.validation.rows,
            "events with errors (kept, flagged)": r.process.validation.error_rows,
            "linked to master": p.linked,
            "identity reviews": p.identity_reviews,
            "new people proposed": p.new_people,
            "proposals": p.proposals,
            "auto-approved (from the owner's own system)": p.auto_approved,
        },
    )
    _render.facts(
        "4. verification",
        {
            "decisions by village, street and department actors": r.decisions,
            "rejected": "; ".join(r.rejected),
            "refused": r.refused,
        },
    )
    _render.facts(
        "5. promote",
        {
            "promoted": r.promote.promoted,
            "people created": r.promote.people_created,
            "fields updated": r.promote.fields_updated,
            "credentials": r.promote.credentials,
            "enterprises created": r.promote.enterprises_created,
            "conflicts": r.promote.conflicts,
        },
    )
    _render.line("6. prefill")
    render_prefill(r.prefill)
    if r.enterprise_prefill is not None:
        render_prefill(r.enterprise_prefill)
    _render.line("7. proactive programme, first run")
    render_programme(r.first_run, limit=5)
    _render.line("8. proactive programme, second run (issues nothing twice)")
    render_programme(r.second_run, limit=0)
    if r.audit is not None:
        _render.line(
            f"9. audit chain: {r.audit.entries} reads on record, "
            + ("verified and checkpointed" if r.audit.ok else f"BROKEN: {r.audit.problem}")
        )
    _render.line(f"stores in {r.home}: " + ", ".join(f"{k} {v}" for k, v in r.counts.items()))


@app.command(rich_help_panel=PATH)
@reports_errors
def quality(
    ctx: typer.Context, as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = None
) -> None:
    """Error rates per source system and field, from the event store's quality flags.

    Example: govdb quality --csv
    """
    from govdb.validate import quality as quality_report

    fmt = output_format(as_json, as_csv)
    with options(ctx, home).open() as db:
        frame = quality_report(db.events)
    if fmt == "text":
        _render.table("data quality by source and field", frame.columns, frame.rows())
    else:
        _render.rows(fmt, "", {c: c for c in frame.columns}, frame.to_dicts())


app.command("units", rich_help_panel=SETUP)(units_command)
app.command("profile", rich_help_panel=SERVING)(profile_command)
app.command("as-of", rich_help_panel=SERVING)(as_of_command)
app.command("changes", rich_help_panel=CORRECTIONS)(changes_command)
app.add_typer(conflicts_app, name="conflicts", rich_help_panel=CORRECTIONS)
app.command("revert", rich_help_panel=CORRECTIONS)(revert_command)
app.command("split", rich_help_panel=CORRECTIONS)(split_command)
