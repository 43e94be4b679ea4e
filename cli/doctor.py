"""``alpha doctor``: check a warehouse end to end and say what to run (:mod:`etl.doctor`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import HomeOpt, friendly
from etl.core.config import load_settings


@friendly
def doctor(
    deep: bool = typer.Option(False, "--deep", help="Also verify every gold part's checksum (reads all of gold)."),
    repair: bool = typer.Option(False, "--repair", help="Remove crashed writers' temp files before checking."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    home: Path | None = HomeOpt,
):
    """Check the home end to end: files, silver, gold, registry, online store, SQL state, Prefect (and Redis).

    Each problem names the command that fixes it; exit 1 when any check found one. `alpha nightly`
    repairs broken gold and a lost or stale online store."""
    from etl import doctor as doc

    settings = load_settings(home)
    removed = doc.repair(settings) if repair else 0
    results = doc.run(settings, deep=deep)
    bad = sum(not c.ok for c in results)
    if as_json:
        typer.echo(json.dumps({"home": str(settings.home), "ok": not bad, "removed_temp_files": removed,
                               "checks": [c.as_dict() for c in results]}, indent=1))
    else:
        typer.secho(f"alpha doctor: {settings.home}", bold=True)
        if repair:
            typer.echo(f"  removed {removed} temp file(s) of crashed writers")
        for c in results:
            mark, colour = ("ok  ", typer.colors.GREEN) if c.ok else ("FAIL", typer.colors.RED)
            typer.secho(f"  [{mark}] {c.name:<9} {c.detail} ({c.seconds:.2f} s)", fg=colour)
            for p in c.problems:
                typer.echo(f"         - {p}")
        typer.secho("  all checks passed" if not bad else f"  {bad} check(s) found problems", bold=True,
                    fg=typer.colors.GREEN if not bad else typer.colors.RED)
    if bad:
        raise typer.Exit(1)
