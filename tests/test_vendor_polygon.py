"""The Polygon adapter through the real pipeline, against recorded responses
(tests/fixtures/vendors/polygon, built from the shared data by
make_polygon.py) replayed over HTTP by a local server."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import BadSymbolError
from etl.sources.base import run_ingest
from etl.storage import silver, tables
from etl.storage.bronze import read_fetch_log
from etl.storage.watermarks import open_watermarks
from tests.vendor_server import FIXTURES, ReplayServer, Reply

FIX = FIXTURES / "polygon"
KEY = "test-key"
UTC = "UTC"
DAILY_PAGE1 = "/v2/aggs/ticker/AAPL/range/1/day/2014-05-01/2014-07-31"
DAILY = ("daily", ["AAPL", "SPY"], "2014-05-01", "2014-07-31")
MINUTE = ("minute", ["AAPL"], "2014-06-06", "2014-06-06")
CONTRACTS = ("option_contracts", ["AAPL"], "2014-06-06", "2014-06-06")
CHAIN = ("option_chain", ["AAPL"], "2014-06-09", "2014-06-09")
NEWS = ("news", ["AAPL"], "2014-06-06", "2014-06-08")


def body(name: str) -> dict:
    return json.loads((FIX / name).read_text())


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


@pytest.fixture(scope="module")
def _replay():
    with ReplayServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def server(_replay):
    """The module's server with only the recorded routes and an empty request log
    (one server per module: each shutdown waits for its polling interval)."""
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


def ingest(settings, spec, **kw):
    dataset, symbols, start, end = spec
    return run_ingest(settings, "polygon", dataset, symbols, start, end, **kw)


def lean_raw_closes(symbol: str) -> dict[str, float]:
    """Closes straight from the shared Lean file (deci-cents), 2014-05..07."""
    from tests.conftest import LEAN

    out = {}
    with open(LEAN / "equity_usa_daily" / f"{symbol.lower()}.csv") as fh:
        for row in csv.reader(fh):
            day = pd.Timestamp(row[0][:8])
            if pd.Timestamp("2014-05-01") <= day <= pd.Timestamp("2014-07-31"):
                out[f"{day:%Y-%m-%d}"] = int(row[4]) / 10000
    return out


# ------------------------------------------------------------------ good data

def test_daily_bars_across_the_split_follow_pagination(settings, server):
    summary = ingest(settings, DAILY)
    assert not summary.failed, summary.text()
    assert summary.rows_fetched == 128 and summary.rows_written == 128 and summary.rows_quarantined == 0
    # AAPL came in two pages: the next_url (an api.polygon.io URL) was followed on our server, with its cursor
    assert [p for p, _ in server.requests] == [
        DAILY_PAGE1, "/v2/aggs/ticker/AAPL/range/1/day/1402977600000/2014-07-31", "/v2/aggs/ticker/SPY/range/1/day/2014-05-01/2014-07-31",
    ]
    assert server.requests[1][1] == {"cursor": body("aggs_day_AAPL_p1.json")["next_url"].split("cursor=")[1]}

    bars = silver.read(settings, tables.BARS_DAILY)
    aapl = bars[bars["symbol"] == "AAPL"].set_index("session")
    assert aapl.loc["2014-06-06", "close"] == 645.57
    assert aapl.loc["2014-06-09", "close"] == 93.70  # raw prices: the 7:1 split is visible
    assert aapl.loc["2014-06-06", "volume"] == 12116671.0
    assert aapl.loc["2014-06-06", "event_timestamp"] == ts("2014-06-06 20:15")  # 16:00 New York close + 15 min
    assert aapl.loc["2014-07-03", "event_timestamp"] == ts("2014-07-03 17:15")  # early close 13:00 New York
    assert {f"{d:%Y-%m-%d}": c for d, c in aapl["close"].items()} == lean_raw_closes("AAPL")
    spy = bars[bars["symbol"] == "SPY"].set_index("session")
    assert {f"{d:%Y-%m-%d}": c for d, c in spy["close"].items()} == lean_raw_closes("SPY")  # status DELAYED is accepted
    assert set(bars["source"]) == {"polygon"} and set(bars["ticker"]) == {"AAPL", "SPY"}
    assert str(bars["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_watermark_advances_and_incremental_rerun_fetches_nothing(settings, server):
    first = ingest(settings, DAILY)
    assert not first.failed
    marks = open_watermarks(settings)
    assert marks.get("polygon", "daily", "AAPL") == "2014-07-31"
    assert marks.get("polygon", "daily", "SPY") == "2014-07-31"
    marks.dispose()
    before = tree(settings.silver)
    requests = len(server.requests)

    again = ingest(settings, DAILY, incremental=True)
    assert len(server.requests) == requests  # nothing new fetched
    assert again.rows_written == 0 and again.rows_fetched == 0
    assert all(r.skipped for r in again.results)
    assert tree(settings.silver) == before


def test_the_same_ingest_twice_leaves_silver_byte_identical(settings):
    specs = [DAILY, MINUTE, CONTRACTS, CHAIN, NEWS]
    for spec in specs:
        summary = ingest(settings, spec)
        assert not summary.failed and summary.rows_written > 0, summary.text()
    first = tree(settings.silver)
    for spec in specs:
        summary = ingest(settings, spec)
        assert not summary.failed and summary.rows_written == 0
        assert sum(r.unchanged for r in summary.results) == summary.rows_fetched
    assert tree(settings.silver) == first


def test_minute_bars_end_one_minute_after_start(settings, server):
    summary = ingest(settings, MINUTE)
    assert not summary.failed and summary.rows_written == 60
    bars = silver.read(settings, tables.BARS_MINUTE)
    first = bars.iloc[0]
    # Lean: 14400000 ms after midnight New York (04:00 EDT), 6488000,6491000,6488000,6491000 deci-cents, 300 shares
    assert first["bar_start"] == ts("2014-06-06 08:00")
    assert first["bar_end"] == ts("2014-06-06 08:01")
    assert first["event_timestamp"] == ts("2014-06-06 08:01")
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (648.8, 649.1, 648.8, 649.1, 300.0)
    assert bars["vwap"].isna().all() and bars["trades"].isna().all()  # not sent: missing, never 0
    assert (bars["bar_end"] - bars["bar_start"] == pd.Timedelta(minutes=1)).all()
    marks = open_watermarks(settings)
    assert marks.get("polygon", "minute", "AAPL") == "2014-06-06"
    marks.dispose()


def test_minute_delay_is_configurable(settings, server):
    (settings.home / "config.toml").write_text(
        f'[vendors.polygon]\nbase_url = "{server.url}"\nrate = 100\nminute_delay_seconds = 5\n'
    )
    summary = ingest(load_settings(settings.home), MINUTE)
    assert not summary.failed
    bars = silver.read(settings, tables.BARS_MINUTE)
    assert bars.iloc[0]["event_timestamp"] == ts("2014-06-06 08:01:05")


def test_news_items_count_for_the_right_session(settings, server):
    summary = ingest(settings, NEWS)
    assert not summary.failed and summary.rows_written == 6
    assert server.requests[-1][1]["published_utc.gte"] == "2014-06-06T00:00:00Z"
    assert server.requests[-1][1]["published_utc.lte"] == "2014-06-08T23:59:59Z"
    news = silver.read(settings, tables.NEWS).set_index("item_id")
    session = {k: v.strftime("%Y-%m-%d") for k, v in news["session"].items()}
    assert session == {
        "474895825798430720": "2014-06-06",  # 08:49 New York, before the open
        "474941916971565056": "2014-06-06",  # 11:52, in the session
        "474962112578453504": "2014-06-06",  # 13:12
        "475004273710080000": "2014-06-09",  # 16:00:18, just after the Friday close
        "475026864239427584": "2014-06-09",  # 17:30, after hours
        "475224462095159297": "2014-06-09",  # Saturday
    }
    item = news.loc["474962112578453504"]
    assert item["published_at"] == ts("2014-06-06 17:12:46") == item["event_timestamp"]
    assert item["tickers"] == "SWKS,AAPL" and item["symbol"] == "AAPL" and item["source"] == "polygon"
    assert item["url"] == "https://twitter.com/i/web/status/474962112578453504"
    assert news.loc["474895825798430720", "keywords"] == "stock,stocks,stockaction"
    assert pd.isna(item["keywords"])  # absent: missing, not ""
    assert news.loc["475026864239427584", "tickers"] == "GOOG,GOOGL,FB,AAPL"
    marks = open_watermarks(settings)
    assert marks.get("polygon", "news", "AAPL") == "2014-06-08"  # the whole range is in the past: complete
    marks.dispose()


def test_option_contracts_are_known_at_the_open(settings, server):
    summary = ingest(settings, CONTRACTS)
    assert not summary.failed and summary.rows_written == 40
    assert [q for p, q in server.requests] == [
        {"underlying_ticker": "AAPL", "as_of": "2014-06-06", "limit": "1000"},
        {"cursor": body("contracts_AAPL_20140606_p1.json")["next_url"].split("cursor=")[1]},
    ]
    contracts = silver.read(settings, tables.OPTION_CONTRACTS).set_index("contract")
    row = contracts.loc["AAPL140613P00092860"]
    assert row["expiry"] == pd.Timestamp("2014-06-13") and row["strike"] == 92.86 and row["right"] == "P"
    assert row["style"] == "american" and row["shares_per_contract"] == 100 and row["as_of"] == "2014-06-06"
    assert row["underlying"] == "AAPL"
    assert set(contracts["event_timestamp"]) == {ts("2014-06-06 13:30")}  # 09:30 New York open
    assert (contracts["right"] == "C").sum() == 20


def _lean_universe_row(expiry: str, strike: str, right: str) -> list[str]:
    from tests.conftest import LEAN

    with open(LEAN / "option_usa_universes" / "aapl" / "20140609.csv") as fh:
        return next(r for r in csv.reader(fh) if r[:3] == [expiry, strike, right])


def test_option_chain_rows(settings, server):
    summary = ingest(settings, CHAIN)
    assert not summary.failed and summary.rows_written == 40
    assert len(server.requests) == 2  # two pages
    quotes = silver.read(settings, tables.OPTION_QUOTES).set_index("contract")
    row = quotes.loc["AAPL140613C00092860"]
    lean = _lean_universe_row("20140613", "92.86", "C")
    assert [row[c] for c in ("open", "high", "low", "close", "volume", "open_interest")] == [float(v) for v in lean[3:9]]
    assert (row["bid"], row["ask"]) == (1.33, 1.34)  # the closing quote, option_usa_daily
    assert row["date"] == pd.Timestamp("2014-06-09") and row["expiry"] == pd.Timestamp("2014-06-13")
    assert (row["underlying"], row["strike"], row["right"], row["source"]) == ("AAPL", 92.86, "C", "polygon")
    assert row["event_timestamp"] == ts("2014-06-09 20:00")  # last_quote.last_updated, 16:00 New York
    assert pd.isna(row["implied_volatility"])  # Lean's 0 was left out: missing, not 0
    iv = quotes.loc["AAPL140613C00073570"]
    assert iv["implied_volatility"] == 1.6111725 and iv["delta"] == 0.9540593 and iv["theta"] == -0.1344936
    assert pd.isna(quotes.loc["AAPL140613P00101430", "open_interest"])
    assert quotes["rho"].isna().all() and quotes["underlying_close"].isna().all()
    assert set(quotes["event_timestamp"]) == {ts("2014-06-09 20:00")}


def test_a_day_bar_is_never_known_before_the_close(settings, server):
    """day.last_updated is the bar's start (midnight New York); without a quote
    time the row is known at the session close, not at midnight."""
    page = body("snapshot_AAPL_p2.json")
    del page["results"][0]["last_quote"]
    server.add("/v3/snapshot/options/AAPL", Reply(200, json.dumps(page).encode()), {"cursor": _cursor("snapshot_AAPL_p1.json")})
    summary = ingest(settings, CHAIN)
    assert not summary.failed
    quotes = silver.read(settings, tables.OPTION_QUOTES).set_index("contract")
    ticker = page["results"][0]["details"]["ticker"].removeprefix("O:")
    assert page["results"][0]["day"]["last_updated"] == 1402286400000000000  # 2014-06-09 04:00 UTC
    assert quotes.loc[ticker, "event_timestamp"] == ts("2014-06-09 20:00")
    assert pd.isna(quotes.loc[ticker, "bid"])


def _cursor(name: str) -> str:
    return body(name)["next_url"].split("cursor=")[1]


# ------------------------------------------------------------------- bad data

def _only_page(results: list) -> bytes:
    page = body("aggs_day_AAPL_p1.json")
    page.pop("next_url")
    page["results"] = results
    return json.dumps(page).encode()


def test_bad_rows_are_quarantined_with_reasons(settings, server):
    results = body("aggs_day_AAPL_p1.json")["results"]
    results[0]["c"] = "abc"
    results[1]["c"] = None
    del results[2]["c"]
    results[3]["h"] = results[3]["l"] - 1
    results[4]["o"] = -1
    saturday = results[5] | {"t": results[5]["t"] - 86_400_000 * (pd.Timestamp(results[5]["t"], unit="ms").dayofweek + 2)}
    results.append(saturday)
    results.append(dict(results[10]))  # the same session twice
    results.append(results[11] | {"t": results[11]["t"] + 4 * 3_600_000})  # 04:00 New York is not a daily bar
    server.add(DAILY_PAGE1, Reply(200, _only_page(results)))
    summary = ingest(settings, ("daily", ["AAPL"], "2014-05-01", "2014-07-31"))
    assert not summary.failed, summary.text()
    assert summary.rows_fetched == 35 and summary.rows_quarantined == 9

    bad = silver.read_quarantine(settings, "bars_daily").sort_values("source_row").set_index("source_row")
    s0 = pd.Timestamp(results[10]["t"], unit="ms", tz=UTC).tz_convert("America/New_York")
    assert bad["reason"].to_dict() == {
        0: "c is not a number: 'abc'",
        1: "c is null",
        2: "missing field 'c'",
        3: f"inconsistent bar: need low <= open, close <= high (o={results[3]['o']:g} h={results[3]['h']:g} l={results[3]['l']:g} c={results[3]['c']:g})",
        4: "o must be > 0, got -1",
        10: f"session {s0:%Y-%m-%d} appears more than once in the answer; every copy is quarantined",
        32: f"{pd.Timestamp(saturday['t'], unit='ms', tz=UTC).tz_convert('America/New_York'):%Y-%m-%d} is not an XNYS session",
        33: f"session {s0:%Y-%m-%d} appears more than once in the answer; every copy is quarantined",
        34: f"t = {results[34]['t']} is {pd.Timestamp(results[34]['t'], unit='ms', tz=UTC).tz_convert('America/New_York'):%Y-%m-%d %H:%M} New York, not midnight: not the start of a daily bar",
    }
    assert json.loads(bad.loc[0, "raw"])["c"] == "abc"
    assert set(bad["symbol"]) == {"AAPL"} and set(bad["source"]) == {"polygon"}
    assert bad.loc[0, "source_file"].endswith(f"{DAILY_PAGE1}?adjusted=false&sort=asc&limit=50000&apiKey=***")
    stored = silver.read(settings, tables.BARS_DAILY)
    assert len(stored) == 32 - 6 and stored["close"].gt(0).all()  # 32 elements of page 1, 6 of them bad


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, (FIX / "aggs_day_AAPL_p1.json").read_bytes()[:1500]), "not valid JSON"),
        (Reply(200, b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "text/html"), "with an HTML page, not JSON"),
        (Reply(200, b'{"status": "ERROR", "error": "Maximum calls exceeded"}'), "answered status 'ERROR'"),
        (Reply(200, b'{"status": "OK", "resultsCount": 3, "request_id": "x"}'), "has no results list"),
        (Reply(200, b'{"status": "OK", "results": {"t": 1}}'), "expected a list"),
        (Reply(200, b'[{"t": 1}]'), "not the documented object"),
    ],
    ids=["truncated", "html", "status-error", "no-results", "results-not-list", "not-object"],
)
def test_bad_payload_fails_the_job_clearly_and_keeps_silver_valid(settings, server, reply, message):
    server.add(DAILY_PAGE1, reply)
    summary = ingest(settings, DAILY)
    [failed] = summary.failed
    assert failed.job.symbol == "AAPL"
    assert message in failed.error and DAILY_PAGE1 in failed.error and "apiKey=***" in failed.error
    assert KEY not in summary.text()
    # the body is in bronze as received; nothing of it reached silver; the other job landed
    log = read_fetch_log(settings, "polygon")
    landed = log[log["url"].str.contains(DAILY_PAGE1, regex=False)]
    assert (settings.home / landed.iloc[0]["object"]).read_bytes() == reply.body
    bars = silver.read(settings, tables.BARS_DAILY)
    assert set(bars["symbol"]) == {"SPY"} and len(bars) == 64
    marks = open_watermarks(settings)
    assert marks.get("polygon", "daily", "AAPL") is None
    marks.dispose()


def test_no_results_with_zero_count_is_no_data(settings, server):
    server.add(DAILY_PAGE1, Reply(200, b'{"ticker": "AAPL", "status": "OK", "queryCount": 0, "resultsCount": 0, "adjusted": false}'))
    summary = ingest(settings, ("daily", ["AAPL"], "2014-05-01", "2014-07-31"))
    assert not summary.failed and summary.rows_fetched == 0 and summary.rows_written == 0
    marks = open_watermarks(settings)
    assert marks.get("polygon", "daily", "AAPL") is None  # no data: the watermark does not move
    marks.dispose()


def test_bad_chain_and_news_elements_are_quarantined(settings, server):
    chain = body("snapshot_AAPL_p1.json")
    chain["results"][0]["details"]["strike_price"] = "abc"
    chain["results"][1].pop("last_quote")
    chain["results"][1]["day"] = {}
    chain["results"][2]["details"]["contract_type"] = "other"
    server.add("/v3/snapshot/options/AAPL", Reply(200, json.dumps(chain).encode()), {"limit": "250"})
    news = body("news_AAPL_20140606.json")
    news["results"][0]["published_utc"] = "2014-06-06 12:49:22"
    news["results"][1]["tickers"] = "AAPL"
    server.add("/v2/reference/news", Reply(200, json.dumps(news).encode()))
    assert not ingest(settings, CHAIN).failed
    assert not ingest(settings, NEWS).failed
    q = silver.read_quarantine(settings)
    reasons = dict(zip(zip(q["table"], q["source_row"], strict=True), q["reason"], strict=True))
    assert reasons == {
        ("option_quotes", 0): "details.strike_price is not a number: 'abc'",
        ("option_quotes", 1): "no last_quote.last_updated or day.last_updated: cannot tell when this quote was known",
        ("option_quotes", 2): "details.contract_type 'other' is neither call nor put",
        ("news_items", 0): "published_utc has no time zone: '2014-06-06 12:49:22'",
        ("news_items", 1): "tickers is not a list of strings: 'AAPL'",
    }
    assert len(silver.read(settings, tables.OPTION_QUOTES)) == 37
    assert len(silver.read(settings, tables.NEWS)) == 4


def test_path_symbol_is_refused_before_any_request(settings, server):
    with pytest.raises(BadSymbolError, match=r"\.\./\.\./etc"):
        ingest(settings, ("daily", ["../../etc"], "2014-05-01", "2014-07-31"))
    assert server.requests == []
    assert not settings.silver.exists() or not any(settings.silver.rglob("*.parquet"))


def test_wrong_key_is_refused_once_and_never_shown(settings, server, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "wrong-key-123")
    summary = ingest(settings, ("daily", ["AAPL"], "2014-05-01", "2014-07-31"))
    [failed] = summary.failed
    assert "refused (HTTP 401)" in failed.error and "not retried" in failed.error
    assert len(server.requests) == 1  # a bad key is not retried
    assert "wrong-key-123" not in summary.text()
    assert not settings.bronze.exists() or not any(settings.bronze.rglob("*"))  # nothing to land: not a 2xx


def test_unknown_resource_is_a_404_not_retried(settings, server):
    summary = ingest(settings, ("daily", ["MSFT"], "2014-05-01", "2014-07-31"))
    [failed] = summary.failed
    assert "does not exist (HTTP 404)" in failed.error
    assert len(server.requests) == 1


def test_the_key_is_never_stored(settings, server):
    for spec in (DAILY, MINUTE, CONTRACTS, CHAIN, NEWS):
        summary = ingest(settings, spec)
        assert KEY not in summary.text()
    server.add(DAILY_PAGE1, Reply(200, b"{truncated"))
    assert KEY not in ingest(settings, DAILY).text()
    files = [p for p in settings.home.rglob("*") if p.is_file()]
    assert any("bronze" in p.parts for p in files)
    assert [p for p in files if KEY.encode() in p.read_bytes()] == []
    log = read_fetch_log(settings, "polygon")
    assert log["url"].str.contains("apiKey=***", regex=False).all()
    assert (log["params"].map(lambda p: p.get("apiKey")) == "***").all()
