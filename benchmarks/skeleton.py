"""Walking-skeleton benchmark: what each stage of the data path costs on the
shared Lean bars, and alpha.history against bare as-of joins on the same gold
Parquet (the floor any point-in-time engine is measured against).

    .venv/bin/python benchmarks/skeleton.py [--repeat 5] [--out BENCHMARKS.md]

Everything runs in one process on this machine; results are checked equal
before any time is reported. Writes the figures to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LEAN = REPO.parent / "shared" / "data" / "quantconnect-lean"
FEATURES = ["bars_daily:close", "technicals:rsi_14", "technicals:sma_20", "technicals:ret_1d", "technicals:atr_14"]
TTL = pd.Timedelta(days=10)


def timed(fn, repeat=1):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), times


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def merge_asof_baseline(settings, entity: pd.DataFrame) -> pd.DataFrame:
    """pandas merge_asof per view on the gold Parquet, TTL applied: the plain-pandas floor."""
    from etl.gold.layout import gold_path

    out = entity.sort_values("event_timestamp").reset_index()
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[us, UTC]")
    for view, cols in (("bars_daily", ["close"]), ("technicals", ["rsi_14", "sma_20", "ret_1d", "atr_14"])):
        g = pd.read_parquet(gold_path(settings, view), columns=["symbol", "event_timestamp", "created_timestamp", *cols])
        g = g.sort_values(["event_timestamp", "created_timestamp"]).drop_duplicates(["symbol", "event_timestamp"], keep="last")
        g = g.rename(columns={"event_timestamp": "value_ts"}).sort_values("value_ts")
        out = pd.merge_asof(out, g.drop(columns="created_timestamp"), left_on="event_timestamp", right_on="value_ts", by="symbol", direction="backward")
        stale = out["value_ts"] < out["event_timestamp"] - TTL
        out.loc[stale, cols] = np.nan
        out = out.drop(columns="value_ts")
    return out.sort_values("index").set_index("index")


def duckdb_asof_baseline(settings, entity: pd.DataFrame) -> pd.DataFrame:
    """A bare DuckDB ASOF JOIN over the same Parquet files, TTL applied."""
    import duckdb

    from etl.gold.layout import gold_path

    con = duckdb.connect()
    e = entity.reset_index(names="row_id")
    con.register("e", e)
    q = f"""
    WITH b AS (SELECT e.row_id, e.symbol, e.event_timestamp, g.close, g.event_timestamp AS bts
               FROM e ASOF LEFT JOIN read_parquet('{gold_path(settings, "bars_daily")}') g
               ON e.symbol = g.symbol AND e.event_timestamp >= g.event_timestamp),
         t AS (SELECT e.row_id, g.rsi_14, g.sma_20, g.ret_1d, g.atr_14, g.event_timestamp AS tts
               FROM e ASOF LEFT JOIN read_parquet('{gold_path(settings, "technicals")}') g
               ON e.symbol = g.symbol AND e.event_timestamp >= g.event_timestamp)
    SELECT b.row_id, b.symbol, b.event_timestamp,
           CASE WHEN b.bts >= b.event_timestamp - INTERVAL 10 DAY THEN b.close END AS close,
           CASE WHEN t.tts >= b.event_timestamp - INTERVAL 10 DAY THEN t.rsi_14 END AS rsi_14,
           CASE WHEN t.tts >= b.event_timestamp - INTERVAL 10 DAY THEN t.sma_20 END AS sma_20,
           CASE WHEN t.tts >= b.event_timestamp - INTERVAL 10 DAY THEN t.ret_1d END AS ret_1d,
           CASE WHEN t.tts >= b.event_timestamp - INTERVAL 10 DAY THEN t.atr_14 END AS atr_14
    FROM b JOIN t USING (row_id) ORDER BY b.row_id
    """
    return con.execute(q).df().set_index("row_id")


def same(a: pd.DataFrame, b: pd.DataFrame, cols) -> bool:
    for c in cols:
        x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
        if not np.array_equal(np.isnan(x), np.isnan(y)) or not np.allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=0, atol=0):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args()

    for var in ("ALPHA_REDIS_URL", "ALPHA_HOME", "PREFECT_API_URL"):
        os.environ.pop(var, None)
    from etl.core.config import load_settings
    from etl.factors import registry
    from etl.jobs import compute_factors
    from etl.serving import feast_store
    from etl.sources.archive import ingest_lean
    from sdk import connect

    work = Path(tempfile.mkdtemp(prefix="alpha-bench-"))
    rows = []
    try:
        settings = load_settings(work / "sqlite")
        rep, t_ingest, _ = timed(lambda: ingest_lean(settings, LEAN))
        rows.append(("ingest Lean (21 symbols, bronze + silver)", f"{t_ingest:.2f} s", f"{rep.rows_read:,} bars"))
        _, t_reingest, _ = timed(lambda: ingest_lean(settings, LEAN))
        rows.append(("re-ingest, nothing new (idempotent)", f"{t_reingest:.2f} s", ""))
        gold, t_gold, _ = timed(lambda: compute_factors(settings))
        rows.append(("every family into gold: the generic builder, 2 worker processes (bars, core technicals, TA-Lib grid, regime; "
                     "no options/news/fundamentals/macro inputs here) and _lag1 twins",
                     f"{t_gold:.2f} s", f"{gold['rows']:,} rows, {len(gold['views'])} views, {gold['features']:,} features"))
        _, t_apply, _ = timed(lambda: feast_store.apply(settings))
        rows.append(("feast apply (first, includes `import feast`)", f"{t_apply:.2f} s", ""))
        _, t_mat, _ = timed(lambda: feast_store.materialize(settings))
        rows.append(("materialize -> SQLite (Feast)", f"{t_mat:.2f} s", f"{len(registry.views())} views"))

        client = connect(settings.home)
        symbols = client.symbols()
        entity = client.entity_frame(symbols, "2005-01-01", "2021-03-31")
        hist, t_hist, _ = timed(lambda: client.history(entity, FEATURES), args.repeat)
        base_pd, t_pd, _ = timed(lambda: merge_asof_baseline(settings, entity), args.repeat)
        base_dd, t_dd, _ = timed(lambda: duckdb_asof_baseline(settings, entity), args.repeat)
        cols = ["close", "rsi_14", "sma_20", "ret_1d", "atr_14"]
        ok_pd, ok_dd = same(hist, base_pd, cols), same(hist, base_dd, cols)
        n = len(entity)
        history_rows = [
            ("alpha.history (AlphaOfflineStore via Feast)", f"{t_hist:.3f} s", f"{n / t_hist:,.0f} rows/s", "reference"),
            ("pandas merge_asof on the gold Parquet", f"{t_pd:.3f} s", f"{n / t_pd:,.0f} rows/s", "equal" if ok_pd else "DIFFERENT"),
            ("DuckDB ASOF JOIN on the gold Parquet", f"{t_dd:.3f} s", f"{n / t_dd:,.0f} rows/s", "equal" if ok_dd else "DIFFERENT"),
        ]

        latest_rows = []
        _, t_lat, _ = timed(lambda: client.latest(symbols, FEATURES, now="warehouse"), 1)
        _, t_lat, _ = timed(lambda: client.latest(symbols, FEATURES, now="warehouse"), 50)
        latest_rows.append(("SQLite", f"{t_lat * 1000:.1f} ms"))

        redis_bin = shutil.which("redis-server")
        proc = None
        if redis_bin:
            port = free_port()
            proc = subprocess.Popen([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            rhome = work / "redis"
            shutil.copytree(settings.home / "gold", rhome / "gold")
            (rhome / "config.toml").write_text(f'redis_url = "redis://127.0.0.1:{port}/0"\n')
            rsettings = load_settings(rhome)
            feast_store.apply(rsettings)
            _, t_rmat, _ = timed(lambda: feast_store.materialize(rsettings))
            rows.append(("materialize -> Redis (sdk.online, changed entities only: all, first run)", f"{t_rmat:.2f} s", f"{len(registry.views())} views"))
            rclient = connect(rhome)
            timed(lambda: rclient.latest(symbols, FEATURES, now="warehouse"), 1)
            _, t_rlat, _ = timed(lambda: rclient.latest(symbols, FEATURES, now="warehouse"), 50)
            latest_rows.append(("Redis", f"{t_rlat * 1000:.1f} ms"))
            proc.terminate()
        else:
            latest_rows.append(("Redis", "not measured: no redis-server binary"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    md = [
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}.",
        f"Written by `benchmarks/skeleton.py` on {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC; every figure is from one run of that script.",
        "",
        "## Walking skeleton: the data path on the shared Lean bars",
        "",
        "| stage | time | size |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"## alpha.history vs bare as-of joins ({len(symbols)} symbols x sessions 2005-01-03..2021-03-31 = {n:,} entity rows, {len(FEATURES)} features, TTL 10 days)",
        "",
        f"Median of {args.repeat} calls in one warm process. Results are checked equal (NaN where no value is within the TTL) before timing is reported.",
        "",
        "| engine | median time | throughput | result |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in history_rows],
        "",
        "alpha.history includes the SDK's checks (symbols, features, time zones) and Feast's FeatureStore call; `benchmarks/pit_join.py` compares the store alone at larger sizes.",
        "",
        f"## alpha.latest ({len(symbols)} symbols x {len(FEATURES)} features, median of 50 calls)",
        "",
        "| online store | median latency |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in latest_rows],
        "",
    ]
    from benchmarks.report import replace_section

    replace_section(Path(args.out), "skeleton", md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
