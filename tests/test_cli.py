"""The `alpha` and `feast` commands, run as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
ALPHA = str(Path(sys.executable).with_name("alpha"))
FEAST = str(Path(sys.executable).with_name("feast"))
STOCKNET = SHARED / "stocknet-tweets-prices" / "prices_raw.csv.gz"


def run(args, home: Path, cwd=REPO, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API"))}
    env.update({"ALPHA_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), **(extra_env or {})})
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory, shared_data):
    """Real Yahoo daily prices of three stocknet tickers as a generic CSV folder."""
    prices = pd.read_csv(STOCKNET)
    folder = tmp_path_factory.mktemp("csv")
    for ticker in ["MSFT", "XOM", "JNJ"]:
        t = prices[prices["ticker"] == ticker].rename(columns=str.lower)
        t = t[(t["date"] >= "2016-01-01")]
        t[["date", "open", "high", "low", "close", "volume"]].to_csv(folder / f"{ticker}.csv", index=False)
    return folder


@pytest.mark.slow
def test_csv_folder_to_history_and_latest(csv_folder, tmp_path):
    home = tmp_path / "home"
    out = run([ALPHA, "ingest", "csv", str(csv_folder)], home)
    assert out.returncode == 0, out.stderr
    assert "3 symbols" in out.stdout
    out = run([ALPHA, "nightly"], home)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "online (sqlite): materialized" in out.stdout

    from sdk import connect

    client = connect(home)
    assert client.symbols() == ["JNJ", "MSFT", "XOM"]
    last_close = pd.read_csv(csv_folder / "MSFT.csv").iloc[-1]
    latest = client.latest(["MSFT"], ["bars_daily:close", "bars_daily:session_date", "technicals:rsi_14"], now="warehouse")
    assert latest["session_date"].iloc[0] == last_close["date"]
    assert latest["close"].iloc[0] == pytest.approx(last_close["close"])
    hist = client.history(["MSFT", "XOM"], ["bars_daily:close", "technicals:sma_20"], start="2017-08-01", end="2017-08-31")
    assert len(hist) == 2 * 23 and hist["close"].notna().all() and hist["sma_20"].notna().all()

    # `alpha live --once` and `alpha backtest` run on the CSV warehouse too
    live = run([ALPHA, "live", "--once"], home)
    assert live.returncode == 0, live.stderr
    assert "MSFT" in live.stdout and "targets:" in live.stdout


def test_bad_csv_exits_nonzero_naming_file_and_row(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "ACME.csv").write_text("date,open,high,low,close,volume\n2014-06-05,10,11,9.5,10.5,1000\n2014-06-06,10,11,9.5,oops,1000\n")
    out = run([ALPHA, "ingest", "csv", str(folder)], tmp_path / "home")
    assert out.returncode == 1
    assert "ACME.csv, row 3" in out.stderr and "non-numeric close 'oops'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_feast_apply_works_from_feature_repo(warehouse):
    home = warehouse["settings"].home
    out = run([FEAST, "apply"], home, cwd=REPO / "feature_repo")
    assert out.returncode == 0, out.stdout + out.stderr
    out = run([FEAST, "feature-views", "list"], home, cwd=REPO / "feature_repo")
    assert out.returncode == 0, out.stderr
    assert "bars_daily" in out.stdout and "technicals" in out.stdout


def test_latest_replay_and_live_loop_commands(warehouse, tmp_path):
    """`alpha latest`, `alpha replay` and `alpha live --strategy --once` (refused: not promoted) as a user runs them."""
    import json

    from sdk import connect

    home = warehouse["settings"].home
    refs = ["bars_daily:close", "technicals:rsi_14", "regime_daily:regime_vol"]
    out = run([ALPHA, "latest", "AAPL,SPY", ",".join(refs), "--now", "warehouse", "--json"], home)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    mine = connect(home).latest(["AAPL", "SPY"], refs, now="warehouse")
    assert [r["symbol"] for r in rows] == ["AAPL", "SPY"]
    assert [r["close"] for r in rows] == mine["close"].tolist()
    assert [r["rsi_14"] for r in rows] == pytest.approx(mine["rsi_14"].tolist(), rel=1e-12)
    assert rows[0]["close__ts"].startswith("2021-03-31T20:15:00")
    # at the wall clock the 2021 values are far older than the 10-day TTL: missing, flagged with --allow-stale
    wall = json.loads(run([ALPHA, "latest", "AAPL", "bars_daily:close", "--allow-stale", "--json"], home).stdout)
    assert wall[0]["close__stale"] is True and wall[0]["close"] == mine["close"].iloc[0]
    assert json.loads(run([ALPHA, "latest", "AAPL", "bars_daily:close", "--json"], home).stdout)[0]["close"] is None

    replay = run([ALPHA, "replay", "--strategy", "trend_rsi", "--start", "2021-01-04", "--end", "2021-03-31"], home)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replay == backtest" in replay.stdout and " != " not in replay.stdout

    # only promoted strategies trade: an experiment without a promotion record is refused, and the
    # message says what to run (the promoted path: tests/test_research_chain.py)
    live = run([ALPHA, "live", "--strategy", "trend_rsi", "--once"], home)
    assert live.returncode == 1, live.stdout + live.stderr
    assert "no promotion at tier 'candidate'" in live.stderr and "alpha experiment promote" in live.stderr
    from strategy.ledger import open_ledger

    ledger = open_ledger(warehouse["settings"])
    try:
        assert ledger.orders("trend_rsi").empty
    finally:
        ledger.dispose()


# ------------------------------------------------------------ no process-wide side effects


def test_a_command_run_in_process_sets_no_environment(tmp_path):
    """``--home`` travels as an argument: running a command leaves ``os.environ`` as it was."""
    from typer.testing import CliRunner

    from cli.app import app
    from etl.core.config import load_settings
    from etl.storage.watermarks import open_watermarks

    before = dict(os.environ)
    out = CliRunner().invoke(app, ["watermarks", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    store = open_watermarks(load_settings(tmp_path))
    store.dispose()
    assert out.output == f"watermarks in {store.display_url}\n    (none yet)\n"
    assert dict(os.environ) == before and "ALPHA_HOME" not in os.environ


def test_a_broker_error_prints_its_message_and_exits_1(capsys):
    """The broker's errors are AlphaErrors: the CLI prints them as one line, no traceback."""
    import typer

    from cli.common import friendly
    from strategy.broker import BrokerError

    @friendly
    def refused():
        raise BrokerError("alpaca refused order o-1: insufficient buying power")

    with pytest.raises(typer.Exit) as stop:
        refused()
    assert stop.value.exit_code == 1
    assert capsys.readouterr().err == "error: alpaca refused order o-1: insufficient buying power\n"


def test_feast_calls_leave_warning_filters_and_the_feast_logger_as_they_were(tmp_path):
    """Feast's chatter is silenced around our Feast calls only (a notebook keeps its filters)."""
    import logging
    import warnings

    from etl.core.config import load_settings
    from etl.serving.feast_store import feature_store, quiet_feast

    feast_logger = logging.getLogger("feast")
    filters, level = list(warnings.filters), feast_logger.level
    store = feature_store(load_settings(tmp_path))
    assert type(store).__name__ == "FeatureStore"
    assert warnings.filters == filters and feast_logger.level == level
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_feast():
            assert feast_logger.level == logging.WARNING
            warnings.warn("inside", DeprecationWarning, stacklevel=1)
        assert feast_logger.level == level
        warnings.warn("outside", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["outside"]


def test_feature_repo_module_lists_every_generated_object(tmp_path, monkeypatch):
    """``feast apply`` finds the objects with ``dir()``: all of them, for the user's ALPHA_HOME."""
    import importlib

    from feast import Entity, FeatureService, FeatureView, FileSource

    from feature_repo.definitions import build_definitions

    home = tmp_path.resolve()
    monkeypatch.setenv("ALPHA_HOME", str(home))
    sys.modules.pop("feature_repo.repo", None)
    try:
        repo = importlib.import_module("feature_repo.repo")
        found = {n: getattr(repo, n) for n in dir(repo)
                 if isinstance(getattr(repo, n), Entity | FileSource | FeatureView | FeatureService)}
    finally:
        sys.modules.pop("feature_repo.repo", None)
    defs = build_definitions(home)
    assert sorted(found) == sorted([f"entity_{n}" for n in defs.entities] + [f"source_{n}" for n in defs.sources]
                                   + [f"view_{n}" for n in defs.views] + [f"service_{n}" for n in defs.services])
    assert found["source_bars_daily"].path == "gold/bars_daily"   # relative to the home: a copied home reads its own
    assert found["view_technicals"] == defs.views["technicals"] and found["service_daily_v1"] == defs.services["daily_v1"]
    assert os.environ["ALPHA_HOME"] == str(home)
