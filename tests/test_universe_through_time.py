"""Universes through time: backtests, replays and the live loop trade the universe known at
each decision time (strategy/universe.py).

Pure rules on literal frames (listing, delisting, a halt longer than the TTL, a bar known late,
a stalled warehouse, named universes, the delisting cash-out price), then the session warehouse
(AAPL, SPY, IBM from 1998, GOOGL from 2014-04-03, UW 1998-01-02..1998-07-16): membership equals
the point-in-time join of bars_daily, UW is traded only while it traded, GOOGL is not a member
before its first bar is known, and the shadow replay still equals the backtest fill by fill.
"""

from __future__ import annotations

import logging
import types

import numpy as np
import pandas as pd
import pytest

from strategy.backtest import execution_prices, run_backtest, total_return_prices
from strategy.universe import (
    Listing,
    UniverseError,
    listed_members,
    member_entities,
    members,
    members_at,
    named_members,
    not_listed_reasons,
    universe_at,
)

DAY0 = pd.Timestamp("2020-01-01 21:15", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=n)


def bars(spec: dict[str, list]) -> pd.DataFrame:
    """A bars frame: per symbol a list of days (known at availability) or (day, known day)."""
    rows = []
    for sym, days in spec.items():
        for d in days:
            event, known = (d, d) if not isinstance(d, tuple) else d
            rows.append((sym, day(event), day(known)))
    return pd.DataFrame(rows, columns=["symbol", "event_timestamp", "known_timestamp"])


def listed_days(frame: pd.DataFrame, symbol: str) -> list[int]:
    return [int((t - DAY0) / pd.Timedelta(days=1)) for t in frame.index[frame[symbol]]]


# ------------------------------------------------------------------ pure: the listed universe
def test_listing_delisting_a_long_halt_and_a_late_bar_on_literal_frames():
    listing = Listing.from_bars(bars({
        "M": list(range(0, 31)),                 # the market: a bar every day
        "A": list(range(5, 31)),                 # listed on day 5
        "B": list(range(0, 11)),                 # last bar day 10: delisted
        "C": [0, 1, 2, 3, *range(20, 31)],       # halted days 4..19 (longer than the TTL), then trades again
        "D": [(8, 12)],                          # the bar of day 8 is only known on day 12
    }))
    frame = listed_members(listing, [day(n) for n in range(31)], ["M", "A", "B", "C", "D"])
    assert listed_days(frame, "M") == list(range(31))
    assert listed_days(frame, "A") == list(range(5, 31))            # not before its first bar
    assert listed_days(frame, "B") == list(range(0, 21))            # its last bar + the 10-day TTL, inclusive
    assert listed_days(frame, "C") == [*range(0, 14), *range(20, 31)]
    assert listed_days(frame, "D") == list(range(12, 19))           # from when the bar is known, to day 8 + TTL
    # one microsecond before a bar's availability time it is not known: no look-ahead
    just_before = listed_members(listing, [day(5) - pd.Timedelta(microseconds=1), day(5)], ["A"])
    assert just_before["A"].tolist() == [False, True]


def test_reasons_for_symbols_left_out():
    listing = Listing.from_bars(bars({"M": list(range(0, 31)), "A": list(range(5, 31)), "C": [0, 1, 2, 3, *range(20, 31)]}))
    assert not_listed_reasons(listing, day(17), ["M", "A", "C", "Z"]) == {
        "C": "last bar 2020-01-04, more than the 10-day TTL before the newest bar known then (2020-01-18): delisted, or halted that long",
        "Z": "no daily bars in this warehouse",
    }
    assert not_listed_reasons(listing, day(2), ["A"]) == {
        "A": "not listed yet: its first bar (2020-01-06) is known from 2020-01-06 21:15Z"}


def test_a_stalled_warehouse_keeps_its_universe():
    """When no bar at all arrives (a nightly that stopped), symbols are judged against the newest
    bar known (the market clock), not the wall clock: the universe stays as it was instead of
    emptying (and the live loop liquidating the book); a symbol that stopped trading before is out."""
    listing = Listing.from_bars(bars({"M": list(range(0, 31)), "A": list(range(0, 6))}))
    frame = listed_members(listing, [day(30), day(45), day(400)], ["M", "A"])
    assert frame["M"].tolist() == [True, True, True]
    assert frame["A"].tolist() == [False, False, False]


def test_named_universe_members_known_at_each_time():
    d1, d2 = pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03")
    rows = pd.DataFrame({
        "date": [d1, d1, d2, d2],
        "symbol": ["A", "B", "B", "C"],
        "event_timestamp": [day(1), day(1), day(2), day(2) + pd.Timedelta(hours=1)],  # C's row known an hour later
    })
    times = [day(0), day(1), day(1.5), day(2), day(2) + pd.Timedelta(hours=1), day(30)]
    frame, used = named_members(rows, times, ["A", "B", "C", "D"])
    assert [sorted(frame.columns[frame.loc[t]]) for t in frame.index] == [[], ["A", "B"], ["A", "B"], ["B"], ["B", "C"], ["B", "C"]]
    assert used == [None, d1, d1, d2, d2, d2]   # the newest universe date known at each time (frozen after the last)


# ------------------------------------------------------------------ pure: prices of a delisted symbol
def test_a_delisted_symbol_fills_at_its_last_close_once_it_is_not_listed():
    """X trades every day; Y's last bar is day 1. With a 2-day TTL Y is not listed from day 4 (1 <
    4 - 2), so an order filled on day 5 gets Y's last close; on the days before, an order has no
    price (halted or not, there is no open to trade at)."""
    times = pd.DatetimeIndex([day(n) for n in range(6)], name="decision_time")
    close_tr = pd.DataFrame({"X": [100.0, 101, 102, 103, 104, 105], "Y": [50.0, 51, np.nan, np.nan, np.nan, np.nan]}, index=times)
    open_tr = pd.DataFrame({"X": [99.5, 100.5, 101.5, 102.5, 103.5, 104.5], "Y": [49.5, 50.5, np.nan, np.nan, np.nan, np.nan]}, index=times)
    price = execution_prices(close_tr, open_tr, ttl=pd.Timedelta(days=2))
    assert price["X"].tolist() == open_tr["X"].tolist()
    assert price["Y"].iloc[:5].tolist()[:2] == [49.5, 50.5] and price["Y"].iloc[2:5].isna().all()
    assert price["Y"].iloc[5] == 51.0


def test_total_return_prices_use_each_sessions_own_bar_only():
    """A bar the point-in-time join carries over to a later session (within the TTL) is no price of
    that session: the index does not compound its ret_1d again and there is no open to trade at."""
    t = [pd.Timestamp(f"2021-03-{d:02d} 20:15", tz="UTC") for d in (29, 30, 31)]
    frame = pd.DataFrame({
        "decision_time": t * 2,
        "symbol": ["H"] * 3 + ["K"] * 3,
        "close": [10.0, 11.0, 11.0, 20.0, 20.0, 22.0],
        "open": [10.0, 10.5, 10.5, 20.0, 20.0, 21.0],
        "ret_1d": [np.nan, 0.1, 0.1, np.nan, np.nan, 0.1],
        "session_date": ["2021-03-29", "2021-03-30", "2021-03-30", "2021-03-29", "2021-03-29", "2021-03-31"],
    })
    close_tr, open_tr = total_return_prices(frame)
    assert close_tr["H"].tolist()[:2] == pytest.approx([100.0, 110.0]) and np.isnan(close_tr["H"].iloc[2])
    assert np.isnan(open_tr["H"].iloc[2]) and np.isnan(open_tr["K"].iloc[1])
    assert close_tr["K"].iloc[2] == pytest.approx(110.0)   # halted a day: one ret_1d, compounded once


# ------------------------------------------------------------------ the session warehouse
def test_listed_membership_is_the_point_in_time_join_of_the_bars(client):
    """On a warehouse that is up to date, "listed" at t is exactly "bars_daily has a value at t
    within the TTL" (the join the backtest reads), every session of 1998..2021-03-31."""
    hist = client.history(client.symbols(), ["bars_daily:close"], start="1998-01-02", end="2021-03-31")
    joined = hist.pivot(index="event_timestamp", columns="symbol", values="close").notna()
    mine = members(client, joined.index)
    assert list(mine.columns) == ["AAPL", "GOOGL", "IBM", "SPY", "UW"] and len(mine) == 5849
    assert (mine.to_numpy() == joined[mine.columns].to_numpy()).all()
    assert mine["UW"].sum() == 141 and mine["GOOGL"].sum() == 1761   # UW: its 135 sessions and 6 within the TTL


def test_uw_is_a_member_while_it_traded_and_then_left_with_a_reason(client):
    assert "UW" in members_at(client, pd.Timestamp("1998-07-24 20:15", tz="UTC"))
    later = universe_at(client, pd.Timestamp("1998-07-27 20:15", tz="UTC"))
    assert later.members == ["AAPL", "IBM", "SPY"]
    assert later.left_out["UW"] == ("last bar 1998-07-16, more than the 10-day TTL before the newest bar known then "
                                    "(1998-07-27): delisted, or halted that long")
    assert later.left_out["GOOGL"].startswith("not listed yet: its first bar (2014-04-03)")
    # an explicit list is intersected with the membership; an unknown symbol is an error, not a non-member
    assert members_at(client, pd.Timestamp("2021-03-31 20:15", tz="UTC"), symbols=["UW", "SPY"]) == ["SPY"]
    from etl.core.errors import UnknownSymbolError

    with pytest.raises(UnknownSymbolError, match="NOPE"):
        members_at(client, pd.Timestamp("2021-03-31 20:15", tz="UTC"), symbols=["NOPE"])
    with pytest.raises(UniverseError, match="no symbol of 1 is a member"):
        member_entities(client, "2001-01-02", "2001-12-31", symbols=["UW"])


def test_no_look_ahead_a_symbol_listed_mid_period(client):
    """GOOGL's first bar (2014-04-03) is available at 20:15 UTC that day: not a member a
    microsecond before, a member from then; the entity frame of a range around it starts there."""
    first = pd.Timestamp("2014-04-03 20:15", tz="UTC")
    assert "GOOGL" not in members_at(client, first - pd.Timedelta(microseconds=1))
    assert "GOOGL" in members_at(client, first)
    entities = member_entities(client, "2014-03-25", "2014-04-10")
    googl = entities.loc[entities["symbol"] == "GOOGL", "event_timestamp"]
    assert googl.min() == first and len(googl) == 6
    assert entities.groupby("symbol").size().to_dict() == {"AAPL": 13, "GOOGL": 6, "IBM": 13, "SPY": 13}


def hold_all_targets(features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
    """Equal weight over the rows with a close at each decision time."""
    valid = features["close"].notna()
    n = valid.groupby(features[time_col]).transform("sum")
    return pd.Series(np.where(valid, 1.0 / n.where(n > 0, np.nan), 0.0), index=features.index).fillna(0.0)


HOLD_ALL = types.SimpleNamespace(NAME="hold_all", FEATURES=["bars_daily:close"], target_positions=hold_all_targets)
START, END, FEES, SLIPPAGE = "1998-06-01", "1998-09-30", 0.001, 0.0005


@pytest.fixture(scope="module")
def bt1998(client, tmp_path_factory):
    return run_backtest(client, start=START, end=END, fees=FEES, slippage=SLIPPAGE, strategy=HOLD_ALL,
                        out_dir=tmp_path_factory.mktemp("bt1998"))


def test_backtest_trades_uw_only_while_listed_and_sells_it_at_its_last_close(bt1998):
    uw = bt1998.targets["UW"]
    assert uw.loc[: "1998-07-24 20:15"].tolist() == [0.25] * len(uw.loc[: "1998-07-24 20:15"])
    assert uw.loc["1998-07-27":].isna().all()                     # not a member: no target
    assert set(bt1998.features.loc[bt1998.features["decision_time"] > pd.Timestamp("1998-07-25", tz="UTC"), "symbol"]) == {"AAPL", "IBM", "SPY"}
    orders = bt1998.orders[bt1998.orders["symbol"] == "UW"]
    assert len(orders) == 2 and orders["qty"].iloc[0] > 0
    sell = orders.iloc[1]
    # decided when it left (1998-07-27), filled at the next session with its last close (no open exists)
    assert sell["decision_time"] == pd.Timestamp("1998-07-27 20:15", tz="UTC") and sell["session"] == pd.Timestamp("1998-07-28")
    assert sell["qty"] == pytest.approx(-orders["qty"].iloc[0], rel=1e-12)   # the whole position
    close_tr, _ = total_return_prices(bt1998.features)
    last = close_tr["UW"].dropna()
    assert last.index[-1] == pd.Timestamp("1998-07-16 20:15", tz="UTC")
    assert sell["price"] == pytest.approx(last.iloc[-1] * (1 - SLIPPAGE), rel=1e-12)
    assert sell["fee"] == pytest.approx(FEES * abs(sell["qty"]) * sell["price"], rel=1e-9)


def test_without_a_universe_a_delisted_position_is_never_sold(client, tmp_path):
    """What vectorbt does on its own: UW's rows after the TTL have no features (stale: blocked) and
    no price (vectorbt ignores an order priced NaN), so the position is held and valued at its last
    close forever -- the reason for the universe and the cash-out."""
    bt = run_backtest(client, start=START, end=END, fees=FEES, slippage=SLIPPAGE, strategy=HOLD_ALL, universe=None, out_dir=tmp_path)
    uw = bt.orders[bt.orders["symbol"] == "UW"]
    assert len(uw) == 1 and uw["qty"].iloc[0] > 0
    assert bt.targets["UW"].loc["1998-07-27":].eq(0.0).all()


def test_replay_equals_the_backtest_through_a_delisting(client, bt1998):
    from strategy.live_loop import compare_fills, replay

    shadow = replay(client, HOLD_ALL, START, END, FEES, SLIPPAGE)
    table = compare_fills(shadow.fills, bt1998.orders, rtol=1e-9)
    assert len(table) == len(bt1998.orders) == len(shadow.fills) >= 5
    assert table["equal"].all(), table[~table["equal"]].to_string()
    exits = [(r.decision_time, r.exits) for r in shadow.reports if r.exits]
    assert exits == [(pd.Timestamp("1998-07-27 20:15", tz="UTC"), ["UW"])]
    gone = shadow.orders[shadow.orders["symbol"] == "UW"].iloc[-1]
    assert gone["status"] == "filled" and gone["note"] == "left the universe: position closed"
    assert "UW" not in shadow.broker.account().positions


def test_live_tick_trades_only_members(client, caplog):
    from strategy.live import live_once

    with caplog.at_level(logging.INFO, logger="alpha.live"):
        tick = live_once(client)
    assert tick["symbol"].tolist() == ["AAPL", "GOOGL", "IBM", "SPY"]
    info = [r.getMessage() for r in caplog.records if r.name == "alpha.live"]
    assert len(info) == 1 and info[0].startswith("1 symbol(s) not in the universe listed at 2021-03-31 20:15Z: UW (last bar 1998-07-16")
    assert live_once(client, ["AAPL", "UW"])["symbol"].tolist() == ["AAPL"]
    alone = live_once(client, ["UW"])
    assert alone.empty and list(alone.columns) == ["symbol", "as_of", "close", "sma_20", "rsi_14", "ret_1d", "target_weight"]


def test_live_session_neither_asks_for_nor_warns_about_delisted_symbols(client, caplog):
    from strategy import trend_rsi
    from strategy.ledger import Ledger
    from strategy.live_loop import run_session
    from strategy.paper import PaperBroker, PriceBook

    book = PriceBook.from_history(client, client.symbols(), "2021-03-25", "2021-03-31")
    t = book.times[-1]
    broker = PaperBroker(book, url="sqlite://", clock=lambda: t)
    with caplog.at_level(logging.INFO):
        report = run_session(client, broker, Ledger("sqlite://"), trend_rsi, t, source="latest")
    assert report.decided and report.stale == {} and list(report.left_out) == ["UW"]
    assert sorted(report.targets.index) == ["AAPL", "GOOGL", "IBM", "SPY"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert sum("not in the universe" in r.getMessage() for r in caplog.records) == 1


def test_a_named_universe_is_its_members_known_at_t_among_the_listed(warehouse, shared_lean_root, tmp_path):
    """Lean's coarse universe (11 files, 2014-03-24..2014-04-07) ingested into a copy of the
    session warehouse: at t the members of the newest coarse date known then, among the listed
    symbols. The coarse files list GOOGL from the first day; its bars start 2014-04-03."""
    import shutil

    from etl.core.config import load_settings
    from etl.sources.base import run_ingest
    from sdk import connect

    home = tmp_path / "home"
    shutil.copytree(warehouse["settings"].home, home, symlinks=True)
    summary = run_ingest(load_settings(home), "lean", "coarse_universe", None, "2014-01-01", "2014-12-31", path=str(shared_lean_root))
    assert not summary.failed
    client = connect(home)
    name = "us_equity_coarse"
    coarse = client.universe(name, "2014-03-24", "2014-03-24")
    assert {"AAPL", "GOOGL", "IBM", "SPY"} <= set(coarse["symbol"])
    times = [pd.Timestamp(f"2014-{d} 20:15", tz="UTC") for d in ("03-21", "03-24", "04-02", "04-03", "04-10")]
    m = members(client, times, universe=name)
    assert [sorted(m.columns[m.loc[t]]) for t in m.index] == [
        [], ["AAPL", "IBM", "SPY"], ["AAPL", "IBM", "SPY"], ["AAPL", "GOOGL", "IBM", "SPY"], ["AAPL", "GOOGL", "IBM", "SPY"]]
    before = universe_at(client, times[0], universe=name)
    assert before.left_out["AAPL"] == "no membership of 'us_equity_coarse' known in the 31 days before"
    assert universe_at(client, times[1], universe=name, symbols=["AAPL"]).members == ["AAPL"]
    entities = member_entities(client, "2014-03-20", "2014-04-10", universe=name)
    assert entities["event_timestamp"].min() == times[1]   # nothing before the first coarse date is known
    assert entities.groupby("symbol").size().to_dict() == {"AAPL": 14, "GOOGL": 6, "IBM": 14, "SPY": 14}
