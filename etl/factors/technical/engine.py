"""The grid's compute kernel: numpy arrays in, a preallocated float32 block (outputs x
sessions) out, TA-Lib's compiled functions called once per split regime."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from etl.factors.spec import Factor
from etl.factors.technical.grid import FACTORS, Call, calls_for


def _function(name: str):
    """TA-Lib's compiled function, without the pandas/polars dispatch wrapper."""
    import talib

    fn = getattr(talib, name)
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


def resolve_plan(factors) -> Plan:
    """The plan of ``factors``: the one built at import for the whole grid."""
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


def compute_into(raw: dict[str, np.ndarray], split: np.ndarray, plan: Plan, start: int, out: np.ndarray) -> None:
    """Fill ``out`` (outputs x sessions from ``start``, float32) from one symbol's raw bar
    arrays (float64) and the split factor in force at each session: every cell is written
    (the regimes cover every session, each call writes all its outputs)."""
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


def finite(block: np.ndarray, slab: int = 64) -> np.ndarray:
    """Infinite values (a ratio over a zero range) become NaN (missing), like
    TA-Lib's own undefined values; a few outputs at a time (small temporaries)."""
    for i in range(0, block.shape[0], slab):
        part = block[i : i + slab]
        np.putmask(part, np.isinf(part), np.float32(np.nan))
    return block
