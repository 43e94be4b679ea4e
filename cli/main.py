"""The ``alpha`` command.

    alpha demo                      ingest the shared Lean bars, run the nightly flow, backtest, one live tick
    alpha ingest lean [PATH]        Lean daily bars + factor and map files
    alpha ingest csv PATH           a folder of <SYMBOL>.csv (date,open,high,low,close,volume)
    alpha nightly                   Prefect flow in this process: ingest -> health -> factors -> apply -> materialize
    alpha serve                     serve the nightly (cron) and backfill deployments on PREFECT_API_URL
    alpha run nightly|backfill      trigger a run (through the Prefect API when PREFECT_API_URL is set)
    alpha backtest                  vectorbt backtest of the strategy on alpha.history
    alpha live --once               the same strategy on alpha.latest; prints target positions
    alpha live --strategy NAME      the live loop: orders to a paper (or Alpaca) broker, a ledger
    alpha replay --strategy NAME    shadow replay of the live loop on alpha.history == the backtest

Every command honours ``--home`` / ``ALPHA_HOME``. Errors print one clear
message and exit with status 1.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import typer

from etl.core.config import default_lean_path, load_settings
from etl.core.errors import AlphaError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Alpha Warehouse: a point-in-time feature store on Feast.")

HomeOpt = typer.Option(None, "--home", help="Warehouse folder (default: $ALPHA_HOME or .alpha/ in the project).")


def _settings(home: Path | None):
    settings = load_settings(home)
    os.environ["ALPHA_HOME"] = str(settings.home)  # subprocesses and feature_repo/repo.py see the same home
    return settings


def friendly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AlphaError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper


def _step(msg: str) -> float:
    typer.secho(f"==> {msg}", fg=typer.colors.CYAN, bold=True)
    return time.perf_counter()


def _done(t0: float, msg: str = "") -> None:
    typer.echo(f"    {msg}{' ' if msg else ''}({time.perf_counter() - t0:.1f} s)")


INGEST_HELP = """Land, validate and store raw data from one SOURCE.

\b
SOURCE and --dataset (default first):
  lean     daily, minute, coarse_universe, option_chains, fine_fundamentals
  csv      daily: a folder of <SYMBOL>.csv (--path)
  fx       bars: a folder of <PAIR>.csv, 24x5 sessions to 17:00 New York
  polygon  daily, minute, option_contracts, option_chain, news
  edgar    companyfacts, submissions (SEC wants EDGAR_USER_AGENT)
  fred     observations (SYMBOLS are series ids, e.g. PAYEMS)
  stocknet tweets: the shared stocknet tweets as news items (--path)
Keys (POLYGON_API_KEY, FRED_API_KEY) come from the environment or .env.

Prints a progress bar and a summary (rows fetched, written, quarantined);
exits 1 if any job failed. --incremental starts each symbol after its
watermark; rerunning the same range changes nothing.
"""

DEFAULT_DATASET = {"lean": "daily", "csv": "daily", "fx": "bars", "polygon": "daily", "edgar": "companyfacts", "fred": "observations", "stocknet": "tweets"}


@app.command("ingest", help=INGEST_HELP)
@friendly
def ingest_cmd(
    source: str = typer.Argument(..., help="lean, csv, fx, polygon, edgar, fred or stocknet."),
    symbols: str | None = typer.Argument(None, help="Comma-separated symbols (or series ids), e.g. AAPL,SPY. Files: default all."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset of the source (see above)."),
    start: str | None = typer.Option(None, help="First date (YYYY-MM-DD). Default: 2000-01-01."),
    end: str | None = typer.Option(None, help="Last date (YYYY-MM-DD). Default: today."),
    incremental: bool = typer.Option(False, "--incremental", help="Fetch only what is after each symbol's watermark."),
    parallel: int = typer.Option(1, "--parallel", "-p", min=1, max=64, help="Worker threads (the vendor's rate limit is shared by all)."),
    path: Path | None = typer.Option(None, "--path", help="File sources: the folder to read (lean default: ../shared/data/quantconnect-lean)."),
    home: Path | None = HomeOpt,
):
    import pandas as pd

    settings = _settings(home)
    source = source.lower()
    if source not in DEFAULT_DATASET:
        raise typer.BadParameter(f"unknown source {source!r}; choose from {', '.join(DEFAULT_DATASET)}", param_hint="SOURCE")
    dataset = dataset or DEFAULT_DATASET[source]
    symbol_list = [s for s in (symbols or "").split(",") if s.strip()] or None
    if source == "csv" and symbol_list and path is None and Path(symbol_list[0]).is_dir():
        path, symbol_list = Path(symbol_list[0]), None   # `alpha ingest csv FOLDER` still works
    if source in ("lean", "csv") and dataset == "daily":
        from etl.sources.archive import ingest_csv_folder, ingest_lean
        from etl.sources.base import check_symbols

        t0 = _step(f"ingest {source} daily -> {settings.home}")
        if source == "lean":
            report = ingest_lean(settings, path or default_lean_path(), check_symbols(symbol_list) if symbol_list else None)
        else:
            if path is None:
                raise typer.BadParameter("give the folder: alpha ingest csv --path FOLDER", param_hint="--path")
            report = ingest_csv_folder(settings, path)
        _done(t0, report.summary())
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from etl.sources.base import run_ingest

    start = start or "2000-01-01"
    end = end or pd.Timestamp.now(tz="America/New_York").strftime("%Y-%m-%d")
    if source == "lean" and path is None:
        path = default_lean_path()
    t0 = _step(f"ingest {source}.{dataset} {start}..{end}{' (incremental)' if incremental else ''} -> {settings.home}")
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
    _done(t0)


@app.command()
@friendly
def compact(
    table: str | None = typer.Argument(None, help="One silver table (default: all)."),
    home: Path | None = HomeOpt,
):
    """Merge each silver partition's part files into one; query results do not change."""
    from etl.storage import silver
    from etl.storage.tables import ALL

    settings = _settings(home)
    names = [table] if table else sorted(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise typer.BadParameter(f"unknown table(s) {unknown}; known: {', '.join(sorted(ALL))}", param_hint="TABLE")
    t0 = _step(f"compact silver in {settings.home}")
    for name in names:
        out = silver.compact(settings, ALL[name])
        if out["partitions"]:
            typer.echo(f"    {name}: {out['partitions']} partition(s) merged, {out['files_removed']} file(s) removed")
    _done(t0)


@app.command()
@friendly
def watermarks(home: Path | None = HomeOpt):
    """Show how far each source, dataset and symbol has been ingested."""
    from etl.storage.watermarks import open_watermarks

    settings = _settings(home)
    store = open_watermarks(settings)
    try:
        frame = store.all()
    finally:
        store.dispose()
    typer.echo(f"watermarks in {store.display_url}")
    typer.echo(frame.to_string(index=False) if len(frame) else "    (none yet)")


@app.command()
@friendly
def health(
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a threshold is breached."),
    home: Path | None = HomeOpt,
):
    """Write the data health report (HTML and JSON): coverage, gaps, NaN rates, staleness, outliers, duplicates."""
    from etl.quality.health import run_health

    settings = _settings(home)
    t0 = _step(f"data health of {settings.home}")
    report = run_health(settings, strict=strict)
    typer.echo(report.text())
    _done(t0, f"report: {report.paths['html']}")


features_app = typer.Typer(no_args_is_help=True, help="What features exist: list and describe.")
app.add_typer(features_app, name="features")


@features_app.command("list")
@friendly
def features_list(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array (name, view, family, dtype, description, ...)."),
    family: str | None = typer.Option(None, help="Only this family: technical, options, news, fundamentals, macro, regime."),
    view: str | None = typer.Option(None, help="Only this feature view."),
    lagged: bool = typer.Option(False, "--lagged", help="Include the _lag1 twins."),
):
    """Every declared feature (from the factor declarations; no warehouse needed)."""
    import json

    from etl.factors import registry

    rows = [
        {"name": f.name, "view": f.view, "family": f.family, "dtype": f.dtype, "entity": f.entity, "factor": f.factor, "description": f.description}
        for f in registry.features().values()
        if (lagged or not registry.views()[f.view].lag_of) and (family is None or f.family == family) and (view is None or f.view == view)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "view", "family", "dtype", "description", box=None, pad_edge=False)
    for r in rows:
        table.add_row(r["name"], r["view"], r["family"], r["dtype"], r["description"])
    Console(width=200).print(table)
    by_family: dict[str, int] = {}
    for r in rows:
        by_family[r["family"]] = by_family.get(r["family"], 0) + 1
    typer.echo(f"{len(rows)} features: " + ", ".join(f"{k} {v}" for k, v in sorted(by_family.items())))


@features_app.command("describe")
@friendly
def features_describe(
    name: str = typer.Argument(..., help="A feature name, e.g. rsi_14 or ta_rsi_14 (or view:feature)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Path | None = HomeOpt,
):
    """One feature: its declaration, lineage (silver inputs -> factor -> view -> services) and coverage in this warehouse."""
    import json

    from etl.core.errors import UnknownFeatureError
    from etl.gold.describe import describe_feature

    settings = _settings(home)
    try:
        info = describe_feature(settings, name.partition(":")[2] or name)
    except KeyError:
        raise UnknownFeatureError(f"unknown feature {name!r}; `alpha features list` shows them all") from None
    if as_json:
        typer.echo(json.dumps(info, indent=1, default=str))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for k, v in value.items():
                typer.echo(f"  {k}: {v}")
        else:
            typer.echo(f"{key}: {value}")


def run_nightly(settings, session: str | None = None, force: bool = False) -> dict:
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)
    from flows.nightly import nightly

    return nightly(str(settings.home), session=session, force=force)


def nightly_line(result: dict) -> str:
    g, o = result["gold"], result["online"]
    ingest = "; ".join(f"{r['source']}.{r['dataset']} +{r['rows_written']:,} rows" + (" (cached)" if r.get("cached") else "")
                       for r in result["ingest"]) or "no [[ingest]] sources"
    factors = g["skipped"] if "skipped" in g else f"{g['symbols']} symbols, {g['rows']} rows, {g['features']} features"
    failed = sum(max(1, len(f["symbols"])) for f in result["failures"])
    return (f"session {result['session']}: {ingest}; {factors}; apply: {result['apply'].get('skipped') or 'done'}; "
            f"online ({o['online_store']}): {o.get('skipped') or 'materialized'}" + (f"; {failed} FAILURE(S), see the summary" if failed else ""))


SessionOpt = typer.Option(None, "--session", help="Session to close, YYYY-MM-DD (default: the last one whose data is complete).")
ForceOpt = typer.Option(False, "--force", help="Recompute factors and re-apply even if nothing changed.")


@app.command()
@friendly
def nightly(home: Path | None = HomeOpt, session: str | None = SessionOpt, force: bool = ForceOpt):
    """Run the nightly flow in this process: ingest -> health -> factors -> apply -> materialize."""
    settings = _settings(home)
    t0 = _step(f"nightly flow on {settings.home} (online store: {settings.online_store_kind})")
    result = run_nightly(settings, session, force)
    _done(t0, nightly_line(result))


run_app = typer.Typer(no_args_is_help=True, help="Trigger a flow: on the Prefect server of PREFECT_API_URL (its deployment, "
                      "served by `alpha serve`), else in this process.")
app.add_typer(run_app, name="run")


def _trigger(settings, deployment: str, parameters: dict, wait: bool) -> dict | None:
    """Run a served deployment through the Prefect API; the result when waited for."""
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)
    from prefect.deployments import run_deployment

    api = os.environ["PREFECT_API_URL"].rstrip("/")
    typer.echo(f"    triggering {deployment} on {api} with {parameters}")
    run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
    ui = os.environ.get("PREFECT_UI_URL") or api.removesuffix("/api")
    typer.echo(f"    flow run {run.name}: {ui}/runs/flow-run/{run.id}")
    if not wait:
        return None
    run = _follow(run.id)
    typer.echo(f"    flow run {run.name}: {run.state.name}")
    if not run.state.is_completed():
        raise AlphaError(f"flow run {run.name} ended {run.state.name}: {run.state.message or ''}")
    try:  # the flow persists its result in the home's Prefect storage (PREFECT_LOCAL_STORAGE_PATH)
        return run.state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a worker on another machine: the state is what we have
        typer.echo(f"    (result not readable here: {exc}; see the run's artifacts in the UI)")
        return None


def _follow(flow_run_id, poll_seconds: float = 2.0):
    """Wait for a flow run to finish, printing each task run as it ends (progress of long
    backfills); the final flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    seen: set = set()
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            tasks, page = [], None
            while page is None or len(page) == 200:   # the API pages by 200
                page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                             sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=len(tasks))
                tasks += page
            for t in sorted((t for t in tasks if t.state and t.state.is_final() and t.id not in seen),
                            key=lambda t: t.end_time or t.expected_start_time):
                seen.add(t.id)
                typer.echo(f"      {t.state.name:<10} {t.name}")
            if run.state and run.state.is_final():
                return run
            time.sleep(poll_seconds)


@run_app.command("nightly")
@friendly
def run_nightly_cmd(home: Path | None = HomeOpt, session: str | None = SessionOpt, force: bool = ForceOpt,
                    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the run to finish.")):
    """Trigger the nightly flow."""
    settings = _settings(home)
    t0 = _step(f"nightly on {settings.home}")
    if os.environ.get("PREFECT_API_URL"):
        from flows.serve import NIGHTLY

        result = _trigger(settings, NIGHTLY, {"home": str(settings.home), "session": session, "force": force}, wait)
        _done(t0, nightly_line(result) if isinstance(result, dict) else "")
        return
    _done(t0, nightly_line(run_nightly(settings, session, force)))


@run_app.command("backfill")
@friendly
def run_backfill_cmd(
    source: str = typer.Argument(..., help="polygon, edgar, fred, lean, stocknet, fx"),
    start: str = typer.Option(..., "--start", help="First date, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last date, YYYY-MM-DD."),
    symbols: str | None = typer.Option(None, "--symbols", help="Comma-separated (default: the source's [[ingest]] symbols or the universe)."),
    dataset: str | None = typer.Option(None, "--dataset"),
    chunk_size: int = typer.Option(25, "--chunk-size", help="Symbols per task."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Start each symbol after its watermark."),
    refresh: bool = typer.Option(False, "--refresh", help="Call the vendor even for chunks an identical earlier pull cached."),
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    home: Path | None = HomeOpt,
):
    """Trigger a backfill of SOURCE over a date range, fanned out in chunks under the vendor's rate limit."""
    settings = _settings(home)
    params = {"home": str(settings.home), "source": source, "start": start, "end": end,
              "symbols": [s for s in symbols.split(",") if s.strip()] if symbols else None,
              "dataset": dataset, "chunk_size": chunk_size, "resume": resume, "refresh": refresh}
    t0 = _step(f"backfill {source} {start}..{end} on {settings.home}")
    if os.environ.get("PREFECT_API_URL"):
        from flows.serve import BACKFILL

        result = _trigger(settings, BACKFILL, params, wait)
    else:
        from flows.prefect_env import configure_prefect

        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")   # the per-chunk progress lines
        configure_prefect(settings)
        from flows.backfill import backfill

        result = backfill(**params)
    if isinstance(result, dict):
        _done(t0, f"{result['symbols']} symbols in {result['chunks']} chunks: fetched {result['rows_fetched']:,}, "
                  f"wrote {result['rows_written']:,}, quarantined {result['rows_quarantined']:,}"
                  + (f"; FAILED: {', '.join(result['failed_symbols'])}" if result["failures"] else ""))
        if result["failures"]:
            raise typer.Exit(1)


@app.command()
@friendly
def serve(home: Path | None = HomeOpt):
    """Register the nightly (cron after the close, exchange time zone) and backfill deployments
    on PREFECT_API_URL and run them when scheduled or triggered (until stopped)."""
    settings = _settings(home)
    from flows.serve import main as serve_main

    serve_main(settings)


@app.command()
@friendly
def backtest(
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    start: str = typer.Option("2005-01-01", help="First session."),
    end: str = typer.Option("2021-03-31", help="Last session."),
    fees: float = typer.Option(0.0005, help="Fees per trade, fraction of value (0.0005 = 5 bp)."),
    slippage: float = typer.Option(0.0005, help="Slippage per trade, fraction of price."),
    home: Path | None = HomeOpt,
):
    """Backtest the strategy with vectorbt on alpha.history and write a report."""
    from sdk.client import Alpha
    from strategy.backtest import run_backtest

    settings = _settings(home)
    t0 = _step(f"backtest {start}..{end}, fees {fees}, slippage {slippage}")
    result = run_backtest(Alpha(settings=settings), symbols.split(",") if symbols else None, start, end, fees, slippage)
    typer.echo(result.summary())
    _done(t0, f"report: {result.files['html']}  plot: {result.files['png']}")


@app.command()
@friendly
def live(
    once: bool = typer.Option(False, "--once", help="Run one decision and exit."),
    strategy: str | None = typer.Option(None, "--strategy", help="Run the live loop with this strategy (e.g. trend_rsi): orders, broker, ledger."),
    broker: str = typer.Option("paper", "--broker", help="paper (fills at the next open like the backtest) or alpaca."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    fees: float = typer.Option(0.0005, help="Paper broker fees, fraction of value."),
    slippage: float = typer.Option(0.0005, help="Paper broker slippage, fraction of price."),
    anchor: str = typer.Option("2020-01-02", help="Paper broker: first session of its total-return price scale."),
    home: Path | None = HomeOpt,
):
    """Without --strategy: one tick on alpha.latest, printing target positions. With
    --strategy NAME: the live loop on the exchange calendar (docs/live.md)."""
    if strategy is not None:
        _live_loop(strategy, broker, once, symbols, fees, slippage, anchor, home)
        return
    if not once:
        typer.secho("pass --once (one tick) or --strategy NAME (the live loop)", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(2)
    from sdk.client import Alpha
    from strategy.live import live_once

    settings = _settings(home)
    t0 = _step(f"live tick from the {settings.online_store_kind} online store")
    frame = live_once(Alpha(settings=settings), symbols.split(",") if symbols else None)
    _print_targets(frame)
    _done(t0)


def _make_broker(kind: str, client, symbols, fees: float, slippage: float, anchor: str):
    if kind == "paper":
        from strategy.paper import HistoryPrices, PaperBroker

        path = client.settings.home / "state" / "paper_broker.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return PaperBroker(HistoryPrices(client, symbols, anchor), fees=fees, slippage=slippage, url=f"sqlite:///{path}",
                           calendar=client.settings.calendar)
    if kind == "alpaca":
        try:
            from strategy.alpaca import AlpacaBroker
        except ImportError as exc:
            raise AlphaError(f"the Alpaca broker is not available ({exc}); use --broker paper") from None
        return AlpacaBroker(client.settings)
    raise typer.BadParameter(f"unknown broker {kind!r}; choose paper or alpaca", param_hint="--broker")


def _live_loop(name: str, broker_kind: str, once: bool, symbols: str | None, fees: float, slippage: float, anchor: str, home) -> None:
    from sdk.client import Alpha
    from strategy import get_strategy
    from strategy.ledger import open_ledger
    from strategy.live_loop import run_live

    strategy = get_strategy(name)
    settings = _settings(home)
    client = Alpha(settings=settings)
    symbol_list = symbols.split(",") if symbols else client.symbols()
    broker = _make_broker(broker_kind, client, symbol_list, fees, slippage, anchor)
    ledger = open_ledger(settings)
    # everything imported so far lives as long as the process: keep it out of the collector's
    # scans, which otherwise put the long tail of alpha.latest's latency (BENCHMARKS.md, online)
    import gc

    gc.collect()
    gc.freeze()
    t0 = _step(f"live loop: {name} on the {settings.online_store_kind} online store, broker {broker.name}, ledger {ledger.display_url}"
               + (" (one decision)" if once else " (Ctrl-C to stop)"))
    try:
        run_live(client, broker, ledger, strategy, symbols=symbol_list, once=once, on_session=lambda r: typer.echo("    " + r.line()))
    except KeyboardInterrupt:
        typer.echo("    stopped")
    finally:
        ledger.dispose()
    _done(t0)


@app.command()
@friendly
def replay(
    strategy: str = typer.Option("trend_rsi", "--strategy", help="A registered strategy (strategy/__init__.py)."),
    start: str = typer.Option(..., help="First session (YYYY-MM-DD)."),
    end: str = typer.Option(..., help="Last session (YYYY-MM-DD)."),
    fees: float = typer.Option(0.0005, help="Fees per trade, fraction of value."),
    slippage: float = typer.Option(0.0005, help="Slippage per trade, fraction of price."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    home: Path | None = HomeOpt,
):
    """Shadow replay: the live loop over past sessions on alpha.history with the paper broker,
    compared session by session with the vectorbt backtest. Exits 1 if they differ."""
    from sdk.client import Alpha
    from strategy import get_strategy

    strat = get_strategy(strategy)
    settings = _settings(home)
    client = Alpha(settings=settings)
    symbol_list = symbols.split(",") if symbols else None
    t0 = _step(f"shadow replay of {strategy} {start}..{end} (fees {fees}, slippage {slippage}) against the vectorbt backtest")
    table, n_bad, summary = _replay_against_backtest(client, strat, start, end, fees, slippage, symbol_list)
    for session, rows in table.groupby("session"):
        mark = "==" if rows["equal"].all() else "!="
        typer.echo(f"    {session:%Y-%m-%d} {mark} " + ", ".join(
            f"{r.symbol} {r.qty_replay:+.4f}@{r.price_replay:.4f}" if r.equal else
            f"{r.symbol} replay {r.qty_replay:+.4f}@{r.price_replay:.4f} vs backtest {r.qty_backtest:+.4f}@{r.price_backtest:.4f}"
            for r in rows.itertuples()))
    if n_bad:
        typer.secho(f"    replay != backtest: {n_bad} fill(s) differ; {summary}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    _done(t0, f"replay == backtest: every fill equal session by session; {summary}")


def _replay_against_backtest(client, strat, start, end, fees, slippage, symbols=None):
    """The shadow replay and the backtest over the same sessions: (fill table, fills that differ, summary)."""
    from strategy.backtest import run_backtest
    from strategy.live_loop import compare_fills
    from strategy.live_loop import replay as do_replay

    result = do_replay(client, strat, start, end, fees, slippage, symbols=symbols)
    bt = run_backtest(client, symbols, start, end, fees, slippage, strategy=strat,
                      out_dir=client.settings.reports / "replay" / strat.NAME)
    table = compare_fills(result.fills, bt.orders)
    n_bad = int((~table["equal"]).sum())
    blocked = int((result.orders["status"] == "blocked").sum())
    summary = (f"{len(result.reports)} sessions, {len(result.fills)} replay fills, {len(bt.orders)} backtest fills, "
               f"{blocked} order(s) blocked as stale")
    return table, n_bad, summary


def _print_targets(frame) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_rows", 100, "display.float_format", "{:.4f}".format):
        typer.echo(frame.to_string(index=False))
    held = frame[frame["target_weight"] > 0]
    typer.echo(f"    targets: {', '.join(f'{s} {w:.1%}' for s, w in zip(held['symbol'], held['target_weight'], strict=True)) or 'all cash'}")


@app.command()
@friendly
def apply(home: Path | None = HomeOpt):
    """Register the feature views (feast apply) without running the whole flow."""
    from etl.serving.feast_store import apply as do_apply

    settings = _settings(home)
    t0 = _step("feast apply")
    _done(t0, ", ".join(do_apply(settings)))


@app.command()
@friendly
def materialize(
    home: Path | None = HomeOpt,
    full: bool = typer.Option(False, "--full", help="Rewrite every entity, not only changed winners (Redis)."),
):
    """Push the latest feature values to the online store (Redis: only changed winners)."""
    from etl.serving.feast_store import materialize as do_materialize

    settings = _settings(home)
    t0 = _step(f"materialize to {settings.online_store_kind}")
    out = do_materialize(settings, full=full)
    report = out.get("report")
    if report:
        typer.echo(f"    {report['views']} views as known at {report['now']}: {report['entities_written']:,} entity rows written "
                   f"({report['values_written']:,} values), {report['entities_skipped']:,} unchanged "
                   f"({'full' if report['full'] else 'incremental'})")
    _done(t0)


@app.command()
@friendly
def latest(
    symbols: str = typer.Argument(..., help="Comma-separated symbols, e.g. AAPL,SPY."),
    features: str = typer.Argument(..., help="Comma-separated refs view:feature, or a feature service name."),
    max_age: str | None = typer.Option(None, "--max-age", help="Treat values older than this as missing, e.g. 2D, 36h."),
    allow_stale: bool = typer.Option(False, "--allow-stale", help="Return old values with a <feature>__stale flag."),
    now: str | None = typer.Option(None, "--now", help="Reference time of the freshness check: 'wall' (default), 'warehouse' (the newest bar's availability), or an ISO time with zone."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per symbol."),
    home: Path | None = HomeOpt,
):
    """The newest feature values from the online store (no Feast import on Redis)."""
    from sdk.client import Alpha

    client = Alpha(settings=_settings(home))
    refs = features if ":" not in features and "," not in features else [f.strip() for f in features.split(",") if f.strip()]
    frame = client.latest([s.strip() for s in symbols.split(",") if s.strip()], refs, max_age=max_age, allow_stale=allow_stale, now=now)
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", date_unit="us"))
    else:
        typer.echo(frame.to_string(index=False))


#: symbols of the demo with tweets in the shared stocknet data (2014-2016)
DEMO_NEWS_SYMBOLS = ["AAPL", "BAC", "FB", "GOOG"]


@app.command()
@friendly
def demo(
    lean: Path | None = typer.Option(None, help="Lean data folder (default: ../shared/data/quantconnect-lean)."),
    home: Path | None = HomeOpt,
):
    """End to end on the shared data: ingest, health, nightly flow, backtest, one live tick, shadow replay."""
    import pandas as pd

    from etl.sources.archive import ingest_lean
    from etl.sources.base import run_ingest
    from sdk.client import Alpha
    from strategy.backtest import run_backtest
    from strategy.live import live_once

    settings = _settings(home)
    lean_path = lean or default_lean_path()
    t0 = _step(f"1/6 ingest Lean daily bars, factor and map files, Lean option chains, stocknet tweets -> {settings.home}")
    typer.echo("    " + ingest_lean(settings, lean_path).summary())
    today = pd.Timestamp.now(tz="America/New_York").strftime("%Y-%m-%d")
    chains = run_ingest(settings, "lean", "option_chains", None, "2000-01-01", today, path=str(lean_path))
    tweets = run_ingest(settings, "stocknet", "tweets", DEMO_NEWS_SYMBOLS, "2000-01-01", today)
    for summary in (chains, tweets):
        typer.echo("    " + summary.text().replace("\n", "\n    "))
    _done(t0)
    from etl.quality.health import run_health

    t0 = _step("2/6 data health report (coverage, gaps, NaN rates, staleness, outliers, duplicates)")
    _done(t0, run_health(settings).text())
    t0 = _step("3/6 nightly Prefect flow (no server): [[ingest]] sources (none here) -> health -> core factors + families -> feast apply -> materialize")
    result = run_nightly(settings)
    _done(t0, nightly_line(result))
    client = Alpha(settings=settings)
    t0 = _step("4/6 vectorbt backtest on alpha.history (2005-01-01..2021-03-31, fees 5 bp, slippage 5 bp)")
    bt = run_backtest(client, start="2005-01-01", end="2021-03-31")
    typer.echo(bt.summary())
    _done(t0)
    t0 = _step("5/6 live tick on alpha.latest")
    _print_targets(live_once(client))
    _done(t0)
    from strategy import trend_rsi

    t0 = _step("6/6 shadow replay: the live loop with the paper broker over 2021-01-01..2021-03-31, against the backtest")
    _, n_bad, summary = _replay_against_backtest(client, trend_rsi, "2021-01-01", "2021-03-31", 0.0005, 0.0005)
    if n_bad:
        typer.secho(f"    replay != backtest: {n_bad} fill(s) differ; {summary}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    _done(t0, f"replay == backtest, fill by fill: {summary}")
    typer.secho(f"\nreport: {bt.files['html']}\nplot:   {bt.files['png']}", fg=typer.colors.GREEN, bold=True)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
