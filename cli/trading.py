"""``alpha backtest``, ``alpha live``, ``alpha replay``: the strategy on the warehouse.

vectorbt and the brokers are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import load_settings
from etl.core.errors import AlphaError

UniverseOpt = typer.Option("listed", "--universe", help="The universe traded at each decision time: listed (a bar known, not "
                           "older than the TTL), a named universe (e.g. us_equity_coarse), or none (every symbol asked).")


def _params(text: str | None) -> dict:
    if not text:
        return {}
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"not YAML/JSON: {exc}", param_hint="--params") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"a mapping of keyword arguments, e.g. '{{top_fraction: 0.2}}'; got {text!r}", param_hint="--params")
    return value


def _universe(value: str) -> str | None:
    return None if value.strip().lower() == "none" else value


@friendly
def backtest(
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    start: str = typer.Option("2005-01-01", help="First session."),
    end: str = typer.Option("2021-03-31", help="Last session."),
    fees: float = typer.Option(0.0005, help="Fees per trade, fraction of value (0.0005 = 5 bp)."),
    slippage: float = typer.Option(0.0005, help="Slippage per trade, fraction of price."),
    universe: str = UniverseOpt,
    strategy: str = typer.Option("trend_rsi", "--strategy", help="A built-in strategy or package.module:object."),
    params: str | None = typer.Option(None, "--params", help="The strategy's parameters as a YAML/JSON mapping, e.g. '{top_fraction: 0.2}'."),
    home: Path | None = HomeOpt,
):
    """Backtest a strategy with vectorbt on alpha.history and write a tearsheet."""
    from sdk.client import Alpha
    from strategy import get_strategy
    from strategy.backtest import run_backtest

    settings = load_settings(home)
    t0 = step(f"backtest {strategy} {start}..{end}, fees {fees}, slippage {slippage}")
    strat = get_strategy(strategy, _params(params), settings.factor_paths)
    result = run_backtest(Alpha(settings=settings), symbols.split(",") if symbols else None, start, end, fees, slippage,
                          universe=_universe(universe), strategy=strat)
    typer.echo(result.summary())
    done(t0, f"report: {result.files['html']}  plot: {result.files['png']}")


@friendly
def live(
    once: bool = typer.Option(False, "--once", help="Run one decision and exit."),
    strategy: str | None = typer.Option(None, "--strategy", help="Run the live loop with this promoted experiment (its name): orders, broker, ledger."),
    broker: str = typer.Option("paper", "--broker", help="paper (fills at the next open like the backtest) or alpaca."),
    tier: str | None = typer.Option(None, "--tier", help="The promotion tier required (default: candidate for paper, production for alpaca)."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    fees: float = typer.Option(0.0005, help="Paper broker fees, fraction of value."),
    slippage: float = typer.Option(0.0005, help="Paper broker slippage, fraction of price."),
    anchor: str = typer.Option("2020-01-02", help="Paper broker: first session of its total-return price scale."),
    universe: str = UniverseOpt,
    home: Path | None = HomeOpt,
):
    """Without --strategy: one tick on alpha.latest, printing trend_rsi's target positions (a
    preview: no orders). With --strategy NAME: the live loop of the experiment NAME's promoted run
    on the exchange calendar (docs/live.md); refused without a promotion at the tier it runs at."""
    if strategy is not None:
        _live_loop(strategy, broker, tier, once, symbols, fees, slippage, anchor, home)
        return
    if not once:
        typer.secho("pass --once (one tick) or --strategy NAME (the live loop)", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(2)
    from sdk.client import Alpha
    from strategy.live import live_once

    settings = load_settings(home)
    t0 = step(f"live tick from the {settings.online_store_kind} online store")
    frame = live_once(Alpha(settings=settings), symbols.split(",") if symbols else None, universe=_universe(universe))
    print_targets(frame)
    done(t0)


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


def _live_loop(name: str, broker_kind: str, tier: str | None, once: bool, symbols: str | None, fees: float, slippage: float,
               anchor: str, home) -> None:
    from lifecycle.promote import TIERS, promoted_strategy
    from sdk.client import Alpha
    from strategy.ledger import open_ledger
    from strategy.live_loop import run_live

    tier = tier or ("production" if broker_kind == "alpaca" else "candidate")
    if tier not in TIERS:
        raise typer.BadParameter(f"unknown tier {tier!r}; choose {' or '.join(TIERS)}", param_hint="--tier")
    settings = load_settings(home)
    strategy, spec, record = promoted_strategy(settings, name, tier)  # NotPromotedError says what to run
    client = Alpha(settings=settings)
    symbol_list = symbols.split(",") if symbols else (list(spec.symbols) or client.symbols())
    broker = _make_broker(broker_kind, client, symbol_list, fees, slippage, anchor)
    ledger = open_ledger(settings)
    # everything imported so far lives as long as the process: keep it out of the collector's
    # scans, which otherwise put the long tail of alpha.latest's latency (BENCHMARKS.md, online)
    import gc

    gc.collect()
    gc.freeze()
    t0 = step(f"live loop: {name} (run {record.run_id}, promoted to {record.tier}) on the {settings.online_store_kind} online store, "
              f"broker {broker.name}, ledger {ledger.display_url}" + (" (one decision)" if once else " (Ctrl-C to stop)"))
    try:
        run_live(client, broker, ledger, strategy, symbols=symbol_list, once=once, universe=spec.universe,
                 on_session=lambda r: typer.echo("    " + r.line()))
    except KeyboardInterrupt:
        typer.echo("    stopped")
    finally:
        ledger.dispose()
    done(t0)


@friendly
def replay(
    strategy: str = typer.Option("trend_rsi", "--strategy", help="A built-in strategy (trend_rsi, xs_rank, learned_rank) or package.module:object."),
    start: str = typer.Option(..., help="First session (YYYY-MM-DD)."),
    end: str = typer.Option(..., help="Last session (YYYY-MM-DD)."),
    fees: float = typer.Option(0.0005, help="Fees per trade, fraction of value."),
    slippage: float = typer.Option(0.0005, help="Slippage per trade, fraction of price."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    universe: str = UniverseOpt,
    home: Path | None = HomeOpt,
):
    """Shadow replay: the live loop over past sessions on alpha.history with the paper broker,
    compared session by session with the vectorbt backtest. Exits 1 if they differ."""
    from sdk.client import Alpha
    from strategy import get_strategy

    strat = get_strategy(strategy)
    settings = load_settings(home)
    client = Alpha(settings=settings)
    symbol_list = symbols.split(",") if symbols else None
    t0 = step(f"shadow replay of {strategy} {start}..{end} (fees {fees}, slippage {slippage}) against the vectorbt backtest")
    table, n_bad, summary = replay_against_backtest(client, strat, start, end, fees, slippage, symbol_list, _universe(universe))
    for session, rows in table.groupby("session"):
        mark = "==" if rows["equal"].all() else "!="
        typer.echo(f"    {session:%Y-%m-%d} {mark} " + ", ".join(
            f"{r.symbol} {r.qty_replay:+.4f}@{r.price_replay:.4f}" if r.equal else
            f"{r.symbol} replay {r.qty_replay:+.4f}@{r.price_replay:.4f} vs backtest {r.qty_backtest:+.4f}@{r.price_backtest:.4f}"
            for r in rows.itertuples()))
    if n_bad:
        typer.secho(f"    replay != backtest: {n_bad} fill(s) differ; {summary}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    done(t0, f"replay == backtest: every fill equal session by session; {summary}")


def replay_against_backtest(client, strat, start, end, fees, slippage, symbols=None, universe="listed"):
    """The shadow replay and the backtest over the same sessions: (fill table, fills that differ, summary)."""
    from strategy.backtest import run_backtest
    from strategy.live_loop import compare_fills
    from strategy.live_loop import replay as do_replay

    result = do_replay(client, strat, start, end, fees, slippage, symbols=symbols, universe=universe)
    bt = run_backtest(client, symbols, start, end, fees, slippage, strategy=strat, universe=universe,
                      out_dir=client.settings.reports / "replay" / strat.NAME)
    table = compare_fills(result.fills, bt.orders)
    n_bad = int((~table["equal"]).sum())
    blocked = int((result.orders["status"] == "blocked").sum())
    summary = (f"{len(result.reports)} sessions, {len(result.fills)} replay fills, {len(bt.orders)} backtest fills, "
               f"{blocked} order(s) blocked as stale")
    return table, n_bad, summary


def print_targets(frame) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_rows", 100, "display.float_format", "{:.4f}".format):
        typer.echo(frame.to_string(index=False))
    held = frame[frame["target_weight"] > 0]
    typer.echo(f"    targets: {', '.join(f'{s} {w:.1%}' for s, w in zip(held['symbol'], held['target_weight'], strict=True)) or 'all cash'}")

