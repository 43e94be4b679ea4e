"""What one feature is and how well the warehouse covers it (``alpha features describe``)."""

from __future__ import annotations

import pandas as pd

from etl.core.config import Settings
from etl.factors import registry


def describe_feature(settings: Settings, name: str) -> dict:
    """Declaration, lineage and coverage of feature ``name`` (KeyError if unknown)."""
    info = registry.features()[name]
    view = registry.views()[info.view]
    out: dict = {
        "name": info.name,
        "view": info.view,
        "family": info.family,
        "dtype": info.dtype,
        "entity": info.entity,
        "description": info.description,
    }
    if info.factor:
        f = registry.factor(info.factor)
        out["lineage"] = {
            "silver inputs": ", ".join(f.inputs),
            "factor": f"{f.name} ({f.family}){' ' + dict(f.params).__repr__() if f.params else ''}",
            "warm-up": f"{f.warmup} sessions",
            "available": f.availability,
            "lag of": view.lag_of or "-",
            "feature view": view.name,
            "services": ", ".join(s for s in registry.SERVICES if view.name in registry.service_views(s)),
            "gold file": str(settings.gold / f"{view.name}.parquet"),
        }
    out["coverage"] = coverage(settings, view, name)
    return out


def coverage(settings: Settings, view: registry.View, name: str) -> dict:
    path = settings.gold / f"{view.name}.parquet"
    if not path.exists():
        return {"status": f"not built in {settings.home} (run `alpha nightly`)"}
    frame = pd.read_parquet(path, columns=[view.entity, "event_timestamp", name])
    if frame.empty:
        return {"status": "built, but its inputs were never ingested (empty view)"}
    present = frame[name].notna()
    per_entity = frame.assign(ok=present).groupby(view.entity)["ok"].mean()
    have = frame[present]
    return {
        "rows": f"{len(frame):,}",
        "non-missing": f"{int(present.sum()):,} ({present.mean():.1%})",
        f"{view.entity}s": f"{int((per_entity > 0).sum())} of {len(per_entity)} have values",
        "first value": have["event_timestamp"].min() if len(have) else None,
        "last value": have["event_timestamp"].max() if len(have) else None,
        f"worst {view.entity}": f"{per_entity.idxmin()} ({per_entity.min():.1%} non-missing)" if len(per_entity) else None,
    }
