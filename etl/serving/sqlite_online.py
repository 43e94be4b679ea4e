"""The SQLite online store (the default): Feast 0.67's table layout, read and checked with
``sqlite3`` directly (no Feast import: ``alpha latest`` answers a cold process in well under a
second), and the one place that pins its times to UTC.

Layout (``feast/infra/online_stores/sqlite.py``, ``entity_key_serialization_version=3``): one
table ``<project>_<view>`` per view, one row per (entity, feature): ``entity_key`` (the
serialized entity key, as in :mod:`etl.serving.redis_codec` but without the project suffix),
``feature_name``, ``value`` (a serialized ``feast.types.Value``) and ``event_ts`` /
``created_ts``, declared ``timestamp`` and stored as integer seconds.

Time zones: Feast registers process-wide sqlite3 adapters that write a *naive* UTC datetime as
``int(dt.timestamp())`` -- seconds of that wall time read in the machine's **local** zone -- and
read them back with ``datetime.fromtimestamp`` (local) labelled UTC. Written and read under
different ``TZ`` the times shift by the zones' offset (a nightly in UTC read in Tokyo: +9 h, the
values "from the future" are hidden). :func:`install_utc_times` replaces both with UTC ones
(naive = UTC, as Feast's ``to_naive_utc`` means it), so ``event_ts`` holds true epoch seconds
whatever ``TZ`` says; every Feast store this project opens installs them. The table
``alpha_online_meta`` records ``time_basis = utc``: a store without it was written by an older
version, whose times may be in the writer's local zone (see :func:`store_state`).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from etl.core.config import FEAST_PROJECT, Settings
from etl.core.errors import OnlineStoreError

META_TABLE = "alpha_online_meta"
TIME_BASIS = "utc"

#: Feast's DDL of one view's table (``SqliteOnlineStore.update``), so a missing table is recreated
#: without ``feast apply``
_DDL = ('CREATE TABLE IF NOT EXISTS "{t}" (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT,  '
        'vector_value BLOB, event_ts timestamp, created_ts timestamp,  PRIMARY KEY(entity_key, feature_name))')
_INDEX = 'CREATE INDEX IF NOT EXISTS "{t}_ek" ON "{t}" (entity_key);'


def table_name(view: str, project: str = FEAST_PROJECT) -> str:
    return f"{project}_{view}"


def sqlite_entity_key(join_key: str, value: str) -> bytes:
    """Feast's serialized entity key (version 3) as its SQLite store keys rows: no project suffix."""
    from etl.serving.redis_codec import entity_key

    return entity_key(join_key, value, project="")


# ------------------------------------------------------------------ UTC times for Feast's writes and reads
def _adapt_utc(val: datetime) -> int:
    """Epoch seconds of a datetime: a naive one is UTC (Feast passes ``to_naive_utc`` values)."""
    if val.tzinfo is None:
        val = val.replace(tzinfo=UTC)
    return int(val.timestamp())


def _convert_utc(raw: bytes) -> datetime:
    """A stored ``timestamp``: epoch seconds (Feast's format) as a tz-aware UTC datetime; an ISO
    text (sqlite3's own format) as written, UTC when naive."""
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except ValueError:
        out = datetime.fromisoformat(raw.decode())
        return out if out.tzinfo else out.replace(tzinfo=UTC)


_INSTALLED = False


def install_utc_times() -> None:
    """Make Feast's SQLite online store write and read UTC epoch seconds whatever the process's
    ``TZ``: import Feast's module (which registers its local-time adapter and converter at import,
    once per process), then register the UTC ones over them."""
    global _INSTALLED
    if _INSTALLED:
        return
    import feast.infra.online_stores.sqlite  # noqa: F401  (registers Feast's; ours must come after)

    sqlite3.register_adapter(datetime, _adapt_utc)
    sqlite3.register_converter("timestamp", _convert_utc)
    _INSTALLED = True


# ------------------------------------------------------------------ connections, tables, the marker
def connect(settings: Settings, *, write: bool = False) -> sqlite3.Connection:
    """A plain sqlite3 connection (no type detection: times are read as the integers they are).
    Reading a store that does not exist is a clear OnlineStoreError, never an empty file created."""
    path = settings.online_sqlite_path
    if not write:
        if not path.exists():
            raise OnlineStoreError(f"no online store at {path}: run `alpha materialize` (or `alpha nightly`) to write it")
        return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(path, timeout=30)


def existing_tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_meta(conn: sqlite3.Connection, tables: set[str] | None = None) -> dict[str, str]:
    if META_TABLE not in (existing_tables(conn) if tables is None else tables):
        return {}
    return dict(conn.execute(f'SELECT key, value FROM "{META_TABLE}"').fetchall())


def ensure_tables(settings: Settings, views) -> list[str]:
    """Create the tables of ``views`` that are missing (Feast's DDL), and the marker table;
    returns the views whose table was created. What ``feast apply`` would create, without Feast."""
    with connect(settings, write=True) as conn:
        have = existing_tables(conn)
        created = [v for v in views if table_name(v) not in have]
        for v in views:
            conn.execute(_DDL.format(t=table_name(v)))
            conn.execute(_INDEX.format(t=table_name(v)))
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{META_TABLE}" (key TEXT PRIMARY KEY, value TEXT)')
    conn.close()
    return created


def write_meta(settings: Settings, **values: str) -> None:
    """Record (after a complete materialize) that the store's times are UTC, and when it was written."""
    with connect(settings, write=True) as conn:
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{META_TABLE}" (key TEXT PRIMARY KEY, value TEXT)')
        conn.executemany(f'INSERT OR REPLACE INTO "{META_TABLE}" (key, value) VALUES (?, ?)',
                         [("time_basis", TIME_BASIS), *values.items()])
    conn.close()


def _all_empty(conn: sqlite3.Connection, tables: list[str]) -> bool:
    """Whether none of ``tables`` holds a row (one query per 400 tables, within SQLite's limit on
    the terms of a compound SELECT)."""
    for i in range(0, len(tables), 400):
        union = " UNION ALL ".join(f'SELECT * FROM (SELECT 1 FROM "{t}" LIMIT 1)' for t in tables[i:i + 400])
        if conn.execute(f"SELECT count(*) FROM ({union})").fetchone()[0]:
            return False
    return True


def _symbols_absent(conn: sqlite3.Connection, tables: list[str], symbols: list[str], found: set[bytes] = frozenset()) -> list[str]:
    """``symbols`` with no row in any of ``tables`` (symbol views), keys in ``found`` known present."""
    keys = {sqlite_entity_key("symbol", s): s for s in symbols}
    found = set(found)
    for t in tables:
        todo = [k for k in keys if k not in found]
        if not todo:
            break
        for i in range(0, len(todo), 900):
            chunk = todo[i:i + 900]
            found.update(r[0] for r in conn.execute(
                f'SELECT DISTINCT entity_key FROM "{t}" WHERE entity_key IN ({",".join("?" * len(chunk))})', chunk))
    return [s for k, s in keys.items() if k not in found]


def store_state(settings: Settings, views, symbols=()) -> dict:
    """What the SQLite store holds, in one connection and a few cheap queries: ``exists``,
    ``missing_tables`` (views), ``empty`` (no row in any view's table), ``utc`` (the marker),
    ``missing_symbols`` (``symbols`` with no row in any symbol view)."""
    path = settings.online_sqlite_path
    out = {"exists": path.exists(), "missing_tables": list(views), "empty": True, "utc": False, "missing_symbols": list(symbols)}
    if not out["exists"]:
        return out
    conn = connect(settings)
    try:
        have = existing_tables(conn)
        out["missing_tables"] = [v for v in views if table_name(v) not in have]
        present = [table_name(v) for v in views if table_name(v) in have]
        if present:
            out["empty"] = _all_empty(conn, present)
        out["utc"] = read_meta(conn, have).get("time_basis") == TIME_BASIS
        sym_tables = [t for t in present if "_lag" not in t]
        if symbols and sym_tables and not out["empty"]:
            out["missing_symbols"] = _symbols_absent(conn, sym_tables, list(symbols))
        elif out["empty"]:
            out["missing_symbols"] = list(symbols)
        else:
            out["missing_symbols"] = []
    except sqlite3.DatabaseError as exc:
        raise OnlineStoreError(f"the SQLite online store {path} cannot be read ({exc}): "
                               "delete it and run `alpha materialize --full`") from exc
    finally:
        conn.close()
    return out


# ------------------------------------------------------------------ the read path of ``latest``
def fetch(settings: Settings, plan: dict, symbols: list[str]) -> tuple[dict, list[str]]:
    """Per entity kind of ``plan`` ({kind: {"views": {view: [features]}}}) and per view, the rows
    of the entities asked for: ``{view: {entity_key: (event seconds, {feature: value bytes})}}``.
    One connection, one query per view, and the symbols that have no row in any symbol view
    (never materialized, or deleted since; one more query only when some symbol got no row).
    Missing file, tables or marker: a clear OnlineStoreError."""
    from etl.serving.redis_codec import MARKET

    conn = connect(settings)
    try:
        try:
            tables = existing_tables(conn)
        except sqlite3.DatabaseError as exc:
            raise OnlineStoreError(f"the SQLite online store {settings.online_sqlite_path} cannot be read ({exc}): "
                                   "delete it and run `alpha materialize --full`") from exc
        views = [v for p in plan.values() for v in p["views"]]
        missing = [v for v in views if table_name(v) not in tables]
        if missing:
            raise OnlineStoreError(
                f"the online store {settings.online_sqlite_path} has no table for {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} (emptied or never materialized): run `alpha materialize`")
        prefix = table_name("")
        if read_meta(conn, tables).get("time_basis") != TIME_BASIS:
            if _all_empty(conn, [t for t in tables if t.startswith(prefix)]):
                raise OnlineStoreError(f"the online store {settings.online_sqlite_path} holds nothing for this warehouse "
                                       "(never materialized, or emptied): run `alpha materialize`")
            raise OnlineStoreError(
                f"the online store {settings.online_sqlite_path} was written by an older alpha whose SQLite times "
                "depended on the machine's time zone (they may be shifted by hours): run `alpha materialize --full` "
                "(the next `alpha nightly` does it too)")
        out: dict = {}
        for kind, p in plan.items():
            values = symbols if kind == "symbol" else [MARKET]
            keys = [sqlite_entity_key(kind, v) for v in values]
            for view, feats in p["views"].items():
                rows: dict = {}
                for i in range(0, len(keys), 900):  # well within SQLite's bound-parameter limit
                    chunk = keys[i:i + 900]
                    cur = conn.execute(
                        f'SELECT entity_key, feature_name, value, event_ts FROM "{table_name(view)}" '
                        f'WHERE entity_key IN ({",".join("?" * len(chunk))}) '
                        f'AND feature_name IN ({",".join("?" * len(feats))})', [*chunk, *feats])
                    for key, feat, value, ts in cur:
                        entry = rows.get(key)
                        if entry is None:
                            entry = rows[key] = [ts, {}]
                        entry[0] = ts
                        entry[1][feat] = value
                out[view] = rows
        # nothing for these entities: is the whole store empty?
        if not any(out.values()) and _all_empty(conn, [t for t in tables if t.startswith(prefix)]):
            raise OnlineStoreError(f"the online store {settings.online_sqlite_path} holds nothing for this warehouse "
                                   "(emptied?): run `alpha materialize`")
        # symbols with no row in the views read: never written at all (no row in any symbol view)?
        seen = {k for view in plan.get("symbol", {}).get("views", {}) for k in out[view]}
        unseen = [s for s in symbols if sqlite_entity_key("symbol", s) not in seen] if "symbol" in plan else []
        sym_tables = sorted(t for t in tables if t.startswith(prefix) and "_lag" not in t)
        unwritten = _symbols_absent(conn, sym_tables, unseen) if unseen else []
        return out, unwritten
    except sqlite3.DatabaseError as exc:
        raise OnlineStoreError(f"reading the SQLite online store {settings.online_sqlite_path} failed: {exc}. "
                               "Run `alpha materialize --full` to rewrite it") from exc
    finally:
        conn.close()
