"""Market regime factors on the market-wide entity (``market = "US"``), and
metrics of a strategy sliced by regime (:func:`slice_metrics`).

Pure: frames in, frames out (SPY's daily bars and factor rows in, one row
per bar of view ``regime_daily`` out). Prices, outputs, warm-ups and the
slicing rule are in docs/factors.md (Regime).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import FactorInputError
from etl.factors.core import cumulative_factors
from etl.factors.spec import Factor, Output

VIEW = "regime_daily"
FAMILY = "regime"
ENTITY = "market"
MARKET = "US"
PROXY = "SPY"
RV_WINDOW = 21
VOL_HISTORY = 252
LOW_PCT = 0.2
HIGH_PCT = 0.8
TREND_WINDOW = 200
ANNUAL = 252
#: declared warm-up of the running-peak drawdown: the whole history (SPY has
#: traded about 8,400 sessions since 1993-01-29)
FULL_HISTORY = 10_000
_AVAILABILITY = "session close + bar delay of the proxy's (SPY) bar; corporate actions known at the ex-date open"
_INPUTS = ("bars_daily.close", "corporate_actions.split_factor", "corporate_actions.price_factor")

REGIME_COLUMNS = ("regime_vol", "regime_trend")
METRIC_COLUMNS = ("sessions", "total_return", "ann_return", "ann_vol", "sharpe", "max_drawdown", "hit_rate")


FACTORS: tuple[Factor, ...] = (
    Factor(
        name="regime_vol",
        family=FAMILY,
        view=VIEW,
        entity=ENTITY,
        outputs=(
            Output("regime_vol", "int64", "volatility regime of SPY: 0 low (21d realised vol <= 20th percentile of its trailing 252 values), 1 normal, 2 high (> 80th)"),
            Output("regime_vol_pct", "float64", "percentile rank (0..1] of SPY's 21d realised vol within its trailing 252 sessions"),
        ),
        inputs=_INPUTS,
        warmup=RV_WINDOW + VOL_HISTORY - 1,
        availability=_AVAILABILITY,
        description="Volatility regime: SPY 21-session realised vol against its own trailing one-year distribution.",
        params=(("proxy", PROXY), ("rv_window", RV_WINDOW), ("history", VOL_HISTORY), ("low", LOW_PCT), ("high", HIGH_PCT)),
    ),
    Factor(
        name="regime_trend",
        family=FAMILY,
        view=VIEW,
        entity=ENTITY,
        outputs=(
            Output("regime_trend", "int64", "trend regime of SPY: 1 up (total-return close above its 200-session SMA), -1 down (below)"),
            Output("regime_trend_strength", "float64", "SPY total-return close / its 200-session SMA - 1"),
        ),
        inputs=_INPUTS,
        warmup=TREND_WINDOW - 1,
        availability=_AVAILABILITY,
        description="Trend regime: SPY total-return close against its 200-session simple moving average.",
        params=(("proxy", PROXY), ("sma", TREND_WINDOW)),
    ),
    Factor(
        name="regime_drawdown",
        family=FAMILY,
        view=VIEW,
        entity=ENTITY,
        outputs=(Output("regime_drawdown", "float64", "SPY total-return close / its running peak - 1 (<= 0), peak over all history"),),
        inputs=_INPUTS,
        warmup=FULL_HISTORY,
        availability=_AVAILABILITY,
        description="Drawdown of SPY's total-return index from its running peak (needs the proxy's whole history).",
        params=(("proxy", PROXY), ("peak", "running, whole history")),
    ),
)
OUTPUTS: tuple[str, ...] = tuple(o.name for f in FACTORS for o in f.outputs)


def _check_bars(bars: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("session", "close", "event_timestamp") if c not in bars.columns]
    if missing:
        raise FactorInputError(f"regime: bars lack column(s) {missing}; pass one symbol's bars_daily rows")
    if "symbol" in bars.columns and bars["symbol"].nunique() > 1:
        raise FactorInputError(f"regime: bars of one proxy symbol expected, got {sorted(bars['symbol'].unique())[:5]}")
    frame = bars.sort_values("session", kind="stable").reset_index(drop=True)
    if frame["session"].duplicated().any():
        raise FactorInputError("regime: bars hold two rows for one session: pass one version per session (e.g. read_silver_bars(versions='first'))")
    ts = frame["event_timestamp"]
    if len(frame) and (not pd.api.types.is_datetime64_any_dtype(ts) or getattr(ts.dt, "tz", None) is None):
        raise FactorInputError("regime: event_timestamp must be tz-aware datetimes (bars_daily holds UTC)")
    return frame


def total_return_closes(bars: pd.DataFrame, factor_rows: pd.DataFrame | None) -> np.ndarray:
    """Raw closes times the split and dividend factors in force at each session."""
    split, price = cumulative_factors(bars["session"], factor_rows)
    return bars["close"].to_numpy(dtype=float) * split * price


def percentile_rank(values: np.ndarray, window: int) -> np.ndarray:
    """Share of the trailing ``window`` values (the current one included) that are
    <= the current value; NaN until ``window`` values are defined."""
    out = np.full(len(values), np.nan)
    if len(values) < window:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    current = values[window - 1:]
    with np.errstate(invalid="ignore"):
        rank = (windows <= current[:, None]).sum(axis=1) / window
    defined = ~np.isnan(windows).any(axis=1)
    out[window - 1:] = np.where(defined, rank, np.nan)
    return out


def compute_regime(bars: pd.DataFrame, factor_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Regime outputs for each bar of the proxy: columns ``market``,
    ``event_timestamp``, ``known_timestamp``, then :data:`OUTPUTS`."""
    frame = _check_bars(bars)
    close = total_return_closes(frame, factor_rows)
    n = len(close)
    logret = np.full(n, np.nan)
    if n > 1:
        logret[1:] = np.diff(np.log(close))
    rv = pd.Series(logret).rolling(RV_WINDOW, min_periods=RV_WINDOW).std(ddof=1).to_numpy() * np.sqrt(ANNUAL)
    pct = percentile_rank(rv, VOL_HISTORY)
    vol = np.where(pct <= LOW_PCT, 0, np.where(pct > HIGH_PCT, 2, 1))
    sma = pd.Series(close).rolling(TREND_WINDOW, min_periods=TREND_WINDOW).mean().to_numpy()
    strength = close / sma - 1.0
    trend = np.sign(strength)
    peak = np.fmax.accumulate(close) if n else close
    drawdown = close / peak - 1.0

    event = clock.to_utc_us(frame["event_timestamp"])
    known = event
    if "known_timestamp" in frame.columns:
        # a row rests on every bar up to it: known once the latest-known of them is
        seen = clock.to_utc_us(frame["known_timestamp"]).cummax()
        known = seen.where(seen > event, event)
    out = pd.DataFrame({ENTITY: pd.Series([MARKET] * n, dtype=object)})
    out["event_timestamp"] = event
    out["known_timestamp"] = known
    out["regime_vol"] = pd.array(np.where(np.isnan(pct), 0, vol), dtype="Int64")
    out.loc[np.isnan(pct), "regime_vol"] = pd.NA
    out["regime_vol_pct"] = pct
    out["regime_trend"] = pd.array(np.where(np.isnan(trend), 0, trend).astype("int64"), dtype="Int64")
    out.loc[np.isnan(trend), "regime_trend"] = pd.NA
    out["regime_trend_strength"] = strength
    out["regime_drawdown"] = drawdown
    return out


# ------------------------------------------------------------------ slicing

def _metrics(r: np.ndarray, annual: int) -> dict[str, float]:
    n = len(r)
    wealth = np.cumprod(1.0 + r)
    total = wealth[-1] - 1.0
    std = r.std(ddof=1) if n > 1 else np.nan
    peak = np.maximum.accumulate(np.concatenate(([1.0], wealth)))[1:]
    return {
        "sessions": n,
        "total_return": total,
        "ann_return": (1.0 + total) ** (annual / n) - 1.0 if total > -1.0 else -1.0,
        "ann_vol": std * np.sqrt(annual),
        "sharpe": r.mean() / std * np.sqrt(annual) if n > 1 and std > 0 else np.nan,
        "max_drawdown": float(np.min(wealth / peak - 1.0)),
        "hit_rate": float(np.mean(r > 0)),
    }


def slice_metrics(returns: pd.Series, regimes: pd.DataFrame, column: str, annual: int = ANNUAL) -> pd.DataFrame:
    """Metrics of daily strategy ``returns`` (indexed by session date) per value
    of ``regimes[column]`` (a session-indexed frame, e.g. :func:`compute_regime`
    output indexed by session).

    The return of session *t* is assigned the regime of the latest session
    before *t* in ``regimes`` (the regime known at the start of *t*, i.e. the
    previous session's value): a strategy deciding at the open cannot know the
    regime computed from *t*'s own close. Returns without a known regime
    (first session, warm-up) and NaN returns are left out.

    Columns: ``sessions``, ``total_return`` (compounded), ``ann_return``
    (geometric, ``annual`` sessions a year), ``ann_vol`` (std ddof 1 x
    sqrt(annual)), ``sharpe`` (mean / std x sqrt(annual), risk-free 0),
    ``max_drawdown`` (of the returns of that regime compounded in date order,
    from a start at 1), ``hit_rate`` (share of returns > 0). Index: the
    regime values, sorted.
    """
    if column not in regimes.columns:
        raise FactorInputError(f"regime: regimes has no column {column!r}; columns are {list(regimes.columns)[:10]}")
    for name, index in (("returns", returns.index), ("regimes", regimes.index)):
        if not isinstance(index, pd.DatetimeIndex):
            raise FactorInputError(f"regime: {name} must be indexed by session date (a DatetimeIndex)")
        if index.has_duplicates:
            raise FactorInputError(f"regime: {name} has duplicate session dates")
    regime = regimes[column].sort_index()
    # the latest regime session strictly before each return's session
    pos = np.searchsorted(regime.index.values, returns.index.values, side="left") - 1
    known = pos >= 0
    assigned = pd.Series(pd.NA, index=returns.index, dtype=object)
    assigned[known] = regime.to_numpy(dtype=object)[pos[known]]
    frame = pd.DataFrame({"r": returns.astype(float).to_numpy(), "regime": assigned.to_numpy()}, index=returns.index).sort_index()
    frame = frame[frame["regime"].notna() & frame["r"].notna()]
    rows = {}
    for value, g in frame.groupby("regime", sort=True):
        rows[value] = _metrics(g["r"].to_numpy(), annual)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_COLUMNS))
    out.index.name = column
    out["sessions"] = out["sessions"].astype("int64")
    return out
