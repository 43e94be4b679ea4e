"""Missing values per symbol and column."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from etl.quality.health.frames import BAR_VALUE_COLUMNS, PRICE_COLUMNS, day, finding, findings_frame, prepare_bars
from etl.quality.health.thresholds import resolve_thresholds


def check_nan_rates(bars: pd.DataFrame, thresholds: Mapping | None = None) -> pd.DataFrame:
    """Share of missing values per symbol and column (prices, volume, dividends)."""
    th = resolve_thresholds(thresholds)
    frame = prepare_bars(bars)
    cols = [c for c in (*BAR_VALUE_COLUMNS, "dividends") if c in frame.columns]
    rows = []
    for symbol, g in frame.groupby("symbol", sort=True):
        for col in cols:
            n = int(g[col].isna().sum())
            if n == 0:
                continue
            rate = n / len(g)
            is_price = col in PRICE_COLUMNS
            severity = "error" if is_price and rate > th["max_nan_rate_prices"] else "warning"
            first = g.loc[g[col].isna(), "session"].iloc[0]
            rows.append(finding(
                "nan_rate", symbol, first, rate, th["max_nan_rate_prices"] if is_price else float("nan"),
                f"{col}: {n} of {len(g)} rows missing ({rate:.2%}), first on {day(first)}", severity))
    return findings_frame(rows)
