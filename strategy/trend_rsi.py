"""Trend with an overbought filter: a pure function from features to targets.

Hold a symbol when its close is above its 20-session SMA (both in the price
scale traded that session) and RSI(14) is below 70. Each held symbol gets
1/N of the book, N = the symbols with data at that decision time, so the
exposure grows with the breadth of the trend and the rest stays in cash.
Rows with any missing input are not held. The same
function runs in the backtest (many decision times) and live (one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core.errors import MissingColumnError

NAME = "trend_rsi"
FEATURES = ["bars_daily:close", "technicals:sma_20", "technicals:rsi_14", "technicals:ret_1d"]
RSI_CAP = 70.0


def target_positions(features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
    """Target portfolio weight per row (0..1, weights sum to 1 or 0 per decision time)."""
    need = ["symbol", time_col, "close", "sma_20", "rsi_14"]
    missing = [c for c in need if c not in features.columns]
    if missing:
        raise MissingColumnError(f"target_positions needs columns {missing}")
    close = features["close"].astype(float)
    sma = features["sma_20"].astype(float)
    rsi = features["rsi_14"].astype(float)
    valid = close.notna() & sma.notna() & rsi.notna()
    hold = valid & (close > sma) & (rsi < RSI_CAP)
    n_valid = valid.groupby(features[time_col]).transform("sum")
    weights = np.where(hold, 1.0 / n_valid.where(n_valid > 0, np.nan), 0.0)
    return pd.Series(np.nan_to_num(weights, nan=0.0), index=features.index, name="target_weight")
