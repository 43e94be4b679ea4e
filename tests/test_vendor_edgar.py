"""The SEC EDGAR adapter against recorded data.sec.gov responses (real Apple and
Marvell facts, real Marvell filing index; see tests/fixtures/vendors/make_edgar.py)
replayed by a local HTTP server, through the real pipeline into a real store."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import ConfigError, VendorPayloadError
from etl.sources.base import Job, run_ingest
from etl.sources.vendors.edgar import EdgarSource
from etl.storage import silver
from etl.storage.bronze import read_fetch_log
from etl.storage.tables import FILINGS, FUNDAMENTALS
from etl.storage.watermarks import open_watermarks
from tests.vendor_server import FIXTURES, ReplayServer, Reply

NOW = pd.Timestamp("2026-11-22 12:00", tz="UTC")
START, END = "2009-01-01", "2026-12-31"
AGENT = "Alpha Warehouse Tests tests@example.com"
AAPL_FACTS = FIXTURES / "edgar" / "companyfacts_CIK0000320193.json"
UTC = "datetime64[us, UTC]"


def utc(*values: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(v, tz="UTC") for v in values]


def tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def server():
    with ReplayServer() as s:
        s.add_fixtures("edgar")
        yield s


def edgar_home(tmp_path, server, agent: str = AGENT):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f'[vendors.edgar]\nbase_url = "{server.url}"\nrate = 1000\nuser_agent = "{agent}"\n')
    return load_settings(home)


def ingest(settings, dataset: str, symbols: list[str], start=START, end=END, **kw):
    return run_ingest(settings, "edgar", dataset, symbols, start, end, now=NOW, **kw)


def test_apple_fiscal_2014_net_income_first_report_and_later_rereports(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    summary = ingest(settings, "companyfacts", ["AAPL"])
    [res] = summary.results
    assert res.error is None and res.quarantined == 0
    assert res.rows_fetched == 1231 and res.written == {"fundamentals_facts": 1231, "filings": 0}
    facts = silver.read(settings, FUNDAMENTALS)
    fy14 = facts[(facts["tag"] == "NetIncomeLoss") & (facts["period_start"] == "2013-09-29") & (facts["period_end"] == "2014-09-27")]
    fy14 = fy14.sort_values("event_timestamp").reset_index(drop=True)
    # first reported in the 10-K filed 2014-10-27, then repeated by an 8-K and the next two 10-Ks
    assert fy14["accn"].tolist() == ["0001193125-14-383437", "0001193125-15-023732", "0001193125-15-356351", "0001628280-16-020309"]
    assert fy14["form"].tolist() == ["10-K", "8-K", "10-K", "10-K"]
    assert fy14["value"].tolist() == [39_510_000_000.0] * 4
    assert fy14["filed"].dt.strftime("%Y-%m-%d").tolist() == ["2014-10-27", "2015-01-28", "2015-10-28", "2016-10-26"]
    assert fy14["fy"].tolist()[0] == 2014 and pd.isna(fy14["fy"].iloc[1]) and fy14["fy"].tolist()[2:] == [2015, 2016]
    assert fy14["fp"].tolist() == ["FY", "", "FY", "FY"]
    assert fy14["frame"].tolist() == ["", "", "", "CY2014"]
    assert (fy14["taxonomy"] == "us-gaap").all() and (fy14["unit"] == "USD").all()
    # Apple's accessions are not in the (empty) recent list: available at the end of the filed day, New York
    assert fy14["acceptance_time"].isna().all()
    assert fy14["event_timestamp"].tolist() == utc("2014-10-28 04:00", "2015-01-29 05:00", "2015-10-29 04:00", "2016-10-27 04:00")
    assert str(facts["event_timestamp"].dtype) == UTC and str(facts["acceptance_time"].dtype) == UTC

    # as of a time, the latest row known then: nothing during the filing day, the 10-K value after it
    def as_of(t: str) -> pd.DataFrame:
        return fy14[fy14["event_timestamp"] <= pd.Timestamp(t, tz="UTC")]

    assert as_of("2014-10-28 03:59").empty
    assert as_of("2014-10-28 04:00")["accn"].tolist() == ["0001193125-14-383437"]
    # an instant has period_start "" (stable string dtype); the 10-K/A repeats it as its own row
    shares = facts[(facts["tag"] == "EntityCommonStockSharesOutstanding") & (facts["period_end"] == "2009-10-16")]
    assert shares[["taxonomy", "unit", "period_start", "value", "form", "accn"]].values.tolist() == [
        ["dei", "shares", "", 900_678_473.0, "10-K", "0001193125-09-214859"],
        ["dei", "shares", "", 900_678_473.0, "10-K/A", "0001193125-10-012091"],
    ]
    assert open_watermarks(settings).get("edgar", "companyfacts", "AAPL") == "2026-01-30"


def test_apple_restatement_in_a_10k_amendment_is_a_new_row_known_from_its_filing(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    ingest(settings, "companyfacts", ["AAPL"])
    facts = silver.read(settings, FUNDAMENTALS)
    fy09 = facts[(facts["tag"] == "NetIncomeLoss") & (facts["period_start"] == "2008-09-28") & (facts["period_end"] == "2009-09-26")]
    fy09 = fy09.sort_values("event_timestamp")
    # fiscal 2009 net income as first filed, then restated by the 10-K/A of 2010-01-25 (new revenue rules)
    assert fy09[["form", "value"]].values.tolist() == [
        ["10-K", 5_704_000_000.0], ["10-K/A", 8_235_000_000.0], ["10-K", 8_235_000_000.0], ["10-K", 8_235_000_000.0]
    ]

    def known_at(t: str) -> float:
        return fy09[fy09["event_timestamp"] <= pd.Timestamp(t, tz="UTC")]["value"].iloc[-1]

    assert known_at("2010-01-25 20:00") == 5_704_000_000.0    # the amendment's filing day is not over yet
    assert known_at("2010-01-26 05:00") == 8_235_000_000.0    # midnight New York (EST) after its filed date


def test_marvell_facts_are_available_at_their_filings_acceptance_time(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    [res] = ingest(settings, "companyfacts", ["MRVL"]).results
    assert res.error is None and res.written["fundamentals_facts"] == 413
    facts = silver.read(settings, FUNDAMENTALS)
    assert facts["acceptance_time"].notna().all()
    assert (facts["event_timestamp"] == facts["acceptance_time"]).all()
    k10 = facts[(facts["tag"] == "NetIncomeLoss") & (facts["accn"] == "0001835632-22-000016")].sort_values("period_start")
    assert k10["period_end"].tolist() == ["2020-02-01", "2021-01-30", "2022-01-29"]
    assert k10["value"].tolist() == [1_584_391_000.0, -277_298_000.0, -421_034_000.0]
    assert k10["event_timestamp"].tolist() == utc("2022-03-10 21:05:55") * 3
    # the submissions fetched for the join are stored too (those filed in the job's range)
    filings = silver.read(settings, FILINGS)
    row = filings[filings["accn"] == "0001835632-22-000016"].iloc[0]
    assert (row["form"], row["acceptance_time"]) == ("10-K", pd.Timestamp("2022-03-10 21:05:55", tz="UTC"))


def test_no_fact_is_available_before_its_filing_day_or_at_its_period_end(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    summary = ingest(settings, "companyfacts", ["AAPL", "MRVL"])
    assert not summary.failed
    facts = silver.read(settings, FUNDAMENTALS)
    assert len(facts) == 1231 + 413
    filed_start = pd.to_datetime(facts["filed"]).dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    period_end_day_over = (pd.to_datetime(facts["period_end"]) + pd.Timedelta(days=1)).dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    assert (facts["event_timestamp"] >= filed_start).all()
    assert (facts["event_timestamp"] >= period_end_day_over).all()
    assert facts["event_timestamp"].notna().all()


def test_submissions_become_filings_at_their_acceptance_time(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    [res] = ingest(settings, "submissions", ["MRVL"], start="2026-01-01").results
    assert res.error is None and res.rows_fetched == 40 and res.written == {"filings": 21}
    filings = silver.read(settings, FILINGS).set_index("accn")
    k = filings.loc["0001835632-26-000011"]
    assert (k["form"], k["filing_date"], k["report_date"], k["primary_document"]) == (
        "10-K", pd.Timestamp("2026-03-11"), pd.Timestamp("2026-01-31"), "mrvl-20260131.htm")
    assert k["event_timestamp"] == k["acceptance_time"] == pd.Timestamp("2026-03-11 20:04:20", tz="UTC")
    # accepted after 17:30 New York on 06-04: SEC dates it the next day; it was public at acceptance
    sd = filings.loc["0001193125-26-258064"]
    assert (sd["form"], sd["filing_date"], sd["event_timestamp"]) == ("SD", pd.Timestamp("2026-06-05"), pd.Timestamp("2026-06-05 01:04:33", tz="UTC"))
    assert pd.isna(sd["report_date"])
    assert open_watermarks(settings).get("edgar", "submissions", "MRVL") == "2026-06-05"


def test_same_ingest_twice_is_byte_identical_and_incremental_rerun_writes_nothing(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    first = ingest(settings, "companyfacts", ["AAPL", "MRVL"])
    assert first.rows_written == 1231 + 413 + 40 and not first.failed
    before = tree_digest(settings.silver)

    again = ingest(settings, "companyfacts", ["AAPL", "MRVL"])
    assert again.rows_written == 0 and sum(r.unchanged for r in again.results) == 1231 + 413 + 40
    assert tree_digest(settings.silver) == before

    requests = len(server.requests)
    inc = ingest(settings, "companyfacts", ["AAPL", "MRVL"], incremental=True)
    assert not inc.failed and inc.rows_written == 0
    assert [r.job.start.strftime("%Y-%m-%d") for r in inc.results] == ["2026-01-31", "2026-05-29"]
    assert len(server.requests) == requests + 4   # fetched again, nothing new in the range
    assert tree_digest(settings.silver) == before


def test_malformed_facts_are_quarantined_with_reasons(tmp_path, server):
    body = json.loads(AAPL_FACTS.read_text())
    net = body["facts"]["us-gaap"]["NetIncomeLoss"]["units"]["USD"]
    net[0]["val"] = "n/a"
    del net[1]["end"]
    net[2]["filed"] = "2010-13-45"
    server.add("/api/xbrl/companyfacts/CIK0000320193.json", Reply(200, json.dumps(body).encode()))
    settings = edgar_home(tmp_path, server)
    [res] = ingest(settings, "companyfacts", ["AAPL"]).results
    assert res.error is None and res.quarantined == 3 and res.written == {"fundamentals_facts": 1228, "filings": 0}
    q = silver.read_quarantine(settings, "fundamentals_facts").sort_values("source_row")
    assert q["reason"].tolist() == ["non-numeric value 'n/a'", "missing 'end'", "unparseable filed date '2010-13-45'"]
    # NetIncomeLoss comes after the 109 revenue facts in the payload
    assert q["source_row"].tolist() == [109, 110, 111]
    assert q["source_file"].str.endswith("/api/xbrl/companyfacts/CIK0000320193.json").all()
    assert (q["symbol"] == "AAPL").all()
    assert json.loads(q["raw"].iloc[0]) == {"taxonomy": "us-gaap", "tag": "NetIncomeLoss", "unit": "USD", "fact": net[0]}
    facts = silver.read(settings, FUNDAMENTALS)
    net_income = facts[facts["tag"] == "NetIncomeLoss"]
    assert len(net_income) == len(net) - 3
    bad = net_income[(net_income["period_start"] == net[0]["start"]) & (net_income["period_end"] == net[0]["end"]) & (net_income["accn"] == net[0]["accn"])]
    assert bad.empty


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (AAPL_FACTS.read_bytes()[:5000], "application/json", "not valid JSON"),
        (b"<!DOCTYPE html><html><body>Request Rate Threshold Exceeded</body></html>", "text/html", "HTML page"),
        (b'{"cik": 320193, "entityName": "Apple Inc."}', "application/json", "no 'facts' object"),
    ],
    ids=["truncated", "html-200", "no-envelope"],
)
def test_bad_payload_raises_and_is_kept_in_bronze(tmp_path, server, body, ctype, message):
    server.add("/api/xbrl/companyfacts/CIK0000320193.json", Reply(200, body, ctype))
    settings = edgar_home(tmp_path, server)
    source = EdgarSource(settings)
    try:
        with pytest.raises(VendorPayloadError, match=message):
            source.fetch_parse(Job("edgar", "companyfacts", "AAPL", pd.Timestamp(START), pd.Timestamp(END)))
    finally:
        source.close()
    log = read_fetch_log(settings, "edgar")
    assert hashlib.sha256(body).hexdigest() in set(log["sha256"])
    # through the pipeline: the job fails with the reason, nothing reaches silver, the other job lands
    summary = ingest(settings, "companyfacts", ["AAPL", "MRVL"])
    assert [r.job.symbol for r in summary.failed] == ["AAPL"] and message in summary.failed[0].error
    assert set(silver.read(settings, FUNDAMENTALS)["symbol"]) == {"MRVL"}
    assert open_watermarks(settings).get("edgar", "companyfacts", "AAPL") is None


def test_unknown_ticker_fails_its_job_only_and_config_ciks_extend_the_map(tmp_path, server):
    settings = edgar_home(tmp_path, server)
    summary = ingest(settings, "submissions", ["ZZZZ", "MRVL"], start="2026-06-01")
    assert [r.job.symbol for r in summary.failed] == ["ZZZZ"]
    assert "no CIK known for ticker 'ZZZZ'" in summary.failed[0].error and "[vendors.edgar.ciks]" in summary.failed[0].error
    assert summary.results[1].written == {"filings": 4}
    with open(settings.home / "config.toml", "a") as fh:
        fh.write("[vendors.edgar.ciks]\nMARVELL = 1835632\n")
    settings = load_settings(settings.home)
    [res] = ingest(settings, "submissions", ["MARVELL"], start="2026-06-01").results
    assert res.error is None and res.written == {"filings": 4}


def test_user_agent_is_required_and_sent(tmp_path, server, monkeypatch):
    monkeypatch.delenv("EDGAR_USER_AGENT", raising=False)
    monkeypatch.setattr("etl.core.config.PROJECT_ROOT", tmp_path)   # a developer's own .env must not supply one
    home = tmp_path / "bare"
    home.mkdir()
    (home / "config.toml").write_text(f'[vendors.edgar]\nbase_url = "{server.url}"\n')
    with pytest.raises(ConfigError, match="SEC requires a User-Agent naming you and a contact email"):
        run_ingest(load_settings(home), "edgar", "submissions", ["MRVL"], START, END)
    assert not server.requests
    with pytest.raises(ConfigError, match="got 'python-httpx'"):
        EdgarSource(edgar_home(tmp_path, server, agent="python-httpx"))
    monkeypatch.setenv("EDGAR_USER_AGENT", "Env Research env@example.com")
    source = EdgarSource(load_settings(home))
    assert source.client.headers["User-Agent"] == "Env Research env@example.com"
    source.close()
    source = EdgarSource(edgar_home(tmp_path, server))   # config.toml wins over the environment
    assert source.client.headers["User-Agent"] == AGENT
    assert source.client.base_url == server.url and source.client.limiter.rate == 1000
    source.close()
