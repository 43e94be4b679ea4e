"""Is the online store whole? Cheap checks for ``alpha doctor`` and the nightly.

:func:`online_problems` lists what is wrong, each problem with the command that fixes it;
:func:`lost_data` tells the nightly whether the store lost what was pushed (so a "gold unchanged"
run must still rewrite it). One pipeline on Redis (an ``EXISTS`` over the symbols' keys, the
marker, the eviction policy), one connection and a few indexed queries on SQLite; never Feast.
"""

from __future__ import annotations

import json

from etl.core.config import Settings
from etl.core.errors import OnlineStoreError

#: keys per EXISTS command (one pipeline holds them all)
_EXISTS_CHUNK = 1000


def gold_symbols(settings: Settings) -> list[str] | None:
    """The symbols the gold manifest lists (read directly: importing ``etl.gold`` is slow), or None."""
    try:
        return list(json.loads((settings.gold / "symbols.json").read_text())["symbols"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _views(settings: Settings) -> list[str]:
    from etl.serving.catalog import load_catalog

    return list(load_catalog(settings)["views"])


def redis_state(settings: Settings, symbols: list[str], client=None) -> dict:
    """One pipeline: whether the marker exists, which of ``symbols`` have a key (EXISTS per
    chunk, then per key only when some are missing), and the eviction policy (None when CONFIG
    is not allowed). Unreachable: OnlineStoreError (``redis_conn``'s clear message)."""
    from etl.serving.redis_codec import entity_key, marker_key
    from etl.serving.redis_conn import _guard, online_error, redis_client

    client = client or redis_client(settings)
    keys = [entity_key("symbol", s) for s in symbols]
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("EXISTS", marker_key())
    chunks = [keys[i:i + _EXISTS_CHUNK] for i in range(0, len(keys), _EXISTS_CHUNK)]
    for chunk in chunks:
        pipe.execute_command("EXISTS", *chunk)
    pipe.execute_command("CONFIG", "GET", "maxmemory-policy")
    pipe.execute_command("CONFIG", "GET", "maxmemory")
    replies = _guard(settings, "checking the online store", lambda: pipe.execute(raise_on_error=False))
    for r in replies[:1 + len(chunks)]:
        if isinstance(r, Exception):
            raise online_error(settings, r, "checking the online store")
    marker, counts = bool(replies[0]), replies[1:1 + len(chunks)]
    missing: list[str] = []
    if sum(counts) < len(keys):
        check = client.pipeline(transaction=False)
        for key in keys:
            check.execute_command("EXISTS", key)
        found = _guard(settings, "checking which symbols the online store holds", check.execute)
        missing = [s for s, f in zip(symbols, found, strict=True) if not f]

    def _config(reply, name: str):
        if isinstance(reply, Exception) or not reply:
            return None
        value = reply[1] if isinstance(reply, list | tuple) else reply.get(name, reply.get(name.encode()))
        return value.decode() if isinstance(value, bytes) else value

    return {"marker": marker, "missing_symbols": missing, "keys": len(keys) - len(missing),
            "policy": _config(replies[-2], "maxmemory-policy"), "maxmemory": _config(replies[-1], "maxmemory")}


def lost_data(settings: Settings) -> str | None:
    """Why the online store no longer holds what was pushed to it (None: it does): Redis empty
    or keys gone; SQLite missing, emptied, tables or symbols missing, or written in local time
    by an older version. Redis unreachable: OnlineStoreError (the nightly's task retries)."""
    symbols = gold_symbols(settings) or []
    if settings.redis_url:
        state = redis_state(settings, symbols)
        if symbols and not state["keys"]:
            return "the online store holds nothing for this warehouse (Redis restarted without persistence, or flushed?)"
        if state["missing_symbols"]:
            return (f"{len(state['missing_symbols'])} symbol(s) missing from the online store (deleted or evicted), "
                    f"e.g. {state['missing_symbols'][:5]}")
        if symbols and not state["marker"]:
            return "no record of a complete materialize in the online store (an interrupted run, or the marker evicted)"
        return None
    from etl.serving import sqlite_online

    state = sqlite_online.store_state(settings, _views(settings), symbols)
    if not state["exists"]:
        return f"no online store at {settings.online_sqlite_path}"
    if state["missing_tables"]:
        return f"the online store lacks {len(state['missing_tables'])} table(s), e.g. {state['missing_tables'][:5]}"
    if state["empty"]:
        return "the online store is empty"
    if not state["utc"]:
        return "the online store was written by an older version in the machine's local time"
    if state["missing_symbols"]:
        return f"{len(state['missing_symbols'])} symbol(s) missing from the online store, e.g. {state['missing_symbols'][:5]}"
    return None


def online_problems(settings: Settings) -> list[str]:
    """Each problem of the online store with the command that fixes it; [] when healthy.
    Cheap: one Redis pipeline, or one SQLite connection; never imports Feast."""
    symbols = gold_symbols(settings)
    out: list[str] = []
    if settings.redis_url:
        try:
            state = redis_state(settings, symbols or [])
        except OnlineStoreError as exc:
            return [f"{exc} Then run `alpha materialize`."]
        if symbols and not state["keys"]:
            what = "holds nothing for this warehouse" if not state["marker"] else "has lost every symbol's key"
            out.append(f"the Redis online store {what} (restarted without persistence, flushed or evicted?): "
                       "run `alpha materialize`")
        elif state["missing_symbols"]:
            out.append(f"{len(state['missing_symbols'])} symbol(s) the gold has are missing from the Redis online store "
                       f"(deleted or evicted), e.g. {', '.join(state['missing_symbols'][:10])}: run `alpha materialize`")
        elif symbols and not state["marker"]:
            out.append("the Redis online store has no record of a complete materialize (an interrupted run, or the "
                       "marker evicted): run `alpha materialize`")
        policy, maxmemory = state["policy"], state["maxmemory"]
        if policy and policy != "noeviction" and maxmemory not in (None, "0") and policy.startswith("allkeys"):
            out.append(f"Redis may evict feature keys (maxmemory {maxmemory}, maxmemory-policy {policy}): lost keys read "
                       "as missing until the next nightly rewrites them; set `maxmemory-policy noeviction` or give Redis "
                       "more memory (`redis-cli config set maxmemory-policy noeviction`)")
        return out
    from etl.serving import sqlite_online

    path = settings.online_sqlite_path
    try:
        state = sqlite_online.store_state(settings, _views(settings), symbols or [])
    except OnlineStoreError as exc:
        return [str(exc)]
    if not state["exists"]:
        return [f"no SQLite online store at {path}: run `alpha materialize`"] if symbols else []
    if state["missing_tables"]:
        out.append(f"the SQLite online store {path} lacks the table(s) of {len(state['missing_tables'])} view(s), e.g. "
                   f"{', '.join(state['missing_tables'][:5])}: run `alpha materialize`")
    if state["empty"] and symbols:
        out.append(f"the SQLite online store {path} holds nothing for this warehouse: run `alpha materialize`")
    elif not state["utc"] and not state["empty"]:
        out.append(f"the SQLite online store {path} was written by an older version in the machine's local time zone "
                   "(times may be shifted by hours): run `alpha materialize --full`")
    elif state["missing_symbols"] and not state["missing_tables"]:
        out.append(f"{len(state['missing_symbols'])} symbol(s) the gold has are missing from the SQLite online store, e.g. "
                   f"{', '.join(state['missing_symbols'][:10])}: run `alpha materialize`")
    return out
