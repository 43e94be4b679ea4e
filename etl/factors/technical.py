"""The TA-Lib grid: every TA-Lib function that applies to daily bars, over
parameter grids, in the point-in-time price scale (family ``technical``).

Declarations
------------
One :class:`~etl.factors.spec.Factor` per (function, parameter set); every
output of a multi-output function is a feature. Feature names are
``ta_<func>_<grid values joined by _>[_<output>]`` (lowercase; a float
``0.02`` is written ``0p02``), e.g. ``ta_rsi_14``,
``ta_bbands_20_2_upperband``. Parameters a grid does not vary keep TA-Lib's
default (recorded in ``Factor.params``). One feature view per TA-Lib group:
``ta_overlap``, ``ta_momentum``, ``ta_volatility``, ``ta_volume``,
``ta_cycle``, ``ta_pattern``, ``ta_price``, ``ta_statistic``. Values are
computed in float64 and stored as float32.

Left out, on purpose: the Math Operators / Math Transform groups (arithmetic
on one series, not indicators); ``MA`` (its ``matype`` only re-selects SMA,
EMA, WMA, ... which are in the grid under their own names); ``MAVP`` (needs a
second series of periods); ``BETA`` (needs a second asset: the beta of high
on low is meaningless); ``VWAP`` (anchored at the first bar of the history:
on daily bars its value depends on where the data starts; ``VWMA`` is the
rolling volume-weighted price). ``CORREL`` is fed close and volume: the
rolling price-volume correlation.

Warm-up
-------
``warmup`` = TA-Lib's own lookback for those parameters plus, for functions
with memory beyond their window (EMA or Wilder smoothing, adaptive averages,
Hilbert transforms, SAR-like state), a convergence margin: a multiple of the
smoothing's time constant, so that computing from ``warmup`` sessions of
history gives the value computed from the whole history (within 1e-6
relative; ``tests/test_technical_grid.py`` checks every output on real
bars). No factor needs more than ``WARMUP_CAP`` (2,520) sessions: grid
members that would (Wilder smoothing over 200 sessions: RSI, ATR, ADX, ...;
TRIX 200) are left out and listed in ``DROPPED``. Cumulative levels (OBV, AD,
WAD, PVT, NVI, PVI) depend on where the history starts, so their N-session
changes are published instead (``ta_obv_chg_<N>``: TA-Lib ``MOM`` of the
level; ``ta_nvi_roc_<N>``: TA-Lib ``ROC`` of the multiplicative index).
Values within a warm-up at the very start of a symbol's history are those
computed from all the history there is (PIT-correct, but not yet converged).

Point-in-time price scale
-------------------------
A trader at session t sees raw prices rescaled by s(d)/s(t) and volumes by
s(t)/s(d) (s = the Lean split factor in force at d, see
:func:`etl.factors.core.cumulative_factors`): only splits with ex-date in
(d, t] enter, and those were known at t. That is exact for every function,
linear or not, when computed per split regime: for each run k of sessions
sharing one split factor s_k, the functions run on the series up to the
run's last session in that run's scale (p(d) = raw(d) s(d) / s_k,
v(d) = raw_vol(d) s_k / s(d)) and the outputs of the run's sessions are kept.
Only each factor's ``warmup`` sessions before the run are needed. Dividends
are not applied (split-adjusted prices, as the core technicals).

Availability: a row's ``event_timestamp`` is its bar's (session close + bar
delay): it uses that bar, earlier bars and the split factors in force (known
from the ex-date's open), all known by then. ``known_timestamp`` is the
newest bar version it could have used.

Compute
-------
:func:`compute_technical` (one symbol, pure) writes every output straight
into a preallocated float32 block (outputs x sessions) with TA-Lib's compiled
functions; :func:`compute_technical_many` runs chunks of symbols in forked
processes and streams one frame (or a sink's result) per chunk.
``benchmarks/factors.py`` measures both against a bare loop of the same calls.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.core.errors import AlphaError
from etl.factors.core import cumulative_factors
from etl.factors.spec import Factor, Output

FAMILY = "technical"
#: TA-Lib group -> feature view
GROUP_VIEWS: dict[str, str] = {
    "Overlap Studies": "ta_overlap",
    "Momentum Indicators": "ta_momentum",
    "Volatility Indicators": "ta_volatility",
    "Volume Indicators": "ta_volume",
    "Cycle Indicators": "ta_cycle",
    "Pattern Recognition": "ta_pattern",
    "Price Transform": "ta_price",
    "Statistic Functions": "ta_statistic",
}
EXCLUDED_GROUPS = ("Math Operators", "Math Transform")
EXCLUDED_FUNCTIONS: dict[str, str] = {
    "MA": "matype only re-selects SMA, EMA, WMA, DEMA, TEMA, TRIMA, KAMA, MAMA, T3, HMA, ZLEMA, RMA: in the grid under their own names",
    "MAVP": "needs a second series of per-bar periods",
    "BETA": "needs a second asset (beta of high on low is meaningless)",
    "VWAP": "anchored at the first bar of the history: on daily bars it depends on where the data starts (VWMA is the rolling VWAP)",
}
PERIODS = (5, 10, 14, 20, 30, 50, 100, 200)
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
AVAILABILITY = "session close + bar delay of the bar it ends on (split factors in force then)"


class TechnicalInputError(AlphaError, ValueError):
    """Bars handed to the technical grid are not one symbol's bars sorted by session."""


# ----------------------------------------------------------------- the grid

@dataclass(frozen=True)
class Call:
    """One TA-Lib call of the grid: ``talib.<func>(*inputs, **kwargs)``, then
    optionally ``talib.<post>(output, timeperiod=post_period)``."""

    factor: str                     # factor name (= feature-name prefix)
    func: str
    inputs: tuple[str, ...]         # bar columns, positional
    kwargs: tuple[tuple[str, object], ...]
    outputs: tuple[str, ...]        # feature names, one per TA-Lib output
    lookback: int
    warmup: int
    post: str | None = None         # "MOM" or "ROC" applied to a cumulative level
    post_period: int = 0


def _fmt(value) -> str:
    if isinstance(value, float):
        if value == int(value):
            return str(int(value))
        return repr(value).replace(".", "p").replace("-", "m")
    return str(value)


def _talib():
    import talib

    return talib


def _info(func: str) -> dict:
    from talib import abstract

    return abstract.Function(func).info


def _lookback(func: str, kwargs: dict) -> int:
    from talib import abstract

    f = abstract.Function(func)
    if kwargs:
        f.set_parameters(kwargs)
    return int(f.lookback)


def _inputs(func: str) -> tuple[str, ...]:
    names = _info(func)["input_names"]
    out: list[str] = []
    for v in names.values():
        out.extend(v if isinstance(v, list | tuple) else [v])
    return tuple(out)


# Grid: func -> list of (grid values for the name, TA-Lib kwargs)
def _tp(periods=PERIODS, key="timeperiod", **fixed):
    return [((p,), {key: p, **fixed}) for p in periods]


def _kw(keys: tuple[str, ...], rows, **fixed):
    return [(tuple(r), {**dict(zip(keys, r, strict=True)), **fixed}) for r in rows]


MA_PAIRS = ((3, 10), (5, 20), (12, 26), (10, 50), (20, 100), (50, 200))
MACD_SETS = ((12, 26, 9), (5, 35, 5), (8, 17, 9), (19, 39, 9), (24, 52, 18))
CHG_PERIODS = (1, 5, 10, 20, 50, 100)
#: extra horizons for momentum: 1 session, 1, 3, 6 and 12 months
MOMENTUM_PERIODS = (1, 21, 63, 126, 252)

GRID: dict[str, list] = {
    # ---- Overlap Studies
    "ACCBANDS": _tp(),
    "BBANDS": [((p, d), {"timeperiod": p, "nbdevup": float(d), "nbdevdn": float(d), "matype": 0}) for p in PERIODS for d in (1, 2, 3)]
    + [((p, 2, 1), {"timeperiod": p, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 1}) for p in PERIODS],  # EMA-centred
    "DEMA": _tp(),
    "DONCHIAN": _tp(),
    "EMA": _tp(),
    "HMA": _tp(),
    "HT_TRENDLINE": [((), {})],
    "KAMA": _tp(),
    "KC": [((p, a, d), {"timeperiod": p, "atrperiod": a, "nbdev": float(d)}) for p, a in ((10, 10), (20, 10), (20, 20), (50, 20)) for d in (1, 2, 3)],
    "MAMA": _kw(("fastlimit", "slowlimit"), ((0.5, 0.05), (0.25, 0.025), (0.75, 0.1))),
    "MIDPOINT": _tp(),
    "MIDPRICE": _tp(),
    "RMA": _tp(),
    "SAR": _kw(("acceleration", "maximum"), ((0.01, 0.1), (0.02, 0.2), (0.03, 0.3), (0.02, 0.1), (0.04, 0.4))),
    "SAREXT": [((a, m), {"accelerationinitlong": a, "accelerationlong": a, "accelerationmaxlong": m,
                         "accelerationinitshort": a, "accelerationshort": a, "accelerationmaxshort": m})
               for a, m in ((0.01, 0.1), (0.02, 0.2), (0.03, 0.3))],
    "SMA": _tp(),
    "SUPERTREND": _kw(("timeperiod", "multiplier"), [(p, float(m)) for p in (7, 10, 14, 20) for m in (2, 3)]),
    "T3": _kw(("timeperiod", "vfactor"), [(p, v) for p in (5, 10, 14, 20, 30, 50) for v in (0.5, 0.7, 0.9)]),
    "TEMA": _tp(),
    "TRIMA": _tp(),
    "VWMA": _tp(),
    "WMA": _tp(),
    "ZLEMA": _tp(),
    # ---- Momentum Indicators
    "AC": _kw(("fastperiod", "slowperiod", "signalperiod"), ((5, 34, 5), (3, 10, 3), (10, 50, 10))),
    "ADX": _tp(),
    "ADXR": _tp(),
    "AO": _kw(("fastperiod", "slowperiod"), ((5, 34), (3, 10), (10, 50))),
    "APO": _kw(("fastperiod", "slowperiod", "matype"), [(f, s, m) for f, s in MA_PAIRS for m in (0, 1)]),
    "AROON": _tp(),
    "AROONOSC": _tp(),
    "BOP": [((), {})],
    "CCI": _tp(),
    "CMO": _tp(),
    "CMOU": _tp(),
    "COPPOCK": _kw(("wmaperiod", "roc1period", "roc2period"), ((10, 11, 14), (5, 6, 7), (20, 22, 28))),
    "DPO": _tp(),
    "DX": _tp(),
    "ER": _tp(),
    "ERI": _tp(),
    "FOSC": _tp(),
    "FRACTAL": _kw(("leftbars", "rightbars"), ((2, 2), (3, 3), (5, 5))),
    "IMI": _tp(),
    "KDJ": _kw(("fastk_period", "slowk_period", "slowd_period"), ((9, 3, 3), (14, 3, 3), (5, 3, 3))),
    "MACD": _kw(("fastperiod", "slowperiod", "signalperiod"), MACD_SETS),
    "MACDEXT": [((f, s, g), {"fastperiod": f, "fastmatype": 0, "slowperiod": s, "slowmatype": 0, "signalperiod": g, "signalmatype": 0}) for f, s, g in MACD_SETS],
    "MACDFIX": _tp((5, 9, 14), key="signalperiod"),
    "MFI": _tp(),
    "MINUS_DI": _tp(),
    "MINUS_DM": _tp(),
    "MOM": _tp(PERIODS + MOMENTUM_PERIODS),
    "PLUS_DI": _tp(),
    "PLUS_DM": _tp(),
    "PPO": _kw(("fastperiod", "slowperiod", "matype"), [(f, s, m) for f, s in MA_PAIRS for m in (0, 1)]),
    "QSTICK": _tp(),
    "ROC": _tp(PERIODS + MOMENTUM_PERIODS),
    "ROCP": _tp(),
    "ROCR": _tp(),
    "ROCR100": _tp(),
    "RSI": _tp(),
    "SMI": _kw(("timeperiod", "fastperiod", "slowperiod", "signalperiod"), ((13, 2, 25, 9), (5, 2, 10, 5))),
    "STOCH": [((k, s, d, m), {"fastk_period": k, "slowk_period": s, "slowk_matype": m, "slowd_period": d, "slowd_matype": m})
              for k, s, d, m in ((5, 3, 3, 0), (9, 3, 3, 0), (14, 3, 3, 0), (21, 7, 7, 0), (14, 3, 3, 1))],
    "STOCHF": _kw(("fastk_period", "fastd_period"), ((5, 3), (9, 3), (14, 3), (21, 5))),
    "STOCHRSI": _kw(("timeperiod", "fastk_period", "fastd_period"), ((14, 14, 3), (14, 5, 3), (7, 7, 3), (21, 21, 5))),
    "TRIX": _tp(),
    "TSI": _kw(("firstperiod", "secondperiod"), ((25, 13), (13, 7), (40, 20))),
    "ULTOSC": _kw(("timeperiod1", "timeperiod2", "timeperiod3"), ((7, 14, 28), (5, 10, 20), (10, 20, 40), (14, 28, 56))),
    "VHF": _tp(),
    "VORTEX": _tp(),
    "WAD": [((n,), {}) for n in CHG_PERIODS],
    "WILLR": _tp(),
    # ---- Volatility Indicators
    "ADR": _tp(),
    "ATR": _tp(),
    "CVI": _kw(("timeperiod", "rocperiod"), ((10, 10), (5, 5), (20, 20))),
    "MASSI": _kw(("fastperiod", "slowperiod"), ((9, 25), (5, 15))),
    "NATR": _tp(),
    "RVI": _kw(("timeperiod", "stddevperiod"), ((14, 10), (10, 10), (20, 20))),
    "TRANGE": [((), {})],
    # ---- Volume Indicators
    "AD": [((n,), {}) for n in CHG_PERIODS],
    "ADOSC": _kw(("fastperiod", "slowperiod"), ((3, 10), (5, 20), (10, 30))),
    "CMF": _tp(),
    "EFI": _tp(),
    "MARKETFI": [((), {})],
    "NVI": [((n,), {}) for n in CHG_PERIODS],
    "OBV": [((n,), {}) for n in CHG_PERIODS],
    "PVI": [((n,), {}) for n in CHG_PERIODS],
    "PVO": _kw(("fastperiod", "slowperiod"), ((12, 26), (5, 35), (3, 10))),
    "PVT": [((n,), {}) for n in CHG_PERIODS],
    "RVOL": _tp(),
    # ---- Cycle Indicators
    "HT_DCPERIOD": [((), {})],
    "HT_DCPHASE": [((), {})],
    "HT_PHASOR": [((), {})],
    "HT_SINE": [((), {})],
    "HT_TRENDMODE": [((), {})],
    # ---- Pattern Recognition (the others run at TA-Lib's defaults)
    **{f: _tp((0.1, 0.3, 0.5), key="penetration") for f in (
        "CDLABANDONEDBABY", "CDLEVENINGDOJISTAR", "CDLEVENINGSTAR", "CDLMORNINGDOJISTAR", "CDLMORNINGSTAR")},
    **{f: _tp((0.3, 0.5, 0.7), key="penetration") for f in ("CDLDARKCLOUDCOVER", "CDLMATHOLD")},
    # ---- Price Transform
    "AVGDEV": _tp(),
    "AVGPRICE": [((), {})],
    "HA": [((), {})],
    "MEDPRICE": [((), {})],
    "TYPPRICE": [((), {})],
    "WCLPRICE": [((), {})],
    # ---- Statistic Functions
    "CORREL": _tp(),
    "LINEARREG": _tp(),
    "LINEARREG_ANGLE": _tp(),
    "LINEARREG_INTERCEPT": _tp(),
    "LINEARREG_SLOPE": _tp(),
    "PERCENTILE": _kw(("timeperiod", "percentile"), [(p, float(q)) for p in PERIODS for q in (10, 25, 50, 75, 90)]),
    "PERCENTRANK": _tp(),
    "STDDEV": _tp(),
    "TSF": _tp(),
    "VAR": _tp(),
}
#: cumulative levels: published as N-session changes (MOM) or returns (ROC)
LEVEL_POST: dict[str, tuple[str, str]] = {
    "AD": ("MOM", "chg"), "OBV": ("MOM", "chg"), "WAD": ("MOM", "chg"), "PVT": ("MOM", "chg"),
    "NVI": ("ROC", "roc"), "PVI": ("ROC", "roc"),
}
#: inputs that differ from TA-Lib's defaults
INPUT_OVERRIDES: dict[str, tuple[str, ...]] = {"CORREL": ("close", "volume")}

# Memory beyond the lookback: func -> (time constant tau in sessions, from the
# kwargs; multiplier). Convergence margin = ceil(multiplier * tau). EMA alpha =
# 2/(p+1) -> tau = (p+1)/2; Wilder alpha = 1/p -> tau = p; the error of a
# start-up seed decays like exp(-m / tau), so 1e-6 needs m >~ 14 tau. The
# multipliers are the largest needed on AAPL, SPY and IBM (1998-2021, 36 end
# points) plus ~25%; tests/test_technical_grid.py re-checks every output.
def _ema(*keys):
    return lambda kw: max((kw[k] + 1) / 2 for k in keys)


def _wilder(*keys):
    return lambda kw: max(kw[k] for k in keys)


def _const(tau):
    return lambda kw: tau


_EMA_TYPE = {
    "EMA": ("timeperiod",), "DEMA": ("timeperiod",), "TEMA": ("timeperiod",), "ZLEMA": ("timeperiod",), "T3": ("timeperiod",),
    "MACD": ("slowperiod", "signalperiod"), "TSI": ("firstperiod", "secondperiod"), "SMI": ("fastperiod", "slowperiod", "signalperiod"),
    "EFI": ("timeperiod",), "ERI": ("timeperiod",), "PVO": ("fastperiod", "slowperiod"), "ADOSC": ("fastperiod", "slowperiod"),
    "CVI": ("timeperiod",), "MASSI": ("fastperiod",),
}
_WILDER_TYPE = {
    "RSI": ("timeperiod",), "CMO": ("timeperiod",), "RMA": ("timeperiod",), "ATR": ("timeperiod",), "NATR": ("timeperiod",),
    "PLUS_DM": ("timeperiod",), "MINUS_DM": ("timeperiod",), "PLUS_DI": ("timeperiod",), "MINUS_DI": ("timeperiod",),
    "DX": ("timeperiod",), "STOCHRSI": ("timeperiod",), "RVI": ("timeperiod",), "SUPERTREND": ("timeperiod",),
    "KDJ": ("slowk_period", "slowd_period"),
}
MEMORY: dict[str, tuple[Callable[[dict], float], float]] = {
    **{f: (_ema(*keys), 18) for f, keys in _EMA_TYPE.items()},
    **{f: (_wilder(*keys), 16) for f, keys in _WILDER_TYPE.items()},
    "TRIX": (_ema("timeperiod"), 20), "ADX": (_wilder("timeperiod"), 20), "ADXR": (_wilder("timeperiod"), 20),
    "MACDFIX": (lambda kw: max(13.5, (kw["signalperiod"] + 1) / 2), 18),
    "APO": (lambda kw: (kw["slowperiod"] + 1) / 2 if kw["matype"] == 1 else 0, 18),
    "PPO": (lambda kw: (kw["slowperiod"] + 1) / 2 if kw["matype"] == 1 else 0, 18),
    "BBANDS": (lambda kw: (kw["timeperiod"] + 1) / 2 if kw["matype"] == 1 else 0, 18),
    "STOCH": (lambda kw: max(kw["slowk_period"], kw["slowd_period"]) if kw["slowk_matype"] == 1 else 0, 18),
    "KC": (lambda kw: max((kw["timeperiod"] + 1) / 2, kw["atrperiod"]), 18),
    # adaptive and path-dependent: time constants measured on real bars
    "KAMA": (lambda kw: kw["timeperiod"] + 30, 10), "MAMA": (lambda kw: 2 / kw["slowlimit"], 12),
    **{f: (_const(50.0), 8) for f in ("HT_TRENDLINE", "HT_DCPERIOD", "HT_DCPHASE", "HT_PHASOR", "HT_SINE", "HT_TRENDMODE", "SAR", "SAREXT")},
    "HA": (_const(2.0), 30),
}
#: no factor needs more history than this: grid members that would (Wilder
#: smoothing over 200 sessions, TRIX 200) are left out of the grid, see DROPPED
WARMUP_CAP = 2520


def _margin(func: str, kwargs: dict) -> int:
    rule = MEMORY.get(func)
    if rule is None:
        return 0
    tau, mult = rule
    return int(math.ceil(mult * tau(kwargs)))


def _group_of() -> dict[str, str]:
    talib = _talib()
    return {f: g for g, fs in talib.get_function_groups().items() for f in fs}


def _grid() -> dict[str, list]:
    """GRID plus every other function of the included groups at TA-Lib's defaults."""
    talib = _talib()
    out = dict(GRID)
    for group in GROUP_VIEWS:
        for func in talib.get_function_groups()[group]:
            if func not in out and func not in EXCLUDED_FUNCTIONS:
                out[func] = [((), {})]
    return out


def _build() -> tuple[tuple[Factor, ...], dict[str, Call], dict[str, int]]:
    group = _group_of()
    factors: list[Factor] = []
    calls: dict[str, Call] = {}
    dropped: dict[str, int] = {}
    for func, grid in _grid().items():
        view = GROUP_VIEWS[group[func]]
        info = _info(func)
        talib_outputs = list(info["output_names"])
        inputs = INPUT_OVERRIDES.get(func, _inputs(func))
        defaults = dict(info["parameters"])
        for values, kwargs in grid:
            kwargs = dict(kwargs)
            post = LEVEL_POST.get(func)
            stem = "_".join(["ta", func.lower(), *([post[1]] if post else []), *(_fmt(v) for v in values)])
            outputs = (stem,) if len(talib_outputs) == 1 else tuple(f"{stem}_{o.lower()}" for o in talib_outputs)
            lookback = _lookback(func, kwargs)
            if post:
                lookback += values[0]
            warmup = lookback + _margin(func, kwargs)
            if warmup > WARMUP_CAP:
                dropped[stem] = warmup
                continue
            call = Call(stem, func, inputs, tuple(sorted(kwargs.items())), outputs, lookback, warmup,
                        post[0] if post else None, values[0] if post else 0)
            calls[stem] = call
            params = {**defaults, **kwargs}
            what = info["display_name"]
            if post:
                what = f"{post[1]} over {values[0]} sessions of the cumulative {info['display_name']} ({func})"
            arg = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
            desc = f"TA-Lib {func}({arg}): {what}" if not post else f"TA-Lib {post[0]}({func}, {values[0]}): {what}"
            if func == "CORREL":
                desc = f"TA-Lib CORREL(close, volume, timeperiod={values[0]}): rolling price-volume correlation"
            out_objs = tuple(
                Output(name, "float32", desc if len(outputs) == 1 else f"{desc} [{o.lower()}]")
                for name, o in zip(outputs, talib_outputs, strict=True)
            )
            factors.append(
                Factor(
                    name=stem,
                    family=FAMILY,
                    view=view,
                    outputs=out_objs,
                    inputs=tuple(f"bars_daily.{c}" for c in inputs) + ("corporate_actions.split_factor",),
                    warmup=warmup,
                    availability=AVAILABILITY,
                    description=desc,
                    params=tuple(params.items()),
                )
            )
    return tuple(factors), calls, dropped


#: FACTORS: the declarations; CALLS: factor name -> its TA-Lib call;
#: DROPPED: grid members left out because they need more than WARMUP_CAP sessions
FACTORS, CALLS, DROPPED = _build()
#: output names in declaration order
OUTPUT_NAMES: tuple[str, ...] = tuple(o.name for f in FACTORS for o in f.outputs)
MAX_WARMUP: int = max(f.warmup for f in FACTORS)


def output_names(factors: Iterable[Factor] = FACTORS) -> list[str]:
    return [o.name for f in factors for o in f.outputs]


def calls_for(factors: Iterable[Factor] = FACTORS) -> list[Call]:
    """The TA-Lib calls that compute ``factors`` (for benchmarks and tests)."""
    return [CALLS[f.name] for f in factors]


# ----------------------------------------------------------------- compute

def _function(name: str):
    """TA-Lib's compiled function, without the pandas/polars dispatch wrapper."""
    fn = getattr(_talib(), name)
    return getattr(fn, "__wrapped__", fn)


@dataclass(frozen=True)
class Plan:
    """The calls of a factor list, resolved once: what the inner loop needs."""

    names: tuple[str, ...]
    steps: tuple[tuple, ...]   # (fn, inputs, kwargs, post fn, post period, lookback, warmup, n outputs)
    max_warmup: int


def plan_for(factors: Iterable[Factor] = FACTORS) -> Plan:
    calls = calls_for(factors)
    steps = tuple(
        (_function(c.func), c.inputs, dict(c.kwargs), _function(c.post) if c.post else None, c.post_period, c.lookback, c.warmup, len(c.outputs))
        for c in calls
    )
    names = tuple(n for c in calls for n in c.outputs)
    return Plan(names, steps, max((c.warmup for c in calls), default=0))


DEFAULT_PLAN: Plan = plan_for(FACTORS)


def _plan(factors) -> Plan:
    return DEFAULT_PLAN if factors is FACTORS else plan_for(factors)


def split_regimes(split: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) index ranges of consecutive sessions sharing one split factor."""
    n = len(split)
    if n == 0:
        return []
    cuts = np.flatnonzero(split[1:] != split[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def scaled_window(raw: dict[str, np.ndarray], split: np.ndarray, lo: int, hi: int, s_k: float) -> dict[str, np.ndarray]:
    """Bars [lo, hi) in the price scale of a session whose split factor is s_k:
    prices * s(d) / s_k, volumes * s_k / s(d)."""
    ratio = split[lo:hi] / s_k
    out = {c: raw[c][lo:hi] * ratio for c in ("open", "high", "low", "close")}
    out["volume"] = raw["volume"][lo:hi] / ratio
    return out


def run_call(call: Call, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One grid call on arrays (float64); returns one float64 array per output,
    NaN where TA-Lib has no value (an integer output's lookback is NaN, not 0)."""
    res = _function(call.func)(*(arrays[c] for c in call.inputs), **dict(call.kwargs))
    res = list(res) if isinstance(res, tuple | list) else [res]
    if call.post is not None:
        res = [_function(call.post)(res[0], timeperiod=call.post_period)]
    for i, r in enumerate(res):
        if r.dtype.kind in "iu":  # candlesticks, trend flags: TA-Lib writes 0 in its lookback
            r = r.astype(np.float64)
            r[: call.lookback] = np.nan
            res[i] = r
    return res


def _check_bars(bars: pd.DataFrame) -> None:
    missing = [c for c in ("session", *BAR_COLUMNS, "event_timestamp") if c not in bars.columns]
    if missing:
        raise TechnicalInputError(f"bars lack column(s) {missing}; pass silver bars (etl.bars.read_silver_bars)")
    if "symbol" in bars.columns and bars["symbol"].nunique() > 1:
        raise TechnicalInputError(f"compute_technical takes ONE symbol's bars, got {bars['symbol'].nunique()} symbols; group by symbol first")
    session = bars["session"]
    if not session.is_monotonic_increasing or session.duplicated().any():
        raise TechnicalInputError("bars must be sorted by session without duplicates (one version per session)")


def _start_index(bars: pd.DataFrame, start_session) -> int:
    if start_session is None:
        return 0
    return int(np.searchsorted(bars["session"].to_numpy(), np.datetime64(pd.Timestamp(start_session)), side="left"))


def _compute_into(bars: pd.DataFrame, factor_rows: pd.DataFrame | None, plan: Plan, start: int, out: np.ndarray) -> None:
    """Fill ``out`` (outputs x sessions from ``start``, float32): every cell is written
    (the regimes cover every session, each call writes all its outputs)."""
    split, _ = cumulative_factors(bars["session"], factor_rows)
    raw = {c: bars[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS}
    for a, b in split_regimes(split):
        a = max(a, start)
        if a >= b:
            continue
        base = max(0, a - plan.max_warmup)
        arrays = scaled_window(raw, split, base, b, float(split[b - 1]))
        first, j = a - base, 0
        for fn, inputs, kwargs, post, post_period, lookback, warmup, _n in plan.steps:
            lo = max(0, first - warmup)
            res = fn(*[arrays[c][lo:] for c in inputs], **kwargs)
            if post is not None:
                res = post(res, timeperiod=post_period)
            skip = first - lo  # outputs before the regime's first wanted session
            for r in res if isinstance(res, tuple) else (res,):
                if r.dtype.kind in "iu":  # candlesticks, trend flags: TA-Lib writes 0 in its lookback
                    r = r.astype(np.float64)
                    r[:lookback] = np.nan
                out[j, a - start : b - start] = r[skip:]
                j += 1


def _finite(block: np.ndarray, slab: int = 64) -> np.ndarray:
    """Infinite values (a ratio over a zero range) become NaN (missing), like
    TA-Lib's own undefined values; a few outputs at a time (small temporaries)."""
    for i in range(0, block.shape[0], slab):
        part = block[i : i + slab]
        np.putmask(part, np.isinf(part), np.float32(np.nan))
    return block


def compute_technical(
    bars: pd.DataFrame,
    factor_rows: pd.DataFrame | None = None,
    factors: tuple[Factor, ...] = FACTORS,
    start_session=None,
) -> pd.DataFrame:
    """Every output of ``factors`` for ONE symbol, in the point-in-time price scale.

    ``bars``: one symbol's silver bars sorted by session (symbol, session, open,
    high, low, close, volume, event_timestamp, known_timestamp), raw prices;
    ``factor_rows``: that symbol's Lean factor rows (None: no splits).
    Returns one row per session >= ``start_session`` (default: every session),
    in order: symbol, event_timestamp, known_timestamp, then every output as
    float32 (NaN where undefined: TA-Lib's lookback, an infinite value).
    Give ``MAX_WARMUP`` sessions of history before ``start_session`` for the
    values of a whole-history computation.
    """
    _check_bars(bars)
    plan = _plan(factors)
    start = _start_index(bars, start_session)
    block = np.empty((len(plan.names), len(bars) - start), dtype=np.float32)  # one contiguous row per output
    if block.shape[1]:
        _compute_into(bars, factor_rows, plan, start, block)
    return _frame([_meta(bars.iloc[start:])], _finite(block), plan.names)


def _utc_us(values: pd.Series) -> np.ndarray:
    if values.dtype != "datetime64[us, UTC]":
        values = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    return values.array.asi8  # int64 microseconds since the epoch, no copy


def _meta(bars: pd.DataFrame) -> pd.DataFrame:
    event = _utc_us(bars["event_timestamp"])
    known = event
    if "known_timestamp" in bars.columns:
        # a row is as new as the newest bar version it could have used
        known = np.maximum(np.maximum.accumulate(_utc_us(bars["known_timestamp"])), event)
    symbol = bars["symbol"].to_numpy() if "symbol" in bars.columns else np.full(len(bars), None, dtype=object)
    return pd.DataFrame({"symbol": symbol, "event_timestamp": _as_utc(event), "known_timestamp": _as_utc(known)})


def _as_utc(us: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(us.view("M8[us]")).tz_localize("UTC")


def _frame(metas: list[pd.DataFrame], block: np.ndarray, names) -> pd.DataFrame:
    meta = metas[0] if len(metas) == 1 else pd.concat(metas, ignore_index=True)
    values = pd.DataFrame(block.T, columns=list(names), copy=False)  # pandas keeps the (outputs x rows) block as is
    return pd.concat([meta, values], axis=1, copy=False)


# ----------------------------------------------------------------- many symbols

def _compute_chunk(args) -> pd.DataFrame | object:
    """Several symbols into ONE preallocated block (no per-symbol frames to concatenate)."""
    pairs, factors, start_session, sink = args
    plan = _plan(factors if factors is not None else FACTORS)
    starts = []
    for bars, _rows in pairs:
        _check_bars(bars)
        starts.append(_start_index(bars, start_session))
    sizes = [len(bars) - s for (bars, _r), s in zip(pairs, starts, strict=True)]
    block = np.empty((len(plan.names), sum(sizes)), dtype=np.float32)
    offset = 0
    for (bars, rows), start, size in zip(pairs, starts, sizes, strict=True):
        if size:
            _compute_into(bars, rows, plan, start, block[:, offset : offset + size])
        offset += size
    frame = _frame([_meta(bars.iloc[s:]) for (bars, _r), s in zip(pairs, starts, strict=True)], _finite(block), plan.names)
    return sink(frame) if sink is not None else frame


def _chunks(frames: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in frames:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def compute_technical_many(
    frames: Iterable[tuple[pd.DataFrame, pd.DataFrame | None]],
    n_jobs: int = 2,
    factors: tuple[Factor, ...] = FACTORS,
    start_session=None,
    chunk_size: int = 8,
    sink: Callable[[pd.DataFrame], object] | None = None,
) -> Iterator[pd.DataFrame | object]:
    """Compute many symbols in ``n_jobs`` forked processes, streaming.

    ``frames`` yields ``(bars, factor_rows)`` per symbol (consumed lazily).
    Yields, in input order, one frame per chunk of ``chunk_size`` symbols (the
    rows of :func:`compute_technical` for each symbol, one after the other) --
    or, with ``sink`` (a picklable callable, e.g. a Parquet writer),
    ``sink(frame)`` computed in the worker, so that only its small result
    crosses processes. At most ``2 * n_jobs`` chunks are in flight: memory
    stays bounded whatever the number of symbols.
    """
    fac = None if factors is FACTORS else factors
    jobs = ((chunk, fac, start_session, sink) for chunk in _chunks(frames, chunk_size))
    n_jobs = max(1, min(n_jobs, os.cpu_count() or 1))
    if n_jobs == 1:
        for job in jobs:
            yield _compute_chunk(job)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("fork")) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(_compute_chunk, job))
            if len(pending) >= 2 * n_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
