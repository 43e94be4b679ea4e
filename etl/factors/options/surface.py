"""The volatility surface read at fixed points: ATM and 25-delta IVs per expiry, constant
maturity by total-variance interpolation, IV rank over exchange sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR

TARGET_DAYS = (30, 60)
MIN_EXPIRY_DAYS = 7          # expiries closer than this are skipped for ATM and skew
ATM_BAND = 0.10              # strikes around the forward must lie within 10 %
ATM_STRIKES = 3              # listed strikes used on each side of the forward
WING_BAND = 0.10             # deltas within 0.10 of +-0.25 make the 25-delta wings
RANK_WINDOW = 252
RANK_MIN_PERIODS = 200       # valid IVs needed in the 252-session window

def _atm_iv(strikes: np.ndarray, ivs: np.ndarray, fwd: float) -> float:
    """Median IV of the calls and puts at the ATM_STRIKES listed strikes on each side
    of the forward (within ATM_BAND of it); needs a strike on both sides. The
    median shrugs off stale last-trade prints; the symmetric choice of strikes
    keeps the smile's slope from biasing it."""
    ok = np.isfinite(ivs)
    k, v = strikes[ok], ivs[ok]
    uniq = np.unique(k[np.abs(np.log(k / fwd)) <= ATM_BAND])
    below, above = uniq[uniq <= fwd][-ATM_STRIKES:], uniq[uniq > fwd][:ATM_STRIKES]
    if below.size == 0 or above.size == 0:
        return np.nan
    return float(np.median(v[np.isin(k, np.concatenate([below, above]))]))


def _wing_iv(deltas: np.ndarray, ivs: np.ndarray, target: float) -> float:
    """Median IV of the contracts whose delta lies within WING_BAND of ``target``,
    with at least one on each side of it."""
    ok = np.isfinite(deltas) & np.isfinite(ivs) & (np.abs(deltas - target) <= WING_BAND)
    d, v = deltas[ok], ivs[ok]
    if not ((d <= target).any() and (d >= target).any()):
        return np.nan
    return float(np.median(v))


def constant_maturity(days: np.ndarray, ivs: np.ndarray, target: float) -> float:
    """Linear interpolation in total variance (sigma^2 T) between the nearest
    expiries on either side of ``target`` days; never extrapolated."""
    ok = np.isfinite(ivs)
    d, v = np.asarray(days, float)[ok], np.asarray(ivs, float)[ok]
    if (d == target).any():
        return float(v[d == target][0])
    below, above = d < target, d > target
    if not below.any() or not above.any():
        return np.nan
    i0 = np.flatnonzero(below)[np.argmax(d[below])]
    i1 = np.flatnonzero(above)[np.argmin(d[above])]
    t0, t1 = d[i0], d[i1]
    w0, w1 = v[i0] ** 2 * t0, v[i1] ** 2 * t1
    w = w0 + (w1 - w0) * (target - t0) / (t1 - t0)
    return float(np.sqrt(w / target)) if w > 0 else np.nan


def term_structure(contracts: pd.DataFrame, iv_col: str = "iv") -> pd.DataFrame:
    """Per chain date and expiry (>= 7 days): days, forward, ATM IV, and the 25-delta put and call IVs."""
    rows = []
    c = contracts[contracts["in_scale"] & ~contracts["stale"] & (contracts["days"] >= MIN_EXPIRY_DAYS)]
    for (d, e), g in c.groupby(["date", "expiry"], sort=True):
        T = float(g["T"].iloc[0])
        S, r, q = float(g["spot"].iloc[0]), float(g["rate"].iloc[0]), float(g["q"].iloc[0])
        fwd = S * np.exp((r - q) * T)
        k = g["strike"].to_numpy(float)
        is_call = (g["right"] == "C").to_numpy()
        v = g[iv_col].to_numpy(float)
        atm = _atm_iv(k, v, fwd) if np.isfinite(fwd) else np.nan
        put25 = call25 = np.nan
        if iv_col == "iv":
            dl = g["delta"].to_numpy(float)
            otm_p, otm_c = ~is_call & (k < fwd), is_call & (k > fwd)
            put25 = _wing_iv(dl[otm_p], v[otm_p], -0.25)
            call25 = _wing_iv(dl[otm_c], v[otm_c], 0.25)
        rows.append((d, e, float(g["days"].iloc[0]), fwd, atm, put25, call25))
    return pd.DataFrame(rows, columns=["date", "expiry", "days", "forward", "atm_iv", "put25_iv", "call25_iv"])


def iv_rank_percentile(sessions, values, *, window: int = RANK_WINDOW, min_periods: int = RANK_MIN_PERIODS,
                       calendar: str = DEFAULT_CALENDAR) -> tuple[np.ndarray, np.ndarray]:
    """IV rank and percentile of each value over the trailing ``window`` exchange
    sessions ending at its own session (rows sorted by session, one per session).

    rank = (v - min) / (max - min) over the window's valid values, today included;
    percentile = share of the window's other valid values strictly below today's.
    NaN when today's value is missing, the window holds fewer than ``min_periods``
    valid values, or max == min."""
    v = np.asarray(values, float)
    days = pd.DatetimeIndex(sessions)
    if len(days) == 0:
        return np.array([]), np.array([])
    cal = clock.get_calendar(calendar).sessions
    pos = np.searchsorted(cal.values, days.values, side="left")   # session ordinal (a non-session maps to the next one)
    rank, pct = np.full(v.shape, np.nan), np.full(v.shape, np.nan)
    start = np.searchsorted(pos, pos - window + 1, side="left")
    for i in range(len(v)):
        if not np.isfinite(v[i]):
            continue
        w = v[start[i]: i + 1]
        w = w[np.isfinite(w)]
        if w.size < min_periods:
            continue
        lo, hi = w.min(), w.max()
        if hi > lo:
            rank[i] = (v[i] - lo) / (hi - lo)
        others = w.size - 1
        if others > 0:
            pct[i] = float((w < v[i]).sum()) / others
    return rank, pct
