"""The Spark engine (issue 18) against the local engine, on one 2-core machine: ``local[2]``.

    .venv/bin/python benchmarks/spark.py --symbols 500,2000          # the issue's sizes -> BENCHMARKS.md
    .venv/bin/python benchmarks/spark.py --symbols 20 --out /tmp/alpha-bench/spark-dry-run.md   # a quick check
    .venv/bin/python benchmarks/spark.py --symbols 2000 --parts build --families all --resume RESULTS.json
                                                      # more runs, reported with an earlier run's
    .venv/bin/python benchmarks/spark.py --render RESULTS.json   # rewrite the section only

Per universe of N symbols x 10 years, three parts, each engine in its own fresh process:

1. **history**: a gold-like view of N symbols x 2,516 XNYS sessions x 100 float32 features
   (part files written by the builder's own ``write_part``: one per 64 symbols, sorted by (event
   time, symbol, known time), LZ4; 1 % of the values missing, 1 % of the rows missing (gaps the
   TTL of 5 days bridges), and a second run's part with 0.5 % of the rows revised, known one day
   later) behind a Feast ``FeatureStore`` over ``sdk.pit.store.AlphaOfflineStore``; entity frame =
   every symbol x every session at its availability time (N x 2,516 rows). One query per engine
   (two at 500 symbols and below: the second is the warm one), local vs
   ``pit_options(engine="spark")``; the answers are compared column by column (a digest of every
   column in output order, NaN canonical) and must be identical.
2. **factor build**, through the CLI as a user runs it: ``alpha ingest csv --path DIR`` on the
   universe of ``benchmarks/universe.py`` (one CSV per symbol, GBM, 2015-01-02..2024-12-31), the
   home copied (the same silver), then ``alpha features build`` in one home and
   ``ALPHA_ENGINE=spark alpha features build`` in the other; every gold row of every view is
   compared (an order-free digest of each row, ``created_timestamp`` aside: it is the build's clock).
   Where the full family set would take more than ``--build-budget`` seconds per engine (predicted
   from the previous universe's per-symbol rate), only ``SUBSET`` is built (said in the report).
3. **materialize** to Redis (our own redis-server on a free port, no persistence): ``alpha
   materialize`` from the local home into db 0, ``ALPHA_ENGINE=spark alpha materialize`` from the
   same home into db 1; every key's hash (the completion marker aside) compared. After a SUBSET
   build, the function the command runs (``redis_writer.materialize(settings, views=<the views
   built>, engine=...)``) in a fresh process: the command has no ``--view`` and refuses a view
   without gold.

Measured from outside, the process tree polled every 50 ms with psutil: wall time, CPU, and peak
RSS by role: the **Python driver** (the process we start), the **JVM** (``java``: in local mode
Spark's driver and executors are one JVM, heap = ``driver_memory`` = 2 GB here), the **Python
workers** (processes under the JVM: pyspark's daemon and the workers it forks, where the
executors run our Python), **other** (the local engine's forked workers). The JVM's start is
counted apart: ``etl.core.spark.last_start_seconds`` in the history children; for the CLI
commands, a separate process opens a session with the home's ``[spark]`` settings (the same
start the command pays) and its time is shown and subtracted in "excl. JVM start".

Results accumulate in ``<work>/spark-results-<pid>.json`` and the ``spark`` section of --out is
rewritten after every measurement (a run cut short keeps what it measured); ``--step-timeout``
kills a step's process tree, ``--deadline HH:MM`` (UTC) starts no step after it. No timing is
asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import universe as U  # noqa: E402
from benchmarks.nightly import Redis, fmt_s, git_rev, tail, tree_bytes  # noqa: E402

POLL = 0.05
HEARTBEAT = 30.0
N_FEATURES = 100
PART_SYMBOLS = 64
TTL_DAYS = 5
PANEL_START, PANEL_END = "2011-04-01", "2021-03-31"   # benchmarks/pit_join.py's 10 years: 2,516 sessions
#: the [spark] table of both homes and of the history children: the issue's local[2] with a 2 GB driver
SPARK = {"master": "local[2]", "driver_memory": "2g", "executor_memory": "2g", "ui": False}
#: families built when the full set would not fit --build-budget (the TA-Lib grid, ``technical``, left out)
SUBSET = ("bars", "core", "regime")
ROLES = ("driver", "jvm", "py_workers", "other")
ROLE_NAMES = {"driver": "Python driver", "jvm": "JVM", "py_workers": "Python workers", "other": "other"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ measuring a process tree by role

@dataclass
class Run:
    n: int
    part: str          # history | ingest | jvm | build | materialize
    engine: str        # local | spark | -
    cmd: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    peak: dict = field(default_factory=dict)   # role -> bytes (peak of the role's sum), and "tree"
    returncode: int = 0
    log: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _role(p, root_pid: int, parents: dict[int, int], names: dict[int, str]) -> str:
    if names.get(p) == "java":
        return "jvm"
    q = parents.get(p)
    while q is not None and q != root_pid:
        if names.get(q) == "java":
            return "py_workers"
        q = parents.get(q)
    return "driver" if p == root_pid else "other"


def measure(run: Run, env: dict, log_path: Path, timeout: float | None = None) -> Run:
    """Run ``run.cmd``: wall, CPU of the tree, and peak RSS per role (see the module doc). Past
    ``timeout`` seconds the tree (our own child and its descendants) is killed."""
    import psutil

    run.log = str(log_path)
    out = open(log_path, "wb")  # noqa: SIM115 - closed below, after the child ends
    t0 = time.perf_counter()
    proc = subprocess.Popen(run.cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    cpu_seen: dict[tuple, float] = {}
    peak = dict.fromkeys((*ROLES, "tree"), 0)
    beat = t0 + HEARTBEAT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        parents, names, rss = {}, {}, {}
        for p in tree:
            try:
                with p.oneshot():
                    parents[p.pid], names[p.pid] = p.ppid(), p.name()
                    rss[p.pid] = p.memory_info().rss
                    t = p.cpu_times()
                    cpu_seen[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass
        sums = dict.fromkeys(ROLES, 0)
        for p, r in rss.items():
            sums[_role(p, proc.pid, parents, names)] += r
        for k, v in sums.items():
            peak[k] = max(peak[k], v)
        peak["tree"] = max(peak["tree"], sum(sums.values()))
        now = time.perf_counter()
        if now >= beat:
            last = tail(log_path, 1).strip()[-100:]
            log(f"      ... {now - t0:5.0f} s, tree {sum(sums.values()) / 1e9:.2f} GB (JVM {sums['jvm'] / 1e9:.2f}, "
                f"workers {sums['py_workers'] / 1e9:.2f}), {len(rss)} processes" + (f" | {last}" if last else ""))
            beat = now + HEARTBEAT
        if timeout is not None and now - t0 > timeout and "killed" not in run.extra:
            run.extra["killed"] = f"killed after {now - t0:.0f} s (time limit)"
            log(f"    {run.extra['killed']}")
            for p in reversed(tree):
                with contextlib.suppress(psutil.Error):
                    p.kill()
        time.sleep(POLL)
    run.wall = time.perf_counter() - t0
    out.close()
    run.returncode = os.waitstatus_to_exitcode(status)
    run.cpu = max(usage.ru_utime + usage.ru_stime, sum(cpu_seen.values()))
    run.peak = peak
    return run


# ------------------------------------------------------------------ the history panel

def panel_dir(work: Path, n: int) -> Path:
    return work / f"spark-panel-{n}x{N_FEATURES}"


def make_panel(work: Path, n: int) -> Path:
    """The gold-like view (see the module doc) under ``<folder>/gold/panel``, and the entity
    frame; generated once per size (``done.json`` written last)."""
    import pyarrow as pa

    from etl.core import clock
    from etl.gold.builder import write_part

    folder = panel_dir(work, n)
    if (folder / "done.json").exists():
        log(f"  panel {folder} (reused)")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    gold = folder / "gold" / "panel"
    gold.mkdir(parents=True)
    t0 = time.perf_counter()
    days = clock.sessions_in_range(PANEL_START, PANEL_END)
    avail = clock.epoch_us(pd.Series(clock.availability_times(days, 15)))
    symbols = np.array([U.symbol(i) for i in range(n)], dtype=object)
    run1 = clock.epoch_us(pd.Series([pd.Timestamp("2021-04-01 06:00", tz="UTC")]))[0]
    day_us = 86_400 * 1_000_000
    feats = [f"f{j:03d}" for j in range(N_FEATURES)]
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("symbol", pa.string()), ("event_timestamp", ts), ("known_timestamp", ts), ("created_timestamp", ts)]
                       + [(f, pa.float32()) for f in feats])
    revisions = []
    rows = 0
    for c, lo in enumerate(range(0, n, PART_SYMBOLS)):
        chunk = symbols[lo:lo + PART_SYMBOLS]
        rng = np.random.default_rng([U.SEED, 18, lo])
        ev = np.repeat(avail, len(chunk))                 # sorted by (event time, symbol, known time)
        sym = np.tile(chunk, len(avail))
        keep = rng.random(len(ev)) >= 0.01                # 1 % of the rows missing: gaps
        ev, sym = ev[keep], sym[keep]
        block = rng.standard_normal((N_FEATURES, len(ev)), dtype=np.float32)
        block[rng.random(block.shape) < 0.01] = np.nan    # 1 % of the values missing
        cols = {"symbol": sym, "event_timestamp": ev, "known_timestamp": ev, "created_timestamp": np.full(len(ev), run1)}
        write_part(_table(schema, cols, feats, block), gold / f"r000001-panel-c{c:05d}.parquet")
        rows += len(ev)
        rev = rng.random(len(ev)) < 0.005                 # 0.5 % revised, known a day later (a second run)
        revisions.append((ev[rev], sym[rev], rng.standard_normal((N_FEATURES, int(rev.sum())), dtype=np.float32)))
    ev = np.concatenate([r[0] for r in revisions])
    sym = np.concatenate([r[1] for r in revisions])
    block = np.concatenate([r[2] for r in revisions], axis=1)
    order = np.lexsort((sym, ev))
    cols = {"symbol": sym[order], "event_timestamp": ev[order], "known_timestamp": ev[order] + day_us,
            "created_timestamp": np.full(len(ev), run1 + day_us)}
    write_part(_table(schema, cols, feats, block[:, order]), gold / "r000002-panel-c00000.parquet")
    entity = pd.DataFrame({"symbol": np.repeat(symbols, len(days)),
                           "event_timestamp": pd.to_datetime(np.tile(avail, n), unit="us", utc=True)})
    entity.to_parquet(folder / "entity.parquet")
    size = sum(p.stat().st_size for p in gold.glob("*.parquet"))
    meta = {"symbols": n, "sessions": len(days), "features": N_FEATURES, "rows": rows, "revisions": len(ev),
            "entity_rows": len(entity), "bytes": size}
    (folder / "done.json").write_text(json.dumps(meta))
    log(f"  panel {folder}: {rows:,} rows + {len(ev):,} revisions x {N_FEATURES} float32, {size / 1e9:.2f} GB, "
        f"{len(entity):,} entity rows, in {time.perf_counter() - t0:.0f} s")
    return folder


def _table(schema, cols: dict, feats: list[str], block: np.ndarray):
    import pyarrow as pa

    arrays = [pa.array(cols["symbol"], pa.string())]
    arrays += [pa.array(cols[c], pa.int64()).cast(schema.field(c).type) for c in ("event_timestamp", "known_timestamp", "created_timestamp")]
    arrays += [pa.array(block[j]) for j in range(len(feats))]
    return pa.Table.from_arrays(arrays, schema=schema)


def history_child(engine: str, folder: Path, repeat: int, out: Path) -> None:
    """One engine's queries in this fresh process (see the module doc); writes ``out`` (JSON)."""
    import warnings

    warnings.filterwarnings("ignore")
    t_import = time.perf_counter()
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32

    from etl.serving.feast_store import quiet_feast
    from sdk.pit.store import pit_options

    meta = json.loads((folder / "done.json").read_text())
    feats = [f"f{j:03d}" for j in range(meta["features"])]
    repo = folder / f"repo-{engine}"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        f"project: bench\nprovider: local\nregistry: {repo}/registry.db\n"
        f"offline_store:\n  type: sdk.pit.store.AlphaOfflineStore\n  home: {folder}\n"
        f"online_store:\n  type: sqlite\n  path: {repo}/online.db\n"
        "entity_key_serialization_version: 3\n")
    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    src = FileSource(name="panel_source", path="gold/panel", timestamp_field="event_timestamp",
                     created_timestamp_column="known_timestamp")
    view = FeatureView(name="panel", entities=[symbol], ttl=pd.Timedelta(days=TTL_DAYS).to_pytimedelta(), source=src,
                       schema=[Field(name=f, dtype=Float32) for f in feats])
    with quiet_feast():
        store = FeatureStore(repo_path=str(repo))
        store.apply([symbol, src, view])
    entity = pd.read_parquet(folder / "entity.parquet")
    refs = [f"panel:{f}" for f in feats]
    t_import = time.perf_counter() - t_import
    start = None
    if engine == "spark":
        from etl.core import spark as engine_mod

        t0 = time.perf_counter()
        engine_mod.session(spark=SPARK)
        start = time.perf_counter() - t0
        start = engine_mod.last_start_seconds if engine_mod.last_start_seconds is not None else start
    times, result = [], None
    for _ in range(repeat):
        result = None
        t0 = time.perf_counter()
        with pit_options(engine=engine), quiet_feast():
            result = store.get_historical_features(entity_df=entity, features=refs).to_df()
        times.append(time.perf_counter() - t0)
    digests = frame_digests(result, ["symbol", "event_timestamp"], feats)
    keys_in_order = bool(len(result) == len(entity) and (result["symbol"].to_numpy() == entity["symbol"].to_numpy()).all()
                         and (result["event_timestamp"].to_numpy() == entity["event_timestamp"].to_numpy()).all())
    out.write_text(json.dumps({
        "engine": engine, "times": times, "spark_start": start, "setup": t_import, "rows": len(result),
        "digests": digests, "keys_in_order": keys_in_order,
        "dtypes": sorted({str(result[f].dtype) for f in feats}),
        "missing": int(sum(int(result[f].isna().sum()) for f in feats)),
        "result_bytes": int(result[feats].memory_usage(index=False).sum()),
    }))


def frame_digests(frame: pd.DataFrame, keys: list[str], feats: list[str]) -> dict[str, str]:
    """A digest of every column in row order: keys as UTF-8 / UTC microseconds, features as
    float64 (exact for float32) with one NaN."""
    from etl.core import clock

    out = {}
    for k in keys:
        col = frame[k]
        data = clock.epoch_us(col).tobytes() if k == "event_timestamp" else "\x00".join(col.astype(str)).encode()
        out[k] = hashlib.blake2b(data, digest_size=16).hexdigest()
    for f in feats:
        a = frame[f].to_numpy(dtype=np.float64, na_value=np.nan)
        a = np.where(np.isnan(a), np.nan, a)
        out[f] = hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest()
    return out


# ------------------------------------------------------------------ comparing gold and Redis

def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over a uint64 array (numpy's array arithmetic wraps mod 2**64)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _column_bits(col) -> np.ndarray:
    """One Arrow column as uint64 per row: strings hashed, times as microseconds, floats as float64
    bits with one NaN (float32 -> float64 is exact), missing values as one marker."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return pd.util.hash_array(np.asarray(col.to_pylist(), dtype=object)).astype(np.uint64)
    if pa.types.is_timestamp(t):
        a = col.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return a.astype(np.int64).view(np.uint64)
    if pa.types.is_floating(t):
        a = col.to_numpy(zero_copy_only=False).astype(np.float64)
        a[np.isnan(a)] = np.nan
        return a.view(np.uint64)
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        a = col.cast(pa.float64()).to_numpy(zero_copy_only=False)   # nulls -> NaN
        a[np.isnan(a)] = np.nan
        return a.view(np.uint64)
    return pd.util.hash_array(np.asarray([str(v) for v in col.to_pylist()], dtype=object)).astype(np.uint64)


def gold_digest(home: Path) -> dict[str, list]:
    """Per view: [rows, order-free digest] over every visible part file: each row's hash (every
    column but ``created_timestamp``, each mixed with its column's name) summed mod 2**64, so the
    two engines may cut parts or order rows differently and still compare equal, value for value."""
    import pyarrow.parquet as pq

    out = {}
    for view in sorted(p for p in (home / "gold").iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        rows, total = 0, 0
        for path in sorted(view.glob("*.parquet")):
            if path.name.startswith((".", "_")):
                continue
            pf = pq.ParquetFile(path)
            cols = [c for c in pf.schema_arrow.names if c != "created_timestamp"]
            seeds = {c: np.uint64(int(hashlib.blake2b(c.encode(), digest_size=8).hexdigest(), 16)) for c in cols}
            for g in range(pf.num_row_groups):
                h = None
                for c in cols:
                    x = _mix(_column_bits(pf.read_row_group(g, columns=[c]).column(0)) ^ seeds[c])
                    h = x if h is None else h + x
                if h is not None:
                    total = (total + int(_mix(h).sum(dtype=np.uint64))) % 2**64   # an array's sum wraps
                    rows += len(h)
        out[view.name] = [rows, str(total)]
    return out


def count_values(home: Path) -> int:
    """Feature values in a home's gold: rows x non-key columns of every part (footers only)."""
    import pyarrow.parquet as pq

    keys = {"symbol", "market", "event_timestamp", "known_timestamp", "created_timestamp"}
    total = 0
    for path in (home / "gold").rglob("*.parquet"):
        if any(part.startswith((".", "_")) for part in path.relative_to(home / "gold").parts):
            continue
        meta = pq.read_metadata(path)
        total += meta.num_rows * len([c for c in meta.schema.names if c not in keys])
    return total


def redis_digest(client, db: int) -> dict[bytes, str]:
    from etl.serving.redis_codec import marker_key

    c = client.connection_pool.connection_kwargs
    import redis

    r = redis.Redis(host=c["host"], port=c["port"], db=db)
    keys = sorted(k for k in r.scan_iter(count=1000) if k != marker_key().encode())
    out = {}
    for lo in range(0, len(keys), 500):
        pipe = r.pipeline(transaction=False)
        for k in keys[lo:lo + 500]:
            pipe.hgetall(k)
        for k, h in zip(keys[lo:lo + 500], pipe.execute(), strict=True):
            out[k] = hashlib.blake2b(b"\x00".join(a + b"\x01" + b for a, b in sorted(h.items())), digest_size=16).hexdigest()
    return out


# ------------------------------------------------------------------ one universe

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.logs = self.work / "logs" / f"{pd.Timestamp.now():%Y%m%d-%H%M%S}-spark"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.out = Path(args.out) if args.out else REPO / "BENCHMARKS.md"
        self.results = self.work / f"spark-results-{os.getpid()}.json"
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.started = pd.Timestamp.now(tz="UTC")
        self.load0 = os.getloadavg()
        self.alpha = str(Path(sys.executable).parent / "alpha")
        self.families: dict[int, list[str] | None] = {}
        self.resumed: list[int] = []
        self.sizes: list[int] = []
        self.load_end: tuple | None = None
        self.status = "running"
        self.deadline = pd.Timestamp(f"{self.started:%Y-%m-%d} {args.deadline}", tz="UTC") if args.deadline else None
        if self.deadline is not None and self.deadline < self.started:
            self.deadline += pd.Timedelta(days=1)
        if not Path(self.alpha).exists():
            raise SystemExit(f"no alpha entry point beside {sys.executable}: run `make setup` and use .venv/bin/python")

    # -------------------------------------------------------------- bookkeeping
    def resume(self, path: Path) -> None:
        """Keep the runs of an earlier invocation (the report covers both)."""
        old = json.loads(path.read_text())
        self.runs = [Run(**r) for r in old["runs"]]
        self.notes = list(old.get("notes", []))
        self.families = {int(k): v for k, v in old.get("families", {}).items()}
        if old.get("started"):
            self.started, self.load0 = pd.Timestamp(old["started"]), tuple(old["load0"])
        self.load_end = tuple(old["load_end"]) if old.get("load_end") else None
        self.resumed = sorted({r.n for r in self.runs})
        log(f"  resumed {len(self.runs)} runs of {path} (sizes {self.resumed})")

    def record(self, run: Run) -> Run:
        self.runs.append(run)
        self.results.write_text(json.dumps({"runs": [asdict(r) for r in self.runs], "notes": self.notes,
                                            "started": str(self.started), "load0": list(self.load0), "status": self.status,
                                            "load_end": list(os.getloadavg()),
                                            "families": {str(k): v for k, v in self.families.items()}}, indent=1))
        self.write()
        return run

    def write(self) -> None:
        from benchmarks.report import replace_section

        self.out.parent.mkdir(parents=True, exist_ok=True)
        replace_section(self.out, "spark", markdown(self))

    def env(self, home: Path | None, engine: str, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("ALPHA_REDIS_URL", "ALPHA_ENGINE", "ALPHA_SPARK_MASTER", "PREFECT_API_URL", "PREFECT_HOME")}
        if home is not None:
            env["ALPHA_HOME"] = str(home)
        env["ALPHA_ENGINE"] = engine
        env.update(extra)
        return env

    def step(self, n: int, part: str, engine: str, cmd: list[str], env: dict) -> Run:
        i = len(self.runs) + 1
        timeout = self.args.step_timeout
        if self.args.deadline:
            left = (self.deadline - pd.Timestamp.now(tz="UTC")).total_seconds()
            if left < 60:
                raise StepFailed(f"the deadline ({self.args.deadline} UTC) was reached before {part} ({engine})")
            timeout = min(timeout, left)
        log(f"  [{n} symbols] {part} ({engine}): {' '.join(c if len(c) < 80 else '...' + c[-60:] for c in cmd)}")
        run = measure(Run(n, part, engine, cmd), env, self.logs / f"{i:02d}-{n}-{part}-{engine}.log", timeout)
        if run.ok:
            log(f"    {run.wall:.1f} s wall, {run.cpu:.1f} s CPU, peak tree {run.peak['tree'] / 1e9:.2f} GB "
                f"(driver {run.peak['driver'] / 1e9:.2f}, JVM {run.peak['jvm'] / 1e9:.2f}, workers {run.peak['py_workers'] / 1e9:.2f}, "
                f"other {run.peak['other'] / 1e9:.2f})")
        else:
            log(f"    FAILED (exit {run.returncode}) after {run.wall:.1f} s; log {run.log}:")
            log("    | " + tail(Path(run.log), 25).replace("\n", "\n    | "))
        return run

    # -------------------------------------------------------------- parts
    def history(self, n: int) -> None:
        folder = make_panel(self.work, n)
        repeat = self.args.history_repeat or (2 if n <= 500 else 1)
        res = {}
        for engine in ("local", "spark"):
            out = folder / f"result-{engine}.json"
            out.unlink(missing_ok=True)
            run = self.step(n, "history", engine, [sys.executable, __file__, "--history-child", engine, "--data", str(folder),
                                                 "--repeat", str(repeat), "--json", str(out)], self.env(None, engine))
            if run.ok and out.exists():
                r = json.loads(out.read_text())
                res[engine] = r
                run.extra = {k: v for k, v in r.items() if k != "digests"}
                run.extra["meta"] = json.loads((folder / "done.json").read_text())
                log(f"    queries {', '.join(f'{t:.1f} s' for t in r['times'])}" + (f"; Spark start {r['spark_start']:.1f} s" if r["spark_start"] else ""))
            if engine == "spark" and "local" in res and "spark" in res:
                a, b = res["local"]["digests"], res["spark"]["digests"]
                differ = [c for c in a if a[c] != b.get(c)]
                run.extra["equal"] = not differ and res["local"]["rows"] == res["spark"]["rows"]
                run.extra["differ"] = differ[:10]
                log(f"    equal to the local engine: {'yes' if run.extra['equal'] else 'NO: ' + ', '.join(differ[:10])}")
            self.record(run)

    def homes(self, n: int) -> tuple[Path, Path, Redis]:
        base = U.base_universe(n, log=log)
        work = self.work / f"spark-run-{n}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        local, spark = work / "home-local", work / "home-spark"
        local.mkdir(parents=True)
        redis = Redis(work / "redis")
        log(f"  redis-server {redis.version} on port {redis.port}; homes under {work}")
        (local / "config.toml").write_text(f'redis_url = "redis://127.0.0.1:{redis.port}/0"\n' + spark_table())
        run = self.step(n, "ingest", "local", [self.alpha, "ingest", "csv", "--path", str(base)], self.env(local, "local"))
        m = re.search(r"silver: ([^(\n]*)", Path(run.log).read_text(errors="replace")) if run.ok else None
        run.extra["silver"] = m.group(1).strip() if m else None
        self.record(run)
        if not run.ok:
            raise StepFailed("ingest")
        shutil.copytree(local, spark, symlinks=True)
        return local, spark, redis

    def jvm_start(self, n: int, home: Path) -> float | None:
        out = self.work / "jvm.json"
        out.unlink(missing_ok=True)
        run = self.step(n, "jvm", "spark", [sys.executable, __file__, "--jvm-child", str(home), "--json", str(out)],
                        self.env(home, "spark"))
        if run.ok and out.exists():
            run.extra = json.loads(out.read_text())
        self.record(run)
        return run.extra.get("start") if run.ok else None

    def choose_families(self, n: int) -> list[str] | None:
        """None (every family), or SUBSET when the previous universe's full builds predict more than
        --build-budget seconds for either engine at this size."""
        if self.args.families:
            return None if self.args.families == "all" else self.args.families.split(",")
        prev = [r for r in self.runs if r.part == "build" and r.ok and r.n < n and self.families.get(r.n) is None]
        if not prev:
            return None
        m = max(r.n for r in prev)
        preds = {}
        for r in prev:
            if r.n == m:
                fixed = r.extra.get("jvm_start") or 0.0
                preds[r.engine] = fixed + (r.wall - fixed) * n / m
        worst = max(preds.values())
        if worst > self.args.build_budget:
            self.notes.append(f"{n:,} symbols: the full family set was predicted at "
                              + ", ".join(f"{e} {fmt_s(p)}" for e, p in preds.items())
                              + f" from the {m:,}-symbol builds (more than the budget of {fmt_s(self.args.build_budget)} per engine "
                              f"on this shared machine): only {', '.join(SUBSET)} built (the TA-Lib grid, `technical`, left out)")
            return list(SUBSET)
        return None

    def build(self, n: int, local: Path, spark: Path, jvm: float | None) -> bool:
        fams = self.choose_families(n)
        self.families[n] = fams
        flags = [a for f in (fams or []) for a in ("--family", f)]
        ok = True
        for engine, home in (("local", local), ("spark", spark)):
            run = self.step(n, "build", engine, [self.alpha, "features", "build", *flags], self.env(home, engine))
            run.extra["families"] = fams or "all"
            run.extra["gold_bytes"] = tree_bytes(home / "gold")
            run.extra["gold_values"] = count_values(home) if run.ok else None
            m = re.search(r"run \d+: ([\d,]+) rows written", Path(run.log).read_text(errors="replace")) if run.ok else None
            run.extra["rows"] = int(m.group(1).replace(",", "")) if m else None
            if engine == "spark":
                run.extra["jvm_start"] = jvm
            if engine == "spark" and ok and run.ok:
                t0 = time.perf_counter()
                a, b = gold_digest(local), gold_digest(spark)
                run.extra["equal"] = a == b
                run.extra["differ"] = [v for v in sorted(set(a) | set(b)) if a.get(v) != b.get(v)][:10]
                run.extra["views"] = len(a)
                run.extra["gold_rows"] = sum(v[0] for v in a.values())
                log(f"    gold equal to the local engine's: {'yes' if run.extra['equal'] else 'NO: ' + ', '.join(run.extra['differ'])} "
                    f"({len(a)} views, {run.extra['gold_rows']:,} rows, compared in {time.perf_counter() - t0:.0f} s)")
            self.record(run)
            ok = ok and run.ok
        return ok

    def materialize(self, n: int, local: Path, redis: Redis, jvm: float | None) -> None:
        """``alpha materialize`` (every view); after a build of SUBSET only, the same writer
        (``redis_writer.materialize(settings, views=..., engine=...)``, what the command runs) on
        the views that were built, in a child process (the command has no --view)."""
        views = None
        if self.families.get(n) is not None:
            views = sorted(p.name for p in (local / "gold").iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        for engine, db in (("local", 0), ("spark", 1)):
            env = self.env(local, engine, ALPHA_REDIS_URL=f"redis://127.0.0.1:{redis.port}/{db}")
            cpu0 = redis.cpu()
            out = self.work / "materialize.json"
            out.unlink(missing_ok=True)
            cmd = ([self.alpha, "materialize"] if views is None else
                   [sys.executable, __file__, "--materialize-child", engine, "--data", str(local), "--views", ",".join(views),
                    "--json", str(out)])
            run = self.step(n, "materialize", engine, cmd, env)
            text = Path(run.log).read_text(errors="replace") if run.ok else ""
            m = re.search(r"([\d,]+) entity rows written \(([\d,]+) values\)", text)
            if views is not None and run.ok and out.exists():
                r = json.loads(out.read_text())
                m = None
                run.extra["values"], run.extra["entities"] = r["values_written"], r["entities_written"]
                run.extra["views"] = views
            if m:
                run.extra["values"] = int(m.group(2).replace(",", ""))
                run.extra["entities"] = int(m.group(1).replace(",", ""))
            run.extra["redis_cpu"] = redis.cpu() - cpu0
            if engine == "spark":
                run.extra["jvm_start"] = jvm
                if run.ok:
                    a, b = redis_digest(redis.client, 0), redis_digest(redis.client, 1)
                    run.extra["equal"] = a == b and len(a) > 0
                    run.extra["keys"] = len(a)
                    log(f"    Redis db 1 equal to db 0: {'yes' if run.extra['equal'] else 'NO'} ({len(a):,} vs {len(b):,} keys)")
            self.record(run)

    def universe(self, n: int) -> None:
        parts = self.args.parts.split(",")
        if "history" in parts:
            self.history(n)
        if not {"build", "materialize"} & set(parts):
            return
        local, spark, redis = self.homes(n)
        try:
            jvm = self.jvm_start(n, spark)
            if self.build(n, local, spark, jvm) and "materialize" in parts:
                self.materialize(n, local, redis, jvm)
        finally:
            redis.stop()
            if self.args.keep:
                log(f"  kept {local.parent}")
            else:
                shutil.rmtree(local.parent, ignore_errors=True)


class StepFailed(Exception):
    pass


def spark_table() -> str:
    return (f'[spark]\nmaster = "{SPARK["master"]}"\ndriver_memory = "{SPARK["driver_memory"]}"\n'
            f'executor_memory = "{SPARK["executor_memory"]}"\nui = false\n')


def materialize_child(engine: str, home: str, views: list[str], out: str) -> None:
    """``redis_writer.materialize`` of ``views`` (what ``alpha materialize`` runs for every view)."""
    from etl.core.config import load_settings
    from etl.factors import registry
    from etl.serving import redis_writer

    settings = load_settings(home)
    registry.activate(settings)
    report = redis_writer.materialize(settings, views=views, engine=engine)
    print(report.summary(), flush=True)
    Path(out).write_text(json.dumps(report.as_dict(), default=str))


def jvm_child(home: str, out: str) -> None:
    """Open a session with the home's [spark] settings: the JVM start a command pays."""
    from etl.core import spark as engine
    from etl.core.config import load_settings

    settings = load_settings(home)
    t0 = time.perf_counter()
    s = engine.session(settings)
    wall = time.perf_counter() - t0
    s.range(10).count()   # a first job: the executors' side up
    Path(out).write_text(json.dumps({"start": engine.last_start_seconds or wall, "first_job": time.perf_counter() - t0 - wall,
                                     "spark": s.version}))


# ------------------------------------------------------------------ report

def gb(x) -> str:
    return "-" if not x else f"{x / 1e9:.2f} GB"


def mem(r: Run) -> str:
    return " | ".join(gb(r.peak.get(k)) for k in ("driver", "jvm", "py_workers", "other", "tree"))


def ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}x" if a and b else "-"


def markdown(b: Bench) -> list[str]:
    runs = [r for r in b.runs]
    end = b.load_end if b.sizes == [] and b.load_end else os.getloadavg()
    try:
        from importlib.metadata import version

        spark_version = version("pyspark")
    except ImportError:
        spark_version = "?"
    md = [
        "## Spark engine (`local[2]`) against the local engine: history, factor build, materialize",
        "",
        f"`benchmarks/spark.py --symbols {','.join(str(n) for n in sorted({*b.resumed, *b.sizes}))}`, "
        f"run {b.started:%Y-%m-%d %H:%M} UTC on this machine "
        f"({os.cpu_count()} cores, 24 GiB, Python {platform.python_version()}, pyspark {spark_version}, {java_version()}; "
        f"load average {b.load0[0]:.2f} / {b.load0[1]:.2f} / {b.load0[2]:.2f} at the start, {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f} "
        f"{'at the end' if b.status == 'done' else 'now'}), code at {git_rev()}."
        + ("" if b.status == "done" else f" **Status: {b.status}; the tables hold what was measured so far.**"),
        f"Spark: `master = \"{SPARK['master']}\"`, `driver_memory = \"{SPARK['driver_memory']}\"` (in local mode the driver and "
        "both executor threads are one JVM: its heap is the driver memory), UI off. Each row is one fresh process tree polled every "
        "50 ms (psutil): peak RSS of the **Python driver** (the process started), the **JVM**, the **Python workers** under the JVM "
        "(pyspark's daemon and its forks, where the executors run our Python), **other** (the local engine's forked workers), and of "
        "the whole **tree** (a peak of the sum, not the sum of the peaks).",
        "",
    ]
    hist = [r for r in runs if r.part == "history"]
    if hist:
        meta = next((r.extra.get("meta") for r in hist if r.extra.get("meta")), None) or {}
        md += [
            "### History: `FeatureStore.get_historical_features` over AlphaOfflineStore, every symbol x every session",
            "",
            f"A gold-like view per size: N symbols x {meta.get('sessions', 2516):,} XNYS sessions ({PANEL_START}..{PANEL_END}) x "
            f"{N_FEATURES} float32 features, part files of {PART_SYMBOLS} symbols written by the builder's `write_part`, 1 % of the "
            "values and 1 % of the rows missing, 0.5 % of the rows revised in a second run's part (known a day later), TTL "
            f"{TTL_DAYS} days, bitemporal; entity frame = every symbol x every session at its availability time. One query per "
            "process (two at 500 symbols and fewer: cold, then warm); local = the default engine, spark = "
            "`pit_options(engine=\"spark\")`. query = the call's wall time (`.to_df()` included), JVM start apart. equal = "
            "every output column identical to the local engine's in output order (NaN = NaN), and the rows in input order.",
            "",
            "| symbols | entity rows x features | engine | query (cold / warm) | JVM start | process wall | Python driver | JVM | "
            "Python workers | other | tree | result | equal | spark / local |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in hist:
            e = r.extra
            if not r.ok:
                md.append(f"| {r.n:,} | | {r.engine} | {_failure(r)} | | {fmt_s(r.wall)} | "
                          + mem(r) + " | | | |")
                continue
            local = next((x for x in hist if x.n == r.n and x.engine == "local" and x.ok), None)
            q = " / ".join(f"{t:.1f} s" for t in e["times"])
            eq = "" if r.engine == "local" else ("yes" if e.get("equal") else f"NO ({', '.join(e.get('differ', []))})")
            rel = ratio(local.extra["times"][-1], e["times"][-1]) if local and r.engine == "spark" else ""
            start = "-" if e.get("spark_start") is None else f"{e['spark_start']:.1f} s"
            md.append(f"| {r.n:,} | {e['rows']:,} x {e['meta']['features']} | {r.engine} | {q} | "
                      f"{start} | {fmt_s(r.wall)} | {mem(r)} | "
                      f"{gb(e['result_bytes'])} {'/'.join(e['dtypes'])} | {eq} | {rel} |")
        md.append("")
    builds = [r for r in runs if r.part in ("ingest", "jvm", "build", "materialize")]
    if builds:
        md += [
            "### Factor build and materialize through the CLI",
            "",
            "`alpha ingest csv --path DIR` on the universe of `benchmarks/universe.py` (N symbols x 2,516 XNYS sessions "
            f"{U.START}..{U.END}, GBM, no splits), the home copied (the same silver), then `alpha features build` in one home and "
            "`ALPHA_ENGINE=spark alpha features build` in the other; then `alpha materialize` from the local engine's home into "
            "Redis db 0 and `ALPHA_ENGINE=spark alpha materialize` from the same home into db 1 (our own redis-server, no "
            "persistence). JVM start = a separate process opening a session with the home's `[spark]` table (what each Spark "
            "command pays before its first job); excl. JVM = wall minus it. equal: every gold row of every view (order-free digest, "
            "`created_timestamp` aside), every Redis hash (the completion marker aside).",
            "",
            "| symbols | step | engine | wall | excl. JVM start | CPU | Python driver | JVM | Python workers | other | tree | output | "
            "equal | spark / local (excl. JVM) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in builds:
            e = r.extra
            if not r.ok:
                md.append(f"| {r.n:,} | {r.part} | {r.engine} | {_failure(r)} "
                          "| | | | | | | | | | |")
                continue
            jvm = e.get("jvm_start") if r.engine == "spark" else None
            excl = r.wall - jvm if jvm else None
            output, eq, rel = "", "", ""
            if r.part == "ingest":
                output = f"silver: {e.get('silver') or '?'}"
            elif r.part == "jvm":
                output = f"session {e.get('start', 0):.1f} s, first job {e.get('first_job', 0):.1f} s"
            elif r.part == "build":
                fam = e.get("families")
                output = (f"{e['rows']:,} rows, " if e.get("rows") else "") + f"gold {gb(e.get('gold_bytes'))}; families: " + (
                    "all" if fam == "all" else ", ".join(fam))
            elif r.part == "materialize":
                output = (f"{e['entities']:,} entity rows, {e['values']:,} values; " if e.get("values") else "") + f"redis CPU {e.get('redis_cpu', 0):.1f} s"
            if r.engine == "spark" and r.part in ("build", "materialize"):
                eq = "yes" if e.get("equal") else ("NO" + (f" ({', '.join(e.get('differ', []))})" if e.get("differ") else "") if "equal" in e else "-")
                local = before(b.runs, r, r.part, "local")
                rel = f"{ratio(local.wall, r.wall)} ({ratio(local.wall, excl)})" if local else ""
            md.append(f"| {r.n:,} | {r.part} | {r.engine} | {fmt_s(r.wall)} | {fmt_s(excl) if excl else ''} | {fmt_s(r.cpu)} | {mem(r)} | "
                      f"{output} | {eq} | {rel} |")
        md.append("")
    rates = per_core_rates(b)
    if rates:
        md += ["### Per-core rates (what docs/scale-out.md's cost model uses)", "",
               "Per core-second of wall = work / ((wall - JVM start) x 2 cores): pessimistic, because this machine was shared "
               "(the load averages above) and its two vCPUs give about 1.8x one (benchmarks/factors.py). Per CPU-second = work / "
               "the tree's CPU time (for a Spark command, less the JVM probe's CPU): what the work costs where a core is not "
               "shared. The history's CPU covers the process (imports, JVM start, both queries) and is not split.", "",
               "| symbols | part | engine | work | per core-second of wall | per CPU-second |", "|---|---|---|---|---|---|"]
        md += rates
        md.append("")
    md += targets(b)
    if b.notes:
        md += ["Notes:", ""] + [f"- {x}" for x in b.notes] + [""]
    md += [
        "What one 2-core machine can show: `local[2]` is one JVM with two task threads on the same two cores as the local "
        "engine's two processes, so Spark cannot be faster here; it pays the JVM (start and heap), moving rows between the JVM "
        "and Python (Arrow), and scheduling. The figures say what that overhead costs per core and whether memory stays bounded "
        "with a 2 GB driver; the speed-up comes from a cluster's cores, which this machine does not have.",
        "",
    ]
    return md


#: issue 18's target: the factor build on local[2] within this factor of the local engine, JVM start excluded
BUILD_VS_LOCAL = 2.0


def targets(b: Bench) -> list[str]:
    """Issue 18's targets, from the runs (nothing asserted: a benchmark reports)."""
    rows = []
    for r in b.runs:
        if r.engine != "spark" or r.part not in ("history", "build", "materialize"):
            continue
        fam = r.extra.get("families")
        if r.part == "history":
            what = "history: every column, rows in input order"
        elif r.part == "build":
            what = f"factor build ({'every family' if fam == 'all' else ', '.join(fam or [])}): every gold row of every view"
        else:
            views = r.extra.get("views")
            what = f"materialize ({len(views)} views built)" if isinstance(views, list) else "materialize (every view)"
        if not r.ok:
            rows.append(f"| identical answers, {r.n:,} symbols | {what} | {_failure(r)} | no |")
        elif "equal" in r.extra:
            rows.append(f"| identical answers, {r.n:,} symbols | {what}{': every Redis hash' if r.part == 'materialize' else ''} | "
                        f"{'equal' if r.extra['equal'] else 'NOT equal'} | {'yes' if r.extra['equal'] else 'no'} |")
        if r.part == "history" and r.ok and r.n >= 2000:
            rows.append(f"| history, {r.n:,} symbols x {r.extra['meta']['sessions']:,} sessions x {r.extra['meta']['features']} features, "
                        f"`local[2]`, 2 GB driver | ran; JVM RSS peak | {r.extra['times'][-1]:.0f} s; {gb(r.peak.get('jvm'))} | yes |")
        if r.part == "build" and r.ok:
            local = before(b.runs, r, "build", "local")
            jvm = r.extra.get("jvm_start") or 0.0
            if local:
                x = (r.wall - jvm) / local.wall
                rows.append(f"| factor build within {BUILD_VS_LOCAL:g}x the local engine, JVM start excluded, {r.n:,} symbols "
                            f"({'every family' if fam == 'all' else ', '.join(fam or [])}) | ({fmt_s(r.wall)} - {jvm:.0f} s) / "
                            f"{fmt_s(local.wall)} | {x:.2f}x | {'yes' if x <= BUILD_VS_LOCAL else 'no'} |")
    if not rows:
        return []
    return ["### Targets of issue 18", "", "| target | measured | value | met |", "|---|---|---|---|", *rows, ""]


def per_core_rates(b: Bench) -> list[str]:
    """Rows of the rates table: work per core-second of wall (wall x 2 cores, the JVM start taken
    out) and per CPU-second (the tree's CPU time, less the JVM probe's CPU for a Spark command)."""
    out = []
    for r in b.runs:
        if not r.ok:
            continue
        jvm = (r.extra.get("jvm_start") or 0.0) if r.engine == "spark" else 0.0
        probe = before(b.runs, r, "jvm")
        cpu = r.cpu - (probe.cpu if probe and r.engine == "spark" else 0.0)
        wall = r.wall - jvm
        if r.part == "history":
            t = r.extra["times"][-1]
            work = r.extra["rows"] * r.extra["meta"]["features"]
            out.append(f"| {r.n:,} | history (last query) | {r.engine} | {work / 1e6:,.0f} M values ({r.extra['rows']:,} entity rows x "
                       f"{r.extra['meta']['features']}) | {work / t / 2 / 1e6:,.2f} M values | - |")
        elif r.part == "build" and r.extra.get("rows"):
            fams = "all families" if r.extra.get("families") == "all" else ", ".join(r.extra["families"])
            values = gold_values(r)
            what = f"{r.n * 10:,} symbol-years ({fams}), {gb(r.extra.get('gold_bytes'))} gold" + (f", {values / 1e9:,.2f} G values" if values else "")
            out.append(f"| {r.n:,} | build | {r.engine} | {what} | {_build_rate(r, values, wall * 2)} | {_build_rate(r, values, cpu)} |")
        elif r.part == "materialize" and r.extra.get("values"):
            built = before(b.runs, r, "build", "local")
            scanned = built.extra.get("gold_bytes") if built else None
            what = f"{r.extra['values']:,} values written" + (f", {gb(scanned)} of gold scanned" if scanned else "")
            out.append(f"| {r.n:,} | materialize | {r.engine} | {what} | {_mat_rate(r, scanned, wall * 2)} | {_mat_rate(r, scanned, cpu)} |")
    return out


def before(runs: list[Run], r: Run, part: str, engine: str | None = None) -> Run | None:
    """The last successful run of ``part`` (and ``engine``) of r's universe before ``r``, in the
    order they ran: the local row a Spark row is compared with, the JVM probe before it."""
    i = next(k for k, x in enumerate(runs) if x is r)
    return next((x for x in reversed(runs[:i]) if x.n == r.n and x.part == part and x.ok and engine in (None, x.engine)), None)


def _build_rate(r: Run, values: int | None, seconds: float) -> str:
    return (f"{r.n * 10 / seconds:,.2f} symbol-years, {r.extra.get('gold_bytes', 0) / seconds / 1e6:,.1f} MB gold"
            + (f", {values / seconds / 1e6:,.2f} M values" if values else ""))


def _mat_rate(r: Run, scanned: int | None, seconds: float) -> str:
    return f"{r.extra['values'] / seconds / 1e3:,.1f} k values written" + (f", {scanned / seconds / 1e6:,.1f} MB gold scanned" if scanned else "")


def gold_values(r: Run) -> int | None:
    """Feature values in the gold a build wrote (rows x columns per view, keys aside), when known."""
    return r.extra.get("gold_values")


def _failure(r: Run) -> str:
    if r.extra.get("killed"):
        return r.extra["killed"]
    return f"FAILED (exit {r.returncode}) after {fmt_s(r.wall)}: {_last_error(r)}"


def _last_error(r: Run) -> str:
    try:
        lines = [ln for ln in tail(Path(r.log), 40).splitlines() if ln.strip()]
    except OSError:
        return "?"
    err = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (err[-1] if err else (lines[-1] if lines else "?")).strip().replace("|", "/")[:160]


def java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
        return out[0].replace('"', "") if out else "Java ?"
    except OSError:
        return "no Java"


# ------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", default="500,2000", help="universe sizes, comma-separated (default 500,2000)")
    ap.add_argument("--parts", default="history,build,materialize", help="which parts (default all three)")
    ap.add_argument("--families", help="'all', or comma-separated families to build (default: all, or SUBSET past --build-budget)")
    ap.add_argument("--build-budget", type=float, default=480.0, help="seconds per engine the factor build may take (predicted)")
    ap.add_argument("--history-repeat", type=int, help="queries per history process (default 2 up to 500 symbols, else 1)")
    ap.add_argument("--out", help="the Markdown file whose 'spark' section is replaced (default BENCHMARKS.md)")
    ap.add_argument("--work", default=str(U.CACHE), help="work folder (generated universes and panels are cached here)")
    ap.add_argument("--keep", action="store_true", help="keep the homes")
    ap.add_argument("--step-timeout", type=float, default=1500.0, help="seconds after which one step's process tree is killed")
    ap.add_argument("--deadline", help="HH:MM (UTC): no step starts later, and none runs past it")
    ap.add_argument("--history-child", help=argparse.SUPPRESS)
    ap.add_argument("--jvm-child", help=argparse.SUPPRESS)
    ap.add_argument("--materialize-child", help=argparse.SUPPRESS)
    ap.add_argument("--views", help=argparse.SUPPRESS)
    ap.add_argument("--render", help="only rewrite the section from a results JSON (no run)")
    ap.add_argument("--resume", help="a results JSON of an earlier run (<work>/spark-results-<pid>.json): its runs are "
                                     "kept in the report (run the sizes it did not finish)")
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.history_child:
        history_child(args.history_child, Path(args.data), args.repeat, Path(args.json))
        return
    if args.jvm_child:
        jvm_child(args.jvm_child, args.json)
        return
    if args.materialize_child:
        materialize_child(args.materialize_child, args.data, args.views.split(","), args.json)
        return
    from etl.core.spark import available

    reason = available()
    if reason:
        raise SystemExit(f"the Spark engine cannot run here: {reason}")
    sizes = [int(s) for s in args.symbols.split(",") if s.strip()]
    bench = Bench(args)
    bench.sizes = sizes
    if args.render:
        bench.resume(Path(args.render))
        bench.sizes, bench.status = [], json.loads(Path(args.render).read_text()).get("status", "done")
        bench.write()
        log(f"section 'spark' written to {bench.out}")
        return
    if args.resume:
        bench.resume(Path(args.resume))
    t0 = time.perf_counter()
    try:
        for n in sizes:
            log(f"== {n:,} symbols")
            try:
                bench.universe(n)
            except StepFailed as exc:
                bench.notes.append(f"{n:,} symbols: {exc} failed; the later steps of this size were not run")
        bench.status = "done"
    except KeyboardInterrupt:
        bench.status = "interrupted"
        raise
    finally:
        bench.write()
        log(f"== {bench.status} in {fmt_s(time.perf_counter() - t0)}; section 'spark' written to {bench.out}")
    failed = [f"{r.n} {r.part} {r.engine}" for r in bench.runs if not r.ok]
    unequal = [f"{r.n} {r.part}" for r in bench.runs if r.engine == "spark" and "equal" in r.extra and not r.extra["equal"]]
    if failed or unequal:
        raise SystemExit(f"failed: {failed}; not equal: {unequal} (logs under {bench.logs})")


if __name__ == "__main__":
    main()
