"""Polygon splits and dividends (etl/sources/vendors/polygon_actions.py) through the real
pipeline, against the recorded responses of tests/fixtures/vendors/polygon (make_polygon.py:
AAPL's and TSLA's real splits, AAPL's real dividends 2012-2015) replayed over local HTTP.

The proof that matters: AAPL's technicals built from Polygon's raw daily bars and Polygon's
splits and dividends equal those built from Lean's daily bars and factor files, session by
session, across the dividends of 2014-02-06 and 2014-05-08 and the 7:1 split of 2014-06-09."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.core.errors import ConfigError
from etl.gold.builder import build
from etl.sources.base import run_ingest
from etl.storage import silver
from etl.storage.actions import actions_path, read_all_versions, resolve
from etl.storage.watermarks import open_watermarks
from tests.vendor_server import FIXTURES, ReplayServer, Reply

FIX = FIXTURES / "polygon"
KEY = "test-key"
REPO = Path(__file__).resolve().parents[1]
ALPHA = str(Path(sys.executable).with_name("alpha"))
SPLITS = "/v3/reference/splits"
DIVIDENDS = "/v3/reference/dividends"
START, END = "2000-01-01", "2014-07-31"


def body(name: str) -> dict:
    return json.loads((FIX / name).read_text())


def query(dataset: str, ticker: str = "AAPL") -> dict:
    field = {"splits": "execution_date", "dividends": "ex_dividend_date"}[dataset]
    return {"ticker": ticker, f"{field}.gte": START, "order": "asc", "sort": field, "limit": "1000"}


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


@pytest.fixture(scope="module")
def _replay():
    with ReplayServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def server(_replay):
    _replay.reset()
    _replay.add_fixtures("polygon")
    return _replay


@pytest.fixture
def settings(tmp_path, server, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    for var in ("ALPHA_POLYGON_BASE_URL", "ALPHA_POLYGON_RATE"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[vendors.polygon]\nbase_url = "{server.url}"\nrate = 100\nbackoff = 0.01\n')
    return load_settings(home)


def ingest(settings, dataset: str, symbols=("AAPL",), start: str = START, end: str = END, **kw):
    summary = run_ingest(settings, "polygon", dataset, list(symbols), start, end, **kw)
    assert not summary.failed, summary.text()
    return summary


def polygon_actions(settings) -> pd.DataFrame:
    acts = read_all_versions(settings)
    return acts[acts["source"] == "polygon"].reset_index(drop=True)


def latest(settings) -> pd.DataFrame:
    return resolve(polygon_actions(settings)).set_index(["symbol", "ex_date"])


# ------------------------------------------------------------------ good data


def test_splits_and_dividends_land_with_their_known_times_and_bronze_payloads(settings, server):
    ingest(settings, "splits", ("AAPL", "TSLA"))
    ingest(settings, "dividends", ("AAPL", "TSLA"))
    # AAPL's splits came in two pages joined by next_url, followed on our server
    assert server.requests[:2] == [(SPLITS, query("splits")), (SPLITS, {"cursor": body("splits_AAPL_p1.json")["next_url"].split("cursor=")[1]})]

    acts = polygon_actions(settings)
    splits = acts[acts["split_ratio"] != 1.0]
    assert sorted(zip(splits["symbol"], splits["ex_date"].dt.strftime("%Y-%m-%d"), splits["split_ratio"], strict=True)) == [
        ("AAPL", "2000-06-21", 2.0), ("AAPL", "2005-02-28", 2.0), ("AAPL", "2014-06-09", 7.0), ("AAPL", "2020-08-31", 4.0),
        ("TSLA", "2020-08-31", 5.0), ("TSLA", "2022-08-25", 3.0),
    ]
    assert (splits["cash_dividend"] == 0.0).all()
    # no announcement time from Polygon: known at the ex-date's open (no bar of it was held)
    opens = clock.session_opens(pd.DatetimeIndex(splits["ex_date"]), settings.calendar)
    assert (splits["known_timestamp"].to_numpy() == opens.to_numpy()).all()
    by_day = splits[splits["symbol"] == "AAPL"].set_index("ex_date")
    assert by_day.loc[day("2014-06-09"), "known_timestamp"] == pd.Timestamp("2014-06-09 13:30", tz="UTC")

    divs = acts[acts["cash_dividend"] > 0].set_index("ex_date")
    recorded = {r["ex_dividend_date"]: r for r in body("dividends_AAPL.json")["results"]}
    assert set(divs["symbol"]) == {"AAPL"} and set(divs.index.strftime("%Y-%m-%d")) == set(recorded)
    assert {f"{d:%Y-%m-%d}": c for d, c in divs["cash_dividend"].items()} == {k: r["cash_amount"] for k, r in recorded.items()}
    assert (divs["split_ratio"] == 1.0).all()
    # known at the end of the declaration day in New York: the midnight after it, EDT or EST
    assert recorded["2014-08-07"]["declaration_date"] == "2014-07-22"
    assert divs.loc[day("2014-08-07"), "known_timestamp"] == pd.Timestamp("2014-07-23 04:00", tz="UTC")
    assert recorded["2013-02-07"]["declaration_date"] == "2013-01-23"
    assert divs.loc[day("2013-02-07"), "known_timestamp"] == pd.Timestamp("2013-01-24 05:00", tz="UTC")
    declared = pd.to_datetime([recorded[f"{d:%Y-%m-%d}"]["declaration_date"] for d in divs.index]) + pd.Timedelta(days=1)
    assert (divs["known_timestamp"].to_numpy() == declared.tz_localize("America/New_York").tz_convert("UTC").to_numpy()).all()

    # every row names the bronze object it came from, which exists and hashes to its name
    for payload in acts["payload"]:
        obj = settings.bronze / "polygon" / "objects" / payload[:2] / payload
        assert hashlib.sha256(obj.read_bytes()).hexdigest() == payload
    # ...the page that listed it
    page = {f: hashlib.sha256((FIX / f).read_bytes()).hexdigest() for f in ("splits_AAPL_p1.json", "splits_AAPL_p2.json")}
    assert by_day["payload"].map({v: k for k, v in page.items()}).tolist() == ["splits_AAPL_p1.json"] * 2 + ["splits_AAPL_p2.json"] * 2
    assert set(divs["payload"]) == {hashlib.sha256((FIX / "dividends_AAPL.json").read_bytes()).hexdigest()}

    # TSLA pays no dividend: an empty answer is no data, and the range is still covered
    marks = open_watermarks(settings)
    assert {marks.get("polygon", d, s) for d in ("splits", "dividends") for s in ("AAPL", "TSLA")} == {END}
    marks.dispose()


def test_a_second_ingest_stores_nothing_and_a_corrected_amount_is_a_new_version(settings, server):
    ingest(settings, "dividends")
    stored = actions_path(settings).read_bytes()
    again = ingest(settings, "dividends")
    assert again.rows_written == 0 and sum(r.unchanged for r in again.results) == again.rows_fetched == 14
    assert actions_path(settings).read_bytes() == stored

    # the features of the daily bars are published before the correction arrives: it is known from when it was received
    ingest(settings, "daily", start="2014-01-02")
    build(settings, families=["bars"])
    corrected = body("dividends_AAPL.json")
    [row] = [r for r in corrected["results"] if r["ex_dividend_date"] == "2014-05-08"]
    row["cash_amount"] = 3.3
    server.add(DIVIDENDS, Reply(200, json.dumps(corrected).encode()), query("dividends"))
    fixed = ingest(settings, "dividends")
    assert fixed.rows_written == 1 and sum(r.revised for r in fixed.results) == 1
    acts = polygon_actions(settings)
    versions = acts[acts["ex_date"] == day("2014-05-08")].sort_values("created_timestamp")
    assert versions["cash_dividend"].tolist() == [3.29, 3.3]         # the first version is kept, not overwritten
    first, second = versions.iloc[0], versions.iloc[1]
    assert first["known_timestamp"] == pd.Timestamp("2014-04-24 04:00", tz="UTC")
    assert second["known_timestamp"] == second["created_timestamp"] > first["created_timestamp"]
    assert len(polygon_actions(settings)) == 15
    as_then = resolve(polygon_actions(settings), known_before=second["known_timestamp"]).set_index("ex_date")
    assert as_then.loc[day("2014-05-08"), "cash_dividend"] == 3.29
    assert latest(settings).loc[("AAPL", day("2014-05-08")), "cash_dividend"] == 3.3


def test_incremental_rerun_asks_nothing_once_the_watermark_covers_the_range(settings, server):
    ingest(settings, "splits")
    n = len(server.requests)
    again = ingest(settings, "splits", incremental=True)
    assert all(r.skipped for r in again.results) and len(server.requests) == n


def test_a_split_and_a_dividend_on_one_ex_date_keep_each_other(settings, server):
    """Both are one row of the writer: the second dataset carries the first one's value over."""
    one = {"cash_amount": 0.47, "currency": "USD", "declaration_date": "2014-05-20", "dividend_type": "CD",
           "ex_dividend_date": "2014-06-09", "frequency": 4, "ticker": "AAPL"}
    server.add(DIVIDENDS, Reply(200, json.dumps({"results": [one], "status": "OK", "request_id": "x"}).encode()), query("dividends"))
    ingest(settings, "splits")
    ingest(settings, "dividends")
    row = latest(settings).loc[("AAPL", day("2014-06-09"))]
    assert (row["split_ratio"], row["cash_dividend"]) == (7.0, 0.47)
    # known no earlier than the split it carries (the ex-date's open), not at the declaration
    assert row["known_timestamp"] == pd.Timestamp("2014-06-09 13:30", tz="UTC")
    stored = actions_path(settings).read_bytes()
    for dataset in ("splits", "dividends"):
        assert ingest(settings, dataset).rows_written == 0
    assert actions_path(settings).read_bytes() == stored


# ------------------------------------------------------------------- bad data


def test_malformed_actions_are_quarantined_with_reasons_and_the_others_stored(settings, server):
    page1 = body("splits_AAPL_p1.json")
    page1["results"][0]["split_from"] = 0
    page1["results"].append({"execution_date": "2014-06-07", "split_from": 1, "split_to": 2, "ticker": "AAPL"})  # a Saturday
    page1["results"].append({"execution_date": "2014-06-10", "split_from": 3, "split_to": 3, "ticker": "AAPL"})
    server.add(SPLITS, Reply(200, json.dumps(page1).encode()), query("splits"))
    divs = body("dividends_AAPL.json")
    r = divs["results"]
    del r[0]["ex_dividend_date"]
    r[1]["currency"] = "EUR"
    r[2]["ex_dividend_date"] = "2013-02-09"                     # a Saturday
    r[3]["cash_amount"] = 0
    r[4]["ticker"] = "MSFT"
    r[5]["declaration_date"] = "2013-11-20"                     # after its ex-date, 2013-11-06
    r[8]["pay_date"] = "14 Aug 2014"
    del r[9]["declaration_date"]                                # stored, known at the ex-date's open
    del r[10]["currency"]                                       # optional: USD
    r.append(r[6] | {"cash_amount": 3.06})                      # 2014-02-06 twice, different amounts: both out
    r.append(dict(r[7]))                                        # 2014-05-08 twice, the same: one action
    server.add(DIVIDENDS, Reply(200, json.dumps(divs).encode()), query("dividends"))

    s = ingest(settings, "splits")
    d = ingest(settings, "dividends")
    assert (s.rows_fetched, s.rows_quarantined, s.rows_written) == (6, 3, 3)
    assert (d.rows_fetched, d.rows_quarantined, d.rows_written) == (16, 9, 6)

    q = silver.read_quarantine(settings, "corporate_actions")
    kind = q["source_file"].str.contains(SPLITS, regex=False).map({True: "splits", False: "dividends"})
    assert dict(zip(zip(kind, q["source_row"], strict=True), q["reason"], strict=True)) == {
        ("splits", 0): "split_from must be > 0, got 0",
        ("splits", 2): "2014-06-07: ex_date is not a XNYS session",
        ("splits", 3): "2014-06-10: neither a split (split_ratio 1) nor a dividend (cash_dividend 0)",
        ("dividends", 0): "missing field 'ex_dividend_date'",
        ("dividends", 1): "currency 'EUR' is not USD: the amount cannot be applied to USD prices",
        ("dividends", 2): "2013-02-09: ex_date is not a XNYS session",
        ("dividends", 3): "cash_amount must be > 0, got 0",
        ("dividends", 4): "ticker 'MSFT' is not the requested 'AAPL'",
        ("dividends", 5): "declaration_date 2013-11-20 is after ex_dividend_date 2013-11-06",
        ("dividends", 6): "2014-02-06 appears more than once with different cash_dividend (3.05, 3.06); every copy is quarantined",
        ("dividends", 8): "pay_date is not a YYYY-MM-DD date: '14 Aug 2014'",
        ("dividends", 14): "2014-02-06 appears more than once with different cash_dividend (3.05, 3.06); every copy is quarantined",
    }
    assert json.loads(q.loc[q["source_row"].eq(1) & kind.eq("dividends"), "raw"].iloc[0])["currency"] == "EUR"
    assert q["source_file"].str.endswith("apiKey=***").all() and set(q["symbol"]) == {"AAPL"}

    acts = latest(settings).loc["AAPL"]
    assert [f"{d:%Y-%m-%d}" for d in acts.index[acts["split_ratio"] != 1]] == ["2005-02-28", "2014-06-09", "2020-08-31"]
    paid = acts[acts["cash_dividend"] > 0]
    assert [f"{d:%Y-%m-%d}" for d in paid.index] == [x["ex_dividend_date"] for x in r[7:14] if x is not r[8]]
    assert paid.loc[day("2014-11-06"), "known_timestamp"] == pd.Timestamp("2014-11-06 14:30", tz="UTC")   # no declaration_date


# ------------------------------------------------------------------- the nightly


def _config(tmp_path, table: str) -> Path:
    home = tmp_path / "cfg"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text('universe = ["AAPL", "SPY"]\n\n[[ingest]]\n' + table)
    return home


def test_a_polygon_daily_table_brings_its_splits_and_dividends_unless_told_not_to(tmp_path):
    settings = load_settings(_config(tmp_path, 'source = "polygon"\ndataset = "daily"\nstart = "2014-05-01"\n'))
    [spec] = settings.ingest
    pulls = spec.pulls()
    assert [p.dataset for p in pulls] == ["splits", "dividends", "daily"]       # the actions before the bars
    assert {(p.source, p.symbols, p.start) for p in pulls} == {("polygon", ("AAPL", "SPY"), "2014-05-01")}

    off = load_settings(_config(tmp_path, 'source = "polygon"\ndataset = "daily"\nactions = false\n'))
    assert [p.dataset for p in off.ingest[0].pulls()] == ["daily"]
    news = load_settings(_config(tmp_path, 'source = "polygon"\ndataset = "news"\n'))
    assert [p.dataset for p in news.ingest[0].pulls()] == ["news"]
    with pytest.raises(ConfigError, match=r"actions applies only to polygon\.daily .*not to polygon\.news"):
        load_settings(_config(tmp_path, 'source = "polygon"\ndataset = "news"\nactions = false\n'))
    with pytest.raises(ConfigError, match="actions must be true or false"):
        load_settings(_config(tmp_path, 'source = "polygon"\ndataset = "daily"\nactions = "no"\n'))


@pytest.mark.integration
def test_the_nightly_pulls_the_actions_first_and_the_technicals_are_adjusted(tmp_path):
    """``alpha nightly`` on a home whose only [[ingest]] is polygon daily bars: the splits and
    dividends come along, stored before the bars (so known from their stated times), and the
    technicals across the 2014-05-08 dividend and the 2014-06-09 split are the adjusted ones."""
    from etl.gold.layout import gold_path
    from etl.storage.bars import read_silver_bars
    from tests.polygon_daily import API_KEY, PolygonDaily, sessions

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[[ingest]]\nsource = "polygon"\ndataset = "daily"\nsymbols = ["AAPL"]\nstart = "2000-01-01"\n')
    with PolygonDaily() as poly:                 # daily aggregates for any range, cut from the recording
        poly.server.add_fixtures("polygon")      # and the recorded splits and dividends
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_", "POLYGON_"))}
        env.update({"ALPHA_HOME": str(home), "ALPHA_POLYGON_BASE_URL": poly.url, "POLYGON_API_KEY": API_KEY})
        out = subprocess.run([ALPHA, "nightly", "--session", "2014-07-29"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((home / "reports" / "nightly" / "2014-07-29.json").read_text())
    assert report["failures"] == []
    n_bars = sum(1 for d in sessions("AAPL") if d <= "2014-07-29")
    assert [(r["dataset"], r["rows_written"]) for r in report["ingest"]] == [("daily", n_bars), ("splits", 4), ("dividends", 14)]
    settings = load_settings(home)
    acts = latest(settings).loc["AAPL"]
    assert acts.loc[day("2014-06-09"), "known_timestamp"] == pd.Timestamp("2014-06-09 13:30", tz="UTC")   # not late
    bars = read_silver_bars(settings).set_index("session")["close"]
    tech = pd.read_parquet(gold_path(settings, "technicals"))
    tech = tech.sort_values("known_timestamp").drop_duplicates("event_timestamp", keep="last")
    ret = dict(zip(tech["event_timestamp"].dt.strftime("%Y-%m-%d"), tech["ret_1d"], strict=True))
    assert ret["2014-06-09"] == pytest.approx(7 * bars["2014-06-09"] / bars["2014-06-06"] - 1, rel=1e-12)
    assert ret["2014-05-08"] == pytest.approx(bars["2014-05-08"] / (bars["2014-05-07"] - 3.29) - 1, rel=1e-12)


# ------------------------------------------------------------------- the CLI


@pytest.mark.integration
def test_alpha_ingest_polygon_lists_and_runs_the_action_datasets(tmp_path, server):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API", "POLYGON_"))}
    env.update({"ALPHA_HOME": str(tmp_path / "home"), "ALPHA_POLYGON_BASE_URL": server.url, "POLYGON_API_KEY": KEY})

    def alpha(*args):
        return subprocess.run([ALPHA, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    helped = alpha("ingest", "--help")
    assert helped.returncode == 0   # rich wraps the help to the terminal: compare the words
    assert "polygon daily, minute, option_contracts, option_chain, news, splits, dividends" in " ".join(helped.stdout.split())
    for dataset, n in (("splits", 4), ("dividends", 14)):
        out = alpha("ingest", "polygon", "AAPL", "--dataset", dataset, "--start", START, "--end", END)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"polygon.{dataset}: 1/1 jobs ok; rows fetched {n}, written {n}, unchanged 0, quarantined 0" in out.stdout
    assert len(polygon_actions(load_settings(tmp_path / "home"))) == 18


# ------------------------------------------------------------------- the proof


@pytest.mark.integration
def test_polygon_technicals_equal_the_lean_ones_across_dividends_and_the_split(tmp_path, server, settings, lean_root):
    """AAPL 2014-01-02..2014-07-31 from Polygon (raw daily bars, splits, dividends) against the
    shipped Lean bars and factor files. Lean's factor files hold 7 significant digits (the 7:1
    split is 0.25 / 0.0357143 = 6.9999972 there), so the values agree to about 1e-6 relative:
    measured, the largest difference is 4.0e-7 for 1 + ret_1d and 3.8e-7 for sma_20, both at
    2014-06-09. ``ret_1d`` is compared as the gross return 1 + r (its relative precision)."""
    from etl.gold.builder import build
    from etl.gold.layout import gold_path
    from etl.sources.archive import ingest_lean

    def technicals(s) -> pd.DataFrame:
        t = pd.read_parquet(gold_path(s, "technicals"))
        t = t[t["symbol"] == "AAPL"].sort_values(["event_timestamp", "known_timestamp"]).drop_duplicates("event_timestamp", keep="last")
        return t.set_index("event_timestamp")[["ret_1d", "sma_20"]]

    ingest(settings, "splits")
    ingest(settings, "dividends")
    ingest(settings, "daily", start="2014-01-02")
    build(settings)
    (tmp_path / "lean").mkdir()
    lean = load_settings(tmp_path / "lean")
    ingest_lean(lean, lean_root, ["AAPL"])
    build(lean)

    poly, ref = technicals(settings), technicals(lean)
    assert len(poly) == 146 and poly.index.isin(ref.index).all()
    both = poly.join(ref, lsuffix="_polygon", rsuffix="_lean")
    sessions = both.index.tz_convert("America/New_York").strftime("%Y-%m-%d")
    for col, gross in (("ret_1d", 1.0), ("sma_20", 0.0)):
        have = both[[f"{col}_polygon", f"{col}_lean"]].notna().all(axis=1).to_numpy()
        # where one has a value, so does the other: the same warm-up from the first Polygon bar on
        assert (both[f"{col}_polygon"].notna().to_numpy() == have).all()
        days = set(sessions[have])
        assert {"2014-02-06", "2014-05-08", "2014-06-06", "2014-06-09", "2014-06-10", "2014-06-11"} <= days
        np.testing.assert_allclose(both.loc[have, f"{col}_polygon"] + gross, both.loc[have, f"{col}_lean"] + gross, rtol=1e-6, atol=0)
    # not vacuous: unadjusted, 2014-06-09 would read a -85% day
    assert abs(both.loc[sessions == "2014-06-09", "ret_1d_polygon"].iloc[0]) < 0.05
