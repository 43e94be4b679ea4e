"""``alpha features list|describe|lineage|build|compact``: what features exist, where a value came from, building them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import ENGINES, load_settings

#: ``--engine``'s choices (etl.core.config.ENGINES)
Engine = Enum("Engine", {e: e for e in ENGINES}, type=str)


@friendly
def features_list(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array (name, view, family, dtype, description, ...)."),
    family: str | None = typer.Option(None, help="Only this family: technical, options, news, fundamentals, macro, regime."),
    view: str | None = typer.Option(None, help="Only this feature view."),
    lagged: bool = typer.Option(False, "--lagged", help="Include the _lag1 twins."),
    home: Path | None = HomeOpt,
):
    """Every declared feature: the built-in factors and the home's own factor modules
    (``factor_modules`` in its config.toml)."""
    import json

    from etl.factors import registry

    registry.activate(load_settings(home))
    rows = [
        {"name": f.name, "view": f.view, "family": f.family, "dtype": f.dtype, "entity": f.entity, "factor": f.factor, "description": f.description}
        for f in registry.features().values()
        if (lagged or not registry.views()[f.view].lag_of) and (family is None or f.family == family) and (view is None or f.view == view)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "view", "family", "dtype", "description", box=None, pad_edge=False)
    for r in rows:
        table.add_row(r["name"], r["view"], r["family"], r["dtype"], r["description"])
    Console(width=200).print(table)
    by_family: dict[str, int] = {}
    for r in rows:
        by_family[r["family"]] = by_family.get(r["family"], 0) + 1
    typer.echo(f"{len(rows)} features: " + ", ".join(f"{k} {v}" for k, v in sorted(by_family.items())))


@friendly
def features_describe(
    name: str = typer.Argument(..., help="A feature name, e.g. rsi_14 or ta_rsi_14 (or view:feature)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    symbol: str | None = typer.Option(None, "--symbol", help="With --session: trace this symbol's value to bronze "
                                      "(as `alpha features lineage`)."),
    session: str | None = typer.Option(None, "--session", help="With --symbol: the session (YYYY-MM-DD) of the value to trace."),
    home: Path | None = HomeOpt,
):
    """One feature: its declaration, lineage (silver inputs -> factor -> view -> services) and coverage in this warehouse;
    with --symbol and --session, one value's chain: gold row -> silver bars -> bronze files."""
    import json

    from etl.core.errors import UnknownFeatureError
    from etl.gold.describe import describe_feature

    if (symbol is None) != (session is None):
        from etl.core.errors import ArgumentError

        raise ArgumentError("give --symbol and --session together (the value to trace), or neither")
    if symbol is not None:
        _print_lineage(name, symbol, session, None, as_json, home)
        return
    settings = load_settings(home)
    try:
        info = describe_feature(settings, name.partition(":")[2] or name)
    except KeyError:
        raise UnknownFeatureError(f"unknown feature {name!r}; `alpha features list` shows them all") from None
    if as_json:
        typer.echo(json.dumps(info, indent=1, default=str))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for k, v in value.items():
                typer.echo(f"  {k}: {v}")
        else:
            typer.echo(f"{key}: {value}")


@friendly
def features_lineage(
    feature: str = typer.Argument(..., help="VIEW:FEATURE (or FEATURE), e.g. technicals:sma_20."),
    symbol: str = typer.Argument(..., help="The symbol, e.g. AAPL."),
    session: str = typer.Argument(..., help="The session of the value (YYYY-MM-DD)."),
    as_of: str | None = typer.Option(None, "--as-of", help="The row in force at this time (ISO, with a zone, e.g. "
                                     "2024-01-05T00:00Z); default the newest."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Path | None = HomeOpt,
):
    """Where one feature value came from: the gold row(s) -> the silver bars of its warm-up window (source, payload,
    known and written times) -> the bronze files, each sha256 recomputed and checked against its name."""
    _print_lineage(feature, symbol, session, as_of, as_json, home)


def _print_lineage(feature: str, symbol: str, session: str, as_of: str | None, as_json: bool, home: Path | None) -> None:
    import json

    from etl.gold.lineage import lineage_text, trace_lineage

    settings = load_settings(home)
    doc = trace_lineage(settings, feature, symbol.upper(), session, as_of=as_of)
    typer.echo(json.dumps(doc, indent=1, default=str) if as_json else lineage_text(doc))


@friendly
def features_build(
    family: list[str] = typer.Option(None, "--family", "-f", help="Only this family (repeat for several), e.g. user_mylab_daily "
                                     "for a new user factor's view; default every family."),
    force: bool = typer.Option(False, "--force", help="Rebuild the chosen families from nothing (their views are replaced)."),
    engine: Engine | None = typer.Option(None, "--engine", case_sensitive=False,
                                      help="Where the chunks run: local (forked processes) or spark (one Spark task per chunk, "
                                      "the \\[spark] session of config.toml); default: the home's `engine` (ALPHA_ENGINE)."),
    home: Path | None = HomeOpt,
):
    """Bring gold up to date with silver without the rest of the nightly: only what changed is
    computed (a new factor: its whole history; otherwise the new sessions and revisions)."""
    from etl.gold.builder import build
    from etl.gold.inputs import write_manifest

    settings = load_settings(home)
    engine = engine.value if engine is not None else settings.engine
    t0 = step(f"factor build on {settings.home}" + (f" ({', '.join(family)})" if family else "") + f", engine {engine}")
    report = build(settings, families=family or None, force=force, progress=lambda m: typer.echo(f"    {m}"), engine=engine)
    write_manifest(settings)
    done(t0, f"run {report.run}: {sum(report.rows.values()):,} rows written" if report.run else "nothing to compute")


@friendly
def features_compact(
    view: list[str] = typer.Argument(None, help="Views to compact (default: every view)."),
    home: Path | None = HomeOpt,
):
    """Merge each view's small part files (one per chunk per night) into larger ones; answers
    do not change. Run it now and then (e.g. weekly), not during a nightly."""
    from etl.factors import registry
    from etl.gold.layout import compact

    settings = load_settings(home)
    registry.activate(settings)
    t0 = step(f"compacting gold in {settings.home}")
    merged = written = 0
    for name in view or list(registry.views()):
        out = compact(settings, name)
        merged += out["merged"]
        written += out["written"]
    done(t0, f"{merged} part files merged into {written}")
