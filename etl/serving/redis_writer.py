"""Materialization to Redis in Feast's layout, incremental by a digest of each entity's winner.

:func:`materialize` writes per view and entity only the rows whose *winner* changed since the
last run (the point-in-time rule of ``etl.core.pit``, the one the offline store uses): a 24-byte
digest of (event time, known time, created time, encoded values) per entity and view is the
record of what was written. It lives *inside* the entity's hash (field ``_dg:<view>``), written
by the same HSET as the data it describes, and read back with one pipelined HGET per entity:
digest and data cannot diverge. A key deleted by hand or evicted under ``maxmemory`` takes its
digest with it and is rewritten by the next run; a Redis that restarted empty is rewritten
whole. A correction with the same event time (Feast skips it: feast-dev/feast#2795) or a late
row with an old event time (feast-dev/feast#4133) changes the winner's digest and is written.
After a complete run the marker hash ``alpha:online:<project>`` is (re)written: with no entity
key left either, readers know the store was lost rather than never written for a symbol.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from etl.core import clock, pit
from etl.core.config import Settings
from etl.core.errors import (
    ConfigError,
    NotIngestedError,
    OnlineStoreError,
    UnknownFeatureError,
)
from etl.serving.catalog import build_catalog, write_catalog
from etl.serving.redis_codec import (
    digest_key,
    encode_column,
    encode_timestamp,
    entity_key,
    field_key,
    marker_key,
    state_key,
    ts_key,
)
from etl.serving.redis_conn import _guard, redis_client

#: entity keys per write pipeline
PIPELINE_KEYS = 1000


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
    deferred_run: int | None = None  # the first build run with rows known after ``now`` (read again next time)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["now"] = str(self.now)
        return out

    def summary(self) -> str:
        return (f"{self.views} views as known at {self.now}: {self.entities_written:,} entity rows written "
                f"({self.values_written:,} values), {self.entities_skipped:,} unchanged, "
                f"{'full' if self.full else 'incremental'}, {self.seconds:.2f} s")


def _us(column) -> object:
    """int64 microseconds (UTC) of a gold Arrow timestamp column, by ``clock.epoch_us`` (the gold
    builders write tz-aware UTC; a naive column raises NaiveTimestampError, never read as UTC)."""
    import pyarrow as pa

    if not pa.types.is_timestamp(column.type):
        raise OnlineStoreError(f"expected a timestamp column, got {column.type}")
    if column.null_count:
        raise OnlineStoreError("a gold timestamp column has missing values")
    return clock.epoch_us(column)


def _view_rows(settings: Settings, name: str, info: dict, now_us: int, since_run: int = 0, reader=None):
    """``reader`` (default :func:`_read_view_rows`; the Spark engine's
    ``etl.serving.spark_rows.read_view_rows``), with a damaged gold part (missing, truncated,
    unreadable) a GoldDamagedError naming the file and `alpha nightly` (which rebuilds it), never
    a raw pyarrow error, and never pushed half-read."""
    import pyarrow as pa

    from etl.gold import integrity

    integrity.check_source(settings.gold / name)     # a stat per part against the run record
    try:
        return (reader or _read_view_rows)(settings, name, info, now_us, since_run)
    except (pa.ArrowInvalid, OSError) as exc:
        raise integrity.source_error(settings.gold / name, name, exc) from None


def row_digest(event_us: int, known_us: int, created_us: int, row) -> bytes:
    """The 24-byte record of one written winner: blake2b-16 of its times and encoded values, then
    its event time (``<q``, what :func:`_beats` compares first). Both engines' readers use it."""
    return (hashlib.blake2b(struct.pack("<qqq", event_us, known_us, created_us) + b"\xff".join(row), digest_size=16).digest()
            + struct.pack("<q", event_us))


def scan_plan(settings: Settings, name: str, info: dict, since_run: int = 0) -> tuple[list, str | None, object]:
    """What a reader of one view scans: (the part files of runs after ``since_run`` in name order,
    the created-time column or None, the Arrow schema of the first part). Refuses a view without
    gold or without its columns. Both engines' readers start here."""
    import pyarrow.parquet as pq

    from etl.gold.layout import part_run, parts

    all_parts = parts(settings, name)
    if not all_parts:
        raise NotIngestedError(f"no gold table {settings.gold / name}; run `alpha nightly` (or build the gold tables) before materializing")
    files = [p for p in all_parts if part_run(p) > since_run]
    schema = pq.read_schema(all_parts[0])
    created_col = "created_timestamp" if "created_timestamp" in schema.names else None
    missing = [c for c in [info["entity"], "event_timestamp", "known_timestamp", *info["features"]] if c not in schema.names]
    if missing:
        raise OnlineStoreError(f"{settings.gold / name} lacks column(s) {missing[:10]}; rebuild the gold tables (`alpha nightly`)")
    return files, created_col, schema


def _read_view_rows(settings: Settings, name: str, info: dict, now_us: int, since_run: int = 0):
    """The winners of one view among the part files of runs after ``since_run``: (entity
    values, event us, encoded columns, digests, the first run holding rows known after now).
    Reads one part file at a time: the times of every part, then the feature values of the
    winning rows only; memory is bounded by a part and one row per entity."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from etl.gold.layout import part_run

    files, created_col, _schema = scan_plan(settings, name, info, since_run)
    entity = info["entity"]
    features = info["features"]
    if not files:
        return [], np.array([], dtype=np.int64), [], [], None
    # pass 1, one part file at a time (times only): each entity's winner among every part
    time_cols = [entity, "event_timestamp", "known_timestamp", *([created_col] if created_col else [])]
    best: dict[str, tuple[int, int, int, int, int]] = {}
    future = None
    for k, path in enumerate(files):
        t = pq.read_table(path, columns=time_cols)
        if t.num_rows == 0:
            continue
        enc = pc.dictionary_encode(t.column(entity).combine_chunks())
        codes = enc.indices.to_numpy(zero_copy_only=False)
        ev, kn = _us(t.column("event_timestamp")), _us(t.column("known_timestamp"))
        cr = _us(t.column(created_col)) if created_col else np.zeros(len(ev), dtype=np.int64)
        if (kn > now_us).any():
            future = part_run(path) if future is None else min(future, part_run(path))
        idx = pit.winners_at(codes, ev, kn, cr, now_us)
        names = enc.dictionary.to_pylist()
        for i in idx.tolist():
            cand = (int(ev[i]), int(kn[i]), int(cr[i]), k, i)  # a tie goes to the later part, then the later row
            name = names[codes[i]]
            if name not in best or cand > best[name]:
                best[name] = cand
    # pass 2: the winners' feature values, read from the parts that hold them
    by_part: dict[int, list[tuple[str, tuple]]] = {}
    for name, cand in best.items():
        by_part.setdefault(cand[3], []).append((name, cand))
    entities, ev_w, rows, digests = [], [], [], []
    for k, items in sorted(by_part.items()):
        t = pq.read_table(files[k], columns=list(features)).take(pa.array([c[4] for _, c in items]))
        encoded = [encode_column(t.column(f).to_pandas(), dtype) for f, dtype in features.items()]
        part_rows = list(zip(*encoded, strict=False)) if encoded else [()] * len(items)
        for (name, (e, kk, c, _k, _i)), row in zip(items, part_rows, strict=True):
            entities.append(str(name))
            ev_w.append(e)
            rows.append(row)
            digests.append(row_digest(e, kk, c, row))
    return entities, np.array(ev_w, dtype=np.int64), rows, digests, future


def _beats(digest: bytes, stored: bytes | None) -> bool:
    """Whether a candidate winner (digest + event) must be written over what Redis holds: nothing
    stored, an older record, a later event, or the same event with other content."""
    if stored is None or len(stored) != len(digest):
        return True
    cand_event, stored_event = struct.unpack("<q", digest[16:])[0], struct.unpack("<q", stored[16:])[0]
    return cand_event > stored_event or (cand_event == stored_event and digest[:16] != stored[:16])


def materialize(settings: Settings, views: Iterable[str] | None = None, full: bool = False, now=None,
                *, client=None, batch_keys: int = PIPELINE_KEYS, progress=None, since_run: int = 0,
                engine: str | None = None) -> MaterializeReport:
    """Write the latest value of each view per entity, as known at ``now`` (default: the wall
    clock), to Redis in Feast's layout; only entities whose winner changed since the last run
    unless ``full``. ``progress(view, n)`` is called after each pipeline of ``n`` entities
    (``batch_keys`` per pipeline). ``engine`` (default ``settings.engine``): where the scan of
    gold runs, this process (``"local"``) or Spark (``"spark"``: ``etl.serving.spark_rows``, the
    same winners, so the same bytes in Redis); the digests, writes and marker are the same code.
    Returns a :class:`MaterializeReport`."""
    t0 = time.perf_counter()
    reader = _reader(settings.engine if engine is None else engine)
    now_ts = clock.utc_now() if now is None else clock.to_utc(now, "now")
    now_us = clock.instant_us(now_ts, "now")
    catalog = build_catalog(settings)
    all_views = catalog["views"]
    chosen = list(all_views) if views is None else list(views)
    unknown = [v for v in chosen if v not in all_views]
    if unknown:
        raise UnknownFeatureError(f"unknown view(s) {unknown}; known: {list(all_views)[:30]}")
    client = client or redis_client(settings)
    report = MaterializeReport(now=now_ts, full=full)
    for name in chosen:
        info = all_views[name]
        entities, event_us, rows, digests, future = _view_rows(settings, name, info, now_us, since_run, reader)
        if future is not None:
            report.deferred_run = future if report.deferred_run is None else min(report.deferred_run, future)
        fkeys = [field_key(name, f) for f in info["features"]]
        tkey = ts_key(name)
        skey = digest_key(name)
        report.views += 1
        report.per_view[name] = {"written": 0, "skipped": 0}
        if not entities:
            continue
        if full:
            changed = list(range(len(entities)))
        else:
            stored = _stored_digests(settings, client, info["entity"], entities, skey, name, batch_keys)
            # every gold row read (since_run 0): the winner is authoritative, write what differs; only
            # the runs since the last push: write a candidate only where it beats what Redis holds
            keep = (lambda d, s: _beats(d, s)) if since_run else (lambda d, s: d != s)
            changed = [i for i, (d, s) in enumerate(zip(digests, stored, strict=False)) if keep(d, s)]
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
    # the records of versions before issue 16 (one hash per view), and the marker of a complete run
    pipe = client.pipeline(transaction=False)
    if chosen:
        pipe.delete(*[state_key(v) for v in chosen])
    if views is None:
        pipe.hset(marker_key(), mapping={"materialized_at": clock.utc_now().isoformat(), "now": now_ts.isoformat(),
                                         "home": str(settings.home)})
    _guard(settings, "writing the online store's marker", pipe.execute)
    report.seconds = time.perf_counter() - t0
    return report


def _reader(engine: str):
    """The scan of gold of ``engine``: :func:`_read_view_rows` here, or Spark's."""
    from etl.core.config import ENGINES

    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if engine == "local":
        return _read_view_rows
    from etl.serving import spark_rows

    return spark_rows.read_view_rows


def _stored_digests(settings, client, entity, entities, dkey, view, batch_keys) -> list:
    """The digest stored in each entity's hash for ``view`` (None: no key, or never written):
    one HGET per entity, pipelined ``batch_keys`` at a time."""
    out: list = []
    for start in range(0, len(entities), batch_keys):
        pipe = client.pipeline(transaction=False)
        for name in entities[start:start + batch_keys]:
            pipe.execute_command("HGET", entity_key(entity, name), dkey)
        out += _guard(settings, f"reading the materialization record of {view}", pipe.execute)
    return out


def _write_batch(settings, client, entity, entities, event_us, rows, digests, part, fkeys, tkey, dkey, view) -> None:
    """One pipeline: an HSET per entity of every feature of the view, its ``_ts`` and the digest
    of what was written, in one command: the record is never ahead of (or apart from) the data."""
    pipe = client.pipeline(transaction=False)
    for i in part:
        flat = [x for pair in zip(fkeys, rows[i], strict=False) for x in pair]
        pipe.execute_command("HSET", entity_key(entity, entities[i]), tkey, encode_timestamp(event_us[i]), dkey, digests[i], *flat)
    _guard(settings, f"writing {len(part)} {entity} row(s) of {view}", pipe.execute)

