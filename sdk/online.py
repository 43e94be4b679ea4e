"""The online read path: the newest value of each feature per symbol straight from the online
store (Redis, or Feast's SQLite tables read with sqlite3), with the freshness rule (TTL,
``max_age``, values from after ``now``) applied once.

Nothing here imports Feast or pandas at module import: ``alpha latest`` must answer a cold
process in well under a second, on either store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import chain

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import (
    EmptyInputError,
    OnlineStoreError,
)
from etl.serving.catalog import load_catalog, resolve_refs
from etl.serving.redis_codec import (
    _T_DOUBLE,
    _T_FLOAT,
    MARKET,
    STALE_SUFFIX,
    TS_SUFFIX,
    decode_timestamp,
    decode_value,
    entity_key,
    field_key,
    marker_key,
    ts_key,
)
from etl.serving.redis_conn import _guard, redis_client


def store_clock(settings: Settings):
    """The warehouse's clock: the newest bar's availability time (``gold/symbols.json``), else the
    wall clock. ``now="warehouse"`` in :func:`read_latest`: on a warehouse of past data,
    ``latest`` then agrees with ``history`` at its last availability time."""
    path = settings.gold / "symbols.json"
    try:
        last = json.loads(path.read_text()).get("last_event")
    except (FileNotFoundError, ValueError):
        last = None
    return clock.to_utc(last, f"last_event in {path}") if last else clock.utc_now()


def resolve_now(settings: Settings, now):
    """``now`` of a freshness check: None or "wall" = the wall clock (a stopped pipeline shows
    as missing values), "warehouse" = the newest bar's availability time, or a tz-aware time."""
    if now is None or (isinstance(now, str) and now.lower() in ("wall", "now")):
        return clock.utc_now()
    if isinstance(now, str) and now.lower() in ("warehouse", "store"):
        return store_clock(settings)
    return clock.to_utc(now, "now")


def parse_max_age(max_age):
    """``max_age`` as a positive pd.Timedelta (a Timedelta, timedelta or a string like "2D", "36h")."""
    import pandas as pd

    if max_age is None:
        return None
    try:
        out = pd.Timedelta(max_age)
    except (ValueError, TypeError):
        raise EmptyInputError(f"max_age={max_age!r} is not a duration; pass e.g. '2D', '36h' or pd.Timedelta(days=2)") from None
    if out is pd.NaT or out <= pd.Timedelta(0):
        raise EmptyInputError(f"max_age must be a positive duration, got {max_age!r}")
    return out


_NAT = -(1 << 63)


# ------------------------------------------------------------------ the freshness rule of ``latest``
# One rule for both online backends: :func:`read_latest` (Redis and SQLite) and the
# through-Feast path (``sdk.client._latest_feast``) call these four functions and nothing else
# to decide what is missing.
def now_us(settings: Settings, now) -> int:
    """``now`` of a freshness check (see :func:`resolve_now`) as UTC microseconds."""
    return clock.instant_us(resolve_now(settings, now), "now")


def limit_us(ttl_seconds: float, age) -> int:
    """How old (us) a value of a view may be: the view's TTL, or ``max_age`` (parsed by
    :func:`parse_max_age`) when tighter."""
    limit = int(ttl_seconds * 1_000_000)
    return limit if age is None else min(limit, int(age.value // 1000))


def freshness(ts_us, limit_us: int, now_us: int):
    """(stale, unknown) masks over int64 event times (``_NAT`` = no value): stale = older than
    ``limit_us`` at ``now_us``; unknown = from after ``now_us`` (not yet knowable then)."""
    present = ts_us != _NAT
    return present & (ts_us < now_us - limit_us), present & (ts_us > now_us)


def stale_mask(ts_us, limit_us: int, now_us: int, allow_stale: bool):
    """(stale, hide): :func:`freshness`'s stale mask, and which values ``latest`` returns as
    missing: the unknown ones, and the stale ones unless ``allow_stale`` (then flagged instead)."""
    stale, unknown = freshness(ts_us, limit_us, now_us)
    return stale, (unknown if allow_stale else unknown | stale)


def _decode_float_column(vals: list, tag: int, fmt: str):
    import numpy as np

    n = len(vals)
    width = 9 if fmt == "<f8" else 5
    try:
        joined = b"".join(vals)
    except TypeError:  # a None: the key or field does not exist
        joined = None
    if joined is not None and len(joined) == width * n:
        arr = np.frombuffer(joined, dtype=[("t", "u1"), ("v", fmt)])
        if n == 0 or (arr["t"] == tag).all():
            return arr["v"].astype("float64")
    # missing values (None: no field; b"": an empty Value): decode the present ones at once
    present = np.fromiter(map(bool, vals), dtype=bool, count=n)
    joined = b"".join(filter(None, vals))
    if len(joined) == width * int(present.sum()):
        arr = np.frombuffer(joined, dtype=[("t", "u1"), ("v", fmt)])
        if (arr["t"] == tag).all():
            out = np.full(n, np.nan)
            out[present] = arr["v"]
            return out
    out = np.full(n, np.nan)
    for i, v in enumerate(vals):
        if v:
            out[i] = decode_value(v)
    return out


def _decode_ts_column(vals: list):
    import numpy as np

    # the entities of a view mostly share a few event times: decode each distinct one once
    decoded = {v: decode_timestamp(v) for v in set(vals)}
    return np.fromiter((_NAT if (us := decoded[v]) is None else us for v in vals), dtype=np.int64, count=len(vals))


class NotMaterializedWarning(UserWarning):
    """Some symbols the warehouse has were never written to the online store, or were lost since
    (a deleted or evicted key): their values are missing, not stale. ``alpha materialize`` (or
    the next ``alpha nightly``) rewrites them."""


def _plan(catalog: dict, refs: list[str]) -> dict[str, dict]:
    """Per entity kind: the refs (ref, view, feature, dtype), the views and their features."""
    views = catalog["views"]
    plan: dict[str, dict] = {}
    for ref in refs:
        view, _, feat = ref.partition(":")
        kind = views[view]["entity"]
        p = plan.setdefault(kind, {"refs": [], "fields": [], "ts_views": [], "views": {}})
        p["refs"].append((ref, view, feat, views[view]["features"][feat]))
        p["fields"].append(field_key(view, feat))
        p["views"].setdefault(view, []).append(feat)
        if view not in p["ts_views"]:
            p["ts_views"].append(view)
    return plan


def _decode(vals: list, dtype: str):
    if dtype == "float64":
        return _decode_float_column(vals, _T_DOUBLE, "<f8")
    if dtype == "float32":
        return _decode_float_column(vals, _T_FLOAT, "<f4")
    return [decode_value(v) for v in vals]


def read_latest(settings: Settings, symbols: Sequence[str], refs: Sequence[str], max_age=None, allow_stale: bool = False,
                now=None, *, client=None, catalog: dict | None = None, full_feature_names: bool = False):
    """The newest value of each ref per symbol, straight from the online store: Redis (one
    pipelined HMGET per key) or the SQLite default (one query per view, no Feast import).

    One row per symbol, in the order given: ``symbol``, then per feature ``f``: ``f`` and
    ``f__ts`` (the value's event time, UTC, us) and with ``allow_stale`` ``f__stale``. A value
    older than its view's TTL, or than ``max_age`` when tighter, at ``now`` (default: the
    wall clock; ``"warehouse"`` for :func:`store_clock`, or a tz-aware time) is missing (NaN/None,
    its ``__ts`` kept) unless ``allow_stale``, which returns it with ``f__stale`` True. A value
    with an event time after ``now`` is missing.

    A store that holds nothing for this warehouse (Redis restarted without persistence, an emptied
    SQLite file) raises OnlineStoreError naming the fix; symbols with no entry at all (never
    materialized, or deleted / evicted since) come back missing with a
    :class:`NotMaterializedWarning` and are listed in ``frame.attrs["not_materialized"]``.
    """
    symbols = list(symbols)
    if not symbols:
        raise EmptyInputError("no symbols given")
    catalog = catalog or load_catalog(settings)
    refs = resolve_refs(catalog, list(refs))
    at_us = now_us(settings, now)
    age = parse_max_age(max_age)
    plan = _plan(catalog, refs)
    if settings.redis_url:
        values, unwritten = _read_redis(settings, symbols, plan, client or redis_client(settings))
    else:
        values, unwritten = _read_sqlite(settings, symbols, plan)
    frame = _assemble(symbols, refs, catalog["views"], values, at_us, age, allow_stale, full_feature_names)
    if unwritten:
        import warnings

        warnings.warn(f"the online store has no entry for {len(unwritten)} symbol(s) {unwritten[:20]} (never "
                      "materialized, or deleted / evicted since): their values are missing, not stale; run "
                      "`alpha materialize` (the next `alpha nightly` repairs it too)", NotMaterializedWarning, stacklevel=2)
        frame.attrs["not_materialized"] = unwritten
    return frame


def _read_redis(settings: Settings, symbols: list[str], plan: dict, client) -> tuple[dict, list[str]]:
    """Per ref: (raw values, event us) from one pipeline: an HMGET per key, plus one EXISTS over
    the symbols' keys and the warehouse's marker (``alpha:online:<project>``) to tell an empty
    store and lost keys from values that are merely old."""
    pipe = client.pipeline(transaction=False)
    for kind, p in plan.items():
        p["all_fields"] = p["fields"] + [ts_key(v) for v in p["ts_views"]]
        keys = [entity_key(kind, s) for s in symbols] if kind == "symbol" else [entity_key(kind, MARKET)]
        for key in keys:
            pipe.execute_command("HMGET", key, *p["all_fields"])
        p["n"] = len(keys)
    sym_keys = [entity_key("symbol", s) for s in symbols]
    pipe.execute_command("EXISTS", *sym_keys)
    pipe.execute_command("EXISTS", marker_key())
    doing = f"reading {sum(len(p['refs']) for p in plan.values())} feature(s) for {len(symbols)} symbol(s)"
    replies = _guard(settings, doing, pipe.execute)
    n_exist, marker = replies[-2], replies[-1]
    unwritten: list[str] = []
    if n_exist < len(symbols):
        if n_exist == 0 and not marker:
            raise OnlineStoreError(
                "the online store holds nothing for this warehouse (Redis restarted without persistence, or "
                "flushed?): run `alpha materialize` (the next `alpha nightly` does it too)")
        check = client.pipeline(transaction=False)
        for key in sym_keys:
            check.execute_command("EXISTS", key)
        found = _guard(settings, "checking which symbols the online store holds", check.execute)
        unwritten = [s for s, f in zip(symbols, found, strict=True) if not f]
    values: dict[str, tuple] = {}
    offset = 0
    for _kind, p in plan.items():
        rows = replies[offset:offset + p["n"]]
        offset += p["n"]
        width = len(p["all_fields"])
        flat = list(chain.from_iterable(rows))
        nf = len(p["fields"])
        ts_by_view = {v: _decode_ts_column(flat[nf + j::width]) for j, v in enumerate(p["ts_views"])}
        for j, (ref, view, _feat, dtype) in enumerate(p["refs"]):
            values[ref] = (_decode(flat[j::width], dtype), ts_by_view[view])
    return values, unwritten


def _read_sqlite(settings: Settings, symbols: list[str], plan: dict) -> tuple[dict, list[str]]:
    """Per ref: (values, event us) read from Feast's SQLite tables with sqlite3 (one query per view),
    and the symbols the store holds no row of (as Redis's missing keys)."""
    import numpy as np

    from etl.serving import sqlite_online

    rows, unwritten = sqlite_online.fetch(settings, plan, symbols)
    values: dict[str, tuple] = {}
    for kind, p in plan.items():
        keys = ([sqlite_online.sqlite_entity_key(kind, s) for s in symbols] if kind == "symbol"
                else [sqlite_online.sqlite_entity_key(kind, MARKET)])
        ts_by_view = {}
        for view in p["views"]:
            got = rows[view]
            ts_by_view[view] = np.fromiter(
                (_NAT if (e := got.get(k)) is None or e[0] is None else int(e[0]) * 1_000_000 for k in keys),
                dtype=np.int64, count=len(keys))
        for ref, view, feat, dtype in p["refs"]:
            got = rows[view]
            vals = [None if (e := got.get(k)) is None else e[1].get(feat) for k in keys]
            values[ref] = (_decode(vals, dtype), ts_by_view[view])
    return values, unwritten


def _assemble(symbols: list[str], refs: list[str], views: dict, values: dict, at_us: int, age, allow_stale: bool,
              full_feature_names: bool):
    """The frame of :func:`read_latest` from per-ref (values, event us), the freshness rule applied."""
    import numpy as np
    import pandas as pd

    n = len(symbols)
    columns: dict[str, object] = {"symbol": symbols}
    masks: dict[tuple, tuple] = {}  # per (view, limit): (stale, hide, tz-aware times), shared by its refs
    for ref in refs:
        col, ts = values[ref]
        view, _, feat = ref.partition(":")
        if views[view]["entity"] != "symbol":  # one market row for every symbol
            col = np.repeat(col, n) if isinstance(col, np.ndarray) else col * n
            ts = np.repeat(ts, n)
        limit = limit_us(views[view]["ttl_seconds"], age)
        name = f"{view}__{feat}" if full_feature_names else feat
        if (view, limit) not in masks:
            stale, hide = stale_mask(ts, limit, at_us, allow_stale)
            masks[(view, limit)] = (stale, hide, clock.from_epoch_us(ts).array)
        stale, hide, ts_utc = masks[(view, limit)]
        if hide.any():
            if isinstance(col, np.ndarray):
                col = np.where(hide, np.nan, col)
            else:
                col = [None if h else v for v, h in zip(col, hide, strict=False)]
        columns[name] = col
        columns[name + TS_SUFFIX] = ts_utc.copy()
        if allow_stale:
            columns[name + STALE_SUFFIX] = stale.copy()
    # every array above is this call's own: no second copy (Series per column cost ~0.2 ms each)
    return pd.DataFrame(columns, copy=False)
