"""``alpha demo``: end to end on the demo data shipped in data/demo (or $ALPHA_LEAN_DATA)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from cli.orchestration import nightly_line, run_nightly
from cli.trading import print_targets, replay_against_backtest
from etl.core.config import default_lean_path, load_settings

#: symbols of the demo with tweets in the stocknet data (2014-2016)
DEMO_NEWS_SYMBOLS = ["AAPL", "BAC", "FB", "GOOG"]


@friendly
def demo(
    lean: Path | None = typer.Option(None, help="Lean data folder (default: $ALPHA_LEAN_DATA, else the shipped data/demo/quantconnect-lean)."),
    home: Path | None = HomeOpt,
):
    """End to end on the shipped demo data: ingest, health, nightly flow, backtest, one live tick, shadow replay."""
    import pandas as pd

    from etl.sources.archive import ingest_lean
    from etl.sources.base import run_ingest
    from sdk.client import Alpha
    from strategy.backtest import run_backtest
    from strategy.live import live_once

    settings = load_settings(home)
    lean_path = lean or default_lean_path()
    t0 = step(f"1/6 ingest Lean daily bars, factor and map files, Lean option chains, stocknet tweets -> {settings.home}")
    typer.echo("    " + ingest_lean(settings, lean_path).summary())
    today = pd.Timestamp.now(tz="America/New_York").strftime("%Y-%m-%d")
    chains = run_ingest(settings, "lean", "option_chains", None, "2000-01-01", today, path=str(lean_path))
    tweets = run_ingest(settings, "stocknet", "tweets", DEMO_NEWS_SYMBOLS, "2000-01-01", today)
    for summary in (chains, tweets):
        typer.echo("    " + summary.text().replace("\n", "\n    "))
    done(t0)
    from etl.quality.health import run_health

    t0 = step("2/6 data health report (coverage, gaps, NaN rates, staleness, outliers, duplicates)")
    done(t0, run_health(settings).text())
    t0 = step("3/6 nightly Prefect flow (no server): [[ingest]] sources (none here) -> health -> core factors + families -> feast apply -> materialize")
    result = run_nightly(settings)
    done(t0, nightly_line(result))
    client = Alpha(settings=settings)
    t0 = step("4/6 vectorbt backtest on alpha.history (2005-01-01..2021-03-31, fees 5 bp, slippage 5 bp)")
    bt = run_backtest(client, start="2005-01-01", end="2021-03-31")
    typer.echo(bt.summary())
    done(t0)
    t0 = step("5/6 live tick on alpha.latest")
    print_targets(live_once(client))
    done(t0)
    from strategy import trend_rsi

    t0 = step("6/6 shadow replay: the live loop with the paper broker over 2021-01-01..2021-03-31, against the backtest")
    _, n_bad, summary = replay_against_backtest(client, trend_rsi, "2021-01-01", "2021-03-31", 0.0005, 0.0005)
    if n_bad:
        typer.secho(f"    replay != backtest: {n_bad} fill(s) differ; {summary}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    done(t0, f"replay == backtest, fill by fill: {summary}")
    typer.secho(f"\nreport: {bt.files['html']}\nplot:   {bt.files['png']}", fg=typer.colors.GREEN, bold=True)
