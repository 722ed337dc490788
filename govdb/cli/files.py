"""Commands over files alone, without the stores: standardize, link and dedupe a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import (
    JsonOption,
    MapOption,
    options,
    output_format,
    parse_mapping,
    reports_errors,
)


@reports_errors
def standardize(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, TSV, XLSX, Parquet or JSON Lines file.")],
    out: Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet.")],
    map_: MapOption = None,
    hint: Annotated[str | None, typer.Option(help="Division code known to contain the addresses.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Standardize a file's standard columns (name, id_number, birth_date, phone, address, uscc...).

    Example: govdb standardize people.csv --out people.std.parquet --map 姓名=name --hint 440605
    """
    from govdb.standards.files import standardize_file

    fmt = output_format(as_json)
    rename = parse_mapping(map_)
    with _render.err.status(f"standardizing {file.name}..."):
        report = standardize_file(file, out, rename=rename, aliases=_aliases(ctx), address_hint=hint)
    for warning in report.warnings:
        _render.warning(warning)
    if fmt == "json":
        _render.document({"file": file, "out": out, **_render.jsonable(report)})
        return
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


def _aliases(ctx: typer.Context) -> dict[str, str]:
    """The rules' column aliases (姓名 -> name...), as ingest and process read headers."""
    from govdb.rulebook import load_rulebook

    return load_rulebook(options(ctx).rules).column_aliases()


def _matching(ctx: typer.Context, rules_file: Path | None) -> Any:
    from govdb.rulebook import load_matching, load_rulebook

    if rules_file is not None:
        return load_matching(rules_file)
    return load_rulebook(options(ctx).rules).matching["person"]


MatchingOption = Annotated[
    Path | None,
    typer.Option(
        "--matching", "--rules", help="A matching rule file (default: the rules' matching/person.yaml)."
    ),
]


@reports_errors
def link(
    ctx: typer.Context,
    events: Annotated[
        Path,
        typer.Argument(help="Events file (CSV, TSV, XLSX, Parquet or JSON Lines) with an event id column."),
    ],
    master: Annotated[Path, typer.Option("--master", help="Master people file, any format ingest reads.")],
    out: Annotated[Path, typer.Option("--out", help="Links file to write, .csv or .parquet.")],
    rules_file: MatchingOption = None,
    map_: MapOption = None,
    event_id: Annotated[str, typer.Option(help="Id column of the events file.")] = "event_id",
    master_id: Annotated[str, typer.Option(help="Id column of the master file.")] = "person_id",
    model: Annotated[
        Path | None, typer.Option(help="Score with this saved model instead of training.")
    ] = None,
    save_model: Annotated[Path | None, typer.Option(help="Write the trained model (JSON) here.")] = None,
    hint: Annotated[str | None, typer.Option(help="Division code known to contain the addresses.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Link every event to a master person: one row per event with person_id (empty when none),
    match_probability, match_weight, decision (match / review / new) and explanation.

    Example: govdb link hall.csv --master people.parquet --out links.parquet --map 受理编号=event_id
    """
    from govdb.link.files import link_files
    from govdb.link.model import LinkModel

    fmt = output_format(as_json)
    matching = _matching(ctx, rules_file)
    given = LinkModel.load(model) if model else None
    with _render.err.status(f"linking {events.name} to {master.name}..."):
        report, result = link_files(
            events, master, out, matching, mapping=parse_mapping(map_), event_id=event_id,
            master_id=master_id, model=given, address_hint=hint, aliases=_aliases(ctx),
        )  # fmt: skip
    if save_model:
        result.model.save(save_model)
    for warning in report.warnings:
        _render.warning(warning)
    for skipped in report.skipped[:10]:
        _render.warning(
            f"blocking rule {skipped.rule}: value {skipped.value!r} is shared by "
            f"{skipped.left_rows} events and {skipped.right_rows} master people; not used to find candidates"
        )
    if fmt == "json":
        _render.document(
            {"events_file": events, "out": out, "model_saved_to": save_model, **_render.jsonable(report)}
        )
        return
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


@reports_errors
def dedupe(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Records file, any format ingest reads.")],
    out: Annotated[Path, typer.Option("--out", help="Clusters file to write, .csv or .parquet.")],
    rules_file: MatchingOption = None,
    map_: MapOption = None,
    id_column: Annotated[str, typer.Option("--id", help="Id column of the file.")] = "record_id",
    hint: Annotated[str | None, typer.Option(help="Division code known to contain the addresses.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Cluster the records of one file that describe the same person (cluster_id, cluster_size).

    Example: govdb dedupe registrations.csv --out clusters.csv --id 编号
    """
    from govdb.link.files import dedupe_file

    fmt = output_format(as_json)
    with _render.err.status(f"deduplicating {file.name}..."):
        result = dedupe_file(
            file,
            out,
            _matching(ctx, rules_file),
            mapping=parse_mapping(map_),
            id_column=id_column,
            address_hint=hint,
            aliases=_aliases(ctx),
        )
    for warning in result.warnings:
        _render.warning(warning)
    clusters = result.clusters
    counts = {
        "records": clusters.height,
        "clusters": clusters.get_column("cluster_id").n_unique(),
        "records_in_clusters": int((clusters.get_column("cluster_size") > 1).sum()),
        "matched_pairs": result.pairs.height,
    }
    if fmt == "json":
        _render.document({"file": file, "out": out, **counts, "warnings": result.warnings})
        return
    _render.facts(
        f"dedupe {file} -> {out}",
        {
            "records": counts["records"],
            "people (clusters)": counts["clusters"],
            "records in clusters of 2 or more": counts["records_in_clusters"],
            "matched pairs": counts["matched_pairs"],
        },
    )
