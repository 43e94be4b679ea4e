"""Every declared factor, the families that compute them, and the feature views and
services made from them.

The registry is the one place that knows which factors exist: the built-in families
(:func:`etl.factors.families.builtin_families`) and the factors of the user's own modules
named in the home's ``config.toml`` (``factor_modules = ["mylab.factors"]``, each module
exposing ``FACTORS``), activated with :func:`activate`. It turns their declarations into
view descriptions (name, entity, family, outputs, TTL) that ``feature_repo/`` turns into
Feast objects and that ``alpha features list`` prints. A user's factor is checked here
before any work: unknown input table, a view or output name that clashes with an existing
one, a missing warm-up or compute (docs/factors.md, Adding a factor).

Lagged variants: every view except the wide TA-Lib grid has a twin
``<view>_lag1`` whose features ``<name>_lag1`` hold the previous session's
value at each session. A model that does as well on ``_lag1`` features as
on the originals is not feeding on a same-session leak; the service
``leakage_v2`` bundles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from etl.core import plugins
from etl.core.errors import DeclarationError, UnknownFeatureError
from etl.factors.families import BAR_OUTPUTS, BARS_VIEW, builtin_families, user_family
from etl.factors.spec import INPUT_TABLES, Factor, Family, Output

#: How long a daily value stays valid in a point-in-time join (covers the
#: longest NYSE closure since 1990: 2001-09-11..14, 7 calendar days).
DAILY_TTL = timedelta(days=10)
LAG_SUFFIX = "_lag1"
CORE_VIEW = "technicals"
__all__ = ["BARS_VIEW", "BAR_OUTPUTS", "CORE_VIEW", "DAILY_TTL", "LAG_SUFFIX", "SERVICES", "FeatureInfo", "View", "activate",
           "all_factors", "factor", "families", "features", "service_views", "views"]

_ACTIVE: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


def activate(modules=(), paths=()) -> None:
    """Use the user's factor modules (importable names) from now on; ``paths`` are folders put
    on ``sys.path`` first. Takes a :class:`~etl.core.config.Settings` too."""
    global _ACTIVE
    if hasattr(modules, "factor_modules"):
        modules, paths = modules.factor_modules, modules.factor_paths
    key = (tuple(modules), tuple(paths))
    if key != _ACTIVE:
        _ACTIVE = key
        for cache in (families, all_factors, views, features):
            cache.cache_clear()


def _user_factors(module_name: str) -> list[Factor]:
    module = plugins.import_module(module_name, "factor module")
    declared = getattr(module, "FACTORS", None)
    if declared is None:
        raise DeclarationError(f"factor module {module_name!r} has no FACTORS list (FACTORS = [Factor(...), ...])")
    try:
        declared = list(declared)
    except TypeError:
        raise DeclarationError(f"factor module {module_name!r}: FACTORS must be a list of Factor, got {type(declared).__name__}") from None
    bad = [f for f in declared if not isinstance(f, Factor)]
    if bad:
        raise DeclarationError(f"factor module {module_name!r}: FACTORS holds {bad[0]!r}, not a Factor")
    for f in declared:
        for ref in f.inputs:
            table, _, column = str(ref).partition(".")
            if table not in INPUT_TABLES or not column:
                raise DeclarationError(f"factor {f.name} ({module_name}): unknown input {ref!r}; an input is <table>.<column> with "
                                       f"table one of {list(INPUT_TABLES)}")
    return declared


@lru_cache(maxsize=1)
def families() -> tuple[Family, ...]:
    """The built-in families, then one family per view of the user's factors."""
    out = list(builtin_families())
    modules, paths = _ACTIVE
    plugins.add_paths(paths)
    builtin_views = {v for fam in out for v in fam.views}
    builtin_views |= {v + LAG_SUFFIX for v in builtin_views}
    by_view: dict[str, list[Factor]] = {}
    for name in modules:
        for f in _user_factors(name):
            if f.view in builtin_views:
                raise DeclarationError(f"factor {f.name} ({name}): view {f.view!r} is a built-in view; put your factors in a view of "
                                       "their own (e.g. view='mylab_daily')")
            if f.view.endswith(LAG_SUFFIX):
                raise DeclarationError(f"factor {f.name} ({name}): a view name may not end in {LAG_SUFFIX}")
            by_view.setdefault(f.view, []).append(f)
    out.extend(user_family(view, tuple(fs)) for view, fs in by_view.items())
    return tuple(out)


def family_of_view(view: str) -> Family:
    base = view[: -len(LAG_SUFFIX)] if view.endswith(LAG_SUFFIX) else view
    for fam in families():
        if base in fam.views:
            return fam
    raise UnknownFeatureError(f"no family computes view {view!r}")


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


@lru_cache(maxsize=1)
def all_factors() -> tuple[Factor, ...]:
    factors = [f for fam in families() for f in fam.factors]
    names = [f.name for f in factors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DeclarationError(f"factor names declared twice: {dup}")
    outs = [o.name for f in factors for o in f.outputs]
    dup = sorted({n for n in outs if outs.count(n) > 1})
    if dup:
        raise DeclarationError(f"feature names declared twice (an output clashes with an existing feature): {dup[:10]}")
    return tuple(factors)


def lagged(name: str) -> bool:
    """Views with a ``_lag1`` twin: all but the wide TA-Lib grid (``ta_*``)."""
    return not name.startswith("ta_")


@lru_cache(maxsize=1)
def views() -> dict[str, View]:
    """Every feature view, in a stable order: bars, core technicals, then each
    family's views in declaration order, then the lagged twins."""
    out: dict[str, View] = {}
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
            description=factors[0].description if name == BARS_VIEW else f"{factors[0].family} factors ({len(factors)} declarations)",
            factors=() if name == BARS_VIEW else tuple(f.name for f in factors),
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
