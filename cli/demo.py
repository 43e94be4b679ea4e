"""``alpha demo``: end to end on the demo data shipped in data/demo (or $ALPHA_LEAN_DATA)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from cli.orchestration import nightly_line, run_nightly
from cli.trading import print_targets
from etl.core.config import default_lean_path, load_settings

#: symbols of the demo with tweets in the stocknet data (2014-2016)
DEMO_NEWS_SYMBOLS = ["AAPL", "BAC", "FB", "GOOG"]


@friendly
def demo(
    lean: Path | None = typer.Option(None, help="Lean data folder (default: $ALPHA_LEAN_DATA, else the shipped data/demo/quantconnect-lean)."),
    home: Path | None = HomeOpt,
):
    """End to end on the shipped demo data: ingest, health, nightly flow, backtest, the research
    lifecycle (experiments, qualification, shadow replay, promotion), a live tick of the promoted strategy."""
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
    chain = research_chain(settings, echo=typer.echo)
    t0 = step("6/6 live tick of the promoted strategy on alpha.latest (an unpromoted one is refused)")
    from lifecycle.promote import NotPromotedError, promoted_strategy

    strategy, _, record = promoted_strategy(settings, "trend_rsi", "candidate")
    typer.echo(f"    {strategy.NAME} from run {record.run_id} (promoted to {record.tier}: {record.reason})")
    print_targets(live_once(client, strategy=strategy))
    try:
        promoted_strategy(settings, "xs_momentum", "candidate")
    except NotPromotedError as exc:
        typer.echo(f"    xs_momentum refused: {str(exc).split('. Run', 1)[0]}")
    done(t0)
    typer.secho(f"\nbacktest report: {bt.files['html']}\ntearsheet:       {chain['trend_rsi'] / 'tearsheet.html'}\n"
                f"qualification:   {chain['qualification']}", fg=typer.colors.GREEN, bold=True)


#: the shipped experiment specs the demo runs: the baseline first
DEMO_SPECS = ("equal_weight", "trend_rsi", "xs_momentum")


def research_chain(settings, echo) -> dict:
    """Step 5: the research lifecycle on the shipped specs (docs/research.md): run, qualify
    against the equal-weight baseline (xs_momentum fails a hard gate in high volatility),
    shadow replay, promotion (refused for xs_momentum, with the reason)."""
    from lifecycle.experiment import run_experiment
    from lifecycle.promote import promote, shadow_replay
    from lifecycle.qualify import qualify
    from lifecycle.registry import PromotionError

    specs = Path(__file__).resolve().parents[1] / "lifecycle" / "specs"
    t0 = step("5/6 research lifecycle: specs -> runs -> qualification -> shadow replay -> promotion (lifecycle/specs/)")
    runs = {}
    for name in DEMO_SPECS:
        result = run_experiment(settings, specs / f"{name}.yaml")
        runs[name] = result.path
        echo(f"    run {result.run_id}: {result.summary()}")
    out: dict = dict(runs)
    for name in ("trend_rsi", "xs_momentum"):
        verdict = qualify(settings, runs[name].name, runs["equal_weight"].name)
        failed = "; ".join(c.detail for c in verdict.hard_failures)
        echo(f"    qualify {name}: {'QUALIFIED' if verdict.passed else 'NOT QUALIFIED: ' + failed}")
        if name == "trend_rsi":
            out["qualification"] = verdict.report_html
    replayed = shadow_replay(settings, runs["trend_rsi"].name)
    echo(f"    shadow replay trend_rsi: {'passed' if replayed.passed else 'FAILED'}: {replayed.detail}")
    if not replayed.passed:
        raise typer.Exit(1)
    promote(settings, runs["trend_rsi"].name, "candidate", "demo: hard gates pass, shadow replay equal fill by fill")
    echo(f"    promoted trend_rsi ({runs['trend_rsi'].name}) to candidate")
    try:
        promote(settings, runs["xs_momentum"].name, "candidate", "demo: try the one that failed")
    except PromotionError as exc:
        echo(f"    promotion of xs_momentum refused: {exc}")
    done(t0)
    return out
