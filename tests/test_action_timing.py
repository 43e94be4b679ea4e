"""Corporate actions are bitemporal: features use the actions known at each time.

Real prices (the shipped Lean data: AAPL's raw daily bars of 2014, which hold the 7:1 split of
2014-06-09) go in as a CSV folder; the actions go in through the actions writer. Three homes:

- ``ontime``: the split known from its ex-date's open (what every vendor's history says);
- ``late``: the split stated as known only on 2014-06-11 (two sessions after its ex-date);
- ``inc``: built night by night; the split arrives after the warehouse already published the
  sessions of 2014-06-09 and 06-10, so it is known from when it was received.

Gold is read as known at a time (the newest version known by then per session), as the
point-in-time store reads it, and through ``alpha.history`` itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.factors.spec import Factor, Family, Inputs, Output
from etl.gold.builder import build, whole_with_actions
from etl.jobs import compute_factors
from etl.sources.csv_folder import ingest_csv_folder
from etl.storage.actions import read_actions, read_all_versions, write_actions
from etl.storage.bars import read_silver_bars

pytestmark = pytest.mark.integration

SPLIT = pd.Timestamp("2014-06-09")
KNOWN_LATE = pd.Timestamp("2014-06-11 00:00", tz="America/New_York").tz_convert("UTC")
RECEIVED = pd.Timestamp("2014-06-11 12:00", tz="UTC")
FIRST, LAST = "2014-01-02", "2014-07-31"


def _write_csv(folder, bars: pd.DataFrame, upto) -> None:
    g = bars[bars["session"] <= upto]
    out = pd.DataFrame({"date": g["session"].dt.strftime("%Y-%m-%d"), "open": g["open"], "high": g["high"],
                        "low": g["low"], "close": g["close"], "volume": g["volume"]})
    out.to_csv(folder / "AAPL.csv", index=False)


def _avail(day) -> pd.Timestamp:
    return clock.availability_times(pd.DatetimeIndex([day]), 15)[0] + pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    from etl.core.config import default_lean_path
    from etl.sources.lean.daily import ingest_lean

    root = tmp_path_factory.mktemp("timing")
    lean = load_settings(root / "lean")
    ingest_lean(lean, default_lean_path(), ["AAPL"], now=pd.Timestamp("2020-01-01", tz="UTC"))
    raw = read_silver_bars(lean, ["AAPL"])
    raw = raw[(raw["session"] >= FIRST) & (raw["session"] <= LAST)].reset_index(drop=True)
    acts = read_actions(lean)
    acts = acts[(acts["ex_date"] >= FIRST) & (acts["ex_date"] <= LAST)]
    acts = acts[["symbol", "ex_date", "split_ratio", "cash_dividend", "dividend_factor", "reference_price", "source"]]
    assert (acts["ex_date"] == SPLIT).sum() == 1

    out = {"raw": raw}
    for name, known in (("ontime", pd.NaT), ("late", KNOWN_LATE)):
        home = load_settings(root / name)
        a = acts.assign(known_timestamp=[known if d == SPLIT else pd.NaT for d in acts["ex_date"]])
        write_actions(home, a, pd.Timestamp("2013-12-01", tz="UTC"))
        folder = root / f"csv_{name}"
        folder.mkdir()
        _write_csv(folder, raw, LAST)
        ingest_csv_folder(home, folder, now=_avail(LAST))
        compute_factors(home)   # every family and the symbols manifest: the SDK test applies the feature repo
        out[name] = home
    # night by night: the split arrives after 2014-06-10 was published
    inc = load_settings(root / "inc")
    folder = root / "csv_inc"
    folder.mkdir()
    write_actions(inc, acts[acts["ex_date"] != SPLIT].assign(known_timestamp=pd.NaT), pd.Timestamp("2013-12-01", tz="UTC"))
    _write_csv(folder, raw, pd.Timestamp("2014-06-10"))
    ingest_csv_folder(inc, folder, now=_avail("2014-06-10"))
    build(inc, families=["core"])
    write_actions(inc, acts[acts["ex_date"] == SPLIT].assign(known_timestamp=pd.NaT), RECEIVED)
    _write_csv(folder, raw, LAST)
    ingest_csv_folder(inc, folder, now=_avail(LAST))
    build(inc, families=["core"])
    out["inc"] = inc
    return out


def _as_known(settings, when=None) -> pd.DataFrame:
    """Per session: the newest row known at ``when`` (or, when None, at the session's own event time)."""
    frame = pd.read_parquet(settings.gold / "technicals")
    frame = frame[frame["symbol"] == "AAPL"]
    if when is None:
        frame = frame[frame["known_timestamp"] <= frame["event_timestamp"]]
    else:
        frame = frame[frame["known_timestamp"] <= when]
    frame = frame.sort_values(["event_timestamp", "known_timestamp", "created_timestamp"], kind="stable")
    return frame.drop_duplicates("event_timestamp", keep="last").set_index("event_timestamp").sort_index()


def _at(frame: pd.DataFrame, day: str) -> pd.Series:
    ev = clock.availability_times(pd.DatetimeIndex([day]), 15)[0]
    return frame.loc[ev]


def test_the_split_is_stored_with_the_time_it_became_known(homes):
    for name, expected in (("ontime", clock.session_opens(pd.DatetimeIndex([SPLIT]))[0]), ("late", KNOWN_LATE), ("inc", RECEIVED)):
        v = read_all_versions(homes[name])
        row = v[v["ex_date"] == SPLIT]
        assert len(row) == 1 and row["split_ratio"].iloc[0] == pytest.approx(7.0, rel=1e-5), name
        assert row["known_timestamp"].iloc[0] == expected, name


def test_before_the_split_was_known_the_features_are_unadjusted_after_it_adjusted(homes):
    late, ontime = homes["late"], homes["ontime"]
    raw = homes["raw"].set_index("session")
    unadjusted_ret = raw.loc[SPLIT, "close"] / raw.loc[SPLIT - pd.Timedelta(days=3), "close"] - 1.0
    assert unadjusted_ret < -0.8  # 645.57 -> 93.70 raw
    before = _as_known(late, KNOWN_LATE - pd.Timedelta(minutes=1))
    after = _as_known(late, KNOWN_LATE + pd.Timedelta(days=1))
    truth = _as_known(ontime, None)
    for day in ("2014-06-09", "2014-06-10"):
        assert _at(before, day)["sma_20"] > 500, day
        assert _at(after, day)["sma_20"] == pytest.approx(_at(truth, day)["sma_20"], rel=1e-12)
        assert _at(after, day)["ret_1d"] == pytest.approx(_at(truth, day)["ret_1d"], rel=1e-12, abs=1e-15)
    assert _at(before, "2014-06-09")["ret_1d"] == pytest.approx(unadjusted_ret, rel=1e-9)
    assert abs(_at(after, "2014-06-09")["ret_1d"]) < 0.05
    # sma_20 in the price scale of the session: unadjusted it mixes 20 sessions near 600 and one near 94
    assert _at(before, "2014-06-09")["sma_20"] > 500
    assert _at(after, "2014-06-09")["sma_20"] < 100


def test_the_default_query_shows_at_each_session_what_was_known_then(homes):
    late, ontime = homes["late"], homes["ontime"]
    seen = _as_known(late, None)           # each session as known at its own event time
    truth = _as_known(ontime, None)
    assert abs(_at(seen, "2014-06-09")["ret_1d"]) > 0.8       # the split was not known yet
    assert _at(seen, "2014-06-10")["sma_20"] > 500
    for day in ("2014-06-11", "2014-06-12", "2014-06-20", "2014-07-31"):   # known from 06-11 on
        assert _at(seen, day)["sma_20"] == pytest.approx(_at(truth, day)["sma_20"], rel=1e-12), day
    before = seen.index < clock.availability_times(pd.DatetimeIndex([SPLIT]), 15)[0]
    common = truth.index[before]
    cols = ["ret_1d", "sma_20"]
    # before the ex-date the split only rescales every price alike: equal but for rounding
    np.testing.assert_allclose(seen.loc[common, cols].to_numpy(), truth.loc[common, cols].to_numpy(), rtol=1e-10, atol=1e-14)


def test_no_row_is_known_before_its_event_or_an_adjusted_value_before_the_split(homes):
    for name in ("ontime", "late", "inc"):
        g = pd.read_parquet(homes[name].gold / "technicals")
        assert (g["known_timestamp"] >= g["event_timestamp"]).all(), name
    g = pd.read_parquet(homes["late"].gold / "technicals")
    split_ev = clock.availability_times(pd.DatetimeIndex([SPLIT]), 15)[0]
    rows = g[g["event_timestamp"] == split_ev].sort_values("known_timestamp")
    assert len(rows) == 2                       # the first print and the restatement
    assert rows["known_timestamp"].iloc[1] == KNOWN_LATE
    assert abs(rows["ret_1d"].iloc[0]) > 0.8 and abs(rows["ret_1d"].iloc[1]) < 0.05


def test_a_split_received_late_restates_from_when_it_was_received_never_into_the_past(homes):
    inc, ontime = homes["inc"], homes["ontime"]
    g = pd.read_parquet(inc.gold / "technicals")
    restated = g[g["known_timestamp"] == RECEIVED]
    sessions = set(pd.to_datetime(restated["event_timestamp"]).dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d"))
    assert {"2014-06-09", "2014-06-10"} <= sessions
    assert all(s >= "2014-06-09" for s in sessions)   # nothing before the ex-date changes
    as_published = _as_known(inc, RECEIVED - pd.Timedelta(seconds=1))
    assert abs(_at(as_published, "2014-06-09")["ret_1d"]) > 0.8   # what a backtest saw then stands
    now = _as_known(inc, pd.Timestamp("2030-01-01", tz="UTC"))
    truth = _as_known(ontime, pd.Timestamp("2030-01-01", tz="UTC"))
    np.testing.assert_allclose(now["sma_20"].to_numpy(), truth["sma_20"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(now["ret_1d"].to_numpy(), truth["ret_1d"].to_numpy(), rtol=1e-12, atol=1e-15)


def test_a_rebuild_from_nothing_reproduces_what_the_nights_published(homes, tmp_path):
    inc = homes["inc"]
    before = pd.read_parquet(inc.gold / "technicals").drop(columns=["created_timestamp"])
    build(inc, families=["core"], force=True)
    after = pd.read_parquet(inc.gold / "technicals").drop(columns=["created_timestamp"])
    key = ["symbol", "event_timestamp", "known_timestamp"]
    a = before.sort_values(key).reset_index(drop=True)
    b = after.sort_values(key).reset_index(drop=True)
    # the same versions: the late split's restatement sits at the time it was received
    assert set(map(tuple, a[key].astype(str).to_numpy())) == set(map(tuple, b[key].astype(str).to_numpy()))
    latest = _as_known(inc, pd.Timestamp("2030-01-01", tz="UTC"))
    assert abs(_at(latest, "2014-06-09")["ret_1d"]) < 0.05


# ------------------------------------------------------------------ whole-history families


def _adjusted_close(inputs: Inputs) -> pd.DataFrame:
    b = inputs.bars
    adj = inputs.adjusted("split")
    return pd.DataFrame({"symbol": b["symbol"].to_numpy(), "event_timestamp": b["event_timestamp"].to_numpy(),
                         "known_timestamp": b["known_timestamp"].to_numpy(),
                         "adj_close_ratio": adj["close"].to_numpy() / adj["close"].iloc[0]})


def test_a_whole_history_family_sees_each_action_from_when_it_was_known():
    sessions = pd.DatetimeIndex(["2014-06-05", "2014-06-06", "2014-06-09", "2014-06-10", "2014-06-11"])
    ev = clock.availability_times(sessions, 15)
    bars = pd.DataFrame({"symbol": "AAPL", "session": sessions, "open": 1.0, "high": 1.0, "low": 1.0,
                         "close": [640.0, 645.57, 93.70, 94.25, 93.86], "volume": 1.0,
                         "event_timestamp": ev, "known_timestamp": ev, "created_timestamp": ev})
    acts = pd.DataFrame({"symbol": ["AAPL"], "ex_date": [SPLIT], "split_ratio": [7.0], "cash_dividend": [0.0],
                         "dividend_factor": [np.nan], "reference_price": [np.nan], "source": ["test"], "payload": [""],
                         "event_timestamp": clock.session_opens(pd.DatetimeIndex([SPLIT])), "known_timestamp": [KNOWN_LATE],
                         "created_timestamp": [KNOWN_LATE]})
    factor = Factor("adj_close_ratio", "whole_test", "whole_test", (Output("adj_close_ratio"),), ("bars.close",), 0,
                    "the bar's event time", "close over the first close, split-adjusted")
    fam = Family("whole_test", (factor,), ("bars", "corporate_actions"), _adjusted_close, warmup=None, availability="bar close")
    rows = whole_with_actions(fam, Inputs("AAPL", bars, None, {"corporate_actions": acts}, "XNYS", 15))
    rows = rows.sort_values(["event_timestamp", "known_timestamp"]).reset_index(drop=True)
    first = rows.drop_duplicates("event_timestamp", keep="first").set_index("event_timestamp")["adj_close_ratio"]
    last = rows.drop_duplicates("event_timestamp", keep="last").set_index("event_timestamp")
    # as first known: 06-09 and 06-10 unadjusted (the split not yet known), 06-11 adjusted
    assert first[ev[2]] == pytest.approx(93.70 / 640.0)
    assert first[ev[4]] == pytest.approx(93.86 / (640.0 / 7))
    # restated from the time the split became known, never before
    assert last.loc[ev[2], "adj_close_ratio"] == pytest.approx(93.70 / (640.0 / 7))
    assert last.loc[ev[2], "known_timestamp"] == KNOWN_LATE
    assert (rows["known_timestamp"] >= rows["event_timestamp"]).all()
    restated = rows[rows["known_timestamp"] == KNOWN_LATE]
    assert list(restated["event_timestamp"]) == [ev[2], ev[3]]  # only the rows the split changes (06-09, 06-10)
    assert len(rows) == len(sessions) + 2


def test_alpha_history_before_and_after_the_split_was_known(homes):
    """The same through the SDK a quant uses: ``alpha.history`` with ``as_of``, and by default."""
    from etl.serving.feast_store import apply
    from sdk import connect

    late, ontime = homes["late"], homes["ontime"]
    apply(late)
    apply(ontime)
    feats = ["technicals:ret_1d", "technicals:sma_20"]
    days = ["2014-06-06", "2014-06-09", "2014-06-10", "2014-06-11", "2014-06-12"]
    frame = pd.DataFrame({"symbol": "AAPL", "event_timestamp": clock.availability_times(pd.DatetimeIndex(days), 15)})
    alpha, truth_sdk = connect(late.home), connect(ontime.home)
    before = alpha.history(frame, feats, as_of=KNOWN_LATE - pd.Timedelta(minutes=1)).set_index(pd.Index(days))
    after = alpha.history(frame, feats, as_of=KNOWN_LATE + pd.Timedelta(days=2)).set_index(pd.Index(days))
    default = alpha.history(frame, feats).set_index(pd.Index(days))
    truth = truth_sdk.history(frame, feats).set_index(pd.Index(days))
    # as of before the split was known: 06-09 is the raw -85 % and sma_20 mixes both scales
    assert before.loc["2014-06-09", "ret_1d"] < -0.8 and before.loc["2014-06-10", "sma_20"] > 500
    # as of after: the adjusted values, the same as a warehouse that knew the split on time
    for d in ("2014-06-09", "2014-06-10"):
        assert after.loc[d, "sma_20"] == pytest.approx(truth.loc[d, "sma_20"], rel=1e-12)
        assert after.loc[d, "ret_1d"] == pytest.approx(truth.loc[d, "ret_1d"], rel=1e-12)
    assert abs(after.loc["2014-06-09", "ret_1d"]) < 0.05
    # by default each row sees what was known at its own time: unadjusted until 06-10, adjusted from 06-11
    assert default.loc["2014-06-09", "ret_1d"] < -0.8 and default.loc["2014-06-10", "sma_20"] > 500
    for d in ("2014-06-11", "2014-06-12"):
        assert default.loc[d, "sma_20"] == pytest.approx(truth.loc[d, "sma_20"], rel=1e-12)
    assert default.loc["2014-06-06", "sma_20"] == pytest.approx(truth.loc["2014-06-06", "sma_20"], rel=1e-10)
