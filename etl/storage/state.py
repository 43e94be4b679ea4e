"""SQL state of a warehouse (watermarks, the live ledger, the paper broker): one way to open
an engine on a SQLAlchemy URL, and one default location.

SQLite in ``$ALPHA_HOME/state/`` unless ``state_url`` (config.toml) or
``ALPHA_STATE_URL`` names a database (PostgreSQL: ``postgresql+psycopg://...``).
"""

from __future__ import annotations

import threading

import pandas as pd
import sqlalchemy as sa

from etl.core import clock
from etl.core.config import Settings, mask_url
from etl.core.errors import ConfigError

#: how the SQL state stores a time (ledger, research registry): UTC, microseconds, fixed width,
#: so text order is time order on every database
STORED_TIME = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def ts_key(value, name: str = "time") -> str:
    """A tz-aware time as the SQL state stores it; a naive one raises NaiveTimestampError naming ``name``."""
    return clock.to_utc(value, name).strftime(STORED_TIME)


def from_key(text: str | None) -> pd.Timestamp | None:
    """A stored time back as a tz-aware UTC Timestamp (None stays None)."""
    return None if text is None else pd.Timestamp(text).tz_convert("UTC")


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def default_url(settings: Settings, filename: str) -> str:
    """``state_url`` if configured, else a SQLite file ``filename`` in ``$ALPHA_HOME/state/``."""
    if settings.state_url:
        return settings.state_url
    path = settings.home / "state" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


_create_lock = threading.Lock()   # parallel tasks of one process open the store at once


def _create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """``create_all``, tolerating another process creating the same table in between
    (the check and the CREATE are not atomic): the second attempt finds it."""
    with _create_lock:
        for attempt in range(3):
            try:
                metadata.create_all(engine)
                return
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
                if "already exists" not in str(exc.orig).lower() and "duplicate" not in str(exc.orig).lower() or attempt == 2:
                    raise


def open_engine(url: str, metadata: sa.MetaData, *, setting: str, store: str) -> sa.Engine:
    """An engine on ``url`` with ``metadata``'s tables created, or a ConfigError naming the
    ``setting`` (bad URL) or the ``store`` (unreachable database) and what went wrong."""
    kwargs: dict = {"future": True, "pool_pre_ping": True}
    if url in ("sqlite://", "sqlite:///:memory:"):  # one shared in-memory database
        kwargs["poolclass"] = sa.pool.StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
        raise ConfigError(f"{setting} {mask_url(url)!r} is not usable: {mask_url(str(exc))}") from None
    try:
        _create_tables(engine, metadata)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        raise ConfigError(f"cannot open the {store} at {display_url(url)}: {exc.orig}") from None
    return engine
