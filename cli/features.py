"""``alpha features list|describe``: what features exist."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, friendly
from etl.core.config import load_settings


@friendly
def features_list(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array (name, view, family, dtype, description, ...)."),
    family: str | None = typer.Option(None, help="Only this family: technical, options, news, fundamentals, macro, regime."),
    view: str | None = typer.Option(None, help="Only this feature view."),
    lagged: bool = typer.Option(False, "--lagged", help="Include the _lag1 twins."),
):
    """Every declared feature (from the factor declarations; no warehouse needed)."""
    import json

    from etl.factors import registry

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
    home: Path | None = HomeOpt,
):
    """One feature: its declaration, lineage (silver inputs -> factor -> view -> services) and coverage in this warehouse."""
    import json

    from etl.core.errors import UnknownFeatureError
    from etl.gold.describe import describe_feature

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
