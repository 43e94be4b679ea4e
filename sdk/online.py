"""The Redis online store, read and written in Feast 0.67's own layout.

Layout (``feast/infra/online_stores/redis.py``, ``entity_key_serialization_version=3``):

* key: the serialized entity key (``<I`` count 1, ``<I`` type STRING, ``<I`` len, the join
  key, ``<I`` type STRING, ``<I`` len, the value) followed by the project name;
* one hash per key, shared by every view of that entity; per feature the field
  ``mmh3_32("view:feature")`` (4 bytes, little endian) holds a serialized ``feast.types.Value``,
  and ``_ts:<view>`` the view's event time as a ``google.protobuf.Timestamp``.

So Feast's ``get_online_features`` reads what :func:`materialize` writes, and
:func:`read_latest` reads what Feast's ``materialize`` writes (``tests/test_online_store.py``).

The Value and Timestamp messages are encoded and decoded here on the wire format (a tag byte,
then a fixed-width or varint payload) rather than with ``feast.protos``: importing those runs
``feast/__init__`` (3+ s), and the read path must answer a cold process in well under a second.
Only scalar types are used by our views (float64, float32, int64, bool, string).

:func:`materialize` writes per view and entity only the rows whose *winner* changed since the
last run (the same winner rule as the offline store, ``sdk/pit``): a record of what was
written, a 16-byte digest of (event time, known time, created time, encoded values) per entity,
lives in Redis beside the data (hash ``alpha:online_state:<project>:<view>``), written in the
same pipeline right after the data it describes. A correction with the same event time (Feast
skips it: feast-dev/feast#2795) or a late row with an old event time (feast-dev/feast#4133)
changes the winner's digest and is written; a Redis that lost data loses the record too.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from urllib.parse import unquote, urlparse

from etl.config import FEAST_PROJECT, Settings
from etl.errors import (
    ConfigError,
    EmptyInputError,
    NaiveTimestampError,
    NotIngestedError,
    OnlineStoreError,
    UnknownFeatureError,
)

#: Feast's ValueType.STRING: the type tag of our (string) join keys
_STRING = 2
#: entity keys per write pipeline
PIPELINE_KEYS = 1000
STATE_PREFIX = "alpha:online_state:"
CATALOG_FILE = "online_catalog.json"
TS_SUFFIX, STALE_SUFFIX = "__ts", "__stale"
MARKET_KEY, MARKET = "market", "US"
_EPOCH_NS = None  # filled lazily (pandas)

# wire tags of feast.types.Value's scalar oneof members
_T_STRING, _T_INT32, _T_INT64, _T_DOUBLE, _T_FLOAT, _T_BOOL = 0x12, 0x18, 0x20, 0x29, 0x35, 0x38
_DTYPE_TAG = {"float64": _T_DOUBLE, "float32": _T_FLOAT, "int64": _T_INT64, "bool": _T_BOOL, "string": _T_STRING}


# ------------------------------------------------------------------ layout
def entity_key(join_key: str, value: str, project: str = FEAST_PROJECT) -> bytes:
    """Feast's Redis key of one entity (serialization version 3) + project."""
    k, v = join_key.encode("utf8"), value.encode("utf8")
    return struct.pack("<III", 1, _STRING, len(k)) + k + struct.pack("<II", _STRING, len(v)) + v + project.encode("utf8")


def field_key(view: str, feature: str) -> bytes:
    """Feast's hash field of one feature: murmur3_32 of ``view:feature``, 4 bytes little endian."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def ts_key(view: str) -> bytes:
    return f"_ts:{view}".encode()


def state_key(view: str, project: str = FEAST_PROJECT) -> str:
    return f"{STATE_PREFIX}{project}:{view}"


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def encode_timestamp(us: int) -> bytes:
    """A ``google.protobuf.Timestamp`` of ``us`` microseconds since the epoch, as Feast writes it."""
    seconds, micros = divmod(int(us), 1_000_000)
    out = b""
    if seconds:
        out += b"\x08" + _varint(seconds)
    if micros:
        out += b"\x10" + _varint(micros * 1000)
    return out


def decode_timestamp(raw: bytes | None) -> int | None:
    """Microseconds since the epoch of a serialized Timestamp; None when absent or zero (Feast's 'no value')."""
    if not raw:
        return None
    seconds = nanos = 0
    i, n = 0, len(raw)
    while i < n:
        tag = raw[i]
        value, i = _read_varint(raw, i + 1)
        if tag == 0x08:
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif tag == 0x10:
            nanos = value
        else:
            raise OnlineStoreError(f"unexpected field (tag {tag:#x}) in a stored event timestamp {raw!r}")
    us = seconds * 1_000_000 + nanos // 1000
    return us or None


def decode_value(raw: bytes | None):
    """One serialized ``feast.types.Value`` (scalar) to a Python value; None for a missing value."""
    if not raw:
        return None
    tag = raw[0]
    if tag == _T_DOUBLE:
        return struct.unpack_from("<d", raw, 1)[0]
    if tag == _T_FLOAT:
        return struct.unpack_from("<f", raw, 1)[0]
    if tag in (_T_INT64, _T_INT32):
        value = _read_varint(raw, 1)[0]
        return value - (1 << 64) if value >= 1 << 63 else value
    if tag == _T_BOOL:
        return bool(raw[1])
    if tag == _T_STRING:
        length, i = _read_varint(raw, 1)
        return raw[i:i + length].decode("utf8")
    raise OnlineStoreError(f"unsupported value encoding (wire tag {tag:#x}) in the online store: {raw[:16]!r}")


def encode_column(values, dtype: str) -> list[bytes]:
    """Serialized ``feast.types.Value`` per element, exactly as Feast's materialize writes them
    (a missing value, NaN included, is an empty Value: ``b""``)."""
    import numpy as np
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values)
    missing = series.isna().to_numpy()
    n = len(series)
    if dtype in ("float64", "float32"):
        width, fmt = (8, "<f8") if dtype == "float64" else (4, "<f4")
        arr = np.empty(n, dtype=[("t", "u1"), ("v", fmt)])
        arr["t"] = _DTYPE_TAG[dtype]
        arr["v"] = series.to_numpy(dtype="float64", na_value=np.nan)
        out = arr.view(f"V{1 + width}").tolist()
    elif dtype == "int64":
        out = [b"" if m else b"\x20" + _varint(int(v)) for v, m in zip(series.tolist(), missing, strict=False)]
    elif dtype == "bool":
        out = [b"" if m else (b"\x38\x01" if v else b"\x38\x00") for v, m in zip(series.tolist(), missing, strict=False)]
    elif dtype == "string":
        out = []
        for v, m in zip(series.tolist(), missing, strict=False):
            if m:
                out.append(b"")
            else:
                data = str(v).encode("utf8")
                out.append(b"\x12" + _varint(len(data)) + data)
    else:
        raise OnlineStoreError(f"dtype {dtype!r} cannot be written to the online store")
    if missing.any():
        for i in np.flatnonzero(missing):
            out[i] = b""
    return out


# ------------------------------------------------------------------ connection
def redis_client(settings: Settings):
    """A redis-py client for ``settings.redis_url`` with bounded timeouts and no retries:
    a Redis that is down or refuses us fails within ``redis_timeout_seconds``."""
    if not settings.redis_url:
        raise ConfigError("no Redis configured: set redis_url in config.toml or ALPHA_REDIS_URL")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = urlparse(settings.redis_url)
    timeout = float(settings.redis_timeout_seconds)
    kwargs = dict(
        host=url.hostname,
        port=url.port or 6379,
        db=int((url.path or "/").lstrip("/") or 0),
        username=unquote(url.username) if url.username and url.password else None,
        password=settings.redis_password or (unquote(url.password) if url.password else None),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )
    if url.scheme == "rediss":
        kwargs.update(ssl=True, ssl_ca_certs=settings.redis_ssl_ca_certs, ssl_certfile=settings.redis_ssl_certfile,
                      ssl_keyfile=settings.redis_ssl_keyfile)
    return redis.Redis(**kwargs)


def _where(settings: Settings) -> str:
    url = urlparse(settings.redis_url or "")
    return f"{url.scheme}://{url.hostname}:{url.port or 6379}{url.path or ''}"


def online_error(settings: Settings, exc: BaseException, doing: str) -> OnlineStoreError:
    """A clear OnlineStoreError for a redis-py exception: where, what failed, what to check."""
    import redis

    where = _where(settings)
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text:
        hint = ("Redis refused the credentials: check the password in redis_url or ALPHA_REDIS_PASSWORD "
                "(and the user name for ACL users)")
    elif isinstance(exc, redis.TimeoutError):
        hint = (f"no answer within {settings.redis_timeout_seconds:g} s (redis_timeout_seconds / ALPHA_REDIS_TIMEOUT_SECONDS): "
                "is the host reachable, is it a Redis port, does it expect TLS (rediss://)?")
    elif isinstance(exc, redis.ConnectionError):
        hint = ("cannot connect: is redis-server running there (redis-cli -h HOST -p PORT ping), "
                "is redis_url / ALPHA_REDIS_URL right, and for TLS the rediss:// scheme and redis_ssl_* files?")
    else:
        hint = "see the Redis error above"
    return OnlineStoreError(f"Redis online store at {where}: {doing} failed: {type(exc).__name__}: {text}. {hint}")


def _guard(settings: Settings, doing: str, fn):
    import redis

    try:
        return fn()
    except (redis.RedisError, OSError) as exc:
        raise online_error(settings, exc, doing) from exc


# ------------------------------------------------------------------ catalog
def catalog_path(settings: Settings) -> Path:
    return settings.feast_dir / CATALOG_FILE


def build_catalog() -> dict:
    """Views (entity, TTL, features with dtypes) and services from the factor registry."""
    from etl.factors import registry

    views = {
        name: {"entity": v.entity, "ttl_seconds": v.ttl.total_seconds(), "features": {o.name: o.dtype for o in v.outputs}}
        for name, v in registry.views().items()
    }
    services = {
        name: [f"{v}:{f}" for v in registry.service_views(name) for f in views[v]["features"]] for name in registry.SERVICES
    }
    return {"project": FEAST_PROJECT, "views": views, "services": services}


def write_catalog(settings: Settings, catalog: dict | None = None) -> Path:
    from etl.store import atomic_write_text  # not at import: `alpha latest` must start fast

    return atomic_write_text(catalog_path(settings), json.dumps(catalog or build_catalog()))


_CATALOGS: dict[str, tuple[float, dict]] = {}


def load_catalog(settings: Settings) -> dict:
    """The catalog written by :func:`materialize` (cached per file version), else the registry's
    (which imports every factor family: ~1.5 s)."""
    path = catalog_path(settings)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return build_catalog()
    cached = _CATALOGS.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = (mtime, json.loads(path.read_text()))
        _CATALOGS[str(path)] = cached
    return cached[1]


def resolve_refs(catalog: dict, features: str | Sequence[str]) -> list[str]:
    """Refs ``view:feature`` for a list of refs or a feature service name; clear errors otherwise."""
    if features is None or (not isinstance(features, str) and len(features) == 0):
        raise EmptyInputError("no features asked for: pass refs like 'technicals:rsi_14' or a service name like 'daily_v1'")
    if isinstance(features, str) and ":" not in features:
        if features not in catalog["services"]:
            raise UnknownFeatureError(f"unknown feature service {features!r}; registered services: {sorted(catalog['services'])}")
        return list(catalog["services"][features])
    refs = [features] if isinstance(features, str) else list(features)
    views = catalog["views"]
    bad = [r for r in refs if not isinstance(r, str) or r.partition(":")[0] not in views
           or r.partition(":")[2] not in views[r.partition(":")[0]]["features"]]
    if bad:
        known = [f"{v}:{f}" for v, info in views.items() for f in info["features"]]
        raise UnknownFeatureError(f"unknown feature(s) {bad}; use 'view:feature', e.g. one of {known[:12]} ...")
    if len(set(refs)) != len(refs):
        raise UnknownFeatureError(f"feature refs repeated: {refs}")
    return refs


# ------------------------------------------------------------------ materialize
@dataclass
class MaterializeReport:
    """What one :func:`materialize` run did."""

    now: object                      # pd.Timestamp: the knowledge time of the run
    full: bool
    views: int = 0
    entities_written: int = 0        # (view, entity) pairs written
    entities_skipped: int = 0        # (view, entity) pairs whose winner had not changed
    values_written: int = 0
    seconds: float = 0.0
    per_view: dict = field(default_factory=dict)  # view -> {"written": n, "skipped": n}

    def as_dict(self) -> dict:
        out = asdict(self)
        out["now"] = str(self.now)
        return out

    def summary(self) -> str:
        return (f"{self.views} views as known at {self.now}: {self.entities_written:,} entity rows written "
                f"({self.values_written:,} values), {self.entities_skipped:,} unchanged, "
                f"{'full' if self.full else 'incremental'}, {self.seconds:.2f} s")


def _utc_now():
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


def _to_utc(value, name: str):
    import pandas as pd

    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise NaiveTimestampError(f"{name}={value!r} has no time zone; pass a tz-aware time, e.g. pd.Timestamp(..., tz='UTC')")
    return ts.tz_convert("UTC")


def _us(column) -> object:
    """int64 microseconds (UTC) of an Arrow timestamp column (naive times are read as UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if not pa.types.is_timestamp(col.type):
        raise OnlineStoreError(f"expected a timestamp column, got {col.type}")
    if col.null_count:
        raise OnlineStoreError("a gold timestamp column has missing values")
    return pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz)), pa.int64()).to_numpy()


def winners(codes, event_us, known_us, created_us, now_us: int):
    """Index of the winning row per entity code as known at ``now_us``: the greatest event time
    <= now among rows known by then, ties by greatest known time, then created time, then the
    row that comes last (the offline store's rule, ``sdk/pit``)."""
    import numpy as np

    eligible = np.flatnonzero((event_us <= now_us) & (known_us <= now_us))
    if len(eligible) == 0:
        return eligible
    order = np.lexsort((eligible, created_us[eligible], known_us[eligible], event_us[eligible], codes[eligible]))
    ranked = eligible[order]
    c = codes[ranked]
    last = np.append(c[1:] != c[:-1], True)
    return ranked[last]


def _view_rows(settings: Settings, name: str, info: dict, now_us: int):
    """The winners of one view: (entity values, event us, encoded columns, digests)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = settings.gold / f"{name}.parquet"
    if not path.exists():
        raise NotIngestedError(f"no gold table {path}; run `alpha nightly` (or build the gold tables) before materializing")
    entity = info["entity"]
    features = info["features"]
    schema = pq.read_schema(path)
    created_col = "created_timestamp" if "created_timestamp" in schema.names else None
    missing = [c for c in [entity, "event_timestamp", "known_timestamp", *features] if c not in schema.names]
    if missing:
        raise OnlineStoreError(f"{path} lacks column(s) {missing[:10]}; rebuild the gold tables (`alpha nightly`)")
    cols = [entity, "event_timestamp", "known_timestamp", *([created_col] if created_col else []), *features]
    table = pq.read_table(path, columns=cols)
    codes = pc.dictionary_encode(table.column(entity).combine_chunks()).indices.to_numpy(zero_copy_only=False)
    ev, kn = _us(table.column("event_timestamp")), _us(table.column("known_timestamp"))
    import numpy as np

    cr = _us(table.column(created_col)) if created_col else np.zeros(len(ev), dtype=np.int64)
    idx = winners(codes, ev, kn, cr, now_us)
    win = table.take(idx)
    entities = [str(v) for v in win.column(entity).to_pylist()]
    encoded = [encode_column(win.column(f).to_pandas(), dtype) for f, dtype in features.items()]
    ev_w, kn_w, cr_w = ev[idx], kn[idx], cr[idx]
    rows = list(zip(*encoded, strict=False)) if encoded else [()] * len(idx)
    digests = [
        hashlib.blake2b(struct.pack("<qqq", int(e), int(k), int(c)) + b"\xff".join(row), digest_size=16).digest()
        for e, k, c, row in zip(ev_w, kn_w, cr_w, rows, strict=False)
    ]
    return entities, ev_w, rows, digests


def materialize(settings: Settings, views: Iterable[str] | None = None, full: bool = False, now=None,
                *, client=None, batch_keys: int = PIPELINE_KEYS, progress=None) -> MaterializeReport:
    """Write the latest value of each view per entity, as known at ``now`` (default: the wall
    clock), to Redis in Feast's layout; only entities whose winner changed since the last run
    unless ``full``. ``progress(view, n)`` is called after each pipeline of ``n`` entities
    (``batch_keys`` per pipeline). Returns a :class:`MaterializeReport`."""
    t0 = time.perf_counter()
    now_ts = _utc_now() if now is None else _to_utc(now, "now")
    now_us = int(now_ts.value // 1000)
    catalog = build_catalog()
    all_views = catalog["views"]
    chosen = list(all_views) if views is None else list(views)
    unknown = [v for v in chosen if v not in all_views]
    if unknown:
        raise UnknownFeatureError(f"unknown view(s) {unknown}; known: {list(all_views)[:30]}")
    client = client or redis_client(settings)
    report = MaterializeReport(now=now_ts, full=full)
    for name in chosen:
        info = all_views[name]
        entities, event_us, rows, digests = _view_rows(settings, name, info, now_us)
        fkeys = [field_key(name, f) for f in info["features"]]
        tkey = ts_key(name)
        skey = state_key(name)
        report.views += 1
        report.per_view[name] = {"written": 0, "skipped": 0}
        if not entities:
            continue
        if full:
            changed = list(range(len(entities)))
        else:
            stored = _guard(settings, f"reading the materialization record of {name}",
                            lambda: client.hmget(skey, entities))  # noqa: B023
            changed = [i for i, (d, s) in enumerate(zip(digests, stored, strict=False)) if d != s]
        report.per_view[name]["written"] = len(changed)
        report.per_view[name]["skipped"] = len(entities) - len(changed)
        report.entities_written += len(changed)
        report.entities_skipped += len(entities) - len(changed)
        report.values_written += len(changed) * len(fkeys)
        for start in range(0, len(changed), batch_keys):
            part = changed[start:start + batch_keys]
            _write_batch(settings, client, info["entity"], entities, event_us, rows, digests, part, fkeys, tkey, skey, name)
            if progress is not None:
                progress(name, len(part))
    if views is None:
        write_catalog(settings, catalog)
    report.seconds = time.perf_counter() - t0
    return report


def _write_batch(settings, client, entity, entities, event_us, rows, digests, part, fkeys, tkey, skey, view) -> None:
    """One pipeline: an HSET per entity (every feature of the view and its ``_ts``), then the
    record of what was written, so a crash never leaves a record ahead of the data."""
    pipe = client.pipeline(transaction=False)
    for i in part:
        flat = [x for pair in zip(fkeys, rows[i], strict=False) for x in pair]
        pipe.execute_command("HSET", entity_key(entity, entities[i]), tkey, encode_timestamp(event_us[i]), *flat)
    pipe.execute_command("HSET", skey, *[x for i in part for x in (entities[i], digests[i])])
    _guard(settings, f"writing {len(part)} {entity} row(s) of {view}", pipe.execute)


# ------------------------------------------------------------------ read
def store_clock(settings: Settings):
    """The warehouse's clock: the newest bar's availability time (``gold/symbols.json``), else the
    wall clock. ``now="warehouse"`` in :func:`read_latest`: on a warehouse of past data,
    ``latest`` then agrees with ``history`` at its last availability time."""
    import pandas as pd

    path = settings.gold / "symbols.json"
    try:
        last = json.loads(path.read_text()).get("last_event")
    except (FileNotFoundError, ValueError):
        last = None
    return pd.Timestamp(last).tz_convert("UTC") if last else _utc_now()


def resolve_now(settings: Settings, now):
    """``now`` of a freshness check: None or "wall" = the wall clock (a stopped pipeline shows
    as missing values), "warehouse" = the newest bar's availability time, or a tz-aware time."""
    if now is None or (isinstance(now, str) and now.lower() in ("wall", "now")):
        return _utc_now()
    if isinstance(now, str) and now.lower() in ("warehouse", "store"):
        return store_clock(settings)
    return _to_utc(now, "now")


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


def freshness(ts_us, limit_us: int, now_us: int):
    """(stale, unknown) masks over int64 event times (``_NAT`` = no value): stale = older than
    ``limit_us`` at ``now_us``; unknown = from after ``now_us`` (not yet knowable then)."""
    present = ts_us != _NAT
    return present & (ts_us < now_us - limit_us), present & (ts_us > now_us)


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


def read_latest(settings: Settings, symbols: Sequence[str], refs: Sequence[str], max_age=None, allow_stale: bool = False,
                now=None, *, client=None, catalog: dict | None = None, full_feature_names: bool = False):
    """The newest value of each ref per symbol, straight from Redis (one pipelined HMGET per key).

    One row per symbol, in the order given: ``symbol``, then per feature ``f``: ``f`` and
    ``f__ts`` (the value's event time, UTC, us) and with ``allow_stale`` ``f__stale``. A value
    older than its view's TTL, or than ``max_age`` when tighter, at ``now`` (default: the
    wall clock; ``"warehouse"`` for :func:`store_clock`, or a tz-aware time) is missing (NaN/None,
    its ``__ts`` kept) unless ``allow_stale``, which returns it with ``f__stale`` True. A value
    with an event time after ``now`` is missing.
    """
    import numpy as np
    import pandas as pd

    symbols = list(symbols)
    if not symbols:
        raise EmptyInputError("no symbols given")
    catalog = catalog or load_catalog(settings)
    refs = resolve_refs(catalog, list(refs))
    now_us = int(resolve_now(settings, now).value // 1000)
    age = parse_max_age(max_age)
    views = catalog["views"]
    # the fields of one HMGET per entity kind: every requested feature, then each view's _ts
    plan: dict[str, dict] = {}
    for ref in refs:
        view, _, feat = ref.partition(":")
        kind = views[view]["entity"]
        p = plan.setdefault(kind, {"refs": [], "fields": [], "ts_views": []})
        p["refs"].append((ref, view, feat, views[view]["features"][feat]))
        p["fields"].append(field_key(view, feat))
        if view not in p["ts_views"]:
            p["ts_views"].append(view)
    client = client or redis_client(settings)
    pipe = client.pipeline(transaction=False)
    for kind, p in plan.items():
        p["all_fields"] = p["fields"] + [ts_key(v) for v in p["ts_views"]]
        keys = [entity_key(kind, s) for s in symbols] if kind == "symbol" else [entity_key(kind, MARKET)]
        for key in keys:
            pipe.execute_command("HMGET", key, *p["all_fields"])
        p["n"] = len(keys)
    replies = _guard(settings, f"reading {len(refs)} feature(s) for {len(symbols)} symbol(s)", pipe.execute)
    n = len(symbols)
    columns: dict[str, object] = {"symbol": symbols}
    values: dict[str, tuple] = {}
    offset = 0
    for kind, p in plan.items():
        rows = replies[offset:offset + p["n"]]
        offset += p["n"]
        width = len(p["all_fields"])
        flat = list(chain.from_iterable(rows))
        nf = len(p["fields"])
        ts_by_view = {v: _decode_ts_column(flat[nf + j::width]) for j, v in enumerate(p["ts_views"])}
        for j, (ref, view, _feat, dtype) in enumerate(p["refs"]):
            vals = flat[j::width]
            if dtype == "float64":
                col = _decode_float_column(vals, _T_DOUBLE, "<f8")
            elif dtype == "float32":
                col = _decode_float_column(vals, _T_FLOAT, "<f4")
            else:
                col = [decode_value(v) for v in vals]
            ts = ts_by_view[view]
            if kind != "symbol":  # one market row for every symbol
                col = np.repeat(col, n) if isinstance(col, np.ndarray) else col * n
                ts = np.repeat(ts, n)
            limit = int(views[view]["ttl_seconds"] * 1_000_000)
            if age is not None:
                limit = min(limit, int(age.value // 1000))
            values[ref] = (col, ts, limit)
    masks: dict[tuple, tuple] = {}  # per (view, limit): (stale, hide, tz-aware times), shared by its refs
    for ref in refs:
        col, ts, limit = values[ref]
        view, _, feat = ref.partition(":")
        name = f"{view}__{feat}" if full_feature_names else feat
        if (view, limit) not in masks:
            stale, unknown = freshness(ts, limit, now_us)
            hide = unknown | (stale if not allow_stale else np.zeros(len(ts), dtype=bool))
            masks[(view, limit)] = (stale, hide, pd.DatetimeIndex(ts.view("M8[us]")).tz_localize("UTC").array)
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
