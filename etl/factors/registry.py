"""Every declared factor, and the feature views and services made from them.

The registry is the one place that knows which factor modules exist. It
turns their declarations into view descriptions (name, entity, family,
outputs, TTL) that ``feature_repo/`` turns into Feast objects and that
``alpha features list`` prints. Adding a factor = one declaration in its
family module + ``feast apply`` (``alpha apply``).

Lagged variants: every view except the wide TA-Lib grid has a twin
``<view>_lag1`` whose features ``<name>_lag1`` hold the previous session's
value at each session. A model that does as well on ``_lag1`` features as
on the originals is not feeding on a same-session leak; the service
``leakage_v2`` bundles them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from etl.core.errors import DeclarationError, UnknownFeatureError
from etl.factors.spec import Factor, Output

#: family modules, imported on first use
FAMILY_MODULES: tuple[str, ...] = (
    "etl.factors.technical",
    "etl.factors.options",
    "etl.factors.news",
    "etl.factors.fundamentals",
    "etl.factors.macro",
    "etl.factors.regime",
)
#: How long a daily value stays valid in a point-in-time join (covers the
#: longest NYSE closure since 1990: 2001-09-11..14, 7 calendar days).
DAILY_TTL = timedelta(days=10)
LAG_SUFFIX = "_lag1"
BARS_VIEW = "bars_daily"
CORE_VIEW = "technicals"

BAR_OUTPUTS: tuple[Output, ...] = (
    Output("open", "float64", "open, as traded (dollars)"),
    Output("high", "float64", "high, as traded"),
    Output("low", "float64", "low, as traded"),
    Output("close", "float64", "close, as traded"),
    Output("volume", "float64", "shares traded, as reported"),
    Output("ticker", "string", "ticker the symbol traded under that session"),
    Output("session_date", "string", "exchange session date YYYY-MM-DD"),
)


@dataclass(frozen=True)
class View:
    name: str
    family: str
    entity: str                      # "symbol" or "market"
    outputs: tuple[Output, ...]
    description: str
    ttl: timedelta = DAILY_TTL
    lag_of: str | None = None        # the view this one lags
    factors: tuple[str, ...] = ()

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


def _core_factors() -> tuple[Factor, ...]:
    from etl.factors.core import FACTORS as CORE

    out = []
    for spec in CORE:
        desc = spec.description
        out.append(
            Factor(
                name=spec.name,
                family="technical",
                view=CORE_VIEW,
                outputs=tuple(Output(o, "float64", desc) for o in spec.outputs),
                inputs=tuple(f"bars_daily.{c}" for c in spec.inputs) + ("corporate_actions.split_factor",),
                warmup=spec.warmup,
                availability="session close + bar delay (the bar it ends on)",
                description=desc,
            )
        )
    return tuple(out)


@lru_cache(maxsize=1)
def all_factors() -> tuple[Factor, ...]:
    factors = list(_core_factors())
    for module in FAMILY_MODULES:
        factors.extend(importlib.import_module(module).FACTORS)
    names = [f.name for f in factors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DeclarationError(f"factor names declared twice: {dup}")
    outs = [o.name for f in factors for o in f.outputs] + [o.name for o in BAR_OUTPUTS]
    dup = sorted({n for n in outs if outs.count(n) > 1})
    if dup:
        raise DeclarationError(f"feature names declared twice: {dup[:10]}")
    return tuple(factors)


def lagged(name: str) -> bool:
    """Views with a ``_lag1`` twin: all but the wide TA-Lib grid (``ta_*``)."""
    return not name.startswith("ta_")


@lru_cache(maxsize=1)
def views() -> dict[str, View]:
    """Every feature view, in a stable order: bars, core technicals, then each
    family's views in declaration order, then the lagged twins."""
    out: dict[str, View] = {
        BARS_VIEW: View(BARS_VIEW, "technical", "symbol", BAR_OUTPUTS, "Raw daily bars as a trader saw them.")
    }
    grouped: dict[str, list[Factor]] = {}
    for f in all_factors():
        grouped.setdefault(f.view, []).append(f)
    for name, factors in grouped.items():
        families = {f.family for f in factors}
        entities = {f.entity for f in factors}
        if len(families) != 1 or len(entities) != 1:
            raise DeclarationError(f"view {name} mixes families {families} or entities {entities}")
        out[name] = View(
            name=name,
            family=factors[0].family,
            entity=factors[0].entity,
            outputs=tuple(o for f in factors for o in f.outputs),
            description=f"{factors[0].family} factors ({len(factors)} declarations)",
            factors=tuple(f.name for f in factors),
        )
    for name in [n for n in out if lagged(n)]:
        base = out[name]
        out[name + LAG_SUFFIX] = View(
            name=name + LAG_SUFFIX,
            family=base.family,
            entity=base.entity,
            outputs=tuple(Output(o.name + LAG_SUFFIX, o.dtype, f"{o.description} (previous session's value)") for o in base.outputs),
            description=f"{base.name} one session late, for leakage checks",
            lag_of=name,
            factors=base.factors,
        )
    return out


#: Feature services. A released version never changes; a new feature set is a
#: new version. ``tests/test_feature_registry.py`` pins the released lists.
SERVICES: dict[str, dict] = {
    "daily_v1": {"views": [BARS_VIEW, CORE_VIEW], "description": "Every daily bar field and core technical factor, version 1."},
    "daily_v2": {"views": "all", "description": "Every feature of every family (bars, core, TA-Lib grid, options, news, fundamentals, macro, regime), version 2."},
    "leakage_v2": {"views": "lagged", "description": "The _lag1 twin of every view in daily_v2 but the TA-Lib grid: the same features one session late."},
}


def service_views(name: str) -> list[str]:
    """The feature views of service ``name``, in the order of :func:`views`."""
    if name not in SERVICES:
        raise UnknownFeatureError(f"unknown feature service {name!r}; the services are {sorted(SERVICES)}")
    spec = SERVICES[name]["views"]
    all_views = views()
    if spec == "all":
        return [v for v, info in all_views.items() if info.lag_of is None]
    if spec == "lagged":
        return [v for v, info in all_views.items() if info.lag_of is not None]
    return list(spec)


@dataclass(frozen=True)
class FeatureInfo:
    name: str
    view: str
    family: str
    dtype: str
    description: str
    factor: str | None
    entity: str


@lru_cache(maxsize=1)
def features() -> dict[str, FeatureInfo]:
    """Every feature by name (names are unique across views)."""
    by_output = {o.name: f for f in all_factors() for o in f.outputs}
    out = {}
    for view in views().values():
        for o in view.outputs:
            base = o.name[: -len(LAG_SUFFIX)] if view.lag_of else o.name
            factor = by_output.get(base)
            out[o.name] = FeatureInfo(o.name, view.name, view.family, o.dtype, o.description, factor.name if factor else None, view.entity)
    return out


def factor(name: str) -> Factor:
    """The declaration of factor ``name``."""
    for f in all_factors():
        if f.name == name:
            return f
    raise UnknownFeatureError(f"unknown factor {name!r}; `alpha features list` shows every factor's features")
