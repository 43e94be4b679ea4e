"""Feast plumbing for one warehouse: the RepoConfig, apply and materialize.

Imports Feast (about 3 s) only when a function here is called.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from etl.core.config import FEAST_PROJECT, Settings
from etl.core.errors import NotIngestedError, OnlineStoreError


def repo_config(settings: Settings):
    from feast.repo_config import RepoConfig

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    if settings.redis_url:
        # the same password (URL or ALPHA_REDIS_PASSWORD), TLS files and timeouts as sdk.online
        online = {"type": "redis", "connection_string": settings.feast_redis_connection}
    else:
        online = {"type": "sqlite", "path": str(settings.online_sqlite_path)}
    return RepoConfig(
        project=FEAST_PROJECT,
        provider="local",
        registry=registry_config(settings),
        offline_store={"type": "sdk.pit.store.AlphaOfflineStore", **({"engine": "spark"} if settings.engine == "spark" else {})},
        coerce_tz_aware=False,  # naive entity times are rejected by our store, never relabelled
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=str(settings.home),
    )


def registry_config(settings: Settings) -> dict:
    """Feast's registry: a file in the home, or with ``registry_url`` (config.toml or
    ``ALPHA_REGISTRY_URL``, a SQLAlchemy URL such as ``postgresql+psycopg://user@host/db``)
    Feast's SQL registry, which several researchers and the flow worker share."""
    if settings.registry_url:
        return {"registry_type": "sql", "path": settings.registry_url, "cache_ttl_seconds": 60,
                "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True}}
    return {"registry_type": "file", "path": str(settings.registry_path), "cache_ttl_seconds": 60}


def feature_store(settings: Settings):
    """A ``FeatureStore`` over this warehouse (Feast's import and set-up chatter silenced)."""
    with quiet_feast():
        from feast import FeatureStore

        from etl.serving.sqlite_online import install_utc_times

        install_utc_times()  # Feast's SQLite store in UTC whatever TZ says (etl.serving.sqlite_online)
        return FeatureStore(config=repo_config(settings))


@contextmanager
def quiet_feast() -> Iterator[None]:
    """Silence Feast's warnings (and every DeprecationWarning) and its INFO logs for the calls
    inside, and only those: the warning filters and the ``feast`` logger's level are restored
    on exit, so a caller's notebook or test keeps its own settings."""
    logger = logging.getLogger("feast")
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="feast")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)


def apply(settings: Settings) -> list[str]:
    """Register the definitions generated from the factor specs (``feast apply``)."""
    from etl.factors import registry
    from etl.gold.layout import parts

    registry.activate(settings)
    missing = [v for v in registry.views() if not parts(settings, v)]
    if missing:
        raise NotIngestedError(
            f"no gold table for {len(missing)} view(s) ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}) "
            f"in {settings.gold}; run `alpha nightly` after ingesting"
        )
    with quiet_feast():
        from feature_repo.definitions import build_definitions

        store = feature_store(settings)
        defs = build_definitions(settings.home)
        store.apply(defs.objects())
    from etl.serving.catalog import build_catalog, write_catalog

    write_catalog(settings, build_catalog(settings))  # what the SDK resolves refs against: what was applied
    return [o.name for o in defs.objects()]


def materialize(settings: Settings, start: datetime | None = None, end: datetime | None = None, *, full: bool = False,
                since_run: int = 0) -> dict:
    """Push the latest value of every view, per symbol, to the online store.

    On Redis this is :func:`etl.serving.redis_writer.materialize` (only changed winners,
    corrections with the same event time and late rows included; ``since_run``: read only the
    gold parts of later build runs; ``full=True`` rewrites everything; ``end`` is the
    knowledge time, default now); on SQLite Feast's own ``materialize`` over the event-time
    window the runs after ``since_run`` wrote into (every entity whose winner may have moved);
    what is missing is recreated first (the registry by ``apply``, the tables), and a store that is
    empty, lost tables or was written by a version whose times were local is rewritten whole.
    """
    from etl.factors import registry

    registry.activate(settings)
    if settings.redis_url:
        from etl.serving import redis_writer

        report = redis_writer.materialize(settings, full=full, now=end, since_run=0 if full else since_run)
        return {"start": start, "end": report.now.to_pydatetime(), "online_store": settings.online_store_kind, "report": report.as_dict()}
    from etl.gold.inputs import read_symbols_manifest
    from etl.gold.layout import read_runs
    from etl.serving import sqlite_online

    manifest = read_symbols_manifest(settings)
    if manifest is None:
        raise NotIngestedError("nothing to materialize: run `alpha nightly` after ingesting")
    import pandas as pd

    # recreate what is missing, without `alpha apply`: the registry (apply), the tables (Feast's DDL)
    if not settings.registry_url and not settings.registry_path.exists():
        apply(settings)
    views = list(registry.views())
    state = sqlite_online.store_state(settings, views)
    sqlite_online.ensure_tables(settings, views)
    if not state["utc"] or state["empty"] or state["missing_tables"]:
        full = True  # written by an older version (local times), emptied, or tables lost: rewrite whole
    if start is None and since_run and not full:
        firsts = [us for run, us in read_runs(settings).get("min_event", {}).items() if int(run) > since_run]
        if firsts:
            start = (pd.Timestamp(min(firsts), unit="us", tz="UTC") - pd.Timedelta(seconds=1)).to_pydatetime()
    start = start or (pd.Timestamp(manifest["first_event"]) - pd.Timedelta(seconds=1)).to_pydatetime()
    end = end or datetime.now(UTC)
    store = feature_store(settings)
    try:
        with quiet_feast():
            store.materialize(start_date=start, end_date=end)
    except Exception as exc:  # connection problems surface from many Feast layers
        if "redis" in type(exc).__module__.lower() or "Connection" in type(exc).__name__:
            raise OnlineStoreError(f"cannot write to the online store ({settings.online_store_kind}): {exc}") from exc
        raise
    sqlite_online.write_meta(settings, materialized_at=datetime.now(UTC).isoformat(), end=pd.Timestamp(end).isoformat())
    return {"start": start, "end": end, "online_store": settings.online_store_kind, "full": full}
