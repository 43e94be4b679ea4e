"""The curated daily factors of the ``technicals`` view, declared as :class:`~etl.factors.spec.Factor`
(inputs, warm-up, outputs, price scale and adjustment in ``params``, description, and a
``compute`` over arrays) and computed by pure functions, and
the point-in-time corporate-action arithmetic every price factor shares
(:func:`cumulative_factors`). Why computing on back-adjusted prices and dividing by the
session's split factor gives exactly what was knowable then: docs/factors.md
(Point-in-time corporate actions); ``tests/test_factors.py`` proves it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from etl.core.errors import FactorInputError
from etl.factors.spec import Factor, Output
from etl.factors.warmup import convergence_margin

Arrays = dict[str, np.ndarray]


def _talib():
    import talib

    return talib


def _returns(k: int) -> Callable[[Arrays], Arrays]:
    def fn(a: Arrays) -> Arrays:
        c = a["close"]
        out = np.full_like(c, np.nan)
        out[k:] = c[k:] / c[:-k] - 1.0
        return {f"ret_{k}d": out}

    return fn


def _realised_vol(window: int) -> Callable[[Arrays], Arrays]:
    def fn(a: Arrays) -> Arrays:
        logret = np.full_like(a["close"], np.nan)
        logret[1:] = np.diff(np.log(a["close"]))
        vol = pd.Series(logret).rolling(window, min_periods=window).std(ddof=1).to_numpy() * np.sqrt(252.0)
        return {f"rv_{window}d": vol}

    return fn


def _rsi(a: Arrays) -> Arrays:
    return {"rsi_14": _talib().RSI(a["close"], timeperiod=14)}


def _sma(a: Arrays) -> Arrays:
    return {"sma_20": _talib().SMA(a["close"], timeperiod=20)}


def _macd(a: Arrays) -> Arrays:
    macd, signal, hist = _talib().MACD(a["close"], fastperiod=12, slowperiod=26, signalperiod=9)
    return {"macd": macd, "macd_signal": signal, "macd_hist": hist}


def _atr(a: Arrays) -> Arrays:
    return {"atr_14": _talib().ATR(a["high"], a["low"], a["close"], timeperiod=14)}


def _bb_pctb(a: Arrays) -> Arrays:
    upper, _mid, lower = _talib().BBANDS(a["close"], timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    width = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        pctb = np.where(width > 0, (a["close"] - lower) / width, np.nan)
    return {"bb_pctb_20": pctb}


VIEW = "technicals"
AVAILABILITY = "session close + bar delay (the bar it ends on)"


def _core(name: str, outputs: tuple[str, ...], inputs: tuple[str, ...], lookback: int, scale: str, prices: str,
          description: str, fn: Callable[[Arrays], Arrays], memory: tuple[str, dict] | None = None) -> Factor:
    """A core factor: ``lookback`` sessions of TA-Lib lookback plus, for recursive ones
    (``memory`` = TA-Lib function and its kwargs), the convergence margin of the grid's rule."""
    warmup = lookback + (convergence_margin(*memory) if memory else 0)
    return Factor(
        name=name, family="technical", view=VIEW,
        outputs=tuple(Output(o, "float64", description) for o in outputs),
        inputs=tuple(f"bars.{c}" for c in inputs) + ("corporate_actions.split_factor",),
        warmup=warmup, availability=AVAILABILITY, description=description,
        params=(("scale", scale), ("prices", prices), ("lookback", lookback)), compute=fn,
    )


FACTORS: tuple[Factor, ...] = (
    _core("ret_1d", ("ret_1d",), ("close",), 1, "free", "total", "1-session total return (splits and dividends applied)", _returns(1)),
    _core("ret_5d", ("ret_5d",), ("close",), 5, "free", "total", "5-session total return", _returns(5)),
    _core("ret_21d", ("ret_21d",), ("close",), 21, "free", "total", "21-session total return", _returns(21)),
    _core("rv_21d", ("rv_21d",), ("close",), 21, "free", "total", "21-session realised volatility of log total returns, annualised (sqrt 252)", _realised_vol(21)),
    _core("rsi_14", ("rsi_14",), ("close",), 14, "free", "split", "TA-Lib RSI(14) on split-adjusted closes", _rsi,
          ("RSI", {"timeperiod": 14})),
    _core("sma_20", ("sma_20",), ("close",), 19, "price", "split", "TA-Lib SMA(20) of closes, in the price scale traded at the session", _sma),
    _core("macd", ("macd", "macd_signal", "macd_hist"), ("close",), 33, "price", "split", "TA-Lib MACD(12, 26, 9) in the session's price scale", _macd,
          ("MACD", {"slowperiod": 26, "signalperiod": 9})),
    _core("atr_14", ("atr_14",), ("high", "low", "close"), 14, "price", "split", "TA-Lib ATR(14) in dollars of the session's price scale", _atr,
          ("ATR", {"timeperiod": 14})),
    _core("bb_pctb_20", ("bb_pctb_20",), ("close",), 19, "free", "split", "Bollinger %B: (close - lower) / (upper - lower), 20 sessions, 2 sd", _bb_pctb),
)
#: sessions of bars the core factors need before the first session they produce
WARMUP = max(f.warmup for f in FACTORS)


def feature_columns(view: str = VIEW) -> list[str]:
    return [o.name for f in FACTORS if f.view == view for o in f.outputs]


def cumulative_factors(sessions: pd.Series | pd.DatetimeIndex, factor_rows: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Split and price (dividend) factor in force for each session.

    Lean rule: the FIRST factor row whose date is on or after the session.
    Without factor rows (e.g. a CSV source with no corporate actions) both are 1.
    """
    n = len(sessions)
    if factor_rows is None or factor_rows.empty:
        return np.ones(n), np.ones(n)
    f = factor_rows.sort_values("factor_date")
    idx = np.searchsorted(f["factor_date"].values, pd.DatetimeIndex(sessions).values, side="left")
    split = np.append(f["split_factor"].to_numpy(float), 1.0)
    price = np.append(f["price_factor"].to_numpy(float), 1.0)
    return split[idx], price[idx]


def compute_factors(bars: pd.DataFrame, factor_rows: pd.DataFrame | None = None, specs=FACTORS) -> pd.DataFrame:
    """Every factor for ONE symbol's bars (sorted by session, raw prices).

    Returns a frame aligned with ``bars`` holding every spec output. Values in
    a factor's warm-up are NaN (missing), never 0.
    """
    if not bars["session"].is_monotonic_increasing or bars["session"].duplicated().any():
        raise FactorInputError("technical: bars must be one symbol's bars, sorted by session without duplicates")
    split, price = cumulative_factors(bars["session"], factor_rows)
    raw = {c: bars[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close")}
    split_adj = {c: v * split for c, v in raw.items()}
    total_adj = {c: v * split * price for c, v in raw.items()}
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        params = dict(spec.params)
        inputs = total_adj if params.get("prices") == "total" else split_adj
        result = spec.compute(inputs)
        for name in spec.output_names:
            values = np.asarray(result[name], dtype=float)
            if params.get("scale") == "price":
                values = values / split  # back into the price scale traded at each session
            out[name] = values
    return pd.DataFrame(out, index=bars.index)
