"""Data health checks on real data.

Two sources of truth:

- yfinance's price-repair fixtures (../shared/data/yfinance-price-repair-fixtures):
  each raw Yahoo file has a repaired twin. The defective dates are derived
  from the pair (``Repaired?`` when the twin has it, else where the closes
  differ by more than 30%; for dividends, where the amounts differ by a large
  factor), never typed in. Every file of each kind is a test case.

  Caught (checks as shipped, default thresholds):
  - price files (bad-stock-split, 100x-error, bad-unit): 10 of 10 daily and
    hourly files have an error-severity outlier on or next to a defective
    date, and none of their repaired twins has one there. AV-L-1wk (weekly
    bars) is an xfail: raw and repaired closes never differ by 30% (at most
    24%), so there is no defective date to catch.
  - bad-div files: 15 of 22 have dividends that differ from the repair; every
    one of those 53 dividends is flagged, 51 as errors. Two are warnings:
    KAP-IL 2022-07-13 (a second dividend the day after the real one, with a
    different amount) and NVT-L 2023-07-20 (0.0002 for 0.02: 1/100 of the
    usual yield, but tiny real payments exist, e.g. IBE-MC's 0.005). The
    other 7 (1398-HK, 3988-HK, ADIG-L, CLC-L, RGL-L, SERE-L, SSNLF) have the
    same dividends in both files and get no dividend error.
  - the 6 no-bad-divs control files get no error-severity outlier or dividend.
    Not flaggable by a dividend check: SCR-TO 2023-03-15, where the raw file
    has no dividend (it put it on 03-14, which is flagged).
- The real Lean daily bars of AAPL, SPY and the UW stub, ingested by
  ``ingest_lean`` and checked by ``run_health``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.core.errors import AlphaError, ConfigError
from etl.quality.health import (
    HealthCheckError,
    check_coverage,
    check_dividends,
    check_duplicates,
    check_nan_rates,
    check_outliers,
    check_stale,
    check_table,
    run_health,
)
from etl.sources.archive import ingest_lean
from etl.storage import silver
from etl.storage.actions import current_events
from etl.storage.bars import read_silver_bars, write_silver_bars
from etl.storage.tables import BARS_DAILY

from .conftest import SHARED, needs_shared_data

YF = SHARED / "yfinance-price-repair-fixtures"
NAME = re.compile(r"^(?P<ticker>.+?)-(?P<interval>1d|1wk|1h|15m)-(?P<problem>.+?)(?P<fixed>-fixed)?\.csv$")

#: Yahoo ticker suffix -> exchange calendar. Two differ from a naive reading of the
#: suffix, and the files prove it: "-IL" is the London Stock Exchange's international
#: order book (UTC+0/+1 times, UK bank holidays missing: see
#: test_calendar_per_call_matters), not Dublin; "-V" is the TSX Venture exchange
#: (New York-time offsets, Canadian Labour Day missing), not Vienna (".VI").
SUFFIX_CALENDAR = {
    "L": "XLON", "IL": "XLON", "HK": "XHKG", "MI": "XMIL", "PA": "XPAR", "MC": "XMAD", "TA": "XTAE",
    "JO": "XJSE", "ST": "XSTO", "AX": "XASX", "DE": "XETR", "V": "XTSE", "TO": "XTSE", "T": "XTKS",
}


def calendar_for(ticker: str) -> str:
    suffix = ticker.rsplit("-", 1)[1] if "-" in ticker else None
    return SUFFIX_CALENDAR.get(suffix, "XNYS") if suffix else "XNYS"


def load_yf(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A yfinance CSV as a bars frame (exchange-local session dates, oldest
    first) and its splits as a corporate-actions frame."""
    raw = pd.read_csv(path)
    time_col = "Date" if "Date" in raw.columns else "Datetime"
    m = NAME.match(path.name)
    # "2022-01-04 00:00:00+09:00": the wall time is the exchange's local time
    local = pd.to_datetime(raw[time_col].str[:19])
    if m["interval"] in ("1d", "1wk"):
        local = local.dt.normalize()
    bars = pd.DataFrame({
        "symbol": m["ticker"], "session": local, "open": raw["Open"], "high": raw["High"], "low": raw["Low"],
        "close": raw["Close"], "volume": raw["Volume"], "dividends": raw["Dividends"],
    })
    if "Repaired?" in raw.columns:
        bars["repaired"] = raw["Repaired?"].astype(bool)
    splits = raw["Stock Splits"].fillna(0)
    actions = pd.DataFrame({"symbol": m["ticker"], "ex_date": local[splits != 0], "split": splits[splits != 0], "dividend": 0.0})
    return bars.sort_values("session").reset_index(drop=True), actions


def defective_dates(raw: pd.DataFrame, fixed: pd.DataFrame) -> pd.DatetimeIndex:
    if "repaired" in fixed.columns:
        return pd.DatetimeIndex(fixed.loc[fixed["repaired"], "session"])
    both = raw.merge(fixed, on="session", suffixes=("", "_fixed"))
    off = (both["close"] / both["close_fixed"] - 1).abs() > 0.30
    return pd.DatetimeIndex(both.loc[off, "session"])


def bad_dividend_dates(raw: pd.DataFrame, fixed: pd.DataFrame) -> pd.DatetimeIndex:
    """Dates where the raw file has a dividend the repair changed by a large factor (or removed)."""
    both = raw.merge(fixed, on="session", suffixes=("", "_fixed"))
    d, f = both["dividends"], both["dividends_fixed"]
    with np.errstate(divide="ignore"):
        off = (d > 0) & ((f <= 0) | (np.abs(np.log(d / f)) > np.log(1.5)))
    return pd.DatetimeIndex(both.loc[off, "session"])


def files(*problems: str, intervals=("1d", "1wk", "1h", "15m")) -> list[str]:
    out = []
    for p in sorted(YF.glob("*.csv")):
        m = NAME.match(p.name)
        if m and not m["fixed"] and m["problem"] in problems and m["interval"] in intervals:
            out.append(p.name)
    return out


def errors(findings: pd.DataFrame, check: str | None = None) -> pd.DataFrame:
    f = findings[findings["severity"] == "error"]
    return f[f["check"] == check] if check else f


PRICE_FILES = files("bad-stock-split", "100x-error", "bad-unit")
NOT_CAUGHT = {
    "AV-L-1wk-bad-stock-split.csv": "weekly bars whose raw and repaired closes differ by at most 24%: "
    "no defective date under the 30% rule, so nothing to catch",
}


@needs_shared_data
def test_every_price_fixture_is_a_case():
    # all 7 daily split files, both 100x files, the only bad-unit file (hourly) and the weekly split file
    assert len(files("bad-stock-split", "100x-error", intervals=("1d",))) == 9
    assert len(PRICE_FILES) == 11


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=NOT_CAUGHT[n])) if n in NOT_CAUGHT else n for n in PRICE_FILES]
)
@needs_shared_data
def test_price_defects_are_flagged_and_repairs_are_clean(name):
    raw, raw_actions = load_yf(YF / name)
    fixed, fixed_actions = load_yf(YF / name.replace(".csv", "-fixed.csv"))
    bad = defective_dates(raw, fixed)
    assert len(bad), f"{name}: no defective date derived from the repaired file"

    flagged = errors(check_outliers(raw, raw_actions), "outlier")
    pos = pd.Index(raw["session"])
    bad_pos = pos.get_indexer(bad)
    flagged_pos = pos.get_indexer(flagged["date"])
    near = [p for p in flagged_pos if np.min(np.abs(bad_pos - p)) <= 1]  # on, or one bar from, a defective date
    assert near, f"{name}: no error outlier near {list(bad.strftime('%Y-%m-%d'))}; got {flagged[['date', 'detail']]}"

    clean = errors(check_outliers(fixed, fixed_actions), "outlier")
    assert not clean["date"].isin(bad).any(), clean


@pytest.mark.parametrize(
    ("name", "kind", "dates"),
    [
        # the 0.1455 stretches are pence printed as pounds: both boundaries of the 14.55 run
        ("AET-L-1d-100x-error.csv", "unit_100x", ["2022-05-09", "2022-05-20"]),
        # cents until 2023-05-31, rand from 2023-06-01
        ("SSW-JO-1d-100x-error.csv", "unit_100x", ["2023-06-01"]),
        # one hourly bar closing at 0.6 between 61.5 and 58.07
        ("ASAI-L-1h-bad-unit.csv", "unit_100x", ["2024-10-24 16:00"]),
        # prices drop 5x on 03-29 but the 5:1 split is recorded on 03-30
        ("4063-T-1d-bad-stock-split.csv", "split_misaligned", ["2023-03-29"]),
        # 0.053 -> 0.1203 (x2.27 = 1/0.4406) on 05-22; the 0.4406 split is recorded on 05-30
        ("DEX-AX-1d-bad-stock-split.csv", "split_misaligned", ["2023-05-22"]),
        # one bar at a tenth of its neighbours: the way back is not flagged again
        ("LA-V-1d-bad-stock-split.csv", "spike", ["2020-08-26"]),
        ("MOB-ST-1d-bad-stock-split.csv", "spike", ["2023-05-22"]),
        ("CNE-L-1d-bad-stock-split.csv", "spike", ["2023-05-09"]),
        ("ALPHA-PA-1d-bad-stock-split.csv", "spike", ["2023-05-08"]),
        # 42.995 -> 2.2295: an unapplied 1:10 consolidation on top of a real -48% day
        ("SPM-MI-1d-bad-stock-split.csv", "split_like", ["2022-06-20"]),
    ],
)
@needs_shared_data
def test_price_defect_kinds(name, kind, dates):
    raw, actions = load_yf(YF / name)
    flagged = errors(check_outliers(raw, actions), "outlier")
    assert list(flagged["date"]) == [pd.Timestamp(d) for d in dates]
    assert flagged["detail"].str.startswith(f"{kind}:").all(), flagged["detail"].tolist()


@needs_shared_data
def test_split_like_move_of_two_is_only_a_warning():
    # SPM-MI repaired: 4.2995 -> 2.2295 on 2022-06-20 is a real -48% day (a rights issue), not a
    # split; a 2:1-like ratio happens in markets, so it is reported but breaches nothing
    fixed, actions = load_yf(YF / "SPM-MI-1d-bad-stock-split-fixed.csv")
    found = check_outliers(fixed, actions)
    assert len(found) == 1
    row = found.iloc[0]
    assert (row["date"], row["severity"]) == (pd.Timestamp("2022-06-20"), "warning")
    assert row["value"] == pytest.approx(2.2295401096344 / 4.29949989318848)
    assert "1/2" in row["detail"]


DIV_FILES = files("bad-div", intervals=("1d",))


@needs_shared_data
def test_every_bad_div_fixture_is_a_case():
    assert len(DIV_FILES) == 22


@pytest.mark.parametrize("name", DIV_FILES)
@needs_shared_data
def test_bad_dividends_are_flagged(name):
    raw, raw_actions = load_yf(YF / name)
    fixed, fixed_actions = load_yf(YF / name.replace(".csv", "-fixed.csv"))
    bad = bad_dividend_dates(raw, fixed)
    found = check_dividends(raw, raw_actions)
    fixed_found = check_dividends(fixed, fixed_actions)
    if len(bad) == 0:
        # the repair kept every dividend: no dividend error in either file
        assert errors(found).empty, errors(found)
        assert errors(fixed_found).empty
        return
    flagged = pd.DatetimeIndex(found["date"])
    missed = bad[~bad.isin(flagged)]
    assert missed.empty, f"{name}: bad dividends not flagged on {list(missed.strftime('%Y-%m-%d'))}"
    assert errors(fixed_found)["date"].isin(bad).sum() == 0, errors(fixed_found)


@pytest.mark.parametrize(
    ("name", "date", "reason"),
    [
        ("PSH-L-1d-bad-div.csv", "2022-08-18", "above 30% of the close and the price moved +1.7%"),
        ("TENT-L-1d-bad-div.csv", "2023-03-16", "trailing-year dividends are only 0.076%"),
        ("NVT-L-1d-bad-div.csv", "2023-07-20", "about 1/100 of the symbol's usual yield"),
        ("KEN-TA-1d-bad-div.csv", "2022-01-18", "another dividend of 3.5 on 2022-01-19: a duplicate?"),
        ("4063-T-1d-bad-div.csv", "2023-03-30", "the ratio of the split of 5 on 2023-03-30"),
        ("ABDP-L-1d-bad-div.csv", "2022-05-05", "the price moved +2.4% on the ex-date"),
    ],
)
@needs_shared_data
def test_bad_dividend_reasons(name, date, reason):
    raw, actions = load_yf(YF / name)
    found = check_dividends(raw, actions).set_index("date")
    assert reason in found.loc[pd.Timestamp(date), "detail"]


@pytest.mark.parametrize("name", files("no-bad-divs", intervals=("1d",)))
@needs_shared_data
def test_control_files_have_no_errors(name):
    bars, actions = load_yf(YF / name)
    found = pd.concat([check_outliers(bars, actions), check_dividends(bars, actions)])
    assert errors(found).empty, errors(found)


@needs_shared_data
def test_calendar_per_call_matters():
    # Tel Aviv traded Sunday to Thursday: on XTAE one real closure (2024-02-27, municipal
    # elections) is the only gap; on XNYS the same bars look like a broken series
    ken, _ = load_yf(YF / "KEN-TA-1d-bad-div.csv")
    on_xtae = check_coverage(ken, calendar_for("KEN-TA"))
    assert on_xtae[["check", "date", "value", "severity"]].values.tolist() == [["gap", pd.Timestamp("2024-02-27"), 1.0, "warning"]]
    on_xnys = check_coverage(ken, "XNYS")
    sundays = int((ken["session"].dt.dayofweek == 6).sum())
    off = on_xnys[on_xnys["check"] == "off_calendar"]
    assert off["value"].iloc[0] >= sundays > 100 and "not XNYS sessions" in off["detail"].iloc[0]
    assert errors(on_xnys, "coverage")["value"].iloc[0] < 0.8
    # "-IL" bars follow London: on XDUB the UK bank holidays look like gaps
    kap, _ = load_yf(YF / "KAP-IL-1d-bad-div.csv")
    assert check_coverage(kap, calendar_for("KAP-IL")).empty
    gaps = check_coverage(kap, "XDUB")
    assert pd.Timestamp("2022-09-19") in set(gaps["date"])  # the Queen's funeral: London shut, Dublin open
    # a mapping symbol -> calendar for a frame that mixes exchanges; Tokyo starts in 1997
    tokyo, _ = load_yf(YF / "4063-T-1d-bad-stock-split.csv")
    both = pd.concat([ken, tokyo], ignore_index=True)
    mixed = check_coverage(both, {"KEN-TA": "XTAE", "4063-T": "XTKS"})
    assert mixed[["symbol", "date"]].values.tolist() == [["KEN-TA", pd.Timestamp("2024-02-27")]]


@needs_shared_data
def test_flat_closes_with_volume():
    # NVT-L, an illiquid London name whose close is a quoted mid, repeats it for a week at a time
    # while a few trades print: a warning, an error only with a tighter threshold
    nvt, _ = load_yf(YF / "NVT-L-1d-bad-div.csv")
    flat = check_stale(nvt, "XLON")
    assert set(flat["check"]) == {"flat"} and set(flat["severity"]) == {"warning"}
    for f in flat.itertuples():
        at = nvt.index[nvt["session"] == f.date][0]
        run = nvt.iloc[at: at + int(f.value)]
        assert (run["close"] == nvt["close"].iloc[at - 1]).all() and (run["volume"] > 0).all()
        assert int(f.value) >= 5
    assert check_stale(nvt, "XLON", {"flat_sessions": 2})["severity"].eq("error").any()


# ----------------------------------------------------------------- Lean store

LEAN_SYMBOLS = ["AAPL", "SPY", "UW"]


@pytest.fixture(scope="module")
def lean_store(tmp_path_factory, lean_root):
    settings = load_settings(tmp_path_factory.mktemp("health") / "home")
    ingest_lean(settings, lean_root, LEAN_SYMBOLS)
    report = run_health(settings)
    return settings, report


def test_corporate_actions_from_lean_factor_files(lean_store):
    settings, _ = lean_store
    events = current_events(settings).set_index(["symbol", "ex_date"])
    # aapl.csv factor rows 20140606 (split factor 1/28) -> 20140806 (1/4): 7 new shares per old on 2014-06-09
    assert events.loc[("AAPL", pd.Timestamp("2014-06-09")), "split"] == 7.0
    assert events.loc[("AAPL", pd.Timestamp("2020-08-31")), "split"] == 4.0
    # 20140507 -> 20140606: price factor 0.8961764 -> 0.9011818 on a reference close of 592.33
    assert events.loc[("AAPL", pd.Timestamp("2014-05-08")), "dividend"] == pytest.approx(592.33 * (1 - 0.8961764 / 0.9011818), abs=1e-5)
    assert events.loc[("AAPL", pd.Timestamp("2014-05-08")), "dividend"] == pytest.approx(3.29, abs=1e-3)


def test_lean_split_is_explained_by_the_corporate_action(lean_store):
    settings, report = lean_store
    aapl = report.findings[(report.findings["symbol"] == "AAPL") & (report.findings["check"] == "outlier")]
    for split_day in ("2000-06-21", "2005-02-28", "2014-06-09", "2020-08-31"):
        assert pd.Timestamp(split_day) not in set(aapl["date"])
    assert errors(aapl).empty
    # without the corporate actions the 645.57 -> 93.70 move is an unapplied 7:1 split
    bars = read_silver_bars(settings, ["AAPL"])
    bare = errors(check_outliers(bars), "outlier").set_index("date")
    assert bare.loc[pd.Timestamp("2014-06-09"), "value"] == pytest.approx(93.70 / 645.57)
    assert bare.loc[pd.Timestamp("2014-06-09"), "detail"].startswith("split_like:")


def test_lean_coverage_and_the_uw_stub(lean_store):
    settings, report = lean_store
    syms = report.summary["symbols"]
    for sym in ("AAPL", "SPY"):
        expected = len(clock.sessions_in_range("1998-01-02", "2021-03-31"))
        assert syms[sym]["coverage"] == 1.0 and syms[sym]["expected_sessions"] == syms[sym]["bars"] == expected
        assert syms[sym]["gaps"] == 0 and not syms[sym]["stale"]
    # the UW stub (1998-01-02..1998-07-16) is complete within its range; what is missing is every
    # session after it until the store's latest one: reported as a stale series with that count
    assert syms["UW"]["coverage"] == 1.0 and syms["UW"]["bars"] == 135
    stale = report.findings[report.findings["check"] == "stale"]
    assert stale["symbol"].tolist() == ["UW"]
    missing = clock.sessions_in_range("1998-07-17", "2021-03-31")
    assert stale["value"].iloc[0] == len(missing) == 5714
    assert "no bars from 1998-07-17 to 2021-03-31" in stale["detail"].iloc[0]
    assert [f.split("=")[0] for f in report.failed] == ["stale_sessions"]


def test_lean_report_files(lean_store):
    settings, report = lean_store
    assert report.paths["json"] == settings.reports / "health" / "health.json"
    doc = json.loads(report.paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert doc["summary"]["symbols"]["SPY"]["coverage"] == 1.0
    assert doc["summary"]["tables"]["bars_daily"]["rows"] == 5849 * 2 + 135
    assert doc["summary"]["tables"]["macro_observations"] == {"rows": 0, "present": False}
    assert len(doc["findings"]) == len(report.findings)
    assert doc["failed"] == report.failed
    page = report.paths["html"].read_text()
    assert "<td>UW</td>" in page and "stale_sessions" in page and "class='bad'" in page
    assert not list(report.paths["html"].parent.glob(".tmp-*"))
    text = report.text()
    assert "3 symbol(s), 11,833 daily bars" in text and "Breached: stale_sessions=5" in text


def test_strict_names_the_breached_threshold(lean_store):
    settings, _ = lean_store
    # UW's last bar is 5714 sessions behind: a 6000-session limit passes, a 5000-session one does not
    assert run_health(settings, strict=True, thresholds={"stale_sessions": 6000}).failed == []
    with pytest.raises(HealthCheckError, match=r"stale_sessions=5000: 1 finding") as info:
        run_health(settings, strict=True, thresholds={"stale_sessions": 5000})
    assert isinstance(info.value, AlphaError)
    assert str(settings.reports / "health" / "health.html") in str(info.value)
    with pytest.raises(ConfigError, match="unknown health threshold 'stale'"):
        run_health(settings, thresholds={"stale": 3})


# --------------------------------------------- injected defects in real rows

@pytest.fixture(scope="module")
def aapl_june_2014(lean_store):
    settings, _ = lean_store
    bars = read_silver_bars(settings, ["AAPL"])
    return bars[(bars["session"] >= "2014-06-02") & (bars["session"] <= "2014-06-13")].reset_index(drop=True)


def test_injected_duplicate_and_nan_are_counted(aapl_june_2014):
    bars = aapl_june_2014.copy()
    assert len(bars) == 10
    bars.loc[bars["session"] == "2014-06-04", "close"] = np.nan
    dup = bars[bars["session"] == "2014-06-05"].assign(close=lambda f: f["close"] + 0.01)
    bars = pd.concat([bars, dup], ignore_index=True)

    dups = check_duplicates(bars)
    assert dups[["symbol", "date", "value"]].values.tolist() == [["AAPL", pd.Timestamp("2014-06-05"), 2.0]]
    nan = check_nan_rates(bars)
    assert nan[["date", "value", "severity"]].values.tolist() == [[pd.Timestamp("2014-06-04"), 1 / 11, "error"]]
    assert nan["detail"].iloc[0].startswith("close: 1 of 11 rows missing")
    # through the table check: the conflicting row shares the version key (symbol, session, known_timestamp)
    found, summary = check_table(bars.assign(year="2014"), BARS_DAILY, pd.Timestamp("2014-06-14", tz="UTC"))
    assert summary["duplicate_keys"] == 1 and summary["rows"] == 11
    assert summary["nan_rates"]["close"] == pytest.approx(1 / 11) and summary["nan_rates"]["open"] == 0.0
    assert found["check"].tolist() == ["duplicate_key"]


def test_run_health_finds_a_conflict_and_a_100x_revision(tmp_path, lean_root):
    settings = load_settings(tmp_path / "home")
    ingest_lean(settings, lean_root, ["AAPL"])
    bars = read_silver_bars(settings, ["AAPL"])
    # a revision of 2014-06-12 in cents (x100), received now: the latest version of that bar
    day = bars[bars["session"] == "2014-06-12"][["symbol", "session", "open", "high", "low", "close", "volume"]]
    cents = day.assign(**{c: day[c] * 100 for c in ("open", "high", "low", "close")})
    stats = write_silver_bars(settings, cents, source="lean", now=pd.Timestamp("2026-01-05", tz="UTC"))  # the same vendor
    assert stats["revised"] == 1
    # and a conflicting copy of 2014-06-05 written with the same version key
    row = bars[bars["session"] == "2014-06-05"].assign(close=lambda f: f["close"] + 0.01)
    silver.append(settings, BARS_DAILY, row, pd.Timestamp("2026-01-05", tz="UTC"))

    report = run_health(settings)
    found = errors(report.findings)
    outliers = found[found["check"] == "outlier"]
    assert outliers["date"].tolist() == [pd.Timestamp("2014-06-12")]
    close = bars.set_index("session")["close"]
    assert outliers["value"].iloc[0] == pytest.approx(100 * close["2014-06-12"] / close["2014-06-11"])
    assert outliers["detail"].iloc[0].startswith("unit_100x:")
    assert found.loc[found["check"] == "duplicate", ["date", "value"]].values.tolist() == [[pd.Timestamp("2014-06-05"), 2.0]]
    assert sorted(f.split("=")[0] for f in report.failed) == ["max_duplicates", "max_error_outliers"]
    page = report.paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 1  # the close around the flagged bar
    # count thresholds tolerate that many error findings
    tolerant = run_health(settings, thresholds={"max_error_outliers": 1})
    assert [f.split("=")[0] for f in tolerant.failed] == ["max_duplicates"]


def test_a_report_checked_symbol_by_symbol_is_the_report_of_one_pass(tmp_path, lean_root):
    """run_health reads silver a chunk of symbols at a time; chunks of one symbol must give the
    report of chunks holding everything, byte for byte: findings, summary, JSON and page."""
    settings = load_settings(tmp_path / "home")
    ingest_lean(settings, lean_root, None)   # every shipped symbol: splits, dividends, gaps, stale series
    bars = read_silver_bars(settings, ["AAPL"])
    day = bars[bars["session"] == "2014-06-12"][["symbol", "session", "open", "high", "low", "close", "volume"]]
    write_silver_bars(settings, day.assign(**{c: day[c] * 100 for c in ("open", "high", "low", "close")}), source="lean",
                      now=pd.Timestamp("2026-01-05", tz="UTC"))   # an error outlier, so the page has a plot
    now = pd.Timestamp("2026-01-10", tz="UTC")
    pages = {}
    for size in (1, 64):
        report = run_health(settings, now=now, chunk_symbols=size)
        pages[size] = (report.paths["json"].read_text(), report.paths["html"].read_text(), report.findings)
    assert pages[1][0] == pages[64][0] and pages[1][1] == pages[64][1]
    pd.testing.assert_frame_equal(pages[1][2], pages[64][2])
    doc = json.loads(pages[1][0])
    assert len(doc["summary"]["symbols"]) == 21 and "data:image/png;base64," in pages[1][1]
    assert doc["summary"]["tables"]["bars_daily"]["rows"] == len(read_silver_bars(settings, versions="all"))
