"""One strategy function, two runners: the vectorbt backtest on alpha.history
and the live tick on alpha.latest give the same targets for the last session."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from strategy import trend_rsi
from strategy.backtest import run_backtest
from strategy.live import live_once


def test_target_positions_on_a_literal_frame():
    t1, t2 = pd.Timestamp("2020-01-02 21:15", tz="UTC"), pd.Timestamp("2020-01-03 21:15", tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": ["A", "B", "C", "D", "A", "B"],
            "decision_time": [t1, t1, t1, t1, t2, t2],
            "close": [11.0, 9.0, 12.0, np.nan, 11.0, 12.0],
            "sma_20": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
            "rsi_14": [60.0, 40.0, 75.0, 50.0, 65.0, 55.0],
        }
    )
    weights = trend_rsi.target_positions(frame)
    # t1: A held (above SMA, RSI < 70), B below SMA, C overbought, D missing -> 1/3 each of valid A, B, C
    # t2: A and B held, 2 valid -> 1/2 each
    assert weights.tolist() == pytest.approx([1 / 3, 0.0, 0.0, 0.0, 0.5, 0.5])


@pytest.fixture(scope="module")
def backtest(client, tmp_path_factory):
    return run_backtest(client, start="2013-01-01", end="2021-03-31", fees=0.001, slippage=0.0005, out_dir=tmp_path_factory.mktemp("report"))


def test_backtest_writes_a_report_with_metrics_and_plot(backtest):
    assert backtest.files["png"].stat().st_size > 20_000
    stats = json.loads(backtest.files["stats"].read_text())
    assert stats["params"]["fees"] == 0.001
    assert np.isfinite(stats["stats"]["Sharpe Ratio"])
    assert stats["stats"]["Total Trades"] > 10
    assert stats["stats"]["Total Fees Paid"] > 0
    html = backtest.files["html"].read_text()
    assert backtest.files["html"].name == "tearsheet.html" and html.count("data:image/png;base64,") >= 5
    assert "SPY total return" in html and "Monthly returns" in html
    assert stats["metrics"]["sessions"] > 1000 and stats["benchmark"] == "SPY total return"


def test_backtest_metrics_by_the_regime_known_at_the_start_of_each_session(backtest, warehouse):
    """Each session's return is counted under the previous session's regime (from the
    gold regime table, joined here by hand), never the regime its own close reveals."""
    gold = pd.read_parquet(warehouse["settings"].gold / "regime_daily")
    day = lambda ts: pd.DatetimeIndex(ts).tz_convert("America/New_York").normalize().tz_localize(None)  # noqa: E731
    regime = pd.Series(gold["regime_vol"].to_numpy(), index=day(gold["event_timestamp"])).dropna().sort_index()
    returns = pd.Series(backtest.returns.to_numpy(), index=day(backtest.returns.index))
    table = backtest.by_regime["regime_vol"]
    names = {0: "low vol", 1: "normal vol", 2: "high vol"}
    prev = regime.reindex(returns.index).index.map(lambda d: regime[regime.index < d].iloc[-1] if (regime.index < d).any() else None)
    for value, name in names.items():
        mine = returns[[p == value for p in prev]]
        assert table.loc[name, "sessions"] == len(mine) > 50
        assert table.loc[name, "total_return"] == pytest.approx(np.prod(1 + mine.to_numpy()) - 1, rel=1e-9)
    assert table["sessions"].sum() == sum(p is not None for p in prev)
    stats = json.loads(backtest.files["stats"].read_text())
    assert set(stats["by_regime"]) == {"regime_vol", "regime_trend"}
    assert "By regime vol" in backtest.files["html"].read_text()
    assert "by regime_vol: low vol" in backtest.summary()
    assert re.search(r"total return: [+-][\d,]+\.\d %   Sharpe -?\d\.\d\d", backtest.summary())


def test_backtest_trades_after_the_decision(backtest):
    # targets decided at session t are executed at t+1: the first decision row never trades
    assert backtest.targets.index.is_monotonic_increasing
    assert set(backtest.features["symbol"]) >= {"AAPL", "SPY"}
    # the universe known at each session: UW (delisted 1998) never, GOOGL from its first bar (2014-04-03)
    assert "UW" not in backtest.targets.columns
    googl = backtest.targets["GOOGL"]
    assert googl.first_valid_index() == pd.Timestamp("2014-04-03 20:15", tz="UTC") and googl.loc[googl.first_valid_index():].notna().all()


def test_live_and_backtest_agree_on_the_last_session(client, backtest):
    live = live_once(client).set_index("symbol")["target_weight"]
    last = backtest.targets.iloc[-1]
    assert backtest.targets.index[-1] == pd.Timestamp("2021-03-31 20:15", tz="UTC")
    symbols = sorted(set(live.index) | set(last.index))
    live_w = live.reindex(symbols).fillna(0.0)
    bt_w = last.reindex(symbols).fillna(0.0)
    assert live_w.tolist() == bt_w.tolist()  # exactly the same targets
    assert live_w.sum() > 0  # and not trivially all cash


@pytest.mark.redis
def test_live_parity_on_redis(redis_warehouse):
    from sdk import connect

    client = connect(redis_warehouse.home)
    live = live_once(client).set_index("symbol")["target_weight"]
    hist = client.history(client.symbols(), trend_rsi.FEATURES, start="2021-03-01", end="2021-03-31")
    hist = hist.rename(columns={"event_timestamp": "decision_time"})
    hist["w"] = trend_rsi.target_positions(hist)
    last = hist[hist["decision_time"] == hist["decision_time"].max()].set_index("symbol")["w"]
    assert live.reindex(last.index).tolist() == last.tolist()


def test_live_tick_decides_at_the_warehouse_clock_whatever_symbols_are_asked(client):
    """One staleness rule with the live loop: the tick's decision time is the warehouse's newest
    availability time. UW (delisted in 1998) is not in the universe then, so it is not even asked
    for; without a universe filter (universe=None) it is, and it is stale at that time and gets no
    position, instead of being judged against its own last bar."""
    assert live_once(client, ["UW"]).empty
    assert live_once(client, ["AAPL", "UW"])["symbol"].tolist() == ["AAPL"]
    alone = live_once(client, ["UW"], universe=None).set_index("symbol")
    assert alone.loc["UW", "as_of"] < pd.Timestamp("1999-01-01", tz="UTC")
    assert np.isnan(alone.loc["UW", "rsi_14"]) and alone.loc["UW", "target_weight"] == 0.0
    together = live_once(client, ["AAPL", "UW"], universe=None).set_index("symbol")
    assert together.loc["UW", "target_weight"] == 0.0
    assert together.loc["AAPL", "as_of"] == pd.Timestamp("2021-03-31 20:15", tz="UTC")
