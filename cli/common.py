"""What every ``alpha`` command shares: the ``--home`` option, the error wrapper and the
step lines.

Nothing here changes the process: a command loads the settings of its ``--home`` with
``etl.core.config.load_settings`` and passes them on as an argument, never through ``os.environ``.
"""

from __future__ import annotations

import errno
import functools
import os
import time

import typer

from etl.core.errors import AlphaError

HomeOpt = typer.Option(None, "--home", help="Warehouse folder (default: $ALPHA_HOME or .alpha/ in the project).")


def friendly(fn):
    """Run a command; an :class:`AlphaError` (every error a user can see) prints one red line
    without a traceback and exits 1. So does an error of the file system the user can fix (no
    permission, a read-only or full disk, a file where a folder must be: :data:`USER_OS_ERRORS`),
    with the traceback only when ``ALPHA_DEBUG`` is set. Any other exception is a bug and keeps
    its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AlphaError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            if exc.errno not in USER_OS_ERRORS:
                raise
            if os.environ.get("ALPHA_DEBUG"):
                import traceback

                traceback.print_exc()
            typer.secho(f"error: {os_error_line(exc)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper


#: errno values of file-system errors that are the environment's, not a bug: shown as one line
USER_OS_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                            errno.EISDIR, errno.EMFILE, errno.ENFILE, errno.ENAMETOOLONG})


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: what, where and what to check."""
    where = f" ({exc.filename})" if exc.filename else ""
    hint = {errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is exhausted"}.get(exc.errno, "check the warehouse home's permissions and paths")
    return (f"{exc.strerror or type(exc).__name__}{where}: {hint} (ALPHA_HOME or --home; "
            "set ALPHA_DEBUG=1 for the traceback)")


def writes_home(fn, *, local_only: bool = False):
    """For a command that writes its ``--home`` (ingest, the nightly, builds): before it runs (and
    before Prefect starts a server in the home) the home must be writable
    (:func:`etl.core.config.require_writable`), else one clear line and exit 1.
    ``local_only``: skip the check when the work runs on the Prefect server of ``PREFECT_API_URL``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not (local_only and os.environ.get("PREFECT_API_URL")):
            from etl.core.config import load_settings, require_writable

            try:
                require_writable(load_settings(kwargs.get("home")))
            except AlphaError as exc:
                typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
                raise typer.Exit(1) from None
        return fn(*args, **kwargs)

    return wrapper


def step(msg: str) -> float:
    typer.secho(f"==> {msg}", fg=typer.colors.CYAN, bold=True)
    return time.perf_counter()


def done(t0: float, msg: str = "") -> None:
    typer.echo(f"    {msg}{' ' if msg else ''}({time.perf_counter() - t0:.1f} s)")
