"""How much history each grid call needs: TA-Lib's lookback plus, for functions with memory
beyond their window, a convergence margin (docs/factors.md, Technical: warm-up)."""

from __future__ import annotations

import math
from collections.abc import Callable


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


def convergence_margin(func: str, kwargs: dict) -> int:
    """Sessions beyond TA-Lib's lookback for ``func(**kwargs)`` to converge (0: no memory)."""
    rule = MEMORY.get(func)
    if rule is None:
        return 0
    tau, mult = rule
    return int(math.ceil(mult * tau(kwargs)))
