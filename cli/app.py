"""The ``alpha`` command: one typer app, one module per command group.

    alpha demo                      ingest the shipped Lean bars, run the nightly flow, backtest, one live tick
    alpha ingest lean [PATH]        Lean daily bars + factor and map files
    alpha ingest csv PATH           a folder of <SYMBOL>.csv (date,open,high,low,close,volume)
    alpha nightly                   Prefect flow in this process: ingest -> health -> factors -> apply -> materialize
    alpha serve                     serve the nightly (cron) and backfill deployments on PREFECT_API_URL
    alpha run nightly|backfill      trigger a run (through the Prefect API when PREFECT_API_URL is set)
    alpha doctor [--deep]           check the home end to end and say what to run to fix it
    alpha backtest                  vectorbt backtest of the strategy on alpha.history
    alpha live --once               the same strategy on alpha.latest; prints target positions
    alpha live --strategy NAME      the live loop: orders to a paper (or Alpaca) broker, a ledger
    alpha replay --strategy NAME    shadow replay of the live loop on alpha.history == the backtest

Every command honours ``--home`` / ``ALPHA_HOME`` (:mod:`cli.common`). Errors print one
clear message and exit with status 1; a command that writes the home checks first that it can
(``writes_home``), so a read-only home fails at once, before Prefect starts. The command
modules import their heavy dependencies (Feast, Prefect, vectorbt) inside the commands, so
``alpha latest`` starts cold without them.

=====================  ==========================================
module                 commands
=====================  ==========================================
``cli.ingest``         ingest, compact, watermarks
``cli.quality``        health
``cli.doctor``         doctor
``cli.features``       features list, describe, build, compact
``cli.orchestration``  nightly, run nightly, run backfill, serve
``cli.trading``        backtest, live, replay
``cli.research``       experiment run, verify, qualify, replay, promote, list, rank; factor-report
``cli.online``         apply, materialize, latest
``cli.demo``           demo
=====================  ==========================================
"""

from __future__ import annotations

import sys

import typer

from cli import demo, doctor, features, ingest, online, orchestration, quality, research, trading
from cli.common import writes_home

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Alpha Warehouse: a point-in-time feature store on Feast.")

# the order here is the order of `alpha --help` (the groups, features and run, are listed last)
app.command("ingest", help=ingest.INGEST_HELP)(writes_home(ingest.ingest))
app.command("compact")(writes_home(ingest.compact))
app.command("watermarks")(ingest.watermarks)
app.command("health")(quality.health)
app.command("doctor")(doctor.doctor)

features_app = typer.Typer(no_args_is_help=True, help="What features exist: list and describe.")
features_app.command("list")(features.features_list)
features_app.command("describe")(features.features_describe)
features_app.command("lineage")(features.features_lineage)
features_app.command("build")(writes_home(features.features_build))
features_app.command("compact")(writes_home(features.features_compact))
app.add_typer(features_app, name="features")

app.command("nightly")(writes_home(orchestration.nightly))
run_app = typer.Typer(no_args_is_help=True, help="Trigger a flow: on the Prefect server of PREFECT_API_URL (its deployment, "
                      "served by `alpha serve`), else in this process.")
run_app.command("nightly")(writes_home(orchestration.run_nightly_cmd, local_only=True))
run_app.command("backfill")(writes_home(orchestration.run_backfill_cmd, local_only=True))
app.add_typer(run_app, name="run")
app.command("serve")(writes_home(orchestration.serve))

app.command("backtest")(trading.backtest)
app.command("live")(trading.live)
app.command("replay")(trading.replay)
experiment_app = typer.Typer(no_args_is_help=True, help="Research lifecycle: run specs, verify, qualify, replay, promote, rank.")
experiment_app.command("run")(writes_home(research.run))
experiment_app.command("verify")(writes_home(research.verify))
experiment_app.command("qualify")(writes_home(research.qualify))
experiment_app.command("replay")(writes_home(research.replay))
experiment_app.command("promote")(writes_home(research.promote))
experiment_app.command("list")(research.list_runs)
experiment_app.command("rank")(research.rank)
app.add_typer(experiment_app, name="experiment")
app.command("factor-report")(research.factor_report)

app.command("apply")(writes_home(online.apply))
app.command("materialize")(writes_home(online.materialize))
app.command("latest")(online.latest)

app.command("demo")(writes_home(demo.demo))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
