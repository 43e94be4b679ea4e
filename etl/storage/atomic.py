"""Atomic, idempotent Parquet writes.

Every file is written to a temporary name in the same folder, flushed and
fsynced, then renamed over its final name: a crash mid-write leaves the old
file (or none), never a half-written one. Temporary files start with ``.tmp-``
so readers that glob ``*.parquet`` never see them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temp path beside ``path`` to write to; on success it is fsynced and renamed to
    ``path``, on error deleted (a crash leaves only a ``.tmp-<pid>-`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_frame(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (temp file, fsync, rename), readable by all
    (reports and JSON records are meant to be opened and shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_copy(src: Path, dst: Path) -> Path:
    """Copy a file byte for byte into place atomically."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def read_parquet_dir(root: Path, columns: list[str] | None = None, filters=None) -> pd.DataFrame | None:
    """Read every ``*.parquet`` below ``root`` (hive partitions become columns)."""
    root = Path(root)
    if not root.exists() or not any(root.rglob("*.parquet")):
        return None
    import pyarrow.dataset as ds

    dataset = ds.dataset(
        root,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=False,
        ignore_prefixes=[TMP_PREFIX, "."],
    )
    table = dataset.to_table(columns=columns, filter=filters)
    return table.to_pandas()


def temp_prefix() -> str:
    """Prefix of this process's temp files, ``.tmp-<pid>-``: recovery can then tell a crashed
    writer's leftovers from a file another live writer (a thread of this process, a nightly
    run beside a backfill) is still writing."""
    return f"{TMP_PREFIX}{os.getpid()}-"


_TMP_PID = re.compile(rf"^{re.escape(TMP_PREFIX)}(\d+)-")


def _writer_alive(name: str) -> bool:
    m = _TMP_PID.match(name)
    if m is None:
        return False                  # a temp file of an older version: its writer is gone
    pid = int(m.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                   # alive, someone else's
    return True


def stale_temp_files(root: Path) -> Iterator[Path]:
    """The ``.tmp-*`` leftovers of crashed writers below ``root`` (never a file whose writer
    process is alive)."""
    return (p for p in Path(root).rglob(f"{TMP_PREFIX}*") if not _writer_alive(p.name))


def remove_stale_temp_files(root: Path) -> int:
    """Delete :func:`stale_temp_files` below ``root``."""
    n = 0
    for p in stale_temp_files(root):
        p.unlink(missing_ok=True)
        n += 1
    return n


class HomeLock:
    """An exclusive lock on one warehouse for writers: threads of this process
    (a threading lock) and other processes (``flock`` on ``<home>/.<name>.lock``),
    so a backfill's parallel tasks and a nightly run never interleave silver
    writes. Reusable: ``with lock: ...`` as often as needed."""

    _guard = threading.Lock()
    _thread_locks: dict[str, threading.Lock] = {}

    def __init__(self, home: Path, name: str = "silver-write"):
        self.path = Path(home) / f".{name}.lock"
        with HomeLock._guard:
            self._thread_lock = HomeLock._thread_locks.setdefault(str(self.path), threading.Lock())
        self._fh = None

    def __enter__(self) -> HomeLock:
        self._thread_lock.acquire()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a")
            fcntl.flock(self._fh, fcntl.LOCK_EX)
        except BaseException:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._fh.close()   # closing the descriptor releases the flock
        finally:
            self._fh = None
            self._thread_lock.release()
