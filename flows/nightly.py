"""The nightly flow: core factors -> factor families -> gold write -> feast apply -> materialize.

Each step is one Prefect task over everything ingested (work is batched: one
task per step, not per symbol, since a task costs ~0.1 s of overhead).
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task

from etl.config import load_settings
from etl.errors import OnlineStoreError
from etl.gold import build_gold
from sdk import feast_store


@task(name="compute-and-write-factors")
def compute_factors_task(home: str) -> dict:
    settings = load_settings(home)
    t0 = time.perf_counter()
    report = build_gold(settings)
    return {"symbols": report.symbols, "rows": report.rows, "features": report.features, "seconds": round(time.perf_counter() - t0, 2)}


@task(name="compute-factor-families")
def compute_families_task(home: str) -> dict:
    """Every family's views (TA-Lib grid, options, news, fundamentals, macro, regime) and their _lag1 twins."""
    from etl.family_gold import build_families

    settings = load_settings(home)
    t0 = time.perf_counter()
    reports = build_families(settings)
    return {
        "views": {r.view: {"rows": r.rows, "entities": r.entities} for r in reports},
        "seconds": round(time.perf_counter() - t0, 2),
    }


@task(name="feast-apply")
def apply_task(home: str) -> list[str]:
    return feast_store.apply(load_settings(home))


def retry_only_on_io(task, task_run, state) -> bool:
    """Retry the online-store write when the store was unreachable, never on a logic error."""
    try:
        state.result()
    except OnlineStoreError:
        return True
    except Exception:
        return False
    return False


@task(name="materialize", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_only_on_io)
def materialize_task(home: str) -> dict:
    out = feast_store.materialize(load_settings(home))
    return {k: str(v) for k, v in out.items()}


@flow(name="nightly", log_prints=True)
def nightly(home: str) -> dict:
    """Rebuild every factor from silver, register the views, push latest values online."""
    logger = get_run_logger()
    gold = compute_factors_task(home)
    logger.info("factors: %s", gold)
    families = compute_families_task(home)
    logger.info("families: %d views in %.1f s", len(families["views"]), families["seconds"])
    from etl.factors import registry

    gold["features"] = sum(1 for f in registry.features().values() if not registry.views()[f.view].lag_of)
    objects = apply_task(home)
    logger.info("applied: %s", objects)
    online = materialize_task(home)
    logger.info("materialized: %s", online)
    return {"gold": gold, "families": families, "applied": objects, "online": online}
