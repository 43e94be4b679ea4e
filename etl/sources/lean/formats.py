"""QuantConnect Lean's US equity files: raw daily bars (deci-cents, New York
session dates), corporate-action factor files and ticker map files.

Formats (Lean ``Data/equity/readme.md``):
- ``equity_usa_daily/<t>.csv``: ``yyyyMMdd 00:00,open,high,low,close,volume``, no header.
- ``equity_usa_factor_files/<t>.csv``: ``date,price_factor,split_factor,reference_price``;
  a raw price on day d is adjusted with the FIRST row whose date is >= d.
  The row date is the last session before the ex-date; ``20501231`` is a sentinel.
- ``equity_usa_map_files/<t>.csv``: ``date,ticker,exchange``; each row is the LAST
  date on which that ticker applied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR
from etl.storage.bars import VALUE_COLUMNS

DAILY = "equity_usa_daily"
FACTORS = "equity_usa_factor_files"
MAPS = "equity_usa_map_files"
PRICE_DIVISOR = 10_000.0
DATE_FORMAT = "%Y%m%d %H:%M"


def daily_files(root: Path, symbols: list[str] | None = None) -> list[Path]:
    folder = Path(root) / DAILY
    files = sorted(folder.glob("*.csv"))
    if symbols:
        wanted = {s.lower() for s in symbols}
        missing = wanted - {p.stem for p in files}
        if missing:
            from etl.core.errors import UnknownSymbolError

            raise UnknownSymbolError(f"no Lean daily file for {sorted(m.upper() for m in missing)} in {folder}")
        files = [p for p in files if p.stem in wanted]
    return files


def read_daily_raw(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, names=["date", *VALUE_COLUMNS])
    raw["symbol"] = path.stem.upper()
    raw["source_file"] = str(path)
    raw["source_row"] = np.arange(1, len(raw) + 1)
    return raw


def read_factor_file(path: Path, calendar: str = DEFAULT_CALENDAR) -> pd.DataFrame:
    f = pd.read_csv(path, header=None, names=["factor_date", "price_factor", "split_factor", "reference_price"])
    f["factor_date"] = pd.to_datetime(f["factor_date"].astype(str), format="%Y%m%d")
    f["symbol"] = path.stem.upper()
    real = f["factor_date"] < pd.Timestamp("2050-01-01")
    ex = pd.Series(pd.NaT, index=f.index, dtype="datetime64[ns]")
    ex[real] = clock.next_session(pd.DatetimeIndex(f.loc[real, "factor_date"]), calendar)
    f["ex_date"] = ex
    return f


def read_map_file(path: Path) -> pd.DataFrame:
    m = pd.read_csv(path, header=None, names=["last_date", "ticker", "exchange"], dtype=str)
    m["last_date"] = pd.to_datetime(m["last_date"], format="%Y%m%d")
    m["ticker"] = m["ticker"].str.upper()
    m["symbol"] = path.stem.upper()
    return m


def ticker_as_traded(sessions: pd.Series, symbol_map: pd.DataFrame, default: str) -> np.ndarray:
    """The ticker each session traded under: the first map row with last_date >= session."""
    if symbol_map is None or symbol_map.empty:
        return np.full(len(sessions), default, dtype=object)
    m = symbol_map.sort_values("last_date")
    idx = np.searchsorted(m["last_date"].values, pd.DatetimeIndex(sessions).values, side="left")
    tickers = m["ticker"].to_numpy(dtype=object)
    out = np.where(idx < len(m), tickers[np.minimum(idx, len(m) - 1)], default)
    return out.astype(object)
