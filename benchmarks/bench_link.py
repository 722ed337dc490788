"""govdb against Splink on the same generated records, side by side in one run.

    python benchmarks/bench_link.py --master 1000000 --events 1000000 --profile easy \\
        --splink-python /path/to/venv-with-splink/bin/python

Splink is never a govdb dependency: install it in its own virtual environment
(`python -m venv v && v/bin/pip install splink polars pyarrow`) and pass that interpreter. Each tool
runs in its own child process on the same parquet files, so wall time and peak memory (the child's
maximum resident set) are measured the same way. Splink follows its documented training workflow:
the prior from deterministic rules, u by random sampling, m by EM over two blocking rules, then
predict. Its input gets the cleaning a Splink user would write (dates to ISO, the first character as
surname); govdb takes the files as written.

Prints precision, recall and F1 (govdb at its rules' default bands, counting `match` decisions;
Splink at its best threshold over a sweep), seconds and peak memory, and appends the figures to
benchmarks/link_results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --- workers (each runs in its own process) ----------------------------------------------------


def run_govdb(data: Path, out: Path) -> dict[str, float]:
    import polars as pl

    sys.path.insert(0, str(HERE.parent))
    from govdb.link import link_frames
    from govdb.rulebook import load_rulebook

    rules = load_rulebook().matching["person"]
    started = time.perf_counter()
    master = pl.read_parquet(data / "master.parquet")
    events = pl.read_parquet(data / "events.parquet")
    result = link_frames(events, master, rules)
    result.links.select("event_id", "person_id", "match_probability", "decision").write_parquet(out)
    return {"seconds": time.perf_counter() - started, "pairs": result.candidates, **result.seconds}


def run_splink(data: Path, out: Path) -> dict[str, float]:
    import polars as pl
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    started = time.perf_counter()

    def clean(frame: pl.DataFrame, id_column: str) -> pl.DataFrame:
        text = pl.col("birth_date").cast(pl.String)
        dob = pl.coalesce(
            text.str.strptime(pl.Date, "%Y-%m-%d", strict=False),
            text.str.strptime(pl.Date, "%Y/%m/%d", strict=False),
            text.str.strptime(pl.Date, "%Y%m%d", strict=False),
            text.str.strptime(pl.Date, "%Y年%m月%d日", strict=False),
        )
        name = pl.col("name").str.replace_all(r"\s+", "")
        return frame.select(
            pl.col(id_column).alias("unique_id"),
            name.alias("full_name"),
            name.str.slice(0, 1).alias("surname"),
            name.str.slice(1).alias("given_name"),
            dob.dt.strftime("%Y-%m-%d").alias("dob"),
            pl.col("gender").replace({"男": "M", "女": "F"}).alias("gender"),
            pl.col("id_number").str.to_uppercase().alias("id_number"),
            pl.col("phone").alias("phone"),
            pl.col("address").alias("address"),
        )

    master = clean(
        pl.read_parquet(data / "master.parquet").with_columns(pl.col("birth_date").cast(pl.String)),
        "person_id",
    )
    events = clean(pl.read_parquet(data / "events.parquet"), "event_id")
    db_api = DuckDBAPI()
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("full_name", [0.9, 0.8]).configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("id_number", [1, 2]),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("gender"),
            cl.LevenshteinAtThresholds("phone", [1]),
            cl.JaroWinklerAtThresholds("address", [0.95, 0.88]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("id_number"),
            block_on("substr(id_number, 1, 6)", "dob"),
            block_on("phone"),
            block_on("surname", "dob"),
            block_on("given_name", "dob"),
            block_on("full_name", "substr(dob, 1, 4)"),
            block_on("full_name", "address"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(
        [
            db_api.register(events.to_arrow(), table_name="events"),
            db_api.register(master.to_arrow(), table_name="master"),
        ],
        settings,
    )
    linker.training.estimate_probability_two_random_records_match([block_on("id_number")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("full_name", "dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("phone"))
    predictions = linker.inference.predict(threshold_match_probability=0.01)
    rows = pl.from_arrow(predictions.as_duckdbpyrelation().arrow())
    rows.select(
        pl.when(pl.col("source_dataset_l") == "events")
        .then(pl.col("unique_id_l"))
        .otherwise(pl.col("unique_id_r"))
        .alias("event_id"),
        pl.when(pl.col("source_dataset_l") == "events")
        .then(pl.col("unique_id_r"))
        .otherwise(pl.col("unique_id_l"))
        .alias("person_id"),
        "match_probability",
    ).sort("match_probability", descending=True).unique("event_id", keep="first").write_parquet(out)
    return {"seconds": time.perf_counter() - started, "pairs": rows.height}


WORKERS = {"govdb": run_govdb, "splink": run_splink}


# --- the parent: generate, run both, score ------------------------------------------------------


def child(python: str, tool: str, data: Path) -> dict[str, float]:
    out = data / f"{tool}.parquet"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, __file__, "--worker", tool, "--data", str(data)], stdout=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"{tool} failed (exit status {status}); its output:\n{stdout}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    return {**figures, "wall_seconds": wall, "peak_mb": usage.ru_maxrss / 1024, "predictions": str(out)}


def score(predictions: Path, truth: Path, *, decision: bool) -> dict[str, float]:
    import polars as pl

    pred = pl.read_parquet(predictions)
    t = pl.read_parquet(truth)
    positives = t.get_column("person_id").is_not_null().sum()
    joined = pred.join(t, on="event_id", suffix="_true")

    def prf(chosen: pl.DataFrame) -> tuple[float, float, float]:
        tp = chosen.filter(pl.col("person_id") == pl.col("person_id_true")).height
        p = tp / max(chosen.height, 1)
        r = tp / max(positives, 1)
        return p, r, 2 * p * r / max(p + r, 1e-12)

    if decision:
        p, r, f = prf(joined.filter(pl.col("decision") == "match"))
        return {"precision": p, "recall": r, "f1": f, "threshold": None}
    best = {"f1": -1.0}
    for threshold in [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]:
        p, r, f = prf(joined.filter(pl.col("match_probability") >= threshold))
        if f > best["f1"]:
            best = {"precision": p, "recall": r, "f1": f, "threshold": threshold}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--master", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--profile", choices=["easy", "hard"], default="easy")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--splink-python", help="an interpreter with splink installed (omit to run govdb only)"
    )
    args = parser.parse_args()
    if args.worker:
        figures = WORKERS[args.worker](args.data, args.data / f"{args.worker}.parquet")
        print(json.dumps(figures))
        return
    data = args.data or Path(f"/tmp/govdb-bench-link/{args.profile}-{args.master}x{args.events}-s{args.seed}")
    if not (data / "truth.parquet").exists():
        data.mkdir(parents=True, exist_ok=True)
        sizes = ["--master", str(args.master), "--events", str(args.events)]
        options = ["--profile", args.profile, "--seed", str(args.seed), "--out", str(data)]
        subprocess.run([sys.executable, str(HERE / "linkgen.py"), *sizes, *options], check=True)
    rows = {}
    tools = [("govdb", sys.executable)] + ([("splink", args.splink_python)] if args.splink_python else [])
    for tool, python in tools:
        figures = child(python, tool, data)
        figures.update(score(Path(figures["predictions"]), data / "truth.parquet", decision=tool == "govdb"))
        rows[tool] = figures
        print(
            f"{tool:7s} P={figures['precision']:.4f} R={figures['recall']:.4f} F1={figures['f1']:.4f} "
            f"(threshold {figures['threshold']}) wall={figures['wall_seconds']:.1f}s "
            f"peak={figures['peak_mb']:.0f} MB",
            flush=True,
        )
    record = {
        "at": time.strftime("%Y-%m-%d %H:%M"),
        "profile": args.profile,
        "master": args.master,
        "events": args.events,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "results": rows,
    }
    if "splink" in rows:
        record["time_ratio_govdb_over_splink"] = (
            rows["govdb"]["wall_seconds"] / rows["splink"]["wall_seconds"]
        )
        record["memory_ratio_govdb_over_splink"] = rows["govdb"]["peak_mb"] / rows["splink"]["peak_mb"]
    with open(HERE / "link_results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
