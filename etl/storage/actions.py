"""Corporate actions (Lean factor files) and the symbol map (Lean map files) in silver.

Each action row is knowable at the open of its ex-date; rows already stored keep the time we
first wrote them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.storage.atomic import atomic_write_frame


def _merge_keep_created(path: Path, new: pd.DataFrame, key: list[str], now: pd.Timestamp) -> pd.DataFrame:
    """Union ``new`` into the table at ``path``; rows already there keep their created time."""
    new = new.copy()
    new["created_timestamp"] = now
    if path.exists():
        old = pd.read_parquet(path)
        cols = [c for c in new.columns if c != "created_timestamp"]
        merged = pd.concat([old, new], ignore_index=True)
        merged = merged.drop_duplicates(subset=cols, keep="first")
    else:
        merged = new
    merged["created_timestamp"] = pd.to_datetime(merged["created_timestamp"], utc=True).astype("datetime64[us, UTC]")
    merged = merged.sort_values(key + ["created_timestamp"], kind="stable").reset_index(drop=True)
    atomic_write_frame(merged, path)
    return merged


def write_corporate_actions(settings: Settings, factors: pd.DataFrame, now: pd.Timestamp) -> None:
    """Factor-file rows; each is knowable at the open of its ex-date."""
    f = factors[factors["ex_date"].notna()].copy()
    f["event_timestamp"] = clock.session_opens(pd.DatetimeIndex(f["ex_date"]), settings.calendar)
    f["factor_date"] = f["factor_date"].astype("datetime64[us]")
    f["ex_date"] = f["ex_date"].astype("datetime64[us]")
    cols = ["symbol", "factor_date", "ex_date", "price_factor", "split_factor", "reference_price", "event_timestamp"]
    _merge_keep_created(settings.silver / "corporate_actions" / "data.parquet", f[cols], ["symbol", "factor_date"], now)


def write_symbol_map(settings: Settings, maps: pd.DataFrame, now: pd.Timestamp) -> None:
    m = maps[["symbol", "last_date", "ticker", "exchange"]].copy()
    m["last_date"] = m["last_date"].astype("datetime64[us]")
    _merge_keep_created(settings.silver / "symbol_map" / "data.parquet", m, ["symbol", "last_date"], now)


def read_corporate_actions(settings: Settings) -> pd.DataFrame | None:
    path = settings.silver / "corporate_actions" / "data.parquet"
    if not path.exists():
        return None
    f = pd.read_parquet(path)
    # the latest-written version of each factor row wins (factor files are restated as a whole)
    return f.sort_values("created_timestamp", kind="stable").drop_duplicates(["symbol", "factor_date"], keep="last")
