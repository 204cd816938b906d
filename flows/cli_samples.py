"""CLI group ``alphacode samples``: inspect a run's Parquet stores; ``register(app)`` adds it.

Commands (every one takes ``--json`` for one machine-readable JSON document on stdout):

* ``runs [--root runs]``: run directories and their stage stores (stage, key, complete?,
  created_at, rows of the main Parquet file, key manifest metrics).
* ``show RUN --problem ID [--model sft|rl|KEY] [--limit N] [--code]``: one problem's samples
  with public/hidden verdicts, first failures, cluster ids and the selected flag.
* ``query RUN [--passed-public|--failed-public] [--passed-hidden|--failed-hidden]
  [--selected|--not-selected] [--distinct] [--problem ID] [--sql]``: the samples matching all
  given flags; ``--sql`` also prints the DuckDB SQL it ran (paste it into ``duckdb``).
* ``export RUN --out FILE.jsonl [--problem ID] [--model ...]`` plus the query flags: one
  sample per line, every store column plus the verdict columns, written atomically.
* ``stats RUN [--model ...]``: samples, distinct programs, dedup ratio, finish reasons, mean
  tokens, public/hidden pass rates, clusters per problem.

RUN is a run directory (``runs/default``) or a name under ``runs/``. Bad input (missing run,
unknown problem or model, incomplete store, a verdict filter whose stage has not finished)
prints one ``error: ...`` line naming the thing and the fix, and exits with status 2.
Everything is read-only; the queries are in :mod:`tasks.core.inspection`, imported when a
command runs (``--help`` and argument errors load neither duckdb nor pyarrow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the stores' readers (duckdb, pyarrow) load when a command runs, not for --help
    from tasks.core.inspection import ModelStores, QueryResult, SampleFilter

samples_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Inspect the Parquet stores of a run (samples, verdicts, clusters).",
)

RUN_ARG = typer.Argument(..., help="run directory (e.g. runs/default), a name under runs/, or an s3:// run")
MODEL_OPT = typer.Option("sft", "--model", "-m", help="sft, rl or a sample stage key (prefix)")
JSON_OPT = typer.Option(False, "--json", help="machine-readable JSON on stdout")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _console() -> Console:
    """Terminal width on a terminal; 200 columns when piped (rich's default 80 folds ids)."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _stores(run: str, model: str) -> ModelStores:
    from tasks.core.inspection import resolve_run, resolve_stores, scan_run

    return resolve_stores(scan_run(resolve_run(run)), model)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _stores_line(stores: ModelStores) -> str:
    parts = [f"sample/{stores.sample.key}"]
    for stage in ("filter", "cluster", "evaluate"):
        entry = getattr(stores, stage)
        parts.append(f"{stage}/{entry.key}" if entry else f"{stage}: not finished")
    return f"model {stores.model}: " + ", ".join(parts)


def _stores_json(stores: ModelStores) -> dict:
    out = {"run": str(stores.run), "model": stores.model}
    for stage in ("sample", "filter", "cluster", "evaluate"):
        entry = getattr(stores, stage)
        out[f"{stage}_key"] = entry.key if entry else None
    return out


# ------------------------------------------------------------------ runs


@samples_app.command("runs")
def runs_command(
    root: str = typer.Option("runs", "--root", help="directory holding run directories, or an s3:// run"),
    as_json: bool = JSON_OPT,
) -> None:
    """List run directories and their stage stores."""
    from tasks.core.inspection import InspectError, find_runs

    try:
        runs = find_runs(root)
    except InspectError as exc:
        _fail(str(exc))
    listing = [
        {
            "run": str(r.root),
            "stages": [
                {
                    "stage": e.stage,
                    "key": e.key,
                    "model": e.model or None,
                    "complete": e.complete,
                    "created_at": e.created_at or None,
                    "rows": e.rows(),
                    "metrics": e.summary(),
                }
                for e in r.entries
            ],
        }
        for r in runs
    ]
    if as_json:
        _emit_json(listing)
        return
    console = _console()
    if not listing:
        console.print(f"no run directories under {root}")
    for run in listing:
        table = Table(title=f"run {run['run']}", title_justify="left")
        for col in ("stage", "key", "complete", "created_at", "rows", "key metrics"):
            table.add_column(col, overflow="fold")
        for e in run["stages"]:
            stage = f"{e['stage']} ({e['model']})" if e["model"] else e["stage"]
            metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in e["metrics"].items())
            table.add_row(
                stage,
                e["key"],
                "yes" if e["complete"] else "INCOMPLETE",
                (e["created_at"] or "-")[:19],
                _fmt(e["rows"]),
                metrics,
            )
        console.print(table)


# ------------------------------------------------------------------ show / query


def _sample_table(result: QueryResult, code: bool) -> Table:
    table = Table(title=_stores_line(result.stores), title_justify="left")
    cols = [
        "problem",
        "sample",
        "code_hash",
        "finish",
        "tokens",
        "first",
        "public",
        "hidden",
        "first failure",
        "cluster",
        "selected",
    ]
    for col in cols + (["code"] if code else []):
        table.add_column(col, overflow="fold")
    for r in result.rows:
        failure = r.first_failure_public or r.first_failure_hidden or ""
        selected = "-" if r.selected is None else (f"yes (#{r.selection_rank})" if r.selected else "no")
        cells = [
            r.problem_id,
            str(r.sample_id),
            r.code_hash[:12],
            r.finish_reason,
            str(r.num_tokens),
            _fmt(r.is_first_of_code_hash),
            _fmt(r.passed_public),
            _fmt(r.passed_hidden),
            failure or "-",
            _fmt(r.cluster_id),
            selected,
        ]
        table.add_row(*cells, *([(r.code or "").rstrip("\n")] if code else []))
    return table


def _print_result(result: QueryResult, code: bool, as_json: bool, show_sql: bool = False) -> None:
    if as_json:
        payload = {
            **_stores_json(result.stores),
            "total": result.total,
            "rows": [r.as_dict() for r in result.rows],
        }
        if show_sql:
            payload["sql"] = result.sql
        _emit_json(payload)
        return
    console = _console()
    console.print(_sample_table(result, code))
    console.print(f"{len(result.rows)} of {result.total} matching samples shown")
    if show_sql:
        console.print(result.sql, markup=False)


def _run_query(run: str, model: str, flt: SampleFilter, limit: int, code: bool) -> QueryResult:
    from tasks.core.inspection import InspectError, query_samples

    if limit < 0:
        raise InspectError(f"--limit must be >= 0 (0 = all), got {limit}")
    return query_samples(_stores(run, model), flt, limit=limit, code=code)


@samples_app.command("show")
def show_command(
    run: str = RUN_ARG,
    problem: str = typer.Option(..., "--problem", "-p", help="problem id (Problem.name)"),
    model: str = MODEL_OPT,
    limit: int = typer.Option(50, "--limit", "-n", help="rows to show (0 = all)"),
    code: bool = typer.Option(False, "--code", help="include each sample's program"),
    as_json: bool = JSON_OPT,
) -> None:
    """A problem's samples with verdicts, first failures, clusters and selection."""
    from tasks.core.inspection import InspectError, SampleFilter

    try:
        result = _run_query(run, model, SampleFilter(problem_id=problem), limit, code)
    except InspectError as exc:
        _fail(str(exc))
    _print_result(result, code, as_json)


PUBLIC_OPT = typer.Option(None, "--passed-public/--failed-public", help="public-test verdict (stage 4)")
HIDDEN_OPT = typer.Option(None, "--passed-hidden/--failed-hidden", help="hidden-test verdict (evaluate)")
SELECTED_OPT = typer.Option(None, "--selected/--not-selected", help="program chosen for submission (stage 5)")
DISTINCT_OPT = typer.Option(False, "--distinct", help="only the first sample of each distinct program")
PROBLEM_OPT = typer.Option(None, "--problem", "-p", help="only this problem id")


@samples_app.command("query")
def query_command(
    run: str = RUN_ARG,
    passed_public: bool | None = PUBLIC_OPT,
    passed_hidden: bool | None = HIDDEN_OPT,
    selected: bool | None = SELECTED_OPT,
    distinct: bool = DISTINCT_OPT,
    problem: str | None = PROBLEM_OPT,
    model: str = MODEL_OPT,
    limit: int = typer.Option(100, "--limit", "-n", help="rows to show (0 = all)"),
    code: bool = typer.Option(False, "--code", help="include each sample's program"),
    sql: bool = typer.Option(False, "--sql", help="also print the DuckDB SQL"),
    as_json: bool = JSON_OPT,
) -> None:
    """Samples matching every given verdict flag (e.g. --passed-public --failed-hidden)."""
    from tasks.core.inspection import InspectError, SampleFilter

    flt = SampleFilter(
        problem_id=problem,
        passed_public=passed_public,
        passed_hidden=passed_hidden,
        selected=selected,
        distinct=distinct,
    )
    try:
        result = _run_query(run, model, flt, limit, code)
    except InspectError as exc:
        _fail(str(exc))
    _print_result(result, code, as_json, show_sql=sql)


# ------------------------------------------------------------------ export / stats


@samples_app.command("export")
def export_command(
    run: str = RUN_ARG,
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write"),
    problem: str | None = PROBLEM_OPT,
    model: str = MODEL_OPT,
    passed_public: bool | None = PUBLIC_OPT,
    passed_hidden: bool | None = HIDDEN_OPT,
    selected: bool | None = SELECTED_OPT,
    distinct: bool = DISTINCT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Export samples (all store columns + verdicts) as JSONL, one sample per line."""
    from tasks.core.inspection import InspectError, SampleFilter, export_jsonl

    flt = SampleFilter(
        problem_id=problem,
        passed_public=passed_public,
        passed_hidden=passed_hidden,
        selected=selected,
        distinct=distinct,
    )
    try:
        stores = _stores(run, model)
        count = export_jsonl(stores, out, flt)
    except InspectError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json({**_stores_json(stores), "out": str(out), "rows": count})
    else:
        typer.echo(f"wrote {count} samples to {out} ({_stores_line(stores)})")


@samples_app.command("stats")
def stats_command(run: str = RUN_ARG, model: str = MODEL_OPT, as_json: bool = JSON_OPT) -> None:
    """Summary statistics of one model's samples and their verdicts."""
    from tasks.core.inspection import InspectError, store_stats

    try:
        stores = _stores(run, model)
        stats = store_stats(stores)
    except InspectError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json({**_stores_json(stores), **stats.as_dict()})
        return
    table = Table(title=_stores_line(stores), title_justify="left")
    table.add_column("statistic")
    table.add_column("value", overflow="fold")
    reasons = ", ".join(f"{k}={v}" for k, v in stats.finish_reasons.items())
    for name, value in (
        ("problems", stats.problems),
        ("samples", stats.samples),
        ("distinct programs", stats.distinct_programs),
        ("dedup ratio (duplicate samples / samples)", stats.dedup_ratio),
        ("finish reasons", reasons),
        ("mean tokens", stats.mean_tokens),
        ("public pass rate (samples)", stats.public_pass_rate),
        ("hidden pass rate (samples)", stats.hidden_pass_rate),
        ("problems solved (any hidden pass)", stats.problems_solved_hidden),
        ("clusters per problem", stats.clusters_per_problem),
        ("selected programs", stats.selected_programs),
    ):
        table.add_row(name, _fmt(value))
    _console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``samples`` command group to ``app``."""
    app.add_typer(samples_app, name="samples")
