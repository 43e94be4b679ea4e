"""``alpha health``: the data health report."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import load_settings


@friendly
def health(
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a threshold is breached."),
    home: Path | None = HomeOpt,
):
    """Write the data health report (HTML and JSON): coverage, gaps, NaN rates, staleness, outliers, duplicates."""
    from etl.quality.health import run_health

    settings = load_settings(home)
    t0 = step(f"data health of {settings.home}")
    report = run_health(settings, strict=strict)
    typer.echo(report.text())
    done(t0, f"report: {report.paths['html']}")
