"""What one feature is and how well the warehouse covers it (``alpha features describe``)."""

from __future__ import annotations

from etl.core.config import Settings
from etl.factors import registry


def describe_feature(settings: Settings, name: str) -> dict:
    """Declaration, lineage and coverage of feature ``name`` (KeyError if unknown)."""
    registry.activate(settings)
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
        family = registry.family_of_view(view.name)
        out["lineage"] = {
            "silver inputs": ", ".join(f.inputs),
            "computed by": f"family {family.name}{' (user module)' if family.user else ''}; "
                           + (f"per symbol, {family.warmup} sessions of warm-up" if family.warmup is not None else "whole history per entity"),
            "factor": f"{f.name} ({f.family}){' ' + dict(f.params).__repr__() if f.params else ''}",
            "warm-up": f"{f.warmup} sessions",
            "available": f.availability,
            "lag of": view.lag_of or "-",
            "feature view": view.name,
            "services": ", ".join(s for s in registry.SERVICES if view.name in registry.service_views(s)),
            "gold folder": str(settings.gold / view.name),
            "one value's chain": f"alpha features lineage {view.name}:{info.name} SYMBOL SESSION (gold row -> silver bars -> bronze file)",
        }
    out["coverage"] = coverage(settings, view, name)
    return out


def coverage(settings: Settings, view: registry.View, name: str) -> dict:
    from etl.gold.layout import parts

    files = parts(settings, view.name)
    if not files:
        return {"status": f"not built in {settings.home} (run `alpha nightly`)"}
    import pyarrow.dataset as ds

    frame = ds.dataset([str(p) for p in files], format="parquet").to_table(columns=[view.entity, "event_timestamp", name]).to_pandas()
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
