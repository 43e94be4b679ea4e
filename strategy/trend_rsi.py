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


REGIME_FEATURE = "regime_daily:regime_vol"
HIGH_VOL = 2   # regime_vol's value for high volatility (etl/factors/regime.py)


class TrendRSI:
    """The same rule with parameters, and a risk overlay: in the high-volatility regime known at
    the decision (``regime_daily:regime_vol`` of the decision session, market-wide) every weight
    is scaled by ``high_vol_weight`` (0: step aside into cash; 1: the plain rule). A decision
    without a known regime (its warm-up) is taken as not high."""

    def __init__(self, *, rsi_cap: float = RSI_CAP, high_vol_weight: float = 1.0):
        from etl.core.errors import DeclarationError

        for name, value, low, high in (("rsi_cap", rsi_cap, 0.0, 100.0), ("high_vol_weight", high_vol_weight, 0.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise DeclarationError(f"TrendRSI: {name} must be a number in [{low:g}, {high:g}], got {value!r}")
        self.rsi_cap = float(rsi_cap)
        self.high_vol_weight = float(high_vol_weight)
        self.NAME = NAME if self.high_vol_weight == 1.0 and self.rsi_cap == RSI_CAP else "trend_rsi_regime"
        self.FEATURES = FEATURES + ([REGIME_FEATURE] if self.high_vol_weight < 1.0 else [])

    def target_positions(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        need = ["symbol", time_col, "close", "sma_20", "rsi_14"]
        missing = [c for c in need if c not in features.columns]
        if missing:
            raise MissingColumnError(f"TrendRSI needs columns {missing}")
        close, sma, rsi = (features[c].astype(float) for c in ("close", "sma_20", "rsi_14"))
        valid = close.notna() & sma.notna() & rsi.notna()
        hold = valid & (close > sma) & (rsi < self.rsi_cap)
        n_valid = valid.groupby(features[time_col]).transform("sum")
        weights = pd.Series(np.where(hold, 1.0 / n_valid.where(n_valid > 0, np.nan), 0.0), index=features.index).fillna(0.0)
        if self.high_vol_weight < 1.0:
            if "regime_vol" not in features.columns:
                raise MissingColumnError(f"TrendRSI with high_vol_weight < 1 needs column regime_vol ({REGIME_FEATURE})")
            high = pd.to_numeric(features["regime_vol"], errors="coerce").eq(HIGH_VOL).to_numpy()
            weights = weights.where(~high, weights * self.high_vol_weight)
        return weights.rename("target_weight")
