"""Revisions end to end: a restated bar reaches the features, and a backtest
sees it only from when it was known (bitemporal by default)."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.jobs import compute_factors
from etl.serving import feast_store
from etl.sources.archive import ingest_csv_folder
from sdk import NaiveTimestampError, connect

ROWS = [
    ("2014-05-27", 10.0), ("2014-05-28", 10.2), ("2014-05-29", 10.1), ("2014-05-30", 10.4),
    ("2014-06-02", 10.6), ("2014-06-03", 10.5), ("2014-06-04", 10.8), ("2014-06-05", 10.7),
    ("2014-06-06", 11.0), ("2014-06-09", 11.2), ("2014-06-10", 11.1),
]
T1, T2 = pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2020-02-01", tz="UTC")
AVAIL_0606 = pd.Timestamp("2014-06-06 20:15", tz="UTC")
AVAIL_0609 = pd.Timestamp("2014-06-09 20:15", tz="UTC")


def _csv(closes: dict[str, float]) -> str:
    lines = ["date,open,high,low,close,volume"]
    for day, _ in ROWS:
        c = closes[day]
        lines.append(f"{day},{c},{c + 0.5},{c - 0.5},{c},1000")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def revised(tmp_path_factory):
    root = tmp_path_factory.mktemp("rev")
    settings = load_settings(root / "home")
    folder = root / "csv"
    folder.mkdir()
    closes = dict(ROWS)
    (folder / "ACME.csv").write_text(_csv(closes))
    ingest_csv_folder(settings, folder, now=T1)
    closes["2014-06-06"] = 12.0  # the vendor restates the 06-06 close a month later
    (folder / "ACME.csv").write_text(_csv(closes))
    report = ingest_csv_folder(settings, folder, now=T2)
    assert report.revised == 1
    gold = compute_factors(settings)
    feast_store.apply(settings)
    return connect(settings.home), gold


def q(*times):
    return pd.DataFrame({"symbol": ["ACME"] * len(times), "event_timestamp": list(times)})


def test_revision_reaches_the_features_as_new_rows(revised):
    client, gold = revised
    # the restated close changes the factors of 06-06 itself (ret_1d, ret_5d) and of 06-09,
    # whose 1-session return looks back at it; longer windows are still in warm-up (NaN)
    tech = pd.read_parquet(client.settings.gold / "technicals")
    assert (tech["known_timestamp"] == T2).sum() == 2
    assert gold["views"]["technicals"]["rows"] == len(ROWS) + 2


def test_backtest_sees_the_original_until_the_revision_was_known(revised):
    client, _ = revised
    got = client.history(q(AVAIL_0606, AVAIL_0609, T2 - pd.Timedelta(seconds=1), T2), ["bars_daily:close", "bars_daily:session_date", "technicals:ret_1d"])
    # in 2014 nobody knew the restatement
    assert got["close"].iloc[0] == 11.0
    assert got["ret_1d"].iloc[1] == pytest.approx(11.2 / 11.0 - 1)
    # the last two rows ask in 2020: outside the 10-day TTL of any 2014 bar
    assert got["session_date"].iloc[2:].isna().all()


def test_as_of_shows_what_was_known_at_a_later_time(revised):
    client, _ = revised
    f = ["bars_daily:close", "technicals:ret_1d"]
    before = client.history(q(AVAIL_0606, AVAIL_0609), f, as_of=T2 - pd.Timedelta(seconds=1))
    after = client.history(q(AVAIL_0606, AVAIL_0609), f, as_of=T2)
    assert before["close"].tolist() == [11.0, 11.2]
    assert after["close"].tolist() == [12.0, 11.2]
    assert after["ret_1d"].iloc[1] == pytest.approx(11.2 / 12.0 - 1)
    with pytest.raises(NaiveTimestampError):
        client.history(q(AVAIL_0606), f, as_of=pd.Timestamp("2020-01-01"))


def test_plain_semantics_opt_out_sees_the_latest_version(revised):
    client, _ = revised
    got = client.history(q(AVAIL_0606), ["bars_daily:close"], bitemporal=False)
    assert got["close"].iloc[0] == 12.0


def test_revision_reaches_the_ta_grid_and_the_lag_twin_only_from_when_it_was_known(revised):
    """The family path (etl.family_gold.with_revisions) and the _lag1 twins carry the
    restatement as new rows too: the grid's 5-session SMA of 06-06 and 06-09 (whose
    windows hold the restated close) and the next session's lagged close."""
    client, _ = revised
    f = ["ta_overlap:ta_sma_5", "bars_daily_lag1:close_lag1"]
    before = client.history(q(AVAIL_0606, AVAIL_0609), f, as_of=T2 - pd.Timedelta(seconds=1))
    after = client.history(q(AVAIL_0606, AVAIL_0609), f, as_of=T2)
    closes = dict(ROWS)
    window = ["2014-06-02", "2014-06-03", "2014-06-04", "2014-06-05", "2014-06-06"]
    sma = sum(closes[d] for d in window) / 5
    assert before["ta_sma_5"].iloc[0] == pytest.approx(sma, rel=1e-6)   # float32 storage
    assert after["ta_sma_5"].iloc[0] == pytest.approx(sma + (12.0 - 11.0) / 5, rel=1e-6)
    assert after["ta_sma_5"].iloc[1] - before["ta_sma_5"].iloc[1] == pytest.approx((12.0 - 11.0) / 5, rel=1e-5)
    assert before["close_lag1"].tolist() == [10.7, 11.0]
    assert after["close_lag1"].tolist() == [10.7, 12.0]
