"""The silver tables, one per domain: name, version key and partitioning.

Partitions follow the queries we run: daily bars by symbol bucket (64 buckets
by CRC-32 of the symbol, parts sorted by symbol in row groups of 8,192 rows: a
chunk of symbols reads its buckets only, a symbol little more than its own
rows, and a night's new bars are one small part per bucket, not per symbol;
see :mod:`etl.storage.bars`), minute bars and option quotes by underlying and year, news by month, fundamentals by symbol, macro
by series. Every row carries ``event_timestamp`` (first knowable) and
``created_timestamp`` (written); the version key includes what makes a
revision a new row (a receipt time, an accession number, a vintage).
"""

from __future__ import annotations

import pandas as pd

from etl.storage.silver import Table, by_bucket, by_column, by_year

#: daily bars' symbol buckets: fixed for the life of a warehouse (the folder ``bucket=NN`` of a
#: symbol is ``etl.storage.silver.bucket_of(symbol, BARS_BUCKETS)``)
BARS_BUCKETS = 64


def _symbol_year(symbol_col: str, time_col: str):
    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        t = pd.to_datetime(frame[time_col])
        return pd.DataFrame({symbol_col: frame[symbol_col].astype(str), "year": t.dt.year.astype(str)}, index=frame.index)

    return fn


def _month(time_col: str):
    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        t = pd.to_datetime(frame[time_col], utc=True)
        return pd.DataFrame({"month": t.dt.strftime("%Y-%m")}, index=frame.index)

    return fn


BARS_DAILY = Table(
    "bars_daily", key=("symbol", "session", "known_timestamp"), partition=("bucket",),
    partition_values=by_bucket("symbol", BARS_BUCKETS),
    description="daily OHLCV, raw prices; event = session close + delay; a revision is a new row known from receipt",
    timestamp_columns=("known_timestamp",), row_group_size=8192,
    dictionary_columns=("symbol", "ticker", "source", "created_timestamp"),
    delta_columns=("session", "event_timestamp", "known_timestamp"),
)
BARS_MINUTE = Table(
    "bars_minute", key=("symbol", "bar_start"), partition=("symbol", "year"), partition_values=_symbol_year("symbol", "bar_start"),
    description="minute OHLCV (UTC bar start/end); event = bar end (Polygon: + minute_delay_seconds)", timestamp_columns=("bar_start", "bar_end"),
)
FX_BARS_DAILY = Table(
    "fx_bars_daily", key=("pair", "session"), partition=("year",), partition_values=by_year("session"),
    description="FX daily bars on the 24x5 calendar; a session ends 17:00 New York; event = session end + delay",
)
UNIVERSE = Table(
    "universe_membership", key=("universe", "date", "sid"), partition=("universe", "year"),
    partition_values=lambda f: pd.DataFrame({"universe": f["universe"].astype(str), "year": pd.to_datetime(f["date"]).dt.year.astype(str)}, index=f.index),
    description="which securities (delisted and renamed included) a universe held on each date; event = that date's close + delay",
)
OPTION_QUOTES = Table(
    "option_quotes", key=("underlying", "date", "expiry", "strike", "right"), partition=("underlying", "year"),
    partition_values=_symbol_year("underlying", "date"),
    description="end-of-day option quotes per contract (bid/ask/OHLC, volume, OI, vendor IV and greeks); event = session close + delay",
)
OPTION_CONTRACTS = Table(
    "option_contracts", key=("contract", "as_of"), partition=("underlying",), partition_values=by_column("underlying"),
    description="option contract reference data (expiry, strike, right, style) as listed on a date",
)
NEWS = Table(
    "news_items", key=("source", "item_id", "symbol"), partition=("month",), partition_values=_month("published_at"),
    description="news items, one row per tagged symbol; event = publication time; `session` = the session it counts for",
    timestamp_columns=("published_at",),
)
FUNDAMENTALS = Table(
    "fundamentals_facts", key=("symbol", "taxonomy", "tag", "unit", "period_start", "period_end", "accn"), partition=("symbol",),
    partition_values=by_column("symbol"),
    description="XBRL facts; event = the filing's acceptance time (or the end of the filed date); an amendment is a new row",
    timestamp_columns=("acceptance_time",),
)
FILINGS = Table(
    "filings", key=("cik", "accn"), partition=("symbol",), partition_values=by_column("symbol"),
    description="filing index (form, filed date, acceptance time); event = acceptance time",
    timestamp_columns=("acceptance_time",),
)
FUNDAMENTALS_SNAPSHOTS = Table(
    "fundamentals_snapshots", key=("symbol", "file_date", "field", "period"), partition=("symbol",), partition_values=by_column("symbol"),
    description="Morningstar fine-fundamental snapshots (Lean), long format; event = the end of the file date",
)
MACRO = Table(
    "macro_observations", key=("series_id", "period", "realtime_start"), partition=("series_id",), partition_values=by_column("series_id"),
    description="macro observations by vintage; event = release (realtime_start at the series' release time); each vintage is a row",
)

ALL = {t.name: t for t in (BARS_DAILY, BARS_MINUTE, FX_BARS_DAILY, UNIVERSE, OPTION_QUOTES, OPTION_CONTRACTS, NEWS, FUNDAMENTALS, FILINGS, FUNDAMENTALS_SNAPSHOTS, MACRO)}
