"""Commands of every stage, registered on one typer app (sub-apps for tasks and programmes)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import (
    HomeOption,
    Options,
    RulesOption,
    options,
    parse_actor,
    parse_mapping,
    reports_errors,
)
from govdb.cli.audit import audit_app
from govdb.cli.profile import profile_command
from govdb.cli.rules import rules_app
from govdb.cli.verification import load_app, sources_app, tasks_app
from govdb.validate import Retry

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__ and "govdb: verified master data and unverified event data for service halls.",
)
programme_app = typer.Typer(no_args_is_help=True, help="Proactive programmes: run over master data.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(programme_app, name="programme")
app.add_typer(load_app, name="load")
app.add_typer(sources_app, name="sources")
app.add_typer(audit_app, name="audit")
app.add_typer(rules_app, name="rules")
app.command("profile")(profile_command)


@app.callback()
def root(ctx: typer.Context, home: HomeOption = None, rules: RulesOption = None) -> None:
    """govdb: verified master data (基础主数据库) and unverified event data (业务动态数据库)."""
    ctx.obj = Options(home, rules)


@app.command()
@reports_errors
def init(
    ctx: typer.Context,
    district: Annotated[str | None, typer.Option(help="County code to serve, e.g. 440605 (南海区).")] = None,
    home: HomeOption = None,
) -> None:
    """Create or migrate both stores; with --district, register its divisions and checking units.

    Example: govdb init --district 440605
    """
    with options(ctx, home).open() as db:
        facts: dict[str, Any] = {"master store": db.config.master_url, "event store": db.config.events_url}
        if district:
            report = db.serve_district(district)
            facts.update(
                {
                    "district": f"{report.county_name} ({report.county_code})",
                    "villages": report.villages,
                    "streets": report.streets,
                    "departments": report.departments,
                }
            )
        _render.facts("govdb init", facts)


@app.command()
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
    home: HomeOption = None,
) -> None:
    """Store every row of FILE as an event (raw kept; repeats stored once; bad rows quarantined).

    Example: govdb ingest hall.csv --source hall-window --key 受理编号 --service hall.resident_registration
    """
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
            progress=step,
        )
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
    for warning in report.warnings:
        _render.warning(warning)
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


@app.command()
@reports_errors
def process(
    ctx: typer.Context,
    retry: Annotated[
        Retry | None,
        typer.Option(help="Take these events again first: invalid ones, once their data or rules are fixed."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Standardize and validate received events, link them to master, propose changes, open tasks.

    Example: govdb process --retry invalid
    """
    with options(ctx, home).open() as db, _render.progress("linking and proposing") as step:
        report = db.process(retry=retry, progress=step)
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
        },
    )
    reasons = report.validation.by_reason()
    if reasons.height:
        _render.table("quality issues", reasons.columns, reasons.rows())


@app.command()
@reports_errors
def promote(ctx: typer.Context, home: HomeOption = None) -> None:
    """Apply approved proposals to master data (idempotent; completes an interrupted run).

    Example: govdb promote
    """
    with options(ctx, home).open() as db, _render.progress("promoting") as step:
        r = db.promote(progress=step)
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
        },
    )


@app.command()
@reports_errors
def prefill(
    ctx: typer.Context,
    form: Annotated[str, typer.Argument(help="Form code, e.g. senior_transit_card.")],
    person: Annotated[str, typer.Option(help="The applicant's resident ID number.")],
    actor: Annotated[str, typer.Option(help="ACTOR@UNIT of the department filling the form.")],
    home: HomeOption = None,
) -> None:
    """Fill FORM from master data only, each field with its source and verification (audited).

    Example: govdb prefill senior_transit_card --person 440605196001011234
    --actor wang@department:transport:440605
    """
    with options(ctx, home).open() as db:
        result = db.prefill(form, id_number=person, actor=parse_actor(actor))
    render_prefill(result)


def render_prefill(result: Any) -> None:
    _render.table(
        f"{result.title} ({result.form}) for {result.person_id}",
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


@programme_app.command("run")
@reports_errors
def programme_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Programme name, e.g. senior_transit_card.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date of eligibility (YYYY-MM-DD); default today.")
    ] = None,
    actor: Annotated[
        str,
        typer.Option(
            "--actor", help="ACTOR@UNIT of the programme's department, e.g. wang@department:transport:440605."
        ),
    ] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Select without recording in the ledger (still audited).")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Select everyone newly eligible, decide delivery, and record them in the issuance ledger.

    The run reads personal data, so it names who runs it; it is audited with everyone selected.

    Example: govdb programme run senior_transit_card --actor wang@department:transport:440605
    """
    try:
        day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    except ValueError:
        raise typer.BadParameter(f"{as_of!r} is not a date like 2026-12-31", param_hint="--as-of") from None
    with options(ctx, home).open() as db:
        if not actor:
            raise typer.BadParameter(
                "name who runs the programme, e.g. wang@department:transport:440605", param_hint="--actor"
            )
        run = db.run_programme(name, as_of=day, actor=parse_actor(actor), dry_run=dry_run)
    render_programme(run)


def render_programme(run: Any, limit: int = 10) -> None:
    _render.facts(
        f"programme {run.programme} as of {run.as_of}",
        {
            "eligible": run.eligible,
            "issued now": run.issued,
            "issued before": run.already_issued,
            "home deliveries": run.home_delivery,
        },
    )
    home = [s for s in run.selected if s["delivery"] == "home"][:limit]
    if home:
        _render.table(
            "home deliveries",
            ["person", "name", "born", "address", "why"],
            [
                (s["person_id"], s["name"], s["birth_date"], s["address"], "; ".join(s["reasons"]))
                for s in home
            ],
        )


@app.command()
@reports_errors
def demo(
    ctx: typer.Context,
    people: Annotated[
        int, typer.Option(min=20, max=200_000, help="Residents in the synthetic district.")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    home: HomeOption = None,
) -> None:
    """Run the whole data path on a synthetic district (南海区) in --home (default ./govdb-data).

    Example: govdb demo --home /tmp/govdb-demo --people 500
    """
    from govdb.demo import run_demo

    home = options(ctx, home).home or Path("govdb-data")
    with _render.err.status("running the demo..."):
        r = run_demo(home, people=people, seed=seed)
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
            "conflicts": r.promote.conflicts,
        },
    )
    _render.line("6. prefill")
    render_prefill(r.prefill)
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


@app.command()
@reports_errors
def standardize(
    file: Annotated[Path, typer.Argument(help="CSV, TSV, XLSX, Parquet or JSON Lines file.")],
    out: Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet.")],
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="header=standard column, e.g. 姓名=name.")
    ] = None,
    hint: Annotated[str | None, typer.Option(help="Division code known to contain the addresses.")] = None,
) -> None:
    """Standardize a file's standard columns (name, id_number, birth_date, phone, address, uscc...).

    Example: govdb standardize people.csv --out people.std.parquet --map 姓名=name --hint 440605
    """
    from govdb.standards.files import standardize_file

    rename = {}
    for item in map_ or []:
        column, sep, standard = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not header=column", param_hint="--map")
        rename[column] = standard
    with _render.err.status(f"standardizing {file.name}..."):
        report = standardize_file(file, out, rename=rename, address_hint=hint)
    _render.facts(
        f"standardize {file} -> {out}",
        {
            "rows": report.rows,
            "unreadable rows (not written)": report.unreadable,
            "standard columns": ", ".join(report.columns),
        },
    )
    if report.issues.height:
        _render.table("issues", report.issues.columns, report.issues.rows())


MapOption = Annotated[
    list[str] | None, typer.Option("--map", help="column=field, e.g. 姓名=name or 编号=event_id.")
]


def _matching(ctx: typer.Context, rules_file: Path | None) -> Any:
    from govdb.rulebook import load_matching, load_rulebook

    if rules_file is not None:
        return load_matching(rules_file)
    return load_rulebook(options(ctx).rules).matching["person"]


@app.command()
@reports_errors
def link(
    ctx: typer.Context,
    events: Annotated[Path, typer.Argument(help="Events file, .csv or .parquet, with an event_id column.")],
    master: Annotated[Path, typer.Option("--master", help="Master people file, .csv or .parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Links file to write, .csv or .parquet.")],
    rules_file: Annotated[
        Path | None,
        typer.Option("--rules", help="A matching rule file (default rules/matching/person.yaml)."),
    ] = None,
    map_: MapOption = None,
    event_id: Annotated[str, typer.Option(help="Id column of the events file.")] = "event_id",
    master_id: Annotated[str, typer.Option(help="Id column of the master file.")] = "person_id",
    model: Annotated[
        Path | None, typer.Option(help="Score with this saved model instead of training.")
    ] = None,
    save_model: Annotated[Path | None, typer.Option(help="Write the trained model (JSON) here.")] = None,
    hint: Annotated[str | None, typer.Option(help="Division code known to contain the addresses.")] = None,
) -> None:
    """Link every event to a master person: one row per event with person_id (empty when none),
    match_probability, match_weight, decision (match / review / new) and explanation.

    Example: govdb link hall.csv --master people.parquet --out links.parquet --map 姓名=name
    """
    from govdb.link.files import link_files
    from govdb.link.model import LinkModel

    matching = _matching(ctx, rules_file)
    given = LinkModel.load(model) if model else None
    with _render.err.status(f"linking {events.name} to {master.name}..."):
        report, result = link_files(
            events, master, out, matching, mapping=parse_mapping(map_), event_id=event_id,
            master_id=master_id, model=given, address_hint=hint,
        )  # fmt: skip
    if save_model:
        result.model.save(save_model)
    _render.facts(
        f"link {events} -> {out}",
        {
            "events": report.events,
            "master people": report.master,
            "candidate pairs": report.candidates,
            **{f"decision: {k}": v for k, v in sorted(report.decisions.items())},
            "seconds": " ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()),
            **({"model saved to": str(save_model)} if save_model else {}),
        },
    )
    for skipped in report.skipped[:10]:
        _render.err.print(
            f"[yellow]warning:[/] blocking rule {skipped.rule}: value {skipped.value!r} is shared by "
            f"{skipped.left_rows} events and {skipped.right_rows} master people; not used to find candidates"
        )


@app.command()
@reports_errors
def dedupe(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Records file, .csv or .parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Clusters file to write, .csv or .parquet.")],
    rules_file: Annotated[Path | None, typer.Option("--rules", help="A matching rule file.")] = None,
    map_: MapOption = None,
    id_column: Annotated[str, typer.Option("--id", help="Id column of the file.")] = "record_id",
    hint: Annotated[str | None, typer.Option(help="Division code known to contain the addresses.")] = None,
) -> None:
    """Cluster the records of one file that describe the same person (cluster_id, cluster_size).

    Example: govdb dedupe registrations.csv --out clusters.csv --id 编号
    """
    from govdb.link.files import dedupe_file

    with _render.err.status(f"deduplicating {file.name}..."):
        result = dedupe_file(
            file,
            out,
            _matching(ctx, rules_file),
            mapping=parse_mapping(map_),
            id_column=id_column,
            address_hint=hint,
        )
    clusters = result.clusters
    _render.facts(
        f"dedupe {file} -> {out}",
        {
            "records": clusters.height,
            "people (clusters)": clusters.get_column("cluster_id").n_unique(),
            "records in clusters of 2 or more": int((clusters.get_column("cluster_size") > 1).sum()),
            "matched pairs": result.pairs.height,
        },
    )


@app.command()
@reports_errors
def quality(ctx: typer.Context, home: HomeOption = None) -> None:
    """Error rates per source system and field, from the event store's quality flags.

    Example: govdb quality
    """
    from govdb.validate import quality as quality_report

    with options(ctx, home).open() as db:
        frame = quality_report(db.events)
    _render.table("data quality by source and field", frame.columns, frame.rows())
