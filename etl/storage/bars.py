"""The silver table of daily bars and its quarantine.

Silver rows carry three times:

- ``event_timestamp``: when the bar could first be known, the session's close
  on the exchange calendar plus the configured delay (the same for every
  version of a bar: it says which session the value belongs to);
- ``known_timestamp``: when THIS version became knowable. For a first print
  from an archive (Lean, a CSV history) that is the event time; for a revision
  it is when we received it;
- ``created_timestamp``: when we wrote the row.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import NotIngestedError
from etl.storage.atomic import atomic_write_frame, read_parquet_dir

PRICE_COLUMNS = ["open", "high", "low", "close"]
VALUE_COLUMNS = PRICE_COLUMNS + ["volume"]
SILVER_COLUMNS = [
    "symbol", "session", "ticker", *VALUE_COLUMNS, "source",
    "event_timestamp", "known_timestamp", "created_timestamp",
]
QUARANTINE_COLUMNS = ["source_file", "source_row", "symbol", "raw", "reason", "created_timestamp"]


def silver_bars_dir(settings: Settings) -> Path:
    return settings.silver / "bars_daily"


def quarantine_rejects(settings: Settings, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path:
    """Keep rejected rows with their reasons; the same input always lands in the same file."""
    out = rejects.copy()
    out["created_timestamp"] = now
    name = hashlib.sha256(batch_key.encode()).hexdigest()[:16]
    path = settings.quarantine / "bars_daily" / f"batch-{name}.parquet"
    atomic_write_frame(out[QUARANTINE_COLUMNS], path)
    return path


def write_silver_bars(settings: Settings, good: pd.DataFrame, source: str, now: pd.Timestamp | None = None) -> dict:
    """Add validated bars to the silver table (``silver/bars_daily/year=YYYY/part-*.parquet``).

    Idempotent: a row equal to the latest stored version of its
    ``(symbol, session)`` is skipped. A row that differs is a *revision* and is
    appended as a new version, known from when we received it (never earlier
    than the session's availability): history is never overwritten. New rows
    of a year go into one new part file, written atomically.
    """
    from etl.storage import silver
    from etl.storage.tables import BARS_DAILY

    now = clock.utc_us(now)
    if good.empty:
        return {"new": 0, "revised": 0, "unchanged": 0}
    frame = good.copy()
    frame["ticker"] = frame["ticker"] if "ticker" in frame else frame["symbol"]
    frame["source"] = source
    frame["event_timestamp"] = clock.availability_times(frame["session"], settings.bar_delay_minutes, settings.calendar)
    frame["known_timestamp"] = frame["event_timestamp"]  # archive first prints: known at availability
    frame["created_timestamp"] = now
    frame = _silver_types(frame)
    stats = {"new": 0, "revised": 0, "unchanged": 0}
    existing = read_parquet_dir(silver_bars_dir(settings), filters=_symbols_filter(frame["symbol"].unique().tolist()))
    if existing is not None and len(existing):
        latest = existing.sort_values(["known_timestamp", "created_timestamp"], kind="stable").drop_duplicates(["symbol", "session"], keep="last")
        merged = frame.merge(latest[["symbol", "session", "ticker", *VALUE_COLUMNS]], on=["symbol", "session"], how="left", suffixes=("", "_old"), indicator=True)
        known = (merged["_merge"] == "both").to_numpy()
        same = known.copy()
        for col in ["ticker", *VALUE_COLUMNS]:
            same &= (merged[col] == merged[f"{col}_old"]).to_numpy()
        revised = known & ~same
        frame = frame.loc[~same].copy()
        rev_mask = revised[~same]
        frame.loc[rev_mask, "known_timestamp"] = frame.loc[rev_mask, "event_timestamp"].clip(lower=now)
        stats.update(unchanged=int(same.sum()), revised=int(revised.sum()), new=int((~known).sum()))
    else:
        stats["new"] = len(frame)
    silver.append(settings, BARS_DAILY, frame, now)
    return stats


def _symbols_filter(symbols: list[str]):
    import pyarrow.dataset as ds

    return ds.field("symbol").isin(symbols)


def _silver_types(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[SILVER_COLUMNS].copy()
    out["session"] = pd.to_datetime(out["session"]).astype("datetime64[us]")
    for col in ("event_timestamp", "known_timestamp", "created_timestamp"):
        out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[us, UTC]")
    for col in VALUE_COLUMNS:
        out[col] = out[col].astype("float64")
    for col in ("symbol", "ticker", "source"):
        out[col] = out[col].astype(str)
    return out


def read_silver_bars(settings: Settings, symbols: list[str] | None = None, versions: str = "first") -> pd.DataFrame:
    """Silver bars, one row per (symbol, session).

    ``versions="first"`` keeps, for each bar, the version first written (what
    was knowable at the session's availability time); ``"all"`` returns every
    version.
    """
    frame = read_parquet_dir(silver_bars_dir(settings), filters=_symbols_filter(symbols) if symbols else None)
    if frame is None or frame.empty:
        raise NotIngestedError(
            f"no daily bars in {silver_bars_dir(settings)}; run `alpha ingest lean` or `alpha ingest csv PATH` first"
        )
    frame = frame.drop(columns=["year"], errors="ignore")
    frame = frame.sort_values(["symbol", "session", "known_timestamp", "created_timestamp"], kind="stable")
    if versions == "first":
        frame = frame.drop_duplicates(["symbol", "session"], keep="first")
    return frame.reset_index(drop=True)
