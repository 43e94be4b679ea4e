"""The strategy protocol, and the loader that turns a reference into a checked strategy.

A **strategy** is any object with

- ``FEATURES``: the ``"view:feature"`` references it needs (fetched with ``alpha.history`` in a
  backtest and ``alpha.latest`` live);
- ``target_positions(features, time_col="decision_time") -> pd.Series``: the target weight of
  every row of ``features`` (columns ``symbol``, the time column and each feature under its
  short name, the part after ``:``), aligned to its rows; finite, >= 0, at most 1 in total per
  decision time (long only, the rest in cash);
- optionally ``NAME`` (else the reference's object name).

It may be a module (``strategy.trend_rsi``), an instance, or a class or function that makes
one: a callable that is not itself a strategy is called with the spec's ``params`` as keyword
arguments. A **model** is a strategy that learns (it has ``fit_final``, see
:class:`research.walkforward.WalkForward`): the experiment trains it walk-forward, keeps the
final fit as an artifact, and live runs that artifact.

References: a built-in name (:data:`BUILTINS`), ``package.module:object`` or ``package.module``
from the user's own code (``paths`` are put on ``sys.path`` first). The same loader serves the
CLI (``alpha live --strategy``, ``alpha replay --strategy``) and experiment specs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from types import ModuleType

import numpy as np
import pandas as pd

from etl.core import plugins
from etl.core.errors import AlphaError, DeclarationError

#: built-in strategies by name -> reference
BUILTINS: dict[str, str] = {
    "trend_rsi": "strategy.trend_rsi",
    "trend_rsi_regime": "strategy.trend_rsi:TrendRSI",
    "xs_rank": "strategy.xs_rank:CrossSectionalRank",
    "learned_rank": "strategy.learned:LearnedRank",
}
#: tolerance on "at most 1 in total per decision time"
WEIGHT_TOLERANCE = 1e-9


class StrategyOutputError(AlphaError):
    """A strategy's ``target_positions`` returned weights the backtest and the live loop cannot
    trade (wrong length, NaN, negative, more than the whole book at one decision time)."""


def _is_strategy(obj) -> bool:
    return callable(getattr(obj, "target_positions", None)) and hasattr(obj, "FEATURES") and not inspect.isclass(obj)


def _check_features(features, ref: str) -> list[str]:
    if isinstance(features, str) or not isinstance(features, Iterable):
        raise DeclarationError(f"strategy {ref!r}: FEATURES must be a list of 'view:feature' references, got {features!r}")
    out = list(features)
    bad = [f for f in out if not isinstance(f, str) or f.count(":") != 1 or not all(f.split(":"))]
    if not out or bad:
        raise DeclarationError(f"strategy {ref!r}: FEATURES must be a non-empty list of 'view:feature' references"
                               + (f"; {bad[0]!r} is not one" if bad else ""))
    short = [f.split(":", 1)[1] for f in out]
    dup = sorted({s for s in short if short.count(s) > 1})
    if dup:
        raise DeclarationError(f"strategy {ref!r}: two features share the short name {dup[0]!r} (the frame has one column per name)")
    return out


class Strategy:
    """A loaded strategy: the user's object behind the protocol, checked on the way in (its
    declaration) and on the way out (every weight it returns)."""

    def __init__(self, inner, *, ref: str, params: Mapping | None = None):
        self.inner = inner
        self.ref = ref
        self.params = dict(params or {})
        name = getattr(inner, "NAME", None) or ref.rpartition(":")[2].rpartition(".")[2] or ref
        if not isinstance(name, str) or not plugins.MODULE_RE.match(name.replace("-", "_")):
            raise DeclarationError(f"strategy {ref!r}: NAME must be a short identifier, got {name!r}")
        self.NAME = name
        self.FEATURES = _check_features(getattr(inner, "FEATURES", None), ref)
        self.kind = "model" if callable(getattr(inner, "fit_final", None)) else "strategy"
        self.source_sha256 = plugins.source_sha256(inner)

    def __repr__(self) -> str:
        return f"Strategy({self.NAME!r}, ref={self.ref!r}, kind={self.kind!r}, params={self.params})"

    def __getattr__(self, item):  # anything else the object offers (fit_final, save, folds, ...)
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def target_positions(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        out = self.inner.target_positions(features, time_col=time_col)
        return check_weights(out, features, time_col, self.NAME)


def check_weights(weights, features: pd.DataFrame, time_col: str, name: str) -> pd.Series:
    """The weights as a float Series on ``features``' index, or a StrategyOutputError naming the
    first problem: wrong type or length, NaN or infinite, negative, or more than 1 in total at a
    decision time."""
    if not isinstance(weights, pd.Series):
        raise StrategyOutputError(f"strategy {name!r}: target_positions must return a pandas Series, got {type(weights).__name__}")
    if len(weights) != len(features):
        raise StrategyOutputError(f"strategy {name!r}: target_positions returned {len(weights)} weights for {len(features)} rows")
    if not weights.index.equals(features.index):
        raise StrategyOutputError(f"strategy {name!r}: target_positions must return weights on the frame's own index (row for row)")
    values = pd.to_numeric(weights, errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StrategyOutputError(f"strategy {name!r}: weight {weights.iloc[i]!r} for {features['symbol'].iloc[i]} at "
                                  f"{features[time_col].iloc[i]} is not a finite number (a row it cannot decide gets 0, not NaN)")
    if (values < 0).any():
        i = int(np.flatnonzero(values.to_numpy() < 0)[0])
        raise StrategyOutputError(f"strategy {name!r}: negative weight {values.iloc[i]} for {features['symbol'].iloc[i]} at "
                                  f"{features[time_col].iloc[i]}; strategies are long only")
    total = values.groupby(features[time_col].to_numpy()).sum()
    over = total[total > 1.0 + WEIGHT_TOLERANCE]
    if len(over):
        raise StrategyOutputError(f"strategy {name!r}: weights sum to {over.iloc[0]:.6f} at {over.index[0]}; at most 1 (the whole book)")
    return values.rename("target_weight")


def resolve_ref(ref: str) -> str:
    """A built-in name's reference, or the reference itself."""
    return BUILTINS.get(ref, ref)


def load_strategy(ref: str | object, params: Mapping | None = None, paths: Iterable[str] = ()) -> Strategy:
    """The strategy ``ref`` names (a built-in name, ``package.module:object`` or
    ``package.module``), made with ``params`` when it is a class or factory, checked against the
    protocol. An object already loaded is checked and wrapped as is."""
    if isinstance(ref, Strategy):
        if params:
            raise DeclarationError(f"strategy {ref.ref!r} is already made; pass its params when loading it")
        return ref
    params = dict(params or {})
    if isinstance(ref, str):
        target = resolve_ref(ref)
        if ":" not in target and not plugins.MODULE_RE.match(target):
            raise DeclarationError(f"strategy {ref!r} is not a reference of the form package.module:object (or a built-in: "
                                   f"{', '.join(BUILTINS)})")
        obj = plugins.load_object(target, "strategy", paths) if ":" in target else plugins.import_module(target, "strategy", paths)
        label = ref
    else:
        obj, label = ref, getattr(ref, "NAME", None) or getattr(ref, "__name__", type(ref).__name__)
    if _is_strategy(obj):
        if params:
            raise DeclarationError(f"strategy {label!r} takes no params (it is a {'module' if isinstance(obj, ModuleType) else 'ready object'}); "
                                   f"got {sorted(params)}")
        inner = obj
    elif callable(obj):
        try:
            inner = obj(**params)
        except TypeError as exc:
            raise DeclarationError(f"strategy {label!r} cannot be made with params {params}: {exc}") from None
        if not _is_strategy(inner):
            raise DeclarationError(f"strategy {label!r}: calling it returned {type(inner).__name__}, which has no FEATURES and "
                                   "target_positions(features, time_col) (docs/research.md, the strategy protocol)")
    else:
        raise DeclarationError(f"strategy {label!r} is a {type(obj).__name__}, not a strategy: it needs FEATURES and "
                               "target_positions(features, time_col) (docs/research.md, the strategy protocol)")
    return Strategy(inner, ref=str(ref) if isinstance(ref, str) else label, params=params)
