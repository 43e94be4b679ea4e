"""The ``alpha`` command.

    alpha demo                      ingest the shared Lean bars, run the nightly flow, backtest, one live tick
    alpha ingest lean [PATH]        Lean daily bars + factor and map files
    alpha ingest csv PATH           a folder of <SYMBOL>.csv (date,open,high,low,close,volume)
    alpha nightly                   Prefect flow: factors -> write -> feast apply -> materialize
    alpha backtest                  vectorbt backtest of the strategy on alpha.history
    alpha live --once               the same strategy on alpha.latest; prints target positions

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

from etl.config import PROJECT_ROOT, load_settings
from etl.errors import AlphaError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Alpha Warehouse: a point-in-time feature store on Feast.")
ingest_app = typer.Typer(no_args_is_help=True, help="Land, validate and store raw data.")
app.add_typer(ingest_app, name="ingest")

HomeOpt = typer.Option(None, "--home", help="Warehouse folder (default: $ALPHA_HOME or .alpha/ in the project).")


def default_lean_path() -> Path:
    return Path(os.environ.get("ALPHA_LEAN_DATA", PROJECT_ROOT.parent / "shared" / "data" / "quantconnect-lean"))


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


@ingest_app.command("lean")
@friendly
def ingest_lean_cmd(
    path: Path | None = typer.Argument(None, help="Lean data folder (default: ../shared/data/quantconnect-lean or $ALPHA_LEAN_DATA)."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols, e.g. AAPL,SPY (default: all)."),
    home: Path | None = HomeOpt,
):
    """Ingest Lean daily bars with their factor and map files."""
    from etl.ingest import ingest_lean

    settings = _settings(home)
    t0 = _step(f"ingest lean -> {settings.home}")
    report = ingest_lean(settings, path or default_lean_path(), symbols.split(",") if symbols else None)
    _done(t0, report.summary())


@ingest_app.command("csv")
@friendly
def ingest_csv_cmd(path: Path = typer.Argument(..., help="Folder of <SYMBOL>.csv files."), home: Path | None = HomeOpt):
    """Ingest a folder of <SYMBOL>.csv with columns date,open,high,low,close,volume (raw, session dates)."""
    from etl.ingest import ingest_csv_folder

    settings = _settings(home)
    t0 = _step(f"ingest csv {path} -> {settings.home}")
    report = ingest_csv_folder(settings, path)
    _done(t0, report.summary())


def run_nightly(settings) -> dict:
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)
    from flows.nightly import nightly

    return nightly(str(settings.home))


@app.command()
@friendly
def nightly(home: Path | None = HomeOpt):
    """Run the nightly Prefect flow: factors -> write -> feast apply -> materialize."""
    settings = _settings(home)
    t0 = _step(f"nightly flow on {settings.home} (online store: {settings.online_store_kind})")
    result = run_nightly(settings)
    _done(t0, f"{result['gold']['symbols']} symbols, {result['gold']['rows']} rows, {result['gold']['features']} features; materialized to {result['online']['online_store']}")


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
    once: bool = typer.Option(False, "--once", help="Run one tick and exit (the only mode so far)."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    home: Path | None = HomeOpt,
):
    """Run the strategy on alpha.latest and print target positions."""
    if not once:
        typer.secho("only `alpha live --once` exists so far (the scheduled loop is issue 6)", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(2)
    from sdk.client import Alpha
    from strategy.live import live_once

    settings = _settings(home)
    t0 = _step(f"live tick from the {settings.online_store_kind} online store")
    frame = live_once(Alpha(settings=settings), symbols.split(",") if symbols else None)
    _print_targets(frame)
    _done(t0)


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
    from sdk.feast_store import apply as do_apply

    settings = _settings(home)
    t0 = _step("feast apply")
    _done(t0, ", ".join(do_apply(settings)))


@app.command()
@friendly
def materialize(home: Path | None = HomeOpt):
    """Push the latest feature values to the online store."""
    from sdk.feast_store import materialize as do_materialize

    settings = _settings(home)
    t0 = _step(f"materialize to {settings.online_store_kind}")
    do_materialize(settings)
    _done(t0)


@app.command()
@friendly
def demo(
    lean: Path | None = typer.Option(None, help="Lean data folder (default: ../shared/data/quantconnect-lean)."),
    home: Path | None = HomeOpt,
):
    """End to end on the shared Lean bars: ingest, nightly flow, backtest, one live tick."""
    from etl.ingest import ingest_lean
    from sdk.client import Alpha
    from strategy.backtest import run_backtest
    from strategy.live import live_once

    settings = _settings(home)
    t0 = _step(f"1/4 ingest Lean daily bars, factor and map files -> {settings.home}")
    _done(t0, ingest_lean(settings, lean or default_lean_path()).summary())
    t0 = _step("2/4 nightly Prefect flow (no server): factors -> write -> feast apply -> materialize")
    result = run_nightly(settings)
    _done(t0, f"{result['gold']['symbols']} symbols, {result['gold']['rows']} rows, {result['gold']['features']} features -> {result['online']['online_store']}")
    client = Alpha(settings=settings)
    t0 = _step("3/4 vectorbt backtest on alpha.history (2005-01-01..2021-03-31, fees 5 bp, slippage 5 bp)")
    bt = run_backtest(client, start="2005-01-01", end="2021-03-31")
    typer.echo(bt.summary())
    _done(t0)
    t0 = _step("4/4 live tick on alpha.latest")
    _print_targets(live_once(client))
    _done(t0)
    typer.secho(f"\nreport: {bt.files['html']}\nplot:   {bt.files['png']}", fg=typer.colors.GREEN, bold=True)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
