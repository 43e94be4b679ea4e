"""The TA-Lib grid's declarations: which functions, over which parameter grids, under which
feature names and views (docs/factors.md, Technical). Built once at import from TA-Lib's own
function metadata; nothing is computed here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from etl.factors.spec import Factor, Output
from etl.factors.warmup import WARMUP_CAP, convergence_margin

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
            warmup = lookback + convergence_margin(func, kwargs)
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
