"""What every ``alpha`` command shares: the ``--home`` option, the error wrapper and the
step lines.

Nothing here changes the process: a command loads the settings of its ``--home`` with
``etl.core.config.load_settings`` and passes them on as an argument, never through ``os.environ``.
"""

from __future__ import annotations

import functools
import time

import typer

from etl.core.errors import AlphaError

HomeOpt = typer.Option(None, "--home", help="Warehouse folder (default: $ALPHA_HOME or .alpha/ in the project).")


def friendly(fn):
    """Run a command; an :class:`AlphaError` (every error a user can see) prints one red line
    without a traceback and exits 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AlphaError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper


def step(msg: str) -> float:
    typer.secho(f"==> {msg}", fg=typer.colors.CYAN, bold=True)
    return time.perf_counter()


def done(t0: float, msg: str = "") -> None:
    typer.echo(f"    {msg}{' ' if msg else ''}({time.perf_counter() - t0:.1f} s)")
