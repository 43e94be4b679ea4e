"""The online catalog: views (entity, TTL, features and dtypes) and services, as a small JSON
file beside the registry, so a cold read resolves feature refs without importing the factor
families; and the one rule that turns a feature list or service name into ``view:feature`` refs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from etl.core.config import FEAST_PROJECT, Settings
from etl.core.errors import (
    EmptyInputError,
    UnknownFeatureError,
)

CATALOG_FILE = "online_catalog.json"


def catalog_path(settings: Settings) -> Path:
    return settings.feast_dir / CATALOG_FILE


def build_catalog(settings: Settings | None = None) -> dict:
    """Views (entity, TTL, features with dtypes) and services from the factor registry (with
    the factor modules of ``settings``' home, when given)."""
    from etl.factors import registry

    if settings is not None:
        registry.activate(settings)
    views = {
        name: {"entity": v.entity, "ttl_seconds": v.ttl.total_seconds(), "features": {o.name: o.dtype for o in v.outputs}}
        for name, v in registry.views().items()
    }
    services = {
        name: [f"{v}:{f}" for v in registry.service_views(name) for f in views[v]["features"]] for name in registry.SERVICES
    }
    return {"project": FEAST_PROJECT, "views": views, "services": services}


def write_catalog(settings: Settings, catalog: dict | None = None) -> Path:
    from etl.storage.atomic import atomic_write_text  # not at import: `alpha latest` must start fast

    return atomic_write_text(catalog_path(settings), json.dumps(catalog or build_catalog(settings)))


_CATALOGS: dict[str, tuple[float, dict]] = {}


def load_catalog(settings: Settings) -> dict:
    """The catalog written by :func:`materialize` (cached per file version), else the registry's
    (which imports every factor family: ~1.5 s)."""
    path = catalog_path(settings)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return build_catalog(settings)
    cached = _CATALOGS.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = (mtime, json.loads(path.read_text()))
        _CATALOGS[str(path)] = cached
    return cached[1]


def is_service(features) -> bool:
    """Whether ``features`` names a feature service (a string without ``:``), not refs."""
    return isinstance(features, str) and ":" not in features


def resolve_refs(catalog: dict, features: str | Sequence[str]) -> list[str]:
    """Refs ``view:feature`` for a list of refs (or one ref) or a feature service name; clear
    errors otherwise. The one rule for ``history`` and ``latest`` on either online store:
    ``catalog`` is this module's (``views``: name -> ``{"features": ...}``, ``services``: name ->
    refs) or the SDK's copy of Feast's registry in the same shape. Views, lagged views
    (``<view>_lag1``) and services are whatever the catalog lists; ``full_feature_names`` only
    renames output columns, so it plays no part here."""
    if features is None or (not isinstance(features, str) and len(features) == 0):
        raise EmptyInputError("no features asked for: pass refs like 'technicals:rsi_14' or a service name like 'daily_v1'")
    if is_service(features):
        if features not in catalog["services"]:
            raise UnknownFeatureError(f"unknown feature service {features!r}; registered services: {sorted(catalog['services'])}")
        return list(catalog["services"][features])
    refs = [features] if isinstance(features, str) else list(features)
    views = catalog["views"]
    bad = [r for r in refs if not isinstance(r, str) or r.partition(":")[0] not in views
           or r.partition(":")[2] not in views[r.partition(":")[0]]["features"]]
    if bad:
        known = [f"{v}:{f}" for v, info in views.items() for f in info["features"]]
        raise UnknownFeatureError(f"unknown feature(s) {bad}; use 'view:feature', e.g. one of {known[:12]} ...")
    if len(set(refs)) != len(refs):
        raise UnknownFeatureError(f"feature refs repeated: {refs}")
    return refs

