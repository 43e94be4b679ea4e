"""Where gold lives and how a build's files become visible all at once.

Gold is one folder per feature view, ``gold/<view>/``, of Parquet part files, each sorted
by (event time, entity, known time) so a time window or a symbol range skips row groups:

- ``r<run>-<family>-c<chunk>.parquet``: the rows one build run wrote for one chunk of
  entities (a night appends a few small ones);
- ``r<run>-m<k>.parquet``: parts merged by :func:`compact` (a separate step);
- ``r000000-schema.parquet``: no rows, the view's schema (a view whose inputs were never
  ingested still answers queries with missing values).

A run is committed atomically: workers write hidden ``.r<run>-...`` files (readers skip
names starting with ``.`` or ``_``); the commit point is the atomic rewrite of
``gold/_runs.json`` (the committed run and each family's state file); then the hidden files
are renamed. A crash before the commit leaves hidden files that the next build deletes; a
crash after it is rolled forward by the next build. A rerun is therefore idempotent and no
reader ever sees half a run.

The run record also lists every committed part file, ``parts: {view: {name: {size, rows,
sha256}}}``, taken when the part was written: the builder and the readers trust the files only
as far as they match it (:mod:`etl.gold.integrity`), so a truncated, damaged, missing or foreign
part is found and rebuilt from silver instead of hiding behind the build records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from etl.core.config import Settings
from etl.storage.atomic import atomic_write_text

RUNS = "_runs.json"
STATE_DIR = "_state"
SCHEMA_PART = "r000000-schema.parquet"
#: the key of ``_runs.json`` that records every committed part: {view: {name: {size, rows, sha256}}}
PARTS = "parts"


def view_dir(settings: Settings, view: str) -> Path:
    """The folder of one view's part files (what Feast's FileSource names)."""
    return settings.gold / view


def gold_path(settings: Settings, view: str) -> Path:
    """The path a reader opens for a view (a folder of Parquet parts)."""
    return view_dir(settings, view)


def parts(settings: Settings, view: str) -> list[Path]:
    folder = view_dir(settings, view)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))


def part_run(path: Path) -> int:
    """The run that wrote (or, for a merged part, last fed) a part file."""
    name = path.name
    return int(name[1:7]) if name.startswith("r") and name[1:7].isdigit() else 0


def part_name(run: int, family: str, chunk: int) -> str:
    return f"r{run:06d}-{family}-c{chunk:05d}.parquet"


def hidden(path: Path) -> Path:
    return path.with_name("." + path.name)


def read_runs(settings: Settings) -> dict:
    path = settings.gold / RUNS
    try:
        runs = json.loads(path.read_text())
    except FileNotFoundError:
        return {"last_run": 0, "families": {}, "pending": None}
    except ValueError as exc:   # not JSON, not UTF-8: damaged (an OSError such as EACCES or EIO is no proof of damage)
        raise _damaged_runs(path, exc) from None
    if not isinstance(runs, dict) or not isinstance(runs.get("families"), dict):
        raise _damaged_runs(path, ValueError("not a run record"))
    return runs


def _damaged_runs(path: Path, exc: Exception):
    from etl.core.errors import GoldDamagedError

    return GoldDamagedError(f"the gold build record {path} is unreadable ({type(exc).__name__}: {exc}); run `alpha nightly` "
                            "(or `alpha features build`): it rebuilds gold from silver")


def recover_runs(settings: Settings) -> str | None:
    """A damaged ``_runs.json`` is moved aside and replaced by an empty record numbered after
    every run whose files are still there, so the next build rebuilds every family from silver
    (and replaces the parts it no longer knows) without reusing a run number. Returns what was done."""
    path = settings.gold / RUNS
    from etl.core.errors import GoldDamagedError

    try:
        read_runs(settings)
        return None
    except GoldDamagedError:   # damaged content; a failing read (permissions, I/O) propagates, nothing is moved
        pass
    last = 0
    if settings.gold.is_dir():
        for p in settings.gold.rglob("*.parquet"):
            name = p.name.lstrip(".")
            if name.startswith("r") and name[1:7].isdigit():
                last = max(last, int(name[1:7]))
            elif "-r" in name and name.rsplit("-r", 1)[1][:6].isdigit():   # _state/<family>-r<run>.parquet
                last = max(last, int(name.rsplit("-r", 1)[1][:6]))
    aside = path.with_name(f"{RUNS}.damaged")
    os.replace(path, aside)
    write_runs(settings, {"last_run": last, "families": {}, "pending": None, PARTS: {}})
    return f"the build record {path.name} was unreadable (kept as {aside.name}): every family is rebuilt from silver"


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def describe_part(path: Path) -> dict:
    """What the run record keeps of a part file when it is written: size, rows (its footer's)
    and sha256."""
    import pyarrow.parquet as pq

    return {"size": os.path.getsize(path), "rows": int(pq.read_metadata(path).num_rows), "sha256": sha256_file(path)}


def write_runs(settings: Settings, runs: dict) -> None:
    atomic_write_text(settings.gold / RUNS, json.dumps(runs, indent=1, sort_keys=True))


def state_path(settings: Settings, family: str, run: int) -> Path:
    return settings.gold / STATE_DIR / f"{family}-r{run:06d}.parquet"


def read_state(settings: Settings, family: str) -> pd.DataFrame | None:
    info = read_runs(settings)["families"].get(family)
    if not info:
        return None
    path = state_path(settings, family, info["run"])
    return pd.read_parquet(path) if path.exists() else None


def finish_pending(settings: Settings) -> str | None:
    """Roll a crashed run forward (committed) or back (not committed). Returns what was done."""
    runs = read_runs(settings)
    pending = runs.get("pending")
    if not pending:
        _remove_orphans(settings, runs)
        return None
    run = pending["run"]
    committed = runs.get("last_run", 0) >= run
    for view in pending.get("views", []):
        folder = view_dir(settings, view)
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(f".r{run:06d}-"):
                if committed:
                    os.replace(p, folder / p.name[1:])
                else:
                    p.unlink()
        if committed:
            for name in pending.get("obsolete", {}).get(view, []):
                (folder / name).unlink(missing_ok=True)
    runs["pending"] = None
    write_runs(settings, runs)
    _remove_orphans(settings, runs)
    return f"run {run} {'rolled forward' if committed else 'rolled back'}"


def _remove_orphans(settings: Settings, runs: dict) -> None:
    """State files no family points to (left by a run that did not commit, or superseded), and,
    no run being pending, hidden part files (``.r<run>-...``: no commit can rename them any more)."""
    if not runs.get("pending") and settings.gold.is_dir():
        for p in settings.gold.glob("*/.r*.parquet"):
            if p.name[2:8].isdigit():
                p.unlink(missing_ok=True)
    folder = settings.gold / STATE_DIR
    if not folder.is_dir():
        return
    keep = {state_path(settings, fam, info["run"]).name for fam, info in runs["families"].items()}
    for p in folder.iterdir():
        if p.suffix == ".parquet" and p.name not in keep:
            p.unlink(missing_ok=True)


def compact(settings: Settings, view: str, target_rows: int = 2_000_000, min_parts: int = 8) -> dict:
    """Merge a view's small part files into parts of about ``target_rows`` rows, streaming
    (one input file in memory at a time). Parts are merged in run order, so a later row
    still comes after an earlier one; the merged part is named after the newest run it holds
    (materialization then knows it holds nothing newer). The merged file is written before
    the inputs are removed, and the inputs are listed in ``_runs.json`` first, so a crash
    between the two is finished by :func:`finish_pending` (the inputs deleted) before any
    later build: duplicate rows are never left behind."""
    import pyarrow.parquet as pq

    from etl.storage.atomic import atomic_path

    files = [p for p in parts(settings, view) if p.name != SCHEMA_PART]
    small = [p for p in files if pq.ParquetFile(p).metadata.num_rows < target_rows // 4]
    if len(small) < min_parts:
        return {"view": view, "merged": 0, "written": 0}
    groups, cur, n = [], [], 0
    for p in small:
        rows = pq.ParquetFile(p).metadata.num_rows
        if cur and n + rows > target_rows:
            groups.append(cur)
            cur, n = [], 0
        cur.append(p)
        n += rows
    if cur:
        groups.append(cur)
    groups = [g for g in groups if len(g) > 1]
    runs = read_runs(settings)
    written = 0
    for k, group in enumerate(groups):
        newest = max(part_run(p) for p in group)
        out = view_dir(settings, view) / f"r{newest:06d}-m{os.getpid()}x{k:04d}.parquet"
        schema = pq.read_schema(group[0])
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for p in group:
                table = pq.read_table(p)
                writer.write_table(table.cast(schema), row_group_size=256_000)
        runs["pending"] = {"run": runs.get("last_run", 0), "views": [view], "obsolete": {view: [p.name for p in group]}}
        if PARTS in runs:   # the merged part replaces its inputs in the record, in the same write
            recorded = runs[PARTS].setdefault(view, {})
            for p in group:
                recorded.pop(p.name, None)
            recorded[out.name] = describe_part(out)
        write_runs(settings, runs)
        for p in group:
            p.unlink(missing_ok=True)
        runs["pending"] = None
        write_runs(settings, runs)
        written += 1
    return {"view": view, "merged": sum(len(g) for g in groups), "written": written}
