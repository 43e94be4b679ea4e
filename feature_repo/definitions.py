"""Feast objects for one warehouse, generated from the factor declarations.

Pure constructors: no I/O, no clients. Every view of
:func:`etl.factors.registry.views` becomes one ``FileSource`` over the folder
``gold/<view>/`` of Parquet parts and one ``FeatureView``; every entry of
:data:`etl.factors.registry.SERVICES` a ``FeatureService``. A new factor is
therefore one declaration in its family module plus ``alpha apply`` /
``feast apply``; nothing here changes.

Source paths are relative to the home (``gold/<view>``): the registry names no absolute path,
so a home that is copied or moved reads its own files. The offline store resolves them against
the home it serves (``AlphaOfflineStore``: its ``home`` option, else Feast's ``repo_path``,
which the SDK and the nightly set to the home).

``repo.py`` binds the objects at module level for the ``feast`` CLI; the SDK
and the nightly flow call :func:`build_definitions` with the home they serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float32, Float64, Int64, String

from etl.core.errors import UnknownDefinitionError
from etl.factors import registry

DAILY_TTL = registry.DAILY_TTL
DEFAULT_SERVICE = "daily_v1"

FEAST_TYPES = {"float64": Float64, "float32": Float32, "int64": Int64, "string": String, "bool": Bool}

ENTITY_DESCRIPTIONS = {
    "symbol": "A listed security, named by its current ticker (Lean's permanent file name).",
    "market": "A whole market (macro series and market-wide regimes); 'US' for US equities.",
}


@dataclass(frozen=True)
class Definitions:
    entities: dict[str, Entity]
    sources: dict[str, FileSource]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService] = field(default_factory=dict)

    def objects(self) -> list:
        return [*self.entities.values(), *self.sources.values(), *self.views.values(), *self.services.values()]

    def __getitem__(self, name: str):
        for group in (self.views, self.services, self.sources, self.entities):
            if name in group:
                return group[name]
        raise UnknownDefinitionError(name)


#: the folder of the views' part files, relative to the home (what every FileSource names)
GOLD = "gold"


def _source(view: registry.View) -> FileSource:
    return FileSource(
        name=f"{view.name}_source",
        path=f"{GOLD}/{view.name}",   # relative to the home: a copied or moved home reads its own gold
        timestamp_field="event_timestamp",
        created_timestamp_column="known_timestamp",  # when each value became knowable (bitemporal)
        description=f"gold/{view.name}/ (Parquet parts): {view.description}",
    )


def build_definitions(home: Path) -> Definitions:
    from etl.core.config import load_settings

    registry.activate(load_settings(home))  # the home's own factor modules, if any
    all_views = registry.views()
    entities = {
        name: Entity(name=name, join_keys=[name], value_type=ValueType.STRING, description=ENTITY_DESCRIPTIONS[name])
        for name in sorted({v.entity for v in all_views.values()}, key=list(ENTITY_DESCRIPTIONS).index)
    }
    sources, views = {}, {}
    for name, view in all_views.items():
        sources[name] = _source(view)
        views[name] = FeatureView(
            name=name,
            entities=[entities[view.entity]],
            ttl=view.ttl,
            schema=[Field(name=o.name, dtype=FEAST_TYPES[o.dtype], description=o.description) for o in view.outputs],
            source=sources[name],
            online=True,
            description=view.description,
            tags={"family": view.family, **({"lag_of": view.lag_of} if view.lag_of else {})},
        )
    services = {
        name: FeatureService(
            name=name,
            features=[views[v] for v in registry.service_views(name)],
            description=spec["description"],
        )
        for name, spec in registry.SERVICES.items()
    }
    return Definitions(entities, sources, views, services)
