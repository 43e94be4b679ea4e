"""``alpha ingest``, ``alpha compact``, ``alpha watermarks``: raw data into bronze and silver."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import default_lean_path, load_settings

INGEST_HELP = """Land, validate and store raw data from one SOURCE.

\b
SOURCE and --dataset (default first):
  lean     daily, minute, coarse_universe, option_chains, fine_fundamentals
  csv      daily: a folder of <SYMBOL>.csv (--path), corporate actions in its actions.csv or --actions FILE
  fx       bars: a folder of <PAIR>.csv, 24x5 sessions to 17:00 New York
  polygon  daily, minute, option_contracts, option_chain, news, splits, dividends
  edgar    companyfacts, submissions (SEC wants EDGAR_USER_AGENT)
  fred     observations (SYMBOLS are series ids, e.g. PAYEMS)
  stocknet tweets: the stocknet tweets as news items (--path; default $ALPHA_STOCKNET_DATA, else the shipped data)
Keys (POLYGON_API_KEY, FRED_API_KEY) come from the environment or .env.

Prints a progress bar and a summary (rows fetched, written, quarantined);
exits 1 if any job failed. --incremental starts each symbol after its
watermark; rerunning the same range changes nothing.
"""

DEFAULT_DATASET = {"lean": "daily", "csv": "daily", "fx": "bars", "polygon": "daily", "edgar": "companyfacts", "fred": "observations", "stocknet": "tweets"}


@friendly
def ingest(
    source: str = typer.Argument(..., help="lean, csv, fx, polygon, edgar, fred or stocknet."),
    symbols: str | None = typer.Argument(None, help="Comma-separated symbols (or series ids), e.g. AAPL,SPY. Files: default all."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset of the source (see above)."),
    start: str | None = typer.Option(None, help="First date (YYYY-MM-DD). Default: 2000-01-01."),
    end: str | None = typer.Option(None, help="Last date (YYYY-MM-DD). Default: today."),
    incremental: bool = typer.Option(False, "--incremental", help="Fetch only what is after each symbol's watermark."),
    parallel: int = typer.Option(1, "--parallel", "-p", min=1, max=64, help="Worker threads (the vendor's rate limit is shared by all)."),
    path: Path | None = typer.Option(None, "--path", help="File sources: the folder to read (lean default: $ALPHA_LEAN_DATA, else the shipped data/demo/quantconnect-lean)."),
    date_format: str | None = typer.Option(None, "--date-format", help='csv: how dates are written when not year first, e.g. "%d/%m/%Y" (else FOLDER/format.toml; ambiguous dates are refused until declared).'),
    actions: Path | None = typer.Option(None, "--actions", help="csv: the corporate actions (symbol,ex_date,split_ratio,cash_dividend[,known_at]); default: the folder's actions.csv, if any."),
    home: Path | None = HomeOpt,
):
    import pandas as pd

    settings = load_settings(home)
    source = source.lower()
    if source not in DEFAULT_DATASET:
        raise typer.BadParameter(f"unknown source {source!r}; choose from {', '.join(DEFAULT_DATASET)}", param_hint="SOURCE")
    dataset = dataset or DEFAULT_DATASET[source]
    symbol_list = [s for s in (symbols or "").split(",") if s.strip()] or None
    if source == "csv" and symbol_list and path is None and Path(symbol_list[0]).is_dir():
        path, symbol_list = Path(symbol_list[0]), None   # `alpha ingest csv FOLDER` still works
    if actions is not None and (source, dataset) != ("csv", "daily"):
        raise typer.BadParameter("--actions goes with `alpha ingest csv --path FOLDER`", param_hint="--actions")
    if date_format is not None and (source, dataset) != ("csv", "daily"):
        raise typer.BadParameter("--date-format goes with `alpha ingest csv --path FOLDER`", param_hint="--date-format")
    if source in ("lean", "csv") and dataset == "daily":
        from etl.sources.archive import ingest_csv_folder, ingest_lean
        from etl.sources.base import check_symbols

        t0 = step(f"ingest {source} daily -> {settings.home}")
        if source == "lean":
            report = ingest_lean(settings, path or default_lean_path(), check_symbols(symbol_list) if symbol_list else None)
        else:
            if path is None:
                raise typer.BadParameter("give the folder: alpha ingest csv --path FOLDER", param_hint="--path")
            report = ingest_csv_folder(settings, path, step=pass_progress(), actions=actions, date_format=date_format)
        done(t0, report.summary())
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from etl.sources.base import run_ingest

    start = start or "2000-01-01"
    end = end or pd.Timestamp.now(tz="America/New_York").strftime("%Y-%m-%d")
    if source == "lean" and path is None:
        path = default_lean_path()
    t0 = step(f"ingest {source}.{dataset} {start}..{end}{' (incremental)' if incremental else ''} -> {settings.home}")
    columns = (TextColumn("    {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, transient=False, disable=not sys.stdout.isatty() and not os.environ.get("ALPHA_PROGRESS")) as bar:
        task = bar.add_task(f"{source}.{dataset}", total=None, last="")

        def progress(result, total):
            state = "FAILED" if result.error else ("up to date" if result.skipped else f"{sum(result.written.values())} new")
            bar.update(task, total=total, advance=1, last=f"{result.job.symbol}: {state}")

        summary = run_ingest(settings, source, dataset, symbol_list, start, end, incremental=incremental, parallel=parallel,
                             progress=progress, path=str(path) if path else None)
    typer.echo(summary.text())
    if summary.failed:
        typer.secho(f"error: {len(summary.failed)} of {len(summary.results)} job(s) failed (see above); the rest were stored",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    done(t0)


def pass_progress(every: float = 2.0):
    """``step(pass, done, total)`` for an all-or-nothing ingest: a line per pass at most every
    ``every`` seconds and at its end, with the chunks done, the time so far and an estimate of
    what remains (plain lines, so logs and pipes show them too)."""
    import time

    state = {"pass": None, "t0": 0.0, "shown": 0.0}

    def show(name: str, n: int, total: int) -> None:
        now = time.perf_counter()
        if name != state["pass"]:
            state.update({"pass": name, "t0": now, "shown": now})
        if total < 2 or (n < total and now - state["shown"] < every):
            return
        spent = now - state["t0"]
        left = f", about {spent / n * (total - n):.0f} s left" if n < total else ""
        typer.echo(f"    {name}: {n}/{total} chunks in {spent:.1f} s{left}")
        state["shown"] = now

    return show


@friendly
def compact(
    table: str | None = typer.Argument(None, help="One silver table (default: all)."),
    home: Path | None = HomeOpt,
):
    """Merge each silver partition's part files into one; query results do not change."""
    from etl.storage import silver
    from etl.storage.tables import ALL

    settings = load_settings(home)
    names = [table] if table else sorted(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise typer.BadParameter(f"unknown table(s) {unknown}; known: {', '.join(sorted(ALL))}", param_hint="TABLE")
    t0 = step(f"compact silver in {settings.home}")
    for name in names:
        out = silver.compact(settings, ALL[name])
        if out["partitions"]:
            typer.echo(f"    {name}: {out['partitions']} partition(s) merged, {out['files_removed']} file(s) removed")
    done(t0)


@friendly
def watermarks(home: Path | None = HomeOpt):
    """Show how far each source, dataset and symbol has been ingested."""
    from etl.storage.watermarks import open_watermarks

    settings = load_settings(home)
    store = open_watermarks(settings)
    try:
        frame = store.all()
    finally:
        store.dispose()
    typer.echo(f"watermarks in {store.display_url}")
    typer.echo(frame.to_string(index=False) if len(frame) else "    (none yet)")

