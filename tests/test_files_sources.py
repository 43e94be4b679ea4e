"""File sources through the ingest pipeline: Lean minute bars, option chains and
fine fundamentals, and FX bars on the 24x5 calendar.

Exact values come from the shared Lean files (SOURCE.txt) and the FX fixture
(tests/fixtures/fx/SOURCE.txt); corrupted copies live in tmp folders shaped
like the originals.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from etl.sources.base import run_ingest
from etl.storage import silver, tables
from etl.storage.watermarks import open_watermarks

FX = Path(__file__).parent / "fixtures" / "fx"
UTC = "UTC"


def tree_digest(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def quarantined(settings, table: str) -> pd.DataFrame:
    q = silver.read_quarantine(settings, table)
    return q.sort_values(["source_file", "source_row"]).reset_index(drop=True)


def lean_copy(tmp_path: Path, lean_root: Path, *relpaths: str) -> Path:
    """A Lean-shaped folder holding copies of the given files."""
    root = tmp_path / "lean"
    for rel in relpaths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lean_root / rel, root / rel)
    return root


def watermark(settings, source: str, dataset: str, symbol: str) -> str | None:
    marks = open_watermarks(settings)
    try:
        return marks.get(source, dataset, symbol)
    finally:
        marks.dispose()


# ------------------------------------------------------------------ minute

def test_minute_bars_in_dollars_utc_and_known_at_bar_end(tmp_home, shared_lean_root):
    summary = run_ingest(tmp_home, "lean", "minute", ["AAPL"], "2014-06-05", "2014-06-09", path=str(shared_lean_root))
    assert not summary.failed
    files = sorted((shared_lean_root / "equity_usa_minute").glob("2014060[569]_aapl_minute_trade.csv"))
    lines = sum(len(p.read_text().splitlines()) for p in files)
    assert summary.rows_fetched == lines == summary.rows_written == 2303 and summary.rows_quarantined == 0
    bars = silver.read(tmp_home, tables.BARS_MINUTE).set_index("bar_start")
    assert len(bars) == 2303 and set(bars["symbol"]) == {"AAPL"}
    # first line of 20140609: 14400000 ms = 04:00 New York (EDT) = 08:00 UTC; the stale pre-split
    # open/high 645.57 with low 92.23 is the real defect SOURCE.txt describes: kept, not "fixed"
    first = bars.loc[pd.Timestamp("2014-06-09 08:00", tz=UTC)]
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (645.57, 645.57, 92.23, 92.42, 600.0)
    assert first["bar_end"] == first["event_timestamp"] == pd.Timestamp("2014-06-09 08:01", tz=UTC)
    # 57540000 ms = 15:59 New York: the last regular bar closes at 93.70, the daily close in SOURCE.txt
    last = bars.loc[pd.Timestamp("2014-06-09 19:59", tz=UTC)]
    assert (last["open"], last["high"], last["low"], last["close"], last["volume"]) == (93.64, 93.70, 93.62, 93.70, 2414761.0)
    assert bars["vwap"].isna().all() and bars["trades"].isna().all()
    assert str(bars["event_timestamp"].dtype) == "datetime64[us, UTC]"
    # point in time: a bar is never known before it ends
    assert (bars["event_timestamp"] == bars["bar_end"]).all()
    assert (bars["bar_end"] - bars.index == pd.Timedelta(minutes=1)).all()
    assert watermark(tmp_home, "lean", "minute", "AAPL") == "2014-06-09"


def test_minute_corrupted_rows_are_quarantined_with_reasons(tmp_home, tmp_path, shared_lean_root):
    rel = "equity_usa_minute/20140609_aapl_minute_trade.csv"
    root = lean_copy(tmp_path, shared_lean_root, rel)
    lines = (root / rel).read_text().splitlines()
    n = len(lines)
    lines[1] = "14460000,924600,abc,924600,924600,59"        # line 2: non-numeric high
    lines[2] = "14580000,924600,924600,923000,923000"         # line 3: a field missing
    lines[3] = lines[3].split(",", 1)[0] + ",900000,950000,940000,945000,10"  # line 4: open below low
    lines[4] = "14641000" + lines[4][lines[4].index(","):]    # line 5: not a whole minute
    lines[6] = lines[6].split(",", 1)[0] + ",924600,924600,924600,-924600,5"  # line 7: negative close
    lines.append(lines[10])                                   # line n+1: an exact copy of line 11, dropped as a copy
    t12, rest12 = lines[11].split(",", 1)
    lines.append(f"{t12},924000,924000,924000,924000,1")      # line n+2: line 12's minute again, other values: both out
    (root / rel).write_text("\n".join(lines) + "\n")

    summary = run_ingest(tmp_home, "lean", "minute", ["AAPL"], "2014-06-09", "2014-06-09", path=str(root))
    assert not summary.failed
    q = quarantined(tmp_home, "bars_minute")
    assert q["source_row"].tolist() == [2, 3, 4, 5, 7, 12, n + 1, n + 2]
    assert q["reason"].tolist()[:5] == [
        "non-numeric high 'abc'",
        "expected 6 comma-separated fields (ms,open,high,low,close,volume), got 5",
        "inconsistent bar: need low <= open, close <= high",
        "time 14641000 ms is not a minute of the day (0..86340000, whole minutes)",
        "close must be > 0, got -924600",
    ]
    assert q["reason"].iloc[6] == "exact copy of line 11"
    assert q["reason"].iloc[5] == q["reason"].iloc[7] == f"minute {t12} ms appears more than once in the file with different values"
    assert q["raw"].iloc[0] == "14460000,924600,abc,924600,924600,59"
    assert (q["source_file"] == str((root / rel).resolve())).all() and (q["symbol"] == "AAPL").all()
    bars = silver.read(tmp_home, tables.BARS_MINUTE)
    assert summary.rows_fetched == n + 2 and len(bars) == n + 2 - 8 == summary.rows_written
    assert pd.Timestamp("2014-06-09 08:01", tz=UTC) not in set(bars["bar_start"])   # the bad row is not stored as 0 or NaN
    minute_11 = pd.Timestamp("2014-06-09", tz="America/New_York") + pd.Timedelta(milliseconds=int(lines[10].split(",")[0]))
    assert (bars["bar_start"] == minute_11).sum() == 1


# ------------------------------------------------------------------ option chains

def test_option_chain_contracts_prices_and_availability(tmp_home, lean_root):
    summary = run_ingest(tmp_home, "lean", "option_chains", ["AAPL"], "2014-06-06", "2014-06-09", path=str(lean_root))
    assert not summary.failed and summary.rows_quarantined == 0
    q = silver.read(tmp_home, tables.OPTION_QUOTES)
    # every line but the header and the underlying's row is a contract
    expect = {d: len((lean_root / "option_usa_universes" / "aapl" / f"{d:%Y%m%d}.csv").read_text().splitlines()) - 2
              for d in pd.to_datetime(["2014-06-06", "2014-06-09"])}
    assert q.groupby("date").size().to_dict() == expect
    # 20140609.csv line 230: 20140621,90,C,3.1000,4.1000,2.4700,3.9000,12655,67167,0,0.9906057,0,0,0.0777963,0.0271172
    row = q[q["date"] == "2014-06-09"].set_index("contract").loc["AAPL140621C00090000"]
    assert (row["date"], row["expiry"], row["strike"], row["right"]) == (pd.Timestamp("2014-06-09"), pd.Timestamp("2014-06-21"), 90.0, "C")
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"], row["open_interest"]) == (3.1, 4.1, 2.47, 3.9, 12655.0, 67167.0)
    assert np.isnan(row["implied_volatility"])          # the vendor's 0: not computed
    assert (row["delta"], row["gamma"], row["theta"]) == (0.9906057, 0.0, 0.0777963)
    assert row["underlying_close"] == 92.72    # line 2 of 20140609.csv: ,,,92.69,92.95,92.50,92.72,2467914
    assert np.isnan(row["bid"]) and np.isnan(row["ask"])
    # strikes are split-adjusted on the split day: 70.71 is an OCC strike of 00070710
    assert "AAPL140613C00070710" in set(q["contract"])
    # the underlying's row of 20140606.csv (split-adjusted, the same as 20140609.csv's): close 92.72
    day6 = q[q["date"] == "2014-06-06"]
    assert (day6["underlying_close"] == 92.72).all()
    # 20140606.csv line 3 is all zeros: no trade that day, so no prices (never a price of 0)
    z = day6.set_index("contract").loc["AAPL140613C00070710"]
    assert np.isnan([z["open"], z["high"], z["low"], z["close"], z["implied_volatility"], z["delta"], z["rho"]]).all()
    assert z["volume"] == 0.0 and np.isnan(z["open_interest"])    # empty open interest stays missing
    # known at the session close + 15 min (EDT: 20:15 UTC), never before
    assert set(q["event_timestamp"]) == {pd.Timestamp("2014-06-06 20:15", tz=UTC), pd.Timestamp("2014-06-09 20:15", tz=UTC)}
    assert watermark(tmp_home, "lean", "option_chains", "AAPL") == "2014-06-09"


def test_option_chain_real_defect_is_quarantined(tmp_home, lean_root):
    # spy/20240105.csv line 17 has rho "-0.0009296.0025941" (two numbers run together)
    summary = run_ingest(tmp_home, "lean", "option_chains", ["SPY"], "2024-01-05", "2024-01-05", path=str(lean_root))
    q = quarantined(tmp_home, "option_quotes")
    assert q[["source_row", "reason"]].values.tolist() == [[17, "non-numeric rho '-0.0009296.0025941'"]]
    assert q["raw"].iloc[0].startswith("20240109,412,C,55.4850,")
    lines = len((lean_root / "option_usa_universes/spy/20240105.csv").read_text().splitlines())
    assert summary.rows_written == lines - 3     # header, underlying row and the bad one
    stored = silver.read(tmp_home, tables.OPTION_QUOTES)
    assert "SPY240109C00412000" not in set(stored["contract"])


# ------------------------------------------------------------------ fine fundamentals

def test_fine_fundamentals_long_format_known_after_filing(tmp_home, shared_lean_root):
    summary = run_ingest(tmp_home, "lean", "fine_fundamentals", ["AAPL"], "2014-04-01", "2014-04-30", path=str(shared_lean_root))
    assert not summary.failed and summary.rows_quarantined == 0
    f = silver.read(tmp_home, tables.FUNDAMENTALS_SNAPSHOTS)
    assert sorted(f["file_date"].unique()) == list(pd.to_datetime(["2014-04-24", "2014-04-29"]))
    snap = f[f["file_date"] == "2014-04-29"].set_index(["field", "period"])
    # SOURCE.txt: AAPL 20140429.json holds the 10-Q for the period ending 2014-03-29, filed 2014-04-24.
    # Apple's fiscal Q2 2014: revenue $45,646 million, net income $10,223 million.
    assert snap.loc[("FinancialStatements.IncomeStatement.TotalRevenue", "3M"), "value"] == 45_646_000_000
    assert snap.loc[("FinancialStatements.IncomeStatement.NetIncome", "3M"), "value"] == 10_223_000_000
    assert snap.loc[("FinancialStatements.IncomeStatement.TotalRevenue", "6M"), "value"] == 103_240_000_000
    assert snap.loc[("CompanyReference.ShortName", ""), "text"] == "Apple"
    assert np.isnan(snap.loc[("CompanyReference.ShortName", ""), "value"])
    assert snap.loc[("FinancialStatements.FormType", ""), "text"] == "10-Q"
    assert set(snap["period_end"]) == {pd.Timestamp("2014-03-29")} and set(snap["filed"]) == {pd.Timestamp("2014-04-24")}
    assert set(snap["form"]) == {"10-Q"} and set(snap["accession"]) == {"0001193125-14-157311"}
    assert not snap.index.duplicated().any()
    # known at the end of the filing date, never before the end of the snapshot's own date:
    # 20140424.json -> midnight New York after 2014-04-24; 20140429.json -> after 2014-04-29
    known = f.groupby("file_date")["event_timestamp"].unique().map(list).to_dict()
    assert known == {pd.Timestamp("2014-04-24"): [pd.Timestamp("2014-04-25 04:00", tz=UTC)],
                     pd.Timestamp("2014-04-29"): [pd.Timestamp("2014-04-30 04:00", tz=UTC)]}
    assert (f["event_timestamp"] > f["filed"].dt.tz_localize("America/New_York") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)).all()
    assert (f["event_timestamp"].dt.tz_convert(None) > f["period_end"] + pd.Timedelta(days=1)).all()


def test_fine_fundamentals_truncated_file_is_quarantined_others_kept(tmp_home, tmp_path, shared_lean_root):
    good, bad = "equity_usa_fine_fundamentals/ibm/20140331.json", "equity_usa_fine_fundamentals/ibm/20140429.json"
    root = lean_copy(tmp_path, shared_lean_root, good, bad, "equity_usa_fine_fundamentals/json_code_map.csv")
    text = (root / bad).read_text()
    (root / bad).write_text(text[: len(text) // 2])
    summary = run_ingest(tmp_home, "lean", "fine_fundamentals", ["IBM"], "2014-03-01", "2014-04-30", path=str(root))
    assert not summary.failed
    q = quarantined(tmp_home, "fundamentals_snapshots")
    assert len(q) == 1 and q["source_file"].iloc[0] == str((root / bad).resolve()) and pd.isna(q["source_row"].iloc[0])
    assert q["reason"].iloc[0].startswith("not valid JSON") and q["raw"].iloc[0] == text[: len(text) // 2]
    f = silver.read(tmp_home, tables.FUNDAMENTALS_SNAPSHOTS)
    assert set(f["file_date"]) == {pd.Timestamp("2014-03-31")} and len(f) == summary.rows_written > 900


def test_lean_unknown_symbol_fails_that_job_only(tmp_home, shared_lean_root):
    summary = run_ingest(tmp_home, "lean", "fine_fundamentals", ["NOPE", "BAC"], "2014-01-01", "2014-12-31", path=str(shared_lean_root))
    assert [r.job.symbol for r in summary.failed] == ["NOPE"] and "no Lean fine fundamentals for NOPE" in summary.failed[0].error
    assert set(silver.read(tmp_home, tables.FUNDAMENTALS_SNAPSHOTS)["symbol"]) == {"BAC"}


def test_lean_reingest_is_byte_identical(tmp_home, shared_lean_root):
    runs = [("minute", ["SPY"], "2013-10-04", "2013-10-07"), ("option_chains", ["TWX"], "2014-06-04", "2014-06-05"),
            ("fine_fundamentals", ["GOOG"], "2014-02-01", "2014-04-30")]
    for dataset, symbols, start, end in runs:
        assert run_ingest(tmp_home, "lean", dataset, symbols, start, end, path=str(shared_lean_root)).rows_written > 0
    before = tree_digest(tmp_home.silver)
    for dataset, symbols, start, end in runs:
        again = run_ingest(tmp_home, "lean", dataset, symbols, start, end, path=str(shared_lean_root))
        underlying_rows = 2 if dataset == "option_chains" else 0   # one per chain file, not a contract
        assert again.rows_written == 0 and again.results[0].unchanged == again.rows_fetched - underlying_rows
    assert tree_digest(tmp_home.silver) == before


# ------------------------------------------------------------------ FX

def fx_rows() -> pd.DataFrame:
    raw = pd.read_csv(FX / "EURUSD.csv")
    raw["datetime"] = pd.to_datetime(raw["datetime"], utc=True)
    return raw


def test_fx_sessions_run_17_to_17_new_york_with_dst(tmp_home):
    summary = run_ingest(tmp_home, "fx", "bars", None, "2017-10-01", "2017-11-30", path=str(FX))
    assert not summary.failed and summary.rows_fetched == 481
    bars = silver.read(tmp_home, tables.FX_BARS_DAILY).set_index("session")
    assert list(bars.index) == list(pd.bdate_range("2017-10-16", "2017-11-10"))    # 20 sessions, Monday-Friday
    assert (bars["bars"] == 24).all() and (bars["pair"] == "EURUSD").all()
    raw = fx_rows()
    # session 2017-10-16 = 2017-10-15 17:00 EDT (21:00 UTC) .. 2017-10-16 17:00 EDT
    s = raw[(raw["datetime"] >= "2017-10-15 21:00Z") & (raw["datetime"] < "2017-10-16 21:00Z")]
    got = bars.loc["2017-10-16"]
    assert (got["open"], got["high"], got["low"], got["close"], got["volume"]) == (1.1814, 1.18668, 1.17806, 1.17964, 29558.0)
    assert (got["open"], got["high"], got["low"], got["close"], got["volume"]) == (
        s["open"].iloc[0], s["high"].max(), s["low"].min(), s["close"].iloc[-1], float(s["volume"].sum()))
    # after the 2017-11-05 DST change a session opens at 22:00 UTC (17:00 EST)
    s = raw[(raw["datetime"] >= "2017-11-05 22:00Z") & (raw["datetime"] < "2017-11-06 22:00Z")]
    assert bars.loc["2017-11-06", "open"] == s["open"].iloc[0] == 1.16172 and bars.loc["2017-11-06", "close"] == s["close"].iloc[-1]
    # known at 17:00 New York + 15 min: 21:15 UTC under EDT, 22:15 UTC under EST
    assert bars.loc["2017-11-03", "event_timestamp"] == pd.Timestamp("2017-11-03 21:15", tz=UTC)
    assert bars.loc["2017-11-06", "event_timestamp"] == pd.Timestamp("2017-11-06 22:15", tz=UTC)
    ends = (bars.index + pd.Timedelta(hours=17)).tz_localize("America/New_York").tz_convert(UTC)
    assert (bars["event_timestamp"] == ends + pd.Timedelta(minutes=15)).all()
    # the real weekend bar (Friday 2017-10-20 17:00 EDT) is rejected, not folded into a session
    q = quarantined(tmp_home, "fx_bars_daily")
    assert q["source_row"].tolist() == [122] and q["raw"].iloc[0] == "2017-10-20 21:00:00+00:00,1.17799,1.17799,1.17799,1.17799,1"
    assert "FX weekend" in q["reason"].iloc[0] and "outside the 24x5 calendar" in q["reason"].iloc[0]
    assert watermark(tmp_home, "fx", "bars", "EURUSD") == "2017-11-10"
    # idempotent: the same folder again changes nothing
    before = tree_digest(tmp_home.silver)
    again = run_ingest(tmp_home, "fx", "bars", ["EURUSD"], "2017-10-01", "2017-11-30", path=str(FX))
    assert again.rows_written == 0 and again.results[0].unchanged == 20
    assert tree_digest(tmp_home.silver) == before


def test_fx_naive_and_bad_rows_are_rejected_never_guessed(tmp_home, tmp_path):
    lines = (FX / "EURUSD.csv").read_text().splitlines()
    folder = tmp_path / "fx"
    folder.mkdir()
    bad = list(lines)
    bad[3] = bad[3].replace("+00:00", "")                       # line 4: naive time
    bad[4] = "2017-10-16,1.18,1.19,1.17,1.18,10"               # line 5: a bare date
    t, o, rest = bad[5].split(",", 2)
    bad[5] = f"{t},-{o},{rest}"                                  # line 6: negative open
    bad[6] = "2017-10-16 02:00:00+00:00,1.1810,1.1800,1.1820,1.1810,5"   # line 7: high below low
    bad[7] = "not a time+00:00,1.18,1.19,1.17,1.18,10"         # line 8
    (folder / "EURUSD.csv").write_text("\n".join(bad) + "\n")
    summary = run_ingest(tmp_home, "fx", "bars", ["EURUSD"], "2017-10-01", "2017-11-30", path=str(folder))
    assert not summary.failed
    q = quarantined(tmp_home, "fx_bars_daily")
    reasons = dict(zip(q["source_row"], q["reason"], strict=True))
    assert reasons[4].startswith("naive time '2017-10-15 23:00:00': no time zone")
    assert reasons[5].startswith("bare date '2017-10-16' does not say when the bar started")
    assert reasons[6] == f"open must be > 0, got -{o}"
    assert reasons[7] == "inconsistent bar: need low <= open, close <= high"
    assert reasons[8] == "unparseable time 'not a time+00:00'"
    assert sorted(reasons) == [4, 5, 6, 7, 8, 122]
    bars = silver.read(tmp_home, tables.FX_BARS_DAILY).set_index("session")
    assert bars.loc["2017-10-16", "bars"] == 24 - 5 and bars.loc["2017-10-17", "bars"] == 24


def test_fx_session_cut_by_the_file_is_not_stored_as_a_daily_bar(tmp_home, tmp_path):
    lines = (FX / "EURUSD.csv").read_text().splitlines()
    folder = tmp_path / "fx"
    folder.mkdir()
    # start at 2017-10-16 01:00 UTC (4 bars into the session) and stop at 2017-11-10 12:00 UTC
    body = [ln for ln in lines[1:] if "2017-10-16 01:00" <= ln[:16] <= "2017-11-10 12:00"]
    (folder / "EURUSD.csv").write_text("\n".join([lines[0], *body]) + "\n")
    summary = run_ingest(tmp_home, "fx", "bars", None, "2017-10-01", "2017-11-30", path=str(folder))
    bars = silver.read(tmp_home, tables.FX_BARS_DAILY)
    assert bars["session"].min() == pd.Timestamp("2017-10-17") and bars["session"].max() == pd.Timestamp("2017-11-09")
    q = quarantined(tmp_home, "fx_bars_daily")
    cut = q[q["reason"].str.contains("is cut by the")]
    # 20 bars of 2017-10-16 (01:00 .. 20:00 UTC), 15 of 2017-11-10 (opened 2017-11-09 22:00 UTC, EST)
    assert len(cut) == 20 + 15
    assert cut["reason"].str.startswith("session 2017-10-16 is cut by the start of the file").sum() == 20
    assert cut["reason"].str.startswith("session 2017-11-10 is cut by the end of the file").sum() == 15
    assert watermark(tmp_home, "fx", "bars", "EURUSD") == "2017-11-09" and summary.rows_written == 18


def test_fx_missing_column_fails_the_job_with_a_clear_error(tmp_home, tmp_path):
    folder = tmp_path / "fx"
    folder.mkdir()
    (folder / "GBPUSD.csv").write_text("time,open,high,low,close\n2017-10-16T00:00:00Z,1.3,1.31,1.29,1.3\n")
    summary = run_ingest(tmp_home, "fx", "bars", None, "2017-10-01", "2017-11-30", path=str(folder))
    assert len(summary.failed) == 1
    assert "missing column(s) ['datetime (or date)']" in summary.failed[0].error and "GBPUSD.csv" in summary.failed[0].error
    assert silver.read(tmp_home, tables.FX_BARS_DAILY).empty
