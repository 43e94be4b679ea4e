"""Silver: typed canonical tables, append-only, hive-partitioned.

A table is a folder ``silver/<name>/<col>=<value>/.../part-<hash>.parquet``.
Writes only ever ADD part files (temp file, fsync, rename), named by the hash
of their rows, so

- a rerun of the same input adds nothing (rows whose values are already
  stored are skipped): the same ingest twice leaves the table byte-identical;
- a crash mid-write leaves at most a ``.tmp-`` file, which readers ignore and
  :func:`recover` deletes;
- history is never rewritten: a changed value is a new row with its own
  ``event_timestamp`` (when it was first knowable) and ``created_timestamp``
  (when we wrote it).

:func:`compact` merges a partition's part files into one. It writes the merged
file before deleting the parts; readers drop exact duplicate rows, so a crash
between the two steps changes no query result, and the next compaction
finishes the job.

A table whose partitions grow with every write (daily bars, one row per symbol
a night) can be merged as it is written: :func:`compact_partition` with
``keep_largest`` folds the small parts of one partition into one and leaves
its large parts alone (the largest, and any of at least :data:`LARGE_SHARE` of
its rows: a second source's history), so the cost is that of the small parts.

Every row of every table carries ``event_timestamp`` and
``created_timestamp`` (tz-aware UTC, microseconds).

:func:`staged_publication` makes a write of several files and tables (a whole Lean
folder: its bars, corporate actions and symbol map) visible at once or not at all: the
writer works on a staged copy of the tables (hard links, so nothing is copied) and
publishes what it changed through a journal (:data:`JOURNAL`): written atomically (the
commit), then applied file by file (renames, then deletions). A writer killed before
the commit left nothing visible; one killed after it is finished by the first reader or
writer that finds the journal (:func:`settle`, as SQLite's readers roll a hot journal):
readers never see a half-applied publication.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.core.config import Settings
from etl.core.errors import BadInputError, MissingColumnError
from etl.storage.atomic import TMP_PREFIX, atomic_path, atomic_write_frame, remove_stale_temp_files

TIME_COLUMNS = ("event_timestamp", "created_timestamp")
_PART_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


@dataclass(frozen=True)
class Table:
    """A silver table. ``key`` identifies one version of a fact (include the
    version column, e.g. an accession number or a vintage); ``partition`` maps
    a frame to its partition columns (values must be short path-safe strings).
    ``row_group_size`` (rows) makes part files of several row groups, so a reader
    filtering on the first key column (parts are sorted by the key) skips most of
    a large part; small row groups then want ``dictionary_columns`` (the columns
    with few values; ``None``: every column) and ``delta_columns`` (sorted integer
    or time columns, delta-encoded) to stay as small as one large group."""

    name: str
    key: tuple[str, ...]
    partition: tuple[str, ...]
    partition_values: Callable[[pd.DataFrame], pd.DataFrame]
    description: str = ""
    timestamp_columns: tuple[str, ...] = field(default=())  # extra tz-aware columns to normalise
    row_group_size: int | None = None
    dictionary_columns: tuple[str, ...] | None = None
    delta_columns: tuple[str, ...] = ()

    def path(self, settings: Settings) -> Path:
        return settings.silver / self.name


def by_year(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"year": pd.to_datetime(frame[column]).dt.year.astype(str)}, index=frame.index)

    return fn


def by_column(column: str, out: str | None = None) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({out or column: frame[column].astype(str)}, index=frame.index)

    return fn


def bucket_of(value: str, buckets: int) -> int:
    """The bucket of ``value`` among ``buckets``: CRC-32 of its UTF-8 bytes, the same in every
    process and on every machine (unlike Python's salted ``hash``)."""
    return zlib.crc32(str(value).encode()) % buckets


def by_bucket(column: str, buckets: int, out: str = "bucket") -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Partition by :func:`bucket_of` the value of ``column``, as two or more digits (``07``)."""
    width = len(str(buckets - 1))

    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        codes = {v: f"{bucket_of(v, buckets):0{width}d}" for v in pd.unique(frame[column].astype(str))}
        return pd.DataFrame({out: frame[column].astype(str).map(codes)}, index=frame.index)

    return fn


def _normalise(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    out = frame.copy()
    for col in (*TIME_COLUMNS, *table.timestamp_columns):
        if col in out.columns:
            ts = pd.to_datetime(out[col], utc=True)
            out[col] = ts.astype("datetime64[us, UTC]")
    return out.reset_index(drop=True)


def _value_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "created_timestamp"]


def _row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    # round-trip through Arrow so a fresh frame hashes exactly like the same rows read back
    typed = pa.Table.from_pandas(frame[columns], preserve_index=False).to_pandas()
    return pd.util.hash_pandas_object(typed, index=False).to_numpy()


def _part_name(frame: pd.DataFrame, hashes: np.ndarray | None = None) -> str:
    """``part-<hash>.parquet``, the hash of the columns and rows (``hashes``: the rows' hashes
    when already computed): the same rows always make the same name."""
    h = hashlib.sha256()
    h.update(",".join(frame.columns).encode())
    h.update((_row_hashes(frame, _value_columns(frame)) if hashes is None else hashes).tobytes())
    return f"part-{h.hexdigest()[:20]}.parquet"


def _partition_dir(root: Path, names: tuple[str, ...], values: tuple) -> Path:
    path = root
    for name, value in zip(names, values, strict=True):
        value = str(value)
        if not _PART_VALUE_RE.match(value):
            raise BadInputError([(str(root), None, f"partition value {name}={value!r} is not path-safe")])
        path = path / f"{name}={value}"
    return path


def part_files(path: Path) -> list[Path]:
    """The part files of one partition folder (temp and hidden files left out), by name. A
    publication a killed writer committed but did not finish is finished first (:func:`settle`)."""
    _settle_above(Path(path))
    return sorted(p for p in Path(path).glob("*.parquet") if not p.name.startswith((TMP_PREFIX, ".")))


def write_part(table: Table, frame: pd.DataFrame, path: Path) -> Path:
    """One part file, atomically, in row groups of ``table.row_group_size`` rows."""
    import pyarrow.parquet as pq

    if table.row_group_size is None and table.dictionary_columns is None and not table.delta_columns:
        return atomic_write_frame(frame, path)
    options: dict = {"row_group_size": table.row_group_size}
    if table.dictionary_columns is not None:
        options["use_dictionary"] = [c for c in table.dictionary_columns if c in frame.columns]
    delta = {c: "DELTA_BINARY_PACKED" for c in table.delta_columns if c in frame.columns}
    if delta:
        options["column_encoding"] = delta
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="zstd", **options)
    return Path(path)


def _read_partition(path: Path) -> pd.DataFrame | None:
    files = part_files(path)
    if not files:
        return None
    frames = [pd.read_parquet(p) for p in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@dataclass(frozen=True)
class WriteStats:
    new: int = 0
    unchanged: int = 0
    files: int = 0

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(self.new + other.new, self.unchanged + other.unchanged, self.files + other.files)


def append(settings: Settings, table: Table, frame: pd.DataFrame, now: pd.Timestamp, dedupe: bool = True) -> WriteStats:
    """Add the rows of ``frame`` whose values are not stored yet.

    A row counts as stored when every column but ``created_timestamp`` equals
    a stored row. New rows get ``created_timestamp = now`` and go, per
    partition, into one new part file. ``dedupe=False`` skips reading the
    stored rows: for a caller that has already compared ``frame`` with them
    (:func:`etl.storage.bars.write_silver_bars`).
    """
    if frame.empty:
        return WriteStats()
    missing = [c for c in ("event_timestamp", *table.key) if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"silver.{table.name}: frame lacks column(s) {missing}")
    frame = frame.drop(columns=["created_timestamp"], errors="ignore")
    frame = frame.drop_duplicates()
    frame = frame.sort_values(list(table.key), kind="stable").reset_index(drop=True)
    frame["created_timestamp"] = pd.Timestamp(now).tz_convert("UTC")
    frame = _normalise(frame, table)
    hashes = _row_hashes(frame, _value_columns(frame))   # once for the frame: a part's name and dedupe use its rows'
    parts = table.partition_values(frame)
    root = table.path(settings)
    stats = WriteStats()
    for values, idx in frame.groupby([parts[c] for c in table.partition], sort=True).groups.items():
        values = values if isinstance(values, tuple) else (values,)
        chunk, mine = frame.loc[idx], hashes[np.asarray(idx)]
        pdir = _partition_dir(root, table.partition, values)
        existing = _read_partition(pdir) if dedupe else None
        if existing is not None and len(existing):
            if list(existing.columns) != list(chunk.columns):
                chunk = chunk.reindex(columns=existing.columns)
                mine = _row_hashes(chunk, _value_columns(chunk))
            stored = set(_row_hashes(_normalise(existing, table), _value_columns(chunk)).tolist())
            fresh = np.array([h not in stored for h in mine], dtype=bool)
            stats += WriteStats(unchanged=int((~fresh).sum()))
            chunk, mine = chunk.loc[fresh], mine[fresh]
        if chunk.empty:
            continue
        chunk = chunk.reset_index(drop=True)   # rows in key order: the frame was sorted
        write_part(table, chunk, pdir / _part_name(chunk, mine))
        stats += WriteStats(new=len(chunk), files=1)
    return stats


def write_rows(settings: Settings, table: Table, frame: pd.DataFrame) -> int:
    """Write rows as they are (``created_timestamp`` kept), one part file per partition:
    moving stored rows to another layout. Returns the files written. Part files are named
    by their rows, so writing the same rows again rewrites the same files."""
    if frame.empty:
        return 0
    frame = _normalise(frame, table)
    parts = table.partition_values(frame)
    files = 0
    for values, idx in frame.groupby([parts[c] for c in table.partition], sort=True).groups.items():
        values = values if isinstance(values, tuple) else (values,)
        sort = [c for c in (*table.key, "created_timestamp") if c in frame.columns]
        chunk = frame.loc[idx].sort_values(sort, kind="stable").reset_index(drop=True)
        pdir = _partition_dir(table.path(settings), table.partition, values)
        write_part(table, chunk, pdir / _part_name(chunk))
        files += 1
    return files


def read(settings: Settings, table: Table, filters=None, columns: list[str] | None = None) -> pd.DataFrame:
    """Every stored row (exact duplicates left by an interrupted compaction
    dropped), sorted by the key and write time; partition columns included."""
    from etl.storage.atomic import read_parquet_dir

    settle(settings.silver)
    frame = read_parquet_dir(table.path(settings), columns=columns, filters=filters)
    if frame is None:
        return pd.DataFrame()
    for c in table.partition:
        if c in frame.columns and isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype(str)
    frame = frame.drop_duplicates()
    sort = [c for c in (*table.key, "created_timestamp") if c in frame.columns]
    return frame.sort_values(sort, kind="stable").reset_index(drop=True)


def read_partitions(settings: Settings, table: Table):
    """Each partition's rows in turn, as :func:`read` gives rows (exact duplicates dropped,
    sorted by key and write time): a table read one partition at a time. Partition columns
    that are not columns of the files are not added."""
    root = table.path(settings)
    settle(settings.silver)
    if not root.exists():
        return
    dirs = sorted({p.parent for p in root.rglob("*.parquet") if not p.name.startswith((TMP_PREFIX, "."))})
    for pdir in dirs:
        frame = _read_partition(pdir)
        if frame is None:
            continue
        frame = frame.drop_duplicates()
        sort = [c for c in (*table.key, "created_timestamp") if c in frame.columns]
        yield frame.sort_values(sort, kind="stable").reset_index(drop=True)


def compact(settings: Settings, table: Table, min_files: int = 2) -> dict:
    """Merge each partition's part files into one; query results do not change."""
    root = table.path(settings)
    merged = removed = 0
    if not root.exists():
        return {"table": table.name, "partitions": 0, "files_removed": 0}
    remove_stale_temp_files(root)
    dirs = sorted({p.parent for p in root.rglob("*.parquet") if not p.name.startswith((TMP_PREFIX, "."))})
    for pdir in dirs:
        n = compact_partition(table, pdir, min_files)
        if n:
            merged += 1
            removed += n
    return {"table": table.name, "partitions": merged, "files_removed": removed}


#: with ``keep_largest``, parts of at least this share of the largest part's size are left alone too
LARGE_SHARE = 0.25


def compact_partition(table: Table, pdir: Path, min_files: int = 2, keep_largest: bool = False) -> int:
    """Merge the part files of one partition folder into one when it has ``min_files`` or more;
    with ``keep_largest`` the large parts (the largest and those of at least :data:`LARGE_SHARE`
    of its rows) are left as they are and only the small ones are merged: the cost of a merge
    is that of the small parts, whatever the history (two sources' histories in one partition
    are two large parts, not rewritten every night). The merged file is written before any
    part is deleted, and readers drop exact duplicates, so a crash in between changes no
    query result. Returns the files removed."""
    files = part_files(pdir)
    if len(files) < min_files:
        return 0
    if keep_largest:
        import pyarrow.parquet as pq

        sizes = {p: pq.ParquetFile(p).metadata.num_rows for p in files}   # rows: a file's fixed overhead is no size
        largest = max(sizes.values())
        files = [p for p in files if sizes[p] < LARGE_SHARE * largest]
        if len(files) < 2:
            return 0
    frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True).drop_duplicates()
    sort = [c for c in (*table.key, "created_timestamp") if c in frame.columns]
    frame = frame.sort_values(sort, kind="stable").reset_index(drop=True)
    target = pdir / _part_name(frame)
    write_part(table, frame, target)
    removed = 0
    for p in files:
        if p != target:
            p.unlink()
            removed += 1
    return removed


def recover(settings: Settings) -> int:
    """Finish a publication a killed writer committed (:func:`settle`), delete the stages of
    killed publications and the temp files crashed writers left anywhere in the store."""
    settle(settings.silver)
    remove_dead_stages(settings.home / STAGE_DIR)
    return sum(remove_stale_temp_files(d) for d in (settings.bronze, settings.silver, settings.gold, settings.quarantine) if d.exists())


# ----------------------------------------------------------------- quarantine

QUARANTINE_COLUMNS = ["source", "source_file", "source_row", "symbol", "raw", "reason", "created_timestamp"]


def quarantine(settings: Settings, table: str, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path | None:
    """Keep rejected rows with their reason in ``quarantine/<table>/``; the same
    input always lands in the same file (reruns do not duplicate it)."""
    if rejects is None or rejects.empty:
        return None
    out = rejects.reindex(columns=QUARANTINE_COLUMNS).copy()
    out["source_row"] = pd.to_numeric(out["source_row"], errors="coerce").astype("Int64")
    for c in ("source", "source_file", "symbol", "raw", "reason"):
        out[c] = out[c].astype("string")
    out["created_timestamp"] = pd.Timestamp(now).tz_convert("UTC")
    out["created_timestamp"] = out["created_timestamp"].astype("datetime64[us, UTC]")
    name = hashlib.sha256(batch_key.encode()).hexdigest()[:16]
    path = settings.quarantine / table / f"batch-{name}.parquet"
    if path.exists():
        return path
    atomic_write_frame(out, path)
    return path


def read_quarantine(settings: Settings, table: str | None = None) -> pd.DataFrame:
    roots = [settings.quarantine / table] if table else [p for p in settings.quarantine.glob("*") if p.is_dir()]
    frames = []
    for r in roots:
        for p in sorted(r.glob("*.parquet")):
            f = pd.read_parquet(p)
            f.insert(0, "table", r.name)
            frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["table", *QUARANTINE_COLUMNS])


def schema_of(frame: pd.DataFrame) -> pa.Schema:
    return pa.Schema.from_pandas(frame, preserve_index=False)


# ----------------------------------------------------------------- all-or-nothing publication

#: the journal of a publication in progress, in the silver folder: written (atomically) once
#: everything is staged, deleted once applied; its presence means "finish me"
JOURNAL = ".publish.json"
#: held by whoever applies a journal (the writer, or a reader finishing a killed writer's)
PUBLISH_LOCK = ".publish.lock"
#: where the stages live: ``<home>/.publish/<pid>-<random>/`` (outside silver: no reader looks there)
STAGE_DIR = ".publish"
#: folders of the home a staged writer writes in place (raw landings, quarantine, reports, state)
SHARED_DIRS = ("bronze", "quarantine", "reports", "state")

_publishing = threading.Lock()


@contextlib.contextmanager
def _publish_lock(silver_root: Path):
    with _publishing:
        fd = os.open(silver_root / PUBLISH_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _fsync_dirs(dirs) -> None:
    for d in sorted(set(dirs)):
        with contextlib.suppress(OSError):
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _apply(silver_root: Path, journal: dict) -> None:
    """Apply a committed journal: every staged file renamed into place (one already moved is
    skipped), then the files it replaces deleted. Idempotent: a second run changes nothing."""
    stage = Path(journal["stage"])
    touched = set()
    for rel in journal["add"]:
        src, dst = stage / rel, silver_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.exists():
            os.replace(src, dst)
            touched.add(dst.parent)
    for rel in journal["delete"]:
        dst = silver_root / rel
        dst.unlink(missing_ok=True)
        touched.add(dst.parent)
    _fsync_dirs(touched)


def settle(silver_root: Path) -> bool:
    """Finish the publication whose journal is in ``silver_root``, if any: wait while its writer
    applies it, or apply it when its writer was killed. True when one was found. A reader that
    may not write the store reads what is there."""
    silver_root = Path(silver_root)
    path = silver_root / JOURNAL
    if not path.exists():
        return False
    try:
        with _publish_lock(silver_root):
            if not path.exists():
                return True    # its writer finished it while we waited
            journal = json.loads(path.read_text())
            _apply(silver_root, journal)
            path.unlink()
            _fsync_dirs([silver_root])
            shutil.rmtree(Path(journal["stage"]).parent, ignore_errors=True)   # the killed writer's stage
    except OSError:
        pass   # a read-only store
    return True


def _settle_above(path: Path) -> None:
    """:func:`settle` the silver folder that holds the partition folder ``path``, if a journal
    is there (a file test per level: the silver folder is at most four levels up)."""
    for anc in list(path.parents)[:4]:
        if (anc / JOURNAL).exists():
            settle(anc)
            return


def remove_dead_stages(root: Path) -> None:
    """Delete the folders ``<pid>-...`` below ``root`` whose writer process is gone: the stages of
    publications (never committed: a committed one's journal was settled first) and the staging
    folders of ingest runs (``etl.sources.base``)."""
    if not root.is_dir():
        return
    for d in root.iterdir():
        pid = d.name.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass   # alive, someone else's


@dataclass
class Stage:
    """A staged copy of a home for one publication (:func:`staged_publication`)."""

    settings: Settings          # the staged home's: its silver is the stage, the rest the live home's
    live: Settings
    root: Path

    def live_path(self, path: str | os.PathLike | None) -> str | None:
        """``path`` as the live home names it (a path inside the stage, e.g. a quarantine file)."""
        if path is None:
            return None
        text = str(path)
        return str(self.live.home) + text[len(str(self.root)):] if text.startswith(str(self.root)) else text


def _snapshot(silver_root: Path, stage_silver: Path, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Hard-link every file of ``tables`` into the stage; ``{relative path: (device, inode)}``."""
    snap = {}
    for name in tables:
        for p in sorted((silver_root / name).rglob("*")) if (silver_root / name).is_dir() else []:
            if not p.is_file() or p.name.startswith(TMP_PREFIX):
                continue
            rel = p.relative_to(silver_root)
            dst = stage_silver / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, dst)
            st = p.stat()
            snap[str(rel)] = (st.st_dev, st.st_ino)
    return snap


def _changes(stage_silver: Path, snap: dict[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
    """``(files to add or replace, files to delete)``: what the staged writer changed."""
    add = []
    for p in sorted(stage_silver.rglob("*")):
        if not p.is_file() or p.name.startswith(TMP_PREFIX):
            continue
        rel = str(p.relative_to(stage_silver))
        st = p.stat()
        if snap.get(rel) != (st.st_dev, st.st_ino):
            add.append(rel)
    delete = [rel for rel in snap if not (stage_silver / rel).exists()]
    return add, delete


@contextlib.contextmanager
def staged_publication(settings: Settings, tables: tuple[str, ...]):
    """Write silver all-or-nothing: yields a :class:`Stage` whose ``settings`` write the silver
    ``tables`` into a staged copy (hard links of the live files: writers replace files, never
    modify them, so the live ones are untouched); bronze, quarantine, reports and state are the
    live home's. When the block ends without error, what it changed is published at once
    (module doc); on an error, or a kill, nothing of it is visible. Holds the home's silver
    write lock (:class:`~etl.storage.atomic.HomeLock`) throughout: for writers that keep no
    watermark (a Lean folder is one job)."""
    from dataclasses import replace

    from etl.storage.atomic import HomeLock, atomic_write_text

    live_silver = settings.silver
    with HomeLock(settings.home):
        settle(live_silver)
        stages = settings.home / STAGE_DIR
        stages.mkdir(parents=True, exist_ok=True)
        remove_dead_stages(stages)
        root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=stages))
        try:
            for name in SHARED_DIRS:
                (settings.home / name).mkdir(parents=True, exist_ok=True)
                (root / name).symlink_to(settings.home / name, target_is_directory=True)
            stage_silver = root / "silver"
            stage_silver.mkdir()
            snap = _snapshot(live_silver, stage_silver, tuple(tables))
            yield Stage(replace(settings, home=root), settings, root)
            add, delete = _changes(stage_silver, snap)
            if add or delete:
                live_silver.mkdir(parents=True, exist_ok=True)
                for rel in add:   # folders first: a reader that lists them after the commit sees them all
                    (live_silver / rel).parent.mkdir(parents=True, exist_ok=True)
                journal = {"stage": str(stage_silver), "pid": os.getpid(), "add": add, "delete": delete}
                with _publish_lock(live_silver):
                    atomic_write_text(live_silver / JOURNAL, json.dumps(journal))   # the commit
                    _fsync_dirs([live_silver])
                    _apply(live_silver, journal)
                    (live_silver / JOURNAL).unlink()
                    _fsync_dirs([live_silver])
        finally:
            shutil.rmtree(root, ignore_errors=True)
            with contextlib.suppress(OSError):
                stages.rmdir()   # when no other stage is left (a killed writer's is)
