"""Fundamentals factors on Apple's full SEC EDGAR company facts (the shared
companyfacts JSON, 2009-2021 filings) ingested through the real EDGAR adapter
from a local replay server, and the real Lean AAPL daily bars and factor file.

Expected values are computed here from the raw JSON and the raw Lean CSV by
hand-written code (or read off Apple's filings), never through
``etl.factors.fundamentals``. Apple's accessions are not in the (empty)
submissions index, so a fact is available from the end of its filed day in
New York: known at a session iff it was filed on an earlier date.
"""

from __future__ import annotations

import gzip
import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.core.errors import FactorInputError
from etl.factors.fundamentals import FACTORS, OUTPUTS, VIEW, compute_fundamentals
from etl.factors.spec import Factor
from etl.sources.archive import ingest_lean
from etl.sources.base import run_ingest
from etl.storage import silver
from etl.storage.actions import read_corporate_actions
from etl.storage.bars import read_silver_bars
from etl.storage.tables import FUNDAMENTALS
from tests.conftest import LEAN, SHARED
from tests.vendor_server import ReplayServer, Reply

FACTS_GZ = SHARED / "sec-edgar-companyfacts" / "companyfacts_CIK0000320193.json.gz"
AAPL_CSV = LEAN / "equity_usa_daily" / "aapl.csv"
AGENT = "Alpha Warehouse Tests tests@example.com"
EMPTY_SUBMISSIONS = {"cik": "0000320193", "name": "Apple Inc.", "filings": {"recent": {
    "accessionNumber": [], "filingDate": [], "reportDate": [], "acceptanceDateTime": [], "form": [], "primaryDocument": []}}}
NOW = pd.Timestamp("2026-11-22 12:00", tz="UTC")


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def raw(shared_data) -> dict:
    return json.loads(gzip.decompress(FACTS_GZ.read_bytes()))


@pytest.fixture(scope="module")
def store(tmp_path_factory, raw, lean_root):
    """Silver facts, bars and corporate actions for AAPL built by the real ingests."""
    home = tmp_path_factory.mktemp("fund_home")
    with ReplayServer() as server:
        server.add("/api/xbrl/companyfacts/CIK0000320193.json", Reply(200, gzip.decompress(FACTS_GZ.read_bytes())))
        server.add("/submissions/CIK0000320193.json", Reply(200, json.dumps(EMPTY_SUBMISSIONS).encode()))
        (home / "config.toml").write_text(f'[vendors.edgar]\nbase_url = "{server.url}"\nrate = 1000\nuser_agent = "{AGENT}"\n')
        settings = load_settings(home)
        summary = run_ingest(settings, "edgar", "companyfacts", ["AAPL"], "2009-01-01", "2021-12-31", now=NOW)
    [res] = summary.results
    assert res.error is None and res.quarantined == 0
    ingest_lean(settings, lean_root, ["AAPL"], now=NOW)
    facts = silver.read(settings, FUNDAMENTALS)
    bars = read_silver_bars(settings, ["AAPL"])
    actions = read_corporate_actions(settings)
    actions = actions[actions["symbol"] == "AAPL"].reset_index(drop=True)
    return {"facts": facts, "bars": bars, "actions": actions}


@pytest.fixture(scope="module")
def out(store) -> pd.DataFrame:
    return compute_fundamentals(store["facts"], store["bars"], store["actions"])


def at(frame: pd.DataFrame, bars: pd.DataFrame, day: str) -> pd.Series:
    """The output row of session ``day``."""
    t = bars.loc[bars["session"] == pd.Timestamp(day), "event_timestamp"]
    assert len(t) == 1, day
    rows = frame[frame["event_timestamp"] == t.iloc[0]]
    assert len(rows) == 1, day
    return rows.iloc[0]


# ------------------------------------------------------------------ hand-written reference code

def raw_facts(raw: dict, tag: str, unit: str = "USD", taxonomy: str = "us-gaap") -> list[dict]:
    return raw["facts"][taxonomy][tag]["units"][unit]


def known_on(facts: list[dict], session: str) -> list[dict]:
    """Facts public before the session's close: filed on an earlier day."""
    return [f for f in facts if f["filed"] < session]


def latest_by_period(facts: list[dict]) -> dict[tuple[str, str], float]:
    """(start, end) -> the value of the latest filing of that period."""
    best: dict[tuple[str, str], tuple[str, str, float]] = {}
    for f in facts:
        key = (f.get("start", ""), f["end"])
        cand = (f["filed"], f["accn"], f["val"])
        if key not in best or cand[:2] > best[key][:2]:
            best[key] = cand
    return {k: v[2] for k, v in best.items()}


def days(start: str, end: str) -> int:
    return (date.fromisoformat(end) - date.fromisoformat(start)).days + 1


def four_quarters(values: dict[tuple[str, str], float]) -> tuple[float, list[tuple[str, str]]]:
    """Sum of the four consecutive 3-month periods ending at the latest 3-month end."""
    quarters = {end: (start, v) for (start, end), v in values.items() if start and 84 <= days(start, end) <= 100}
    end = max(quarters)
    total, used = 0.0, []
    for _ in range(4):
        start, v = quarters[end]
        total += v
        used.append((start, end))
        end = (date.fromisoformat(start) - pd.Timedelta(days=1)).isoformat()
    return total, used


def lean_close(day: str) -> float:
    key = day.replace("-", "") + " 00:00"
    for line in AAPL_CSV.read_text().splitlines():
        fields = line.split(",")
        if fields[0] == key:
            return int(fields[4]) / 10000
    raise KeyError(day)


def latest_instant(facts: list[dict], session: str) -> tuple[str, float]:
    """(date, value) of the latest instant known at the session, latest filing of it."""
    vals = latest_by_period([f for f in known_on(facts, session) if "start" not in f])
    (_, end), v = max(vals.items(), key=lambda kv: kv[0][1])
    return end, v


# ------------------------------------------------------------------ declarations

def test_declarations_match_the_computed_frame(out):
    assert all(isinstance(f, Factor) and f.family == "fundamentals" and f.view == VIEW == "fundamentals_daily" for f in FACTORS)
    names = [o.name for f in FACTORS for o in f.outputs]
    assert names == list(OUTPUTS) and len(set(names)) == len(names) == 14
    assert all(o.dtype == "float64" and o.description for f in FACTORS for o in f.outputs)
    assert all(f.inputs and f.availability and f.description and f.warmup == 0 for f in FACTORS)
    assert list(out.columns) == ["symbol", "event_timestamp", "known_timestamp", *names]
    assert all(str(out[c].dtype) == "float64" for c in names)
    assert str(out["event_timestamp"].dtype) == str(out["known_timestamp"].dtype) == "datetime64[us, UTC]"
    assert (out["symbol"] == "AAPL").all() and (out["known_timestamp"] == out["event_timestamp"]).all()


def test_one_row_per_session_from_the_first_fact_known(out, store):
    bars, facts = store["bars"], store["facts"]
    first = facts["event_timestamp"].min()
    assert first == pd.Timestamp("2009-07-23 04:00", tz="UTC")     # the 10-Q filed 2009-07-22, end of that day in New York
    expected = bars.loc[bars["event_timestamp"] >= first, "event_timestamp"].reset_index(drop=True)
    assert out["event_timestamp"].reset_index(drop=True).equals(expected)
    assert out["event_timestamp"].iloc[0] == pd.Timestamp("2009-07-23 20:15", tz="UTC")   # close + 15 min


# ------------------------------------------------------------------ hand-checked figures

def test_fiscal_2014_ttm_switches_to_the_10k_figures_the_session_after_its_filing(out, store, raw):
    bars = store["bars"]
    sales, income = raw_facts(raw, "SalesRevenueNet"), raw_facts(raw, "NetIncomeLoss")
    fy14 = ("2013-09-29", "2014-09-27")
    assert latest_by_period(known_on(sales, "2014-10-28"))[fy14] == 182_795_000_000
    assert latest_by_period(known_on(income, "2014-10-28"))[fy14] == 39_510_000_000
    # the 10-K was filed 2014-10-27: not known at that session's close, known at the next one
    after, before = at(out, bars, "2014-10-28"), at(out, bars, "2014-10-27")
    assert after["rev_ttm"] == 182_795e6 and after["ni_ttm"] == 39_510e6
    rev4, periods = four_quarters(latest_by_period(known_on(sales, "2014-10-27")))
    ni4, periods_ni = four_quarters(latest_by_period(known_on(income, "2014-10-27")))
    assert periods == periods_ni == [("2014-03-30", "2014-06-28"), ("2013-12-29", "2014-03-29"),
                                     ("2013-09-29", "2013-12-28"), ("2013-06-30", "2013-09-28")]
    assert (rev4, ni4) == (178_144e6, 38_555e6)
    assert before["rev_ttm"] == rev4 and before["ni_ttm"] == ni4
    # margins and growth of the 10-K year, by hand
    gross = latest_by_period(known_on(raw_facts(raw, "GrossProfit"), "2014-10-28"))[fy14]
    operating = latest_by_period(known_on(raw_facts(raw, "OperatingIncomeLoss"), "2014-10-28"))[fy14]
    fy13 = latest_by_period(known_on(sales, "2014-10-28"))[("2012-09-30", "2013-09-28")]
    assert (gross, operating, fy13) == (70_537e6, 52_503e6, 170_910e6)
    assert after["gross_margin_ttm"] == gross / 182_795e6
    assert after["op_margin_ttm"] == operating / 182_795e6
    assert after["net_margin_ttm"] == 39_510e6 / 182_795e6
    assert after["rev_growth_yoy"] == pytest.approx(182_795 / 170_910 - 1, rel=1e-12)
    eps = latest_by_period(known_on(raw_facts(raw, "EarningsPerShareDiluted", "USD/shares"), "2014-10-28"))[fy14]
    assert eps == 6.45 and after["eps_ttm_diluted"] == pytest.approx(6.45, rel=1e-12)


def test_pe_pb_and_ev_sales_by_hand(out, store, raw):
    bars = store["bars"]
    day = "2014-12-01"
    close = lean_close(day)
    shares_day, shares = latest_instant(raw_facts(raw, "EntityCommonStockSharesOutstanding", "shares", "dei"), day)
    assert (shares_day, shares) == ("2014-10-10", 5_864_840_000)
    ni = latest_by_period(known_on(raw_facts(raw, "NetIncomeLoss"), day))[("2013-09-29", "2014-09-27")]
    rev = latest_by_period(known_on(raw_facts(raw, "SalesRevenueNet"), day))[("2013-09-29", "2014-09-27")]
    book_day, book = latest_instant(raw_facts(raw, "StockholdersEquity"), day)
    cash_day, cash = latest_instant(raw_facts(raw, "CashAndCashEquivalentsAtCarryingValue"), day)
    ltd = latest_by_period(known_on(raw_facts(raw, "LongTermDebt"), day))[("", "2014-09-27")]
    cp = latest_by_period(known_on(raw_facts(raw, "CommercialPaper"), day))[("", "2014-09-27")]
    assert (book_day, book, cash_day, cash, ltd, cp) == ("2014-09-27", 111_547e6, "2014-09-27", 13_844e6, 28_987e6, 6_308e6)
    row = at(out, bars, day)
    cap = close * shares
    assert row["shares_out"] == shares and row["market_cap"] == pytest.approx(cap, rel=1e-12)
    assert row["pe_ttm"] == pytest.approx(cap / ni, rel=1e-12)
    assert close == 115.07 and row["pe_ttm"] == pytest.approx(115.07 * 5_864_840_000 / 39_510e6, rel=1e-12)   # 17.08
    assert row["pb"] == pytest.approx(cap / book, rel=1e-12)
    assert row["ev_sales"] == pytest.approx((cap + ltd + cp - cash) / rev, rel=1e-12)
    assert row["book_value"] == book
    # 10-K of 2014-10-27 available 2014-10-28 04:00 UTC; the session's bar at 2014-12-01 21:15 UTC
    assert row["fund_age_days"] == pytest.approx((pd.Timestamp("2014-12-01 21:15", tz="UTC") - pd.Timestamp("2014-10-28 04:00", tz="UTC")) / pd.Timedelta(days=1), rel=1e-12)


def test_ev_uses_other_short_term_borrowings_and_zero_debt_only_for_a_filer_that_never_tagged_debt(out, store, raw):
    bars = store["bars"]
    # 2020-06-01: the latest balance sheet is 2020-03-28, whose commercial paper Apple tagged OtherShortTermBorrowings
    day = "2020-06-01"
    cash_day, cash = latest_instant(raw_facts(raw, "CashAndCashEquivalentsAtCarryingValue"), day)
    b = ("", cash_day)
    parts = [latest_by_period(known_on(raw_facts(raw, t), day)).get(b) for t in
             ("LongTermDebtNoncurrent", "LongTermDebtCurrent", "OtherShortTermBorrowings", "CommercialPaper", "LongTermDebt")]
    assert cash_day == "2020-03-28" and parts == [89_086e6, 10_392e6, 10_029e6, None, None]
    sales = latest_by_period(known_on(raw_facts(raw, "RevenueFromContractWithCustomerExcludingAssessedTax"), day))
    ttm = sales[("2019-09-29", "2020-03-28")] + sales[("2018-09-30", "2019-09-28")] - sales[("2018-09-30", "2019-03-30")]
    row = at(out, bars, day)
    assert row["rev_ttm"] == ttm
    cap = lean_close(day) * latest_instant(raw_facts(raw, "EntityCommonStockSharesOutstanding", "shares", "dei"), day)[1]
    assert row["ev_sales"] == pytest.approx((cap + 89_086e6 + 10_392e6 + 10_029e6 - cash) / ttm, rel=1e-12)
    # 2011-12-01: Apple had tagged no debt concept yet (no debt on its balance sheet): EV = market cap - cash
    day = "2011-12-01"
    assert not any(f["filed"] < day for t in ("LongTermDebt", "CommercialPaper", "LongTermDebtNoncurrent") for f in raw_facts(raw, t))
    cash_day, cash = latest_instant(raw_facts(raw, "CashAndCashEquivalentsAtCarryingValue"), day)
    rev = latest_by_period(known_on(raw_facts(raw, "SalesRevenueNet"), day))[("2010-09-26", "2011-09-24")]
    cap = lean_close(day) * latest_instant(raw_facts(raw, "EntityCommonStockSharesOutstanding", "shares", "dei"), day)[1]
    assert (cash_day, cash, rev) == ("2011-09-24", 9_815e6, 108_249e6)
    assert at(out, bars, day)["ev_sales"] == pytest.approx((cap - cash) / rev, rel=1e-12)
    # once debt has been tagged, a balance sheet without any debt line is unknown debt (NaN), not zero
    facts = store["facts"]
    debt_tags = ["LongTermDebt", "LongTermDebtNoncurrent", "LongTermDebtCurrent", "CommercialPaper", "OtherShortTermBorrowings"]
    dropped = facts[~(facts["tag"].isin(debt_tags) & (facts["period_end"] == "2014-09-27"))]
    alt = compute_fundamentals(dropped, bars, store["actions"])
    assert math.isnan(at(alt, bars, "2014-12-01")["ev_sales"]) and not math.isnan(at(out, bars, "2014-12-01")["ev_sales"])


def test_the_7_for_1_split_keeps_shares_and_market_cap_continuous(out, store, raw):
    bars = store["bars"]
    pre, post = at(out, bars, "2014-06-06"), at(out, bars, "2014-06-09")
    assert lean_close("2014-06-06") == 645.57 and lean_close("2014-06-09") == 93.70
    # the latest count known on both days is the pre-split 861,381,000 of 2014-04-11 (10-Q of 2014-04-24)
    assert latest_instant(raw_facts(raw, "EntityCommonStockSharesOutstanding", "shares", "dei"), "2014-06-09") == ("2014-04-11", 861_381_000)
    assert pre["shares_out"] == 861_381_000
    # Lean's factor file rounds 1/28 to 0.0357143, so 7x holds to 3e-7
    assert post["shares_out"] == pytest.approx(7 * 861_381_000, rel=1e-6)
    assert post["market_cap"] == pytest.approx(93.70 * 7 * 861_381_000, rel=1e-6)
    assert post["market_cap"] / pre["market_cap"] == pytest.approx(93.70 * 7 / 645.57, rel=1e-6)   # +1.6%, not x7
    assert post["eps_ttm_diluted"] == pytest.approx(pre["eps_ttm_diluted"] / 7, rel=1e-6)
    assert post["pe_ttm"] == pytest.approx(pre["pe_ttm"] * 93.70 * 7 / 645.57, rel=1e-6)
    # EPS is in the share units of its filing day: TTM = 9M FY14 + FY13 - 9M FY13, where the 10-Q of 2014-07-23
    # gives both nine months split-adjusted and FY13 comes from the pre-split 10-K of 2013-10-30 (39.75 -> 39.75 / 7)
    eps = latest_by_period(known_on(raw_facts(raw, "EarningsPerShareDiluted", "USD/shares"), "2014-07-24"))
    nine14, fy13, nine13 = eps[("2013-09-29", "2014-06-28")], eps[("2012-09-30", "2013-09-28")], eps[("2012-09-30", "2013-06-29")]
    assert (nine14, fy13, nine13) == (5.03, 39.75, 4.49)
    assert at(out, bars, "2014-07-24")["eps_ttm_diluted"] == pytest.approx(nine14 + fy13 / 7 - nine13, rel=1e-6)
    assert pre["eps_ttm_diluted"] == pytest.approx(26.16 + 39.75 - 23.90, rel=1e-12)   # all pre-split: 6M FY14 + FY13 - 6M FY13
    # the first post-split count (2014-07-11, filed 2014-07-23) is used as reported
    assert at(out, bars, "2014-07-24")["shares_out"] == 5_987_867_000
    # the 4:1 split of 2020-08-31: exact factors (0.25 -> 1)
    a, b = at(out, bars, "2020-08-28"), at(out, bars, "2020-08-31")
    assert a["shares_out"] == 4_275_634_000 and b["shares_out"] == 4 * 4_275_634_000
    assert b["eps_ttm_diluted"] == a["eps_ttm_diluted"] / 4
    # no day-to-day market-cap jump anywhere near a split ratio
    cap = out["market_cap"].to_numpy()
    assert np.nanmax(np.abs(np.diff(np.log(cap)))) < math.log(1.25)


def test_the_fiscal_2009_restatement_changes_the_ttm_only_from_the_amendments_availability(out, store, raw):
    bars, facts = store["bars"], store["facts"]
    income = raw_facts(raw, "NetIncomeLoss")
    fy09 = ("2008-09-28", "2009-09-26")
    amendment = [f for f in income if (f.get("start"), f["end"]) == fy09 and f["form"] == "10-K/A"]
    assert [(f["val"], f["filed"]) for f in amendment] == [(8_235_000_000, "2010-01-25")]
    # the session of the amendment's filing day still has the first 10-K's fiscal 2009 figure
    assert at(out, bars, "2010-01-25")["ni_ttm"] == 5_704e6
    # the next session: the 10-Q filed the same day adds fiscal Q1 2010; TTM = Q1 FY10 + FY09 (restated) - Q1 FY09
    known = latest_by_period(known_on(income, "2010-01-26"))
    q1_10, q1_09 = known[("2009-09-27", "2009-12-26")], known[("2008-09-28", "2008-12-27")]
    assert (q1_10, known[fy09], q1_09) == (3_378e6, 8_235e6, 2_255e6)
    assert at(out, bars, "2010-01-26")["ni_ttm"] == q1_10 + 8_235e6 - q1_09 == 9_358e6
    # without that 10-Q, the amendment alone switches the TTM from 5.704bn to 8.235bn at exactly that session
    q10 = facts[(facts["form"] == "10-Q") & (facts["filed"] == pd.Timestamp("2010-01-25"))]
    assert q10["accn"].nunique() == 1
    alt = compute_fundamentals(facts[facts["accn"] != q10["accn"].iloc[0]], bars, store["actions"])
    window = alt[(alt["event_timestamp"] >= pd.Timestamp("2009-10-28", tz="UTC")) & (alt["event_timestamp"] < pd.Timestamp("2010-04-22", tz="UTC"))]
    amended_at = facts.loc[(facts["tag"] == "NetIncomeLoss") & (facts["form"] == "10-K/A") & (facts["period_end"] == "2009-09-26"), "event_timestamp"]
    assert amended_at.tolist() == [pd.Timestamp("2010-01-26 05:00", tz="UTC")]
    before = window[window["event_timestamp"] < amended_at.iloc[0]]
    after = window[window["event_timestamp"] >= amended_at.iloc[0]]
    assert len(before) == 60 and len(after) == 60    # XNYS sessions 2009-10-28..2010-01-25 and 2010-01-26..2010-04-21
    assert (before["ni_ttm"] == 5_704e6).all() and (after["ni_ttm"] == 8_235e6).all()
    assert after["event_timestamp"].iloc[0] == pd.Timestamp("2010-01-26 21:15", tz="UTC")


def test_missing_inputs_are_nan_never_zero(out, store):
    bars, facts = store["bars"], store["facts"]
    # the first 10-Q (2009-07-22) gives no fiscal 2008 year: no TTM in the 68 sessions 2009-07-23..2009-10-27
    early = out[out["event_timestamp"] < pd.Timestamp("2009-10-28", tz="UTC")]
    assert len(early) == 68 and early[["rev_ttm", "ni_ttm", "pe_ttm", "ev_sales", "gross_margin_ttm"]].isna().all().all()
    assert early["book_value"].eq(25_888e6).all() and early["shares_out"].eq(895_816_758).all()
    # a concept that was never tagged: NaN, not 0
    alt = compute_fundamentals(facts[~facts["tag"].isin(["GrossProfit", "EntityCommonStockSharesOutstanding",
                                                         "CommonStockSharesOutstanding"])], bars, store["actions"])
    assert alt[["gross_margin_ttm", "shares_out", "market_cap", "pe_ttm", "pb", "ev_sales"]].isna().all().all()
    assert alt["op_margin_ttm"].notna().sum() == out["op_margin_ttm"].notna().sum() > 2800
    assert not (out[list(OUTPUTS)].fillna(1.0) == 0.0).any().any()


def test_bad_inputs_raise_alpha_errors(store):
    facts, bars = store["facts"], store["bars"]
    with pytest.raises(FactorInputError, match="facts lack the column"):
        compute_fundamentals(facts.drop(columns=["filed"]), bars)
    naive = facts.assign(event_timestamp=facts["event_timestamp"].dt.tz_localize(None))
    with pytest.raises(FactorInputError, match="tz-aware UTC"):
        compute_fundamentals(naive, bars)
    with pytest.raises(FactorInputError, match="sorted by session"):
        compute_fundamentals(facts, bars.iloc[::-1])
    with pytest.raises(FactorInputError, match="several symbols"):
        compute_fundamentals(pd.concat([facts, facts.assign(symbol="MSFT")]), bars)


# ------------------------------------------------------------------ point in time

def test_no_output_uses_a_fact_or_bar_published_after_its_row(out, store):
    """Truncation: outputs computed from only the inputs available by a time T are
    the outputs of the full run for every session available by T. Corporate
    actions are passed whole: only ratios s(d)/s(t) of splits with ex-date in
    (d, t] enter (checked by the split test), as in etl/factors/core.py."""
    facts, bars, actions = store["facts"], store["bars"], store["actions"]
    assert (out["fund_age_days"].dropna() >= 0).all()        # the latest filing used is never after the row
    filings = sorted(facts["event_timestamp"].unique())
    cuts = [filings[5], filings[20] - pd.Timedelta(microseconds=1), filings[20], filings[40] + pd.Timedelta(hours=20),
            pd.Timestamp("2014-06-09 20:15", tz="UTC"), pd.Timestamp("2020-08-31 20:14:59.999999", tz="UTC")]
    for cut in cuts:
        part = compute_fundamentals(facts[facts["event_timestamp"] <= cut], bars[bars["event_timestamp"] <= cut], actions)
        full = out[out["event_timestamp"] <= cut].reset_index(drop=True)
        assert len(part) == len(full) > 0
        pd.testing.assert_frame_equal(part, full, check_exact=True)


def _next_session_time(avail: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each time, the availability of the session after the first session that sees it (-1: none)."""
    first = np.searchsorted(avail, t, side="left")
    nxt = first + 1
    return np.where(nxt < len(avail), avail[np.minimum(nxt, len(avail) - 1)], -1)


def test_leakage_every_input_one_session_later_moves_every_output_one_session_later(out, store):
    facts, bars, actions = store["facts"], store["bars"], store["actions"]
    avail = bars["event_timestamp"].astype("int64").to_numpy()
    # facts: available at the session after the one that first saw them
    moved = _next_session_time(avail, facts["event_timestamp"].astype("int64").to_numpy())
    late_facts = facts[moved >= 0].copy()
    late_facts["event_timestamp"] = pd.to_datetime(moved[moved >= 0], unit="us", utc=True).astype("datetime64[us, UTC]")
    # bars: each session's bar known one session later (shown at the next session)
    late_bars = bars.iloc[1:].reset_index(drop=True).copy()
    for c in ("open", "high", "low", "close", "volume"):
        late_bars[c] = bars[c].iloc[:-1].to_numpy()
    # corporate actions: every factor row one session later
    late_actions = actions.copy()
    late_actions["factor_date"] = clock.next_session(pd.DatetimeIndex(actions["factor_date"])).astype("datetime64[us]")
    late_actions["ex_date"] = clock.next_session(pd.DatetimeIndex(actions["ex_date"])).astype("datetime64[us]")
    late = compute_fundamentals(late_facts, late_bars, late_actions)

    # the original's rows, each shown at the next session
    orig = out.iloc[: len(late)].reset_index(drop=True)
    assert len(late) == len(out) - 1
    nxt = _next_session_time(avail, orig["event_timestamp"].astype("int64").to_numpy())
    assert (late["event_timestamp"].astype("int64").to_numpy() == nxt).all()
    same = [c for c in OUTPUTS if c != "fund_age_days"]
    pd.testing.assert_frame_equal(late[same], orig[same], check_exact=True)
    # staleness: the filing used is the same one, available one session later
    used = orig["event_timestamp"].astype("int64").to_numpy() - np.round(orig["fund_age_days"].to_numpy() * 86_400e6)
    late_used = late["event_timestamp"].astype("int64").to_numpy() - np.round(late["fund_age_days"].to_numpy() * 86_400e6)
    ok = ~np.isnan(used)
    assert (np.isnan(late_used) == ~ok).all()
    assert np.abs(late_used[ok] - _next_session_time(avail, used[ok].astype("int64"))).max() <= 1_000   # 1 ms of float rounding
    # and so nothing changes before the shifted availability: the 10-K of 2014-10-27 shows from 2014-10-29 on
    assert at(late, late_bars, "2014-10-28")["rev_ttm"] == 178_144e6
    assert at(late, late_bars, "2014-10-29")["rev_ttm"] == 182_795e6
