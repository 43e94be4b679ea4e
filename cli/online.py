"""``alpha apply``, ``alpha materialize``, ``alpha latest``: the feature registry and the online store.

``latest`` is the cold-start path: nothing here imports Feast at import time, and ``latest``
never does (SQLite and Redis are read directly by ``sdk.online``). ``materialize`` recreates what
is missing (registry, SQLite tables) without a prior ``apply``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import load_settings


@friendly
def apply(home: Path | None = HomeOpt):
    """Register the feature views (feast apply) without running the whole flow."""
    from etl.serving.feast_store import apply as do_apply

    settings = load_settings(home)
    t0 = step("feast apply")
    done(t0, ", ".join(do_apply(settings)))


@friendly
def materialize(
    home: Path | None = HomeOpt,
    full: bool = typer.Option(False, "--full", help="Rewrite every entity, not only changed winners (Redis)."),
    engine: str | None = typer.Option(None, "--engine", help="Where the scan of gold runs for Redis: local or spark "
                                      "(default: the home's engine). SQLite is written by Feast, locally."),
):
    """Push the latest feature values to the online store (Redis: only changed winners)."""
    import dataclasses

    from etl.serving.feast_store import materialize as do_materialize

    settings = load_settings(home)
    if engine is not None:
        from etl.core.config import check_engine

        settings = dataclasses.replace(settings, engine=check_engine(engine, "--engine"))
    on_redis = bool(settings.redis_url)
    t0 = step(f"materialize to {settings.online_store_kind}" + (f" (gold read by the {settings.engine} engine)" if on_redis else ""))
    if not on_redis and settings.engine == "spark":
        typer.echo("    the SQLite online store is written by Feast's materialize in this process (the Spark engine serves Redis)")
    out = do_materialize(settings, full=full)
    report = out.get("report")
    if report:
        typer.echo(f"    {report['views']} views as known at {report['now']}: {report['entities_written']:,} entity rows written "
                   f"({report['values_written']:,} values), {report['entities_skipped']:,} unchanged "
                   f"({'full' if report['full'] else 'incremental'})")
    elif out.get("full"):
        typer.echo(f"    every view rewritten from {out.get('start')} (UTC times; missing tables recreated)")
    done(t0)


@friendly
def latest(
    symbols: str = typer.Argument(..., help="Comma-separated symbols, e.g. AAPL,SPY."),
    features: str = typer.Argument(..., help="Comma-separated refs view:feature, or a feature service name."),
    max_age: str | None = typer.Option(None, "--max-age", help="Treat values older than this as missing, e.g. 2D, 36h."),
    allow_stale: bool = typer.Option(False, "--allow-stale", help="Return old values with a <feature>__stale flag."),
    now: str | None = typer.Option(None, "--now", help="Reference time of the freshness check: 'wall' (default), 'warehouse' (the newest bar's availability), or an ISO time with zone."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per symbol."),
    home: Path | None = HomeOpt,
):
    """The newest feature values from the online store (no Feast import, SQLite or Redis)."""
    from sdk.client import Alpha

    client = Alpha(settings=load_settings(home))
    refs = features if ":" not in features and "," not in features else [f.strip() for f in features.split(",") if f.strip()]
    frame = client.latest([s.strip() for s in symbols.split(",") if s.strip()], refs, max_age=max_age, allow_stale=allow_stale, now=now)
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", date_unit="us"))
    else:
        typer.echo(frame.to_string(index=False))
