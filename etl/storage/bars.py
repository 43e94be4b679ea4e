"""The silver table of daily bars: its layout, writer, readers and quarantine.

Silver rows carry three times:

- ``event_timestamp``: when the bar could first be known, the session's close
  on the exchange calendar plus the configured delay (the same for every
  version of a bar: it says which session the value belongs to);
- ``known_timestamp``: when THIS version became knowable. For a first print
  from an archive (Lean, a CSV history) that is the event time; for a revision
  it is when we received it;
- ``created_timestamp``: when we wrote the row.

Layout: ``silver/bars_daily/bucket=NN/part-<hash>.parquet``. A symbol's rows
live in one of 64 buckets (CRC-32 of the symbol,
:data:`etl.storage.tables.BARS_BUCKETS`); each part is sorted by symbol, session
and known time and cut into row groups of 8,192 rows. So:

- a reader of some symbols opens only their buckets and, inside a part, only
  the row groups whose symbol range holds them (Parquet statistics);
  :func:`symbol_chunks` groups symbols by bucket, so a chunk of 64 symbols
  opens few buckets;
- a write compares its rows with the stored rows of the same symbols and
  sessions only (the same pushdown plus the session range): a night that adds
  one session per symbol reads next to nothing and writes one small part per
  bucket, whatever the history;
- a bucket that reaches :data:`MERGE_AT` (3) parts has its small parts merged
  as it is written (``silver.compact_partition(..., keep_largest=True)``: the
  largest part and any with a quarter of its rows or more are left alone): a
  bucket is its big part (one per source whose history it holds) plus one part
  of what the nights since added, so a reader opens few files per bucket and a
  merge costs only the small parts, whatever the history; ``alpha compact``
  merges everything.

Warehouses written before buckets hold ``year=YYYY`` folders: the readers read
them too, and the first write moves their rows, write times included, into
buckets (one year at a time).

Several sources may deliver the same bar: silver keeps every source's versions, each row with
its ``source`` and ``payload`` (the sha256 of the bronze file or vendor response it came
from; '' when unknown, as in rows written before payloads were recorded). A write compares
its rows with the stored versions of the same source only: a row equal to that source's
latest version is skipped, a different one is that source's revision (known from when it was
received), a first row of a source is that source's first print. The readers return the
*canonical* versions by default (``sources="canonical"``): per symbol-session the versions of
the source that wins the configured priority, a change of winner being a version known from
when it happened (:mod:`etl.storage.canonical`); ``sources="all"`` returns every source's rows.

Archive sources that skip unchanged files (:mod:`etl.sources.csv_folder`) keep
what they last ingested in ``silver/bars_daily/.ingested/<source>.json``
(:func:`read_file_record`): beside the rows it describes, so a store deleted
or copied takes its record with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import ArgumentError, NotIngestedError
from etl.storage.atomic import atomic_write_frame, atomic_write_text

PRICE_COLUMNS = ["open", "high", "low", "close"]
VALUE_COLUMNS = PRICE_COLUMNS + ["volume"]
SILVER_COLUMNS = [
    "symbol", "session", "ticker", *VALUE_COLUMNS, "source", "payload",
    "event_timestamp", "known_timestamp", "created_timestamp",
]
#: what a read returns (``payload`` on request: a 64-character string per row is not free)
READ_COLUMNS = [c for c in SILVER_COLUMNS if c != "payload"]
#: ``sources=`` of the readers
SOURCES = ("canonical", "all")
QUARANTINE_COLUMNS = ["source_file", "source_row", "symbol", "raw", "reason", "created_timestamp"]
#: a bucket with this many part files has all but its largest merged when it is written: a bucket is then
#: its big part and one part of what the nights since added, so a reader opens at most two files per bucket
MERGE_AT = 3
#: the sort of every read: a bar's versions in the order they became known, then written
READ_ORDER = ["symbol", "session", "known_timestamp", "created_timestamp"]


def silver_bars_dir(settings: Settings) -> Path:
    return settings.silver / "bars_daily"


def symbol_bucket(symbol: str) -> int:
    """The bucket that holds ``symbol``'s bars."""
    from etl.storage.silver import bucket_of
    from etl.storage.tables import BARS_BUCKETS

    return bucket_of(symbol, BARS_BUCKETS)


def bucket_dir(settings: Settings, bucket: int) -> Path:
    return silver_bars_dir(settings) / f"bucket={bucket:02d}"


def symbol_chunks(symbols, size: int = 64) -> list[list[str]]:
    """``symbols`` in chunks of at most ``size`` for work done chunk by chunk: whole buckets
    packed in bucket order (a bucket of more than ``size`` symbols split), symbols sorted within
    a bucket. Reading a chunk opens only its few buckets."""
    if size < 1:
        raise ArgumentError(f"chunk size must be >= 1, got {size}")
    by_bucket: dict[int, list[str]] = defaultdict(list)
    for s in sorted(set(symbols)):
        by_bucket[symbol_bucket(s)].append(s)
    chunks: list[list[str]] = []
    current: list[str] = []
    for b in sorted(by_bucket):
        members = by_bucket[b]
        if current and len(current) + len(members) > size:
            chunks.append(current)
            current = []
        while len(members) > size:
            chunks.append(members[:size])
            members = members[size:]
        current += members
    if current:
        chunks.append(current)
    return chunks


def quarantine_rejects(settings: Settings, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path:
    """Keep rejected rows with their reasons; the same input always lands in the same file."""
    out = rejects.copy()
    out["created_timestamp"] = now
    name = hashlib.sha256(batch_key.encode()).hexdigest()[:16]
    path = settings.quarantine / "bars_daily" / f"batch-{name}.parquet"
    atomic_write_frame(out[QUARANTINE_COLUMNS], path)
    return path


def write_silver_bars(settings: Settings, good: pd.DataFrame, source: str, now: pd.Timestamp | None = None) -> dict:
    """Add validated bars of one ``source`` to the silver table (layout: the module doc).

    Idempotent: a row equal (ticker and values) to the latest stored version of its
    ``(symbol, session)`` *from the same source* is skipped. A row that differs from it is
    that source's *revision* and is appended as a new version, known from when we received it
    (never earlier than the session's availability); a row of a source that had none for that
    bar is its first print, known from the availability time. Another source's versions are
    never compared: which one the readers show is the canonical choice
    (:mod:`etl.storage.canonical`), recorded here when the configured priority changed. History
    is never overwritten. ``good`` may carry ``payload`` (sha256 of the bronze file or response
    each row came from; '' when absent). The rows are compared with the stored versions of
    their own symbols and sessions only; new rows of a bucket go into one new part file,
    written atomically. Callers hold the home's write lock (:class:`etl.storage.atomic.HomeLock`).
    """
    from etl.storage import silver
    from etl.storage.canonical import record_priority
    from etl.storage.tables import BARS_DAILY

    now = clock.utc_us(now)
    if good.empty:
        return {"new": 0, "revised": 0, "unchanged": 0}
    frame = good.copy()
    frame["ticker"] = frame["ticker"] if "ticker" in frame else frame["symbol"]
    frame["source"] = source
    frame["payload"] = frame["payload"].fillna("").astype(str) if "payload" in frame else ""
    frame["event_timestamp"] = clock.availability_times(frame["session"], settings.bar_delay_minutes, settings.calendar)
    frame["known_timestamp"] = frame["event_timestamp"]  # archive first prints: known at availability
    frame["created_timestamp"] = now
    frame = _silver_types(frame)
    migrate_year_folders(settings)
    stats = {"new": 0, "revised": 0, "unchanged": 0}
    symbols = sorted(frame["symbol"].unique())
    existing = _read(settings, symbols, frame["session"].min(), frame["session"].max(),
                     columns=["symbol", "session", "ticker", *VALUE_COLUMNS, "source", "known_timestamp", "created_timestamp"])
    shared = False   # another source has bars of these symbols: the canonical choice arises (record the priority)
    if existing is not None and len(existing):
        mine = (existing["source"].astype(str) == source).to_numpy()
        shared = not mine.all()
        existing = existing[mine]
    if existing is not None and len(existing):
        latest = existing.sort_values(["known_timestamp", "created_timestamp"], kind="stable").drop_duplicates(["symbol", "session"], keep="last")
        merged = frame.merge(latest[["symbol", "session", "ticker", *VALUE_COLUMNS]], on=["symbol", "session"], how="left", suffixes=("", "_old"), indicator=True)
        known = (merged["_merge"] == "both").to_numpy()
        same = known.copy()
        for col in ["ticker", *VALUE_COLUMNS]:
            same &= (merged[col] == merged[f"{col}_old"]).to_numpy()
        revised = known & ~same
        frame = frame.loc[~same].copy()
        rev_mask = revised[~same]
        frame.loc[rev_mask, "known_timestamp"] = frame.loc[rev_mask, "event_timestamp"].clip(lower=now)
        stats.update(unchanged=int(same.sum()), revised=int(revised.sum()), new=int((~known).sum()))
    else:
        stats["new"] = len(frame)
    silver.append(settings, BARS_DAILY, frame, now, dedupe=False)
    for b in sorted({symbol_bucket(s) for s in frame["symbol"].unique()}):
        silver.compact_partition(BARS_DAILY, bucket_dir(settings, b), MERGE_AT, keep_largest=True)
    record_priority(settings, now, shared=shared)
    return stats


def _silver_types(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[SILVER_COLUMNS].copy()
    out["session"] = pd.to_datetime(out["session"]).astype("datetime64[us]")
    for col in ("event_timestamp", "known_timestamp", "created_timestamp"):
        out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[us, UTC]")
    for col in VALUE_COLUMNS:
        out[col] = out[col].astype("float64")
    for col in ("symbol", "ticker", "source", "payload"):
        out[col] = out[col].astype(str)
    return out


# ------------------------------------------------------------------ readers


def _year_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.glob("year=*") if d.is_dir())


def bar_files(settings: Settings, symbols=None) -> list[Path]:
    """The part files that may hold ``symbols``' bars (every part file when ``None``): their
    buckets' parts, and any part of the old year layout."""
    from etl.storage.silver import part_files

    root = silver_bars_dir(settings)
    if not root.is_dir():
        return []
    if symbols is None:
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    else:
        dirs = [bucket_dir(settings, b) for b in sorted({symbol_bucket(s) for s in symbols})] + _year_folders(root)
    return [p for d in dirs for p in part_files(d)]


def _read(settings: Settings, symbols=None, start=None, end=None, columns: list[str] | None = None) -> pd.DataFrame | None:
    """Stored rows of ``symbols`` (all when ``None``) with sessions in ``[start, end]``, pushed
    down to the buckets, then to the row groups whose symbol and session ranges (Parquet
    statistics) can hold them; ``None`` when there are none. (Row groups are chosen here rather
    than by a dataset filter, which costs far more per file for a list of symbols.) A requested
    ``payload`` that older part files lack is ''."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    want = None if symbols is None else sorted({str(s) for s in symbols})
    files = bar_files(settings, want)
    if not files or want == []:
        return None
    lo = None if start is None else pd.Timestamp(start).as_unit("us").to_datetime64()
    hi = None if end is None else pd.Timestamp(end).as_unit("us").to_datetime64()
    read = None if columns is None else list(dict.fromkeys([*columns, "symbol", "session"]))
    tables = []
    for path in files:
        pf = pq.ParquetFile(path)
        groups = _row_groups(pf.metadata, want, lo, hi)
        if not groups:
            continue
        names = pf.schema_arrow.names
        table = pf.read_row_groups(groups, columns=None if read is None else [c for c in read if c in names])
        mask = None
        if want is not None:
            mask = pc.is_in(table["symbol"], value_set=pa.array(want, pa.string()))
        for bound, keep in ((lo, pc.greater_equal), (hi, pc.less_equal)):
            if bound is not None:
                m = keep(table["session"], pa.scalar(bound, pa.timestamp("us")))
                mask = m if mask is None else pc.and_(mask, m)
        tables.append(table if mask is None else table.filter(mask))
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    frame = table.to_pandas()
    if "payload" in frame.columns or (columns is not None and "payload" in columns):
        frame["payload"] = frame["payload"].fillna("").astype(str) if "payload" in frame.columns else ""
    return frame if columns is None else frame[columns]


def _row_groups(meta, want: list[str] | None, lo, hi) -> list[int]:
    """The row groups of a part whose statistics say they may hold a symbol of ``want`` (sorted)
    with a session in ``[lo, hi]`` (all of them when a statistic is missing)."""
    import bisect

    names = meta.schema.names
    sym, ses = names.index("symbol"), names.index("session")
    out = []
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        if want is not None:
            st = rg.column(sym).statistics
            if st is not None and st.has_min_max:
                j = bisect.bisect_left(want, st.min)
                if j == len(want) or want[j] > st.max:
                    continue
        st = rg.column(ses).statistics if lo is not None or hi is not None else None
        if st is not None and st.has_min_max and (
                (lo is not None and np.datetime64(st.max, "us") < lo) or (hi is not None and np.datetime64(st.min, "us") > hi)):
            continue
        out.append(i)
    return out


def read_silver_bars(settings: Settings, symbols: list[str] | None = None, versions: str = "first", *,
                     start=None, end=None, sources: str = "canonical", payload: bool = False) -> pd.DataFrame:
    """Silver bars, sorted by symbol, session and version.

    ``sources="canonical"`` (the default) returns the canonical stream: per bar, the versions
    of the source the configured priority prefers, a change of source being a version known
    from when it happened (:mod:`etl.storage.canonical`); ``"all"`` returns every source's
    rows as stored (diagnostics, the health report's source check, lineage).
    ``versions="first"`` keeps, for each bar, the version first written (what was knowable at
    the session's availability time); ``"all"`` returns every version. ``symbols`` (default:
    all) and the session range ``start..end`` (inclusive, default: all) are pushed down to the
    files read (module doc). ``payload=True`` adds the column ``payload`` (sha256 of the bronze
    file the row came from, '' when unknown).
    """
    if versions not in ("first", "all"):
        raise ArgumentError(f"versions must be 'first' or 'all', got {versions!r}")
    if sources not in SOURCES:
        raise ArgumentError(f"sources must be one of {SOURCES}, got {sources!r}")
    columns = [*READ_COLUMNS[:READ_COLUMNS.index("source") + 1], "payload", *READ_COLUMNS[READ_COLUMNS.index("source") + 1:]] \
        if payload else READ_COLUMNS
    frame = _read(settings, symbols, start, end, columns=columns)
    if frame is None or frame.empty:
        raise NotIngestedError(
            f"no daily bars in {silver_bars_dir(settings)}"
            + (f" for {', '.join(symbols[:5])}{' ...' if len(symbols) > 5 else ''}" if symbols else "")
            + "; run `alpha ingest lean` or `alpha ingest csv --path FOLDER` first"
        )
    frame = frame.sort_values(READ_ORDER, kind="stable").reset_index(drop=True)
    frame = _drop_copies(frame)
    if sources == "canonical":
        from etl.storage.canonical import canonical_versions, priority_history

        frame = canonical_versions(frame, priority_history(settings))
    if versions == "first":
        frame = frame.drop_duplicates(["symbol", "session"], keep="first")
    return frame.reset_index(drop=True)


def version_summary(settings: Settings) -> pd.DataFrame:
    """Per symbol: ``n`` bar rows, ``created_us`` the newest time something of its canonical
    stream may have changed, ``first`` and ``last`` session: what a builder compares with its
    high-water mark. One streamed scan of four columns, so a night costs the same whatever the
    history and however many sources there are.

    ``created_us`` is the newest write of any source's row (a row of a worse source changes
    nothing canonical: the builder then finds no new canonical version and writes nothing) and,
    for a symbol with bars from two or more sources, no older than the last change of the
    source priority (:mod:`etl.storage.canonical`): the sessions whose canonical source switched
    are versions written then."""
    import polars as pl

    empty = pd.DataFrame({"symbol": [], "n": [], "created_us": [], "first": [], "last": []})
    files = bar_files(settings)
    if not files:
        return empty
    lf = pl.scan_parquet([str(p) for p in files], hive_partitioning=False, extra_columns="ignore")
    out = (lf.select("symbol", "session", "source", "created_timestamp")
             .group_by("symbol")
             .agg(pl.len().alias("n"), pl.col("created_timestamp").dt.epoch("us").max().alias("created_us"),
                  pl.col("session").min().alias("first"), pl.col("session").max().alias("last"),
                  pl.col("source").n_unique().alias("sources"))
             .sort("symbol")
             .collect(engine="streaming")).to_pandas()
    multi = (out["sources"] > 1).to_numpy()
    if multi.any():
        from etl.storage.canonical import NO_TIME, priority_history

        since = priority_history(settings)[-1].since_us
        if since != NO_TIME:
            out.loc[multi, "created_us"] = np.maximum(out.loc[multi, "created_us"].to_numpy(np.int64), since)
    return out.drop(columns=["sources"])


def _drop_copies(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop exact copies of rows (left by a merge of part files that stopped before deleting
    the parts). ``frame`` is sorted by :data:`READ_ORDER`, so copies are neighbours: only
    frames where two neighbours share a version key pay for a full comparison."""
    if len(frame) < 2:
        return frame
    same = np.ones(len(frame) - 1, dtype=bool)
    for col in READ_ORDER:
        values = frame[col].values   # datetime64 for the tz-aware times (to_numpy would box each one)
        same &= values[1:] == values[:-1]
    return frame.drop_duplicates().reset_index(drop=True) if same.any() else frame


def bars_overview(settings: Settings) -> tuple[list[str], pd.Timestamp | None]:
    """Every stored symbol (sorted) and the latest stored session, read one part file at a
    time (two columns), so its memory does not grow with the store."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    symbols: set[str] = set()
    latest = None
    for path in bar_files(settings):
        table = pq.read_table(path, columns=["symbol", "session"], read_dictionary=["symbol"])
        if not table.num_rows:
            continue
        symbols.update(pc.unique(table.column("symbol")).to_pylist())
        top = pc.max(table.column("session")).as_py()
        latest = top if latest is None else max(latest, top)
    return sorted(str(s) for s in symbols), (pd.Timestamp(latest) if latest is not None else None)


# ------------------------------------------------------------------ the old year layout


def migrate_year_folders(settings: Settings) -> int:
    """Move the rows of ``year=YYYY`` folders (the layout before buckets) into buckets, one
    year at a time, rows and write times unchanged; then merge each bucket. The new parts
    are written before a year's parts are deleted (readers drop exact copies), so a crash
    changes no read and the next write finishes the move. Returns the folders moved."""
    from etl.storage import silver
    from etl.storage.tables import BARS_DAILY

    root = silver_bars_dir(settings)
    folders = _year_folders(root) if root.is_dir() else []
    for folder in folders:
        parts = silver.part_files(folder)
        if parts:
            frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True).drop(columns=["year"], errors="ignore")
            silver.write_rows(settings, BARS_DAILY, frame)
            del frame
        for p in parts:
            p.unlink()
        with contextlib.suppress(OSError):   # a live writer's temp file is still there: the next move removes it
            folder.rmdir()
    if folders:
        for d in sorted(p for p in root.glob("bucket=*") if p.is_dir()):
            silver.compact_partition(BARS_DAILY, d)
    return len(folders)


# ------------------------------------------------------------------ what archive sources last ingested


def file_record_path(settings: Settings, source: str) -> Path:
    return silver_bars_dir(settings) / ".ingested" / f"{source}.json"


def read_file_record(settings: Settings, source: str) -> dict[str, dict]:
    """What ``source`` last ingested, per input file (absolute path -> what the source keeps:
    size, sha256, rows...); empty when nothing was recorded or the record cannot be read
    (then every file is read again, which is always safe)."""
    path = file_record_path(settings, source)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    return files if isinstance(files, dict) else {}


def write_file_record(settings: Settings, source: str, files: dict[str, dict]) -> Path:
    """Replace ``source``'s record atomically (write it only after the rows it describes are
    in silver)."""
    return atomic_write_text(file_record_path(settings, source), json.dumps({"files": files}, sort_keys=True, indent=0))
