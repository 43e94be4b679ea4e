"""``alpha experiment ...``: specs to runs, verification, qualification, shadow replay, promotion
and rankings (docs/research.md); ``alpha factor-report``: a feature's predictive power."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import load_settings


def _echo(message: str) -> None:
    typer.echo("    " + message)


@friendly
def run(
    spec: Path = typer.Argument(..., help="The experiment spec (YAML)."),
    home: Path | None = HomeOpt,
):
    """Run a spec: backtest, evaluation, tearsheet, manifest; recorded in the registry."""
    from lifecycle.experiment import run_experiment

    settings = load_settings(home)
    t0 = step(f"experiment {spec}")
    result = run_experiment(settings, spec, progress=_echo)
    _echo(result.summary())
    if result.existed:
        _echo("the same run (spec, code, definitions and data) was already there; nothing new written")
    done(t0, f"run {result.run_id}: {result.path}  tearsheet: {result.path / 'tearsheet.html'}")


@friendly
def verify(
    run_id: str = typer.Argument(..., help="The run to reproduce (or an experiment name: its latest run)."),
    home: Path | None = HomeOpt,
):
    """Rerun a run's spec and prove every number identical (exits 1 naming each difference)."""
    from lifecycle.experiment import verify_run

    settings = load_settings(home)
    t0 = step(f"verify {run_id}: rerun its spec and compare fingerprints, numbers and frames")
    result = verify_run(settings, run_id, progress=_echo)
    if not result.identical:
        typer.secho("    " + result.text().replace("\n", "\n    "), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    done(t0, result.text())


@friendly
def qualify(
    run_id: str = typer.Argument(..., help="The candidate run (or an experiment name: its latest run)."),
    baseline: str = typer.Option(..., "--baseline", help="The baseline run id (or experiment name)."),
    home: Path | None = HomeOpt,
):
    """Judge a run against the home's hard gates and a baseline; writes a JSON and an HTML report.
    Exits 1 when a hard gate fails."""
    from lifecycle.qualify import qualify as do_qualify

    settings = load_settings(home)
    t0 = step(f"qualify {run_id} against {baseline}")
    result = do_qualify(settings, run_id, baseline)
    typer.echo("    " + result.text().replace("\n", "\n    "))
    if not result.passed:
        typer.secho(f"    not qualified; report: {result.report_html}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    done(t0, f"report: {result.report_html}")


@friendly
def replay(
    run_id: str = typer.Argument(..., help="The run whose strategy to replay through the live loop (or an experiment name)."),
    home: Path | None = HomeOpt,
):
    """Shadow replay: the live loop with the paper broker over the spec's replay: sessions, fill by
    fill against the backtest. Recorded; a passing replay is required before promotion."""
    from lifecycle.promote import shadow_replay

    settings = load_settings(home)
    t0 = step(f"shadow replay of {run_id}")
    outcome = shadow_replay(settings, run_id)
    if not outcome.passed:
        typer.secho(f"    shadow replay FAILED: {outcome.detail}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    done(t0, f"replay == backtest, fill by fill: {outcome.detail}")


@friendly
def promote(
    run_id: str = typer.Argument(..., help="The qualified, replayed run (or an experiment name: its latest run)."),
    tier: str = typer.Option("candidate", "--tier", help="candidate (paper trading) or production (a real broker)."),
    reason: str = typer.Option(..., "--reason", help="Why: kept in the append-only audit record."),
    home: Path | None = HomeOpt,
):
    """Promote a run to a tier (append-only audit record); refused without a passing
    qualification and shadow replay."""
    from lifecycle.promote import promote as do_promote

    settings = load_settings(home)
    t0 = step(f"promote {run_id} to {tier}")
    record = do_promote(settings, run_id, tier, reason)
    done(t0, f"promotion #{record} recorded: {run_id} at {tier}")


@friendly
def list_runs(
    study: str | None = typer.Option(None, "--study", help="Only this study."),
    experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment."),
    home: Path | None = HomeOpt,
):
    """Runs in the registry, newest last, with their key numbers and promotion."""
    import pandas as pd

    from lifecycle.registry import open_registry

    settings = load_settings(home)
    registry = open_registry(settings)
    try:
        table = registry.ranking(metric="sharpe", scope="all", experiment=experiment)
        runs = registry.runs(experiment=experiment, study=study)
    finally:
        registry.dispose()
    if runs.empty:
        typer.echo("no runs yet: `alpha experiment run SPEC` makes one")
        return
    keep = runs[["run_id", "experiment", "study", "strategy", "kind", "created_at", "verified_at"]]
    table = keep.merge(table[["run_id", "value", "promoted"]].rename(columns={"value": "sharpe"}), on="run_id", how="left")
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40):
        typer.echo(table.sort_values("created_at").to_string(index=False, float_format=lambda v: f"{v:.2f}"))


@friendly
def rank(
    metric: str = typer.Option("sharpe", "--metric", help="The metric to rank by (sharpe, sortino, calmar, dsr, ...)."),
    scope: str = typer.Option("all", "--scope", help="all, or a regime slice such as 'regime_vol=high vol'."),
    home: Path | None = HomeOpt,
):
    """Rank the latest run of every experiment by a metric (best first)."""
    import pandas as pd

    from lifecycle.registry import open_registry

    settings = load_settings(home)
    registry = open_registry(settings)
    try:
        table = registry.ranking(metric=metric, scope=scope)
    finally:
        registry.dispose()
    if table.empty:
        typer.echo(f"no run has {metric!r} in scope {scope!r}")
        return
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@friendly
def factor_report(
    feature: str = typer.Argument(..., help="A feature, view:name (e.g. technicals:rsi_14)."),
    start: str = typer.Option("2005-01-01", help="First session."),
    end: str = typer.Option("2020-12-31", help="Last session."),
    horizons: str = typer.Option("1,5,21", help="Forward-return horizons in sessions."),
    quantiles: int = typer.Option(5, help="Quantiles per decision time."),
    symbols: str | None = typer.Option(None, help="Comma-separated symbols (default: all)."),
    home: Path | None = HomeOpt,
):
    """A feature's predictive power: rank IC by horizon, quantile returns and spread, decay,
    turnover, per volatility regime, on alpha.history and its point-in-time labels (HTML + JSON)."""
    from research.factor_report import evaluate_feature, write_factor_report
    from sdk.client import Alpha

    settings = load_settings(home)
    try:
        hs = [int(h) for h in horizons.split(",")]
    except ValueError:
        raise typer.BadParameter(f"horizons must be whole numbers of sessions, e.g. 1,5,21; got {horizons!r}") from None
    t0 = step(f"factor report of {feature} {start}..{end}, horizons {hs}")
    report, factor = evaluate_feature(Alpha(settings=settings), feature, start, end,
                                      symbols=symbols.split(",") if symbols else None, horizons=hs, quantiles=quantiles)
    summary = report.ic_summary
    for h in report.horizons:
        _echo(f"{h:>3}-session horizon: rank IC mean {summary.loc[h, 'mean']:+.4f}, IR {summary.loc[h, 'ir']:+.2f}, "
              f"t {summary.loc[h, 't_stat']:+.1f} over {int(summary.loc[h, 'n']):,} decision times; top-bottom spread "
              f"{report.spread[h].mean() * 1e4:+.1f} bp")
    out = settings.reports / "factors" / feature.replace(":", "__")
    path = write_factor_report(out, feature, report, {"start": start, "end": end, "symbols": factor["symbol"].nunique(),
                                                      "quantiles": quantiles})
    done(t0, f"report: {path}")
