"""Realised volatility of the underlying: close-to-close, Parkinson, Yang-Zhang (numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd

RV_WINDOW = 21
ANNUAL = 252.0

def _rolling(values: np.ndarray, window: int, how: str) -> np.ndarray:
    s = pd.Series(values)
    r = s.rolling(window, min_periods=window)
    return (r.std(ddof=1) if how == "std" else r.var(ddof=1) if how == "var" else r.mean()).to_numpy()


def rv_close_to_close(close, window: int = RV_WINDOW) -> np.ndarray:
    """sqrt(252) * sample std (n - 1) of the last ``window`` log close-to-close returns."""
    c = np.asarray(close, float)
    lr = np.full(c.shape, np.nan)
    lr[1:] = np.log(c[1:] / c[:-1])
    return _rolling(lr, window, "std") * np.sqrt(ANNUAL)


def rv_parkinson(high, low, window: int = RV_WINDOW) -> np.ndarray:
    """Parkinson (1980): sqrt(252 / (4 ln 2) * mean of ln(H/L)^2) over ``window`` sessions."""
    hl = np.log(np.asarray(high, float) / np.asarray(low, float))
    return np.sqrt(_rolling(hl * hl, window, "mean") * ANNUAL / (4.0 * np.log(2.0)))


def rv_yang_zhang(open_, high, low, close, window: int = RV_WINDOW) -> np.ndarray:
    """Yang and Zhang (2000): var(overnight) + k var(open-to-close) + (1 - k) mean(Rogers-Satchell),
    k = 0.34 / (1.34 + (n + 1) / (n - 1)), sample variances with n - 1, annualised by 252."""
    o, h, lo, c = (np.asarray(x, float) for x in (open_, high, low, close))
    over = np.full(o.shape, np.nan)
    over[1:] = np.log(o[1:] / c[:-1])
    oc = np.log(c / o)
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    n = window
    k = 0.34 / (1.34 + (n + 1.0) / (n - 1.0))
    var = _rolling(over, n, "var") + k * _rolling(oc, n, "var") + (1.0 - k) * _rolling(rs, n, "mean")
    return np.sqrt(var * ANNUAL)
