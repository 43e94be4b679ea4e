"""Shadow replay == backtest: the live loop run over past sessions on alpha.history,
with the paper broker and a fresh ledger, makes exactly the vectorbt backtest's
fills, session by session (same symbols, signed sizes, prices and fees).
On the session warehouse (the shared real Lean data, 5 symbols)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.core.errors import LookAheadError
from strategy import get_strategy, trend_rsi
from strategy.backtest import run_backtest
from strategy.live_loop import compare_fills, replay, run_session

START, END = "2019-07-01", "2021-03-31"
FEES, SLIPPAGE = 0.001, 0.0005


@pytest.fixture(scope="module")
def backtest(client, tmp_path_factory):
    return run_backtest(client, start=START, end=END, fees=FEES, slippage=SLIPPAGE, out_dir=tmp_path_factory.mktemp("bt"))


@pytest.fixture(scope="module")
def shadow(client):
    return replay(client, get_strategy("trend_rsi"), START, END, FEES, SLIPPAGE)


def test_replay_fills_equal_the_backtest_session_by_session(backtest, shadow):
    table = compare_fills(shadow.fills, backtest.orders, rtol=1e-9)
    assert len(backtest.orders) > 150  # a real test: hundreds of fills over 21 months
    assert len(table) == len(backtest.orders) == len(shadow.fills)
    bad = table[~table["equal"]]
    assert bad.empty, bad.head(10).to_string()
    # the same sessions, each with the same set of symbols
    by_session = lambda f: f.groupby("session")["symbol"].apply(lambda s: sorted(s)).to_dict()  # noqa: E731
    assert by_session(shadow.fills) == by_session(backtest.orders)
    # the paths where order matters are exercised: sells and buys, and buys cut short by the cash
    merged = shadow.orders.merge(shadow.fills[["client_order_id", "qty"]], on="client_order_id", suffixes=("_ordered", "_filled"))
    assert (merged["qty_filled"] < 0).any() and (merged["qty_filled"] > 0).any()
    cut = merged[(merged["qty_filled"] - merged["qty_ordered"]).abs() > 1e-9 * merged["qty_ordered"].abs()]
    assert len(cut) > 0 and (cut["qty_filled"].abs() < cut["qty_ordered"].abs()).all()


def test_replay_decides_every_session_once_on_the_universe_of_each_session(shadow, backtest):
    assert [r.decision_time for r in shadow.reports] == list(backtest.targets.index)
    assert all(r.decided for r in shadow.reports)
    # UW (delisted in 1998) is not in the universe in the range: never asked for, no order, nothing blocked
    assert sorted(set(shadow.orders["symbol"])) == list(backtest.targets.columns) == ["AAPL", "GOOGL", "IBM", "SPY"]
    assert (shadow.orders["status"] != "blocked").all()
    # every order sent before the last decision was filled; the last one's fill session is past END
    last = backtest.targets.index[-1]
    sent = shadow.orders[shadow.orders["status"] != "blocked"]
    assert set(sent.loc[sent["decision_time"] < last, "status"]) == {"filled"}
    assert set(sent.loc[sent["decision_time"] == last, "status"]) <= {"submitted"}
    # the ledger's targets are the backtest's targets, decision by decision
    targets = shadow.ledger.targets("trend_rsi").pivot(index="decision_time", columns="symbol", values="weight")
    assert targets[backtest.targets.columns].to_numpy().tolist() == backtest.targets.to_numpy().tolist()


def test_fills_are_at_the_next_sessions_open_with_the_backtest_costs(backtest):
    from strategy.backtest import total_return_prices

    orders = backtest.orders
    decided = pd.DatetimeIndex(orders["decision_time"]).tz_convert("America/New_York").normalize().tz_localize(None)
    assert (pd.DatetimeIndex(orders["session"]) > decided).all()
    assert (orders["fill_time"].dt.tz_convert("America/New_York").dt.strftime("%H:%M") == "09:30").all()
    # price = the session's open in the total-return scale (close_tr x open / close, from the
    # point-in-time history) x (1 +/- slippage); fee = fees x notional
    close_tr, _ = total_return_prices(backtest.features)
    raw = backtest.features.set_index(["decision_time", "symbol"])
    by_session = dict(zip(pd.DatetimeIndex(close_tr.index).tz_convert("America/New_York").normalize().tz_localize(None), close_tr.index, strict=True))
    for o in orders.itertuples():
        t = by_session[o.session]
        open_tr = close_tr.loc[t, o.symbol] * raw.loc[(t, o.symbol), "open"] / raw.loc[(t, o.symbol), "close"]
        assert o.price == pytest.approx(open_tr * (1 + np.sign(o.qty) * SLIPPAGE), rel=1e-12)
        assert o.fee == pytest.approx(FEES * abs(o.qty) * o.price, rel=1e-9)


def test_a_session_never_sees_rows_after_its_decision_time(client, tmp_path):
    from strategy.ledger import Ledger
    from strategy.paper import PaperBroker, PriceBook

    hist = client.history(["AAPL", "SPY"], trend_rsi.FEATURES + ["bars_daily:open"], start="2021-03-01", end="2021-03-05")
    frame = hist.rename(columns={"event_timestamp": "decision_time"})
    book = PriceBook.from_frame(frame)
    t = frame["decision_time"].min()
    broker = PaperBroker(book, clock=lambda: t)
    with pytest.raises(LookAheadError, match="after the decision time"):
        run_session(client, broker, Ledger("sqlite://"), trend_rsi, t, features=frame, prices=book)
    # the paper broker's book gives no fill price before the session's bar is known
    assert book.fill_prices(book.sessions[1], book.times[0]) is None
    opens, before = book.fill_prices(book.sessions[1], book.times[1])
    assert opens.notna().all() and before.equals(book.close_tr.iloc[0])
