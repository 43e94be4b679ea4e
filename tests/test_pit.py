"""Point-in-time: no query returns a value before it was available.

For sampled sessions of every symbol, a query one second before the bar's
availability time (session close + 15 min) must return the previous
session's values, and a query at the availability time the new ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.storage.bars import read_silver_bars

FEATURES = ["bars_daily:session_date", "bars_daily:close", "technicals:rsi_14", "technicals:sma_20"]


@pytest.fixture(scope="module")
def sample(warehouse):
    bars = read_silver_bars(warehouse["settings"])
    rng = np.random.default_rng(7)
    picks = []
    for symbol, g in bars.groupby("symbol"):
        g = g.sort_values("session").reset_index(drop=True)
        idx = np.arange(1, len(g))
        chosen = rng.choice(idx, size=min(60, len(idx)), replace=False)
        # always include the AAPL split day and its eve
        if symbol == "AAPL":
            chosen = np.union1d(chosen, g.index[g["session"].isin(pd.to_datetime(["2014-06-06", "2014-06-09"]))])
        for i in chosen:
            picks.append((symbol, g.loc[i, "session"], g.loc[i - 1, "session"], g.loc[i, "event_timestamp"], g.loc[i, "close"], g.loc[i - 1, "close"]))
    return pd.DataFrame(picks, columns=["symbol", "session", "prev_session", "available", "close", "prev_close"])


def test_one_second_before_gives_previous_session_and_at_gives_new(client, sample):
    before = pd.DataFrame({"symbol": sample["symbol"], "event_timestamp": sample["available"] - pd.Timedelta(seconds=1)})
    at = pd.DataFrame({"symbol": sample["symbol"], "event_timestamp": sample["available"]})
    got_before = client.history(before, FEATURES)
    got_at = client.history(at, FEATURES)
    assert len(got_before) == len(sample) == len(got_at)

    prev = sample["prev_session"].dt.strftime("%Y-%m-%d").to_numpy()
    new = sample["session"].dt.strftime("%Y-%m-%d").to_numpy()
    # a gap longer than the TTL (10 days) correctly yields no value at all
    gap = (sample["available"] - pd.Timedelta(seconds=1)) - clock.availability_times(sample["prev_session"], 15)
    within_ttl = (gap <= pd.Timedelta(days=10)).to_numpy()
    assert within_ttl.mean() > 0.99
    np.testing.assert_array_equal(got_before["session_date"].to_numpy()[within_ttl], prev[within_ttl])
    np.testing.assert_allclose(got_before["close"].to_numpy()[within_ttl], sample["prev_close"].to_numpy()[within_ttl])
    assert got_before["session_date"][~within_ttl].isna().all()
    np.testing.assert_array_equal(got_at["session_date"].to_numpy(), new)
    np.testing.assert_allclose(got_at["close"].to_numpy(), sample["close"].to_numpy())


def test_no_returned_value_was_available_after_the_query_time(client, sample):
    rng = np.random.default_rng(11)
    jitter = pd.to_timedelta(rng.integers(-3 * 86400, 3 * 86400, len(sample)), unit="s")
    q = pd.DataFrame({"symbol": sample["symbol"], "event_timestamp": sample["available"] + jitter})
    got = client.history(q, FEATURES)
    seen = got.dropna(subset=["session_date"])
    assert len(seen) > 0.9 * len(q)
    available = clock.availability_times(pd.to_datetime(seen["session_date"]), 15)
    assert (available <= seen["event_timestamp"].to_numpy()).all()


def test_history_keeps_input_order_duplicates_and_index(client, sample):
    q = pd.DataFrame({"symbol": sample["symbol"], "event_timestamp": sample["available"]}).iloc[:80]
    q = pd.concat([q, q.iloc[:5]])  # duplicated entity rows are kept
    q = q.sample(frac=1.0, random_state=3)
    q.index = pd.RangeIndex(1000, 1000 + len(q))[::-1]
    q["my_tag"] = np.arange(len(q))
    got = client.history(q, ["technicals:rsi_14"])
    assert len(got) == len(q)
    assert list(got.index) == list(q.index)
    assert got["my_tag"].tolist() == list(range(len(q)))
    assert got["symbol"].tolist() == q["symbol"].tolist()


def test_history_with_symbols_and_dates_builds_one_row_per_session(client):
    got = client.history(["AAPL", "SPY"], ["bars_daily:close", "bars_daily:session_date"], start="2014-11-24", end="2014-12-02")
    # Thanksgiving 2014-11-27 is a holiday; 2014-11-28 closes early at 13:00 New York
    sessions = ["2014-11-24", "2014-11-25", "2014-11-26", "2014-11-28", "2014-12-01", "2014-12-02"]
    assert len(got) == 2 * len(sessions)
    assert sorted(got["session_date"].unique()) == sessions
    friday = got[got["session_date"] == "2014-11-28"]
    assert (friday["event_timestamp"] == pd.Timestamp("2014-11-28 18:15", tz="UTC")).all()


def test_timezones_of_the_query_do_not_matter(client):
    ny = pd.DataFrame({"symbol": ["AAPL"], "event_timestamp": [pd.Timestamp("2014-06-09 16:14:59", tz="America/New_York")]})
    utc = pd.DataFrame({"symbol": ["AAPL"], "event_timestamp": [pd.Timestamp("2014-06-09 20:14:59", tz="UTC")]})
    a, b = client.history(ny, ["bars_daily:session_date"]), client.history(utc, ["bars_daily:session_date"])
    assert a["session_date"].iloc[0] == b["session_date"].iloc[0] == "2014-06-06"


def test_history_equals_a_brute_force_reference(client, warehouse):
    """Every value equals the brute-force answer: the gold row with the greatest
    event time <= the query time (greatest created time on ties), within the TTL."""
    from etl.gold.layout import gold_path

    gold = pd.read_parquet(gold_path(warehouse["settings"], "technicals"))
    rng = np.random.default_rng(5)
    lo, hi = pd.Timestamp("1998-01-01", tz="UTC").value, pd.Timestamp("2021-05-01", tz="UTC").value
    q = pd.DataFrame(
        {
            "symbol": rng.choice(sorted(gold["symbol"].unique()), 300),
            "event_timestamp": pd.to_datetime(rng.integers(lo, hi, 300), utc=True).floor("s"),
        }
    )
    got = client.history(q, ["technicals:rsi_14", "technicals:atr_14"])
    for i, row in q.iterrows():
        g = gold[(gold["symbol"] == row["symbol"]) & (gold["event_timestamp"] <= row["event_timestamp"])
                 & (gold["event_timestamp"] >= row["event_timestamp"] - pd.Timedelta(days=10))]
        if g.empty:
            assert np.isnan(got.loc[i, "rsi_14"]) and np.isnan(got.loc[i, "atr_14"])
            continue
        best = g.sort_values(["event_timestamp", "created_timestamp"]).iloc[-1]
        for col in ("rsi_14", "atr_14"):
            a, b = got.loc[i, col], best[col]
            assert (np.isnan(a) and np.isnan(b)) or a == b, (i, col)
