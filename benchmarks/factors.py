"""Factor benchmark: the TA-Lib grid (etl/factors/technical.py) against a bare
loop of the same TA-Lib calls on numpy arrays -- the speed limit.

    .venv/bin/python benchmarks/factors.py [--quick] [--out BENCHMARKS.md]

Generated bars (geometric Brownian motion with occasional splits, seeded per
symbol, so every run sees the same data) on the last XNYS sessions:

- nightly FULL compute: 500 symbols x 2,520 sessions through
  ``compute_technical_many`` (2 forked processes), building the output frames
  and writing every feature view as Parquet, chunk by chunk, to a temp folder;
- one-day INCREMENTAL compute: 3,000 symbols, each loading only ``MAX_WARMUP``
  sessions of history and computing the last session, then writing the day's
  rows per view;
- BARE loops: the same TA-Lib calls on the same windows (per split regime, per
  factor warm-up), one process, results copied into a preallocated array.

Each run is a fresh subprocess; peak memory = the largest sum of RSS over the
run's process tree (parent + workers), polled every 50 ms. Before any figure
is reported, the Parquet written by the full run is read back and checked
equal to the bare loop's values for a few symbols.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

END = "2025-12-31"


# ------------------------------------------------------------------ data

def sessions(n: int) -> tuple[pd.DatetimeIndex, pd.Series]:
    from etl.core import clock

    days = clock.sessions_in_range("1990-01-01", END)[-n:]
    return days, pd.Series(clock.availability_times(days, 15)).array


def generate(i: int, days: pd.DatetimeIndex) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """Raw OHLCV of symbol i (GBM, seeded by i) and its Lean-style factor rows.

    About one symbol in three has a split (2:1, 3:1, 3:2 or a 1:10 reverse split)
    at a random session; raw prices jump at the ex-date, volumes inversely.
    """
    rng = np.random.default_rng(1_000_003 + i)
    n = len(days)
    from benchmarks.universe import gbm

    open_, high, low, close, volume = gbm(rng, n)
    rows = None
    if rng.random() < 0.35:
        ex = int(rng.integers(n // 10, n - 1))
        ratio = float(rng.choice([2.0, 3.0, 1.5, 0.1]))
        for a in (open_, high, low, close):
            a[ex:] /= ratio
        volume[ex:] = np.round(volume[ex:] * ratio)
        rows = pd.DataFrame(
            {"factor_date": [days[ex - 1]], "ex_date": [days[ex]], "split_factor": [1.0 / ratio], "price_factor": [1.0]}
        )
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, rows


def frames(n_symbols: int, days: pd.DatetimeIndex, events, window: int | None = None):
    """(bars, factor_rows) per symbol, built lazily; ``window``: only the last sessions."""
    cut = slice(-window, None) if window else slice(None)
    for i in range(n_symbols):
        raw, rows = generate(i, days)
        bars = pd.DataFrame({"symbol": f"S{i:04d}", "session": days[cut], **{k: v[cut] for k, v in raw.items()}})
        bars["event_timestamp"] = events[cut]
        bars["known_timestamp"] = events[cut]
        yield bars, rows


# ------------------------------------------------------------------ the two ways

class ParquetSink:
    """Write a chunk's rows as one Parquet file per feature view (runs in the worker).

    Columns go to Arrow without a pandas round trip; dictionary encoding only
    for the candlestick view (values -100/0/100) and min/max statistics only
    for the key columns (what row-group pruning uses): continuous float
    features gain nothing from either, and they cost most of the write time.
    LZ4 compression.
    """

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, frame: pd.DataFrame) -> tuple[int, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from etl.factors.technical import FACTORS

        by_view: dict[str, list[str]] = {}
        for f in FACTORS:
            by_view.setdefault(f.view, []).extend(f.output_names)
        keys = {c: pa.array(frame[c]) for c in ("symbol", "event_timestamp", "known_timestamp")}
        first = frame["symbol"].iloc[0]
        for view, cols in by_view.items():
            table = pa.table({**keys, **{c: pa.array(frame[c].to_numpy()) for c in cols}})
            path = Path(self.folder) / view
            path.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path / f"{first}.parquet", compression="lz4", use_dictionary=view == "ta_pattern", write_statistics=list(keys))
        return len(frame), len(frame) * sum(len(c) for c in by_view.values())


def bare_loop(n_symbols: int, days, window: int | None, last_only: bool, first: int = 0) -> tuple[int, int]:
    """The same TA-Lib calls as compute_technical, on the same windows, into a
    preallocated array: no frames, no processes, no writes."""
    import talib

    from etl.factors import technical as T
    from etl.factors.core import cumulative_factors

    calls = T.calls_for()
    # TA-Lib's compiled functions (talib.RSI.__wrapped__: no pandas/polars dispatch), as compute_technical calls them
    fns = {name: getattr(getattr(talib, name), "__wrapped__", getattr(talib, name)) for name in {c.func for c in calls} | {"MOM", "ROC"}}
    plan = [(fns[c.func], c.inputs, dict(c.kwargs), fns[c.post] if c.post else None, c.post_period, c.lookback, c.warmup, len(c.outputs))
            for c in calls]
    n_out = sum(p[-1] for p in plan)
    max_warm = max(c.warmup for c in calls)
    n = window or len(days)
    out = np.empty((n_out, 1 if last_only else n), dtype=np.float32)
    values = 0
    cut = slice(-window, None) if window else slice(None)
    for i in range(first, first + n_symbols):
        raw, rows = generate(i, days)
        raw = {k: v[cut] for k, v in raw.items()}
        split, _ = cumulative_factors(days[cut], rows)
        start = n - 1 if last_only else 0
        for a, b in T.split_regimes(split):
            a = max(a, start)
            if a >= b:
                continue
            base = max(0, a - max_warm)
            arrays = T.scaled_window(raw, split, base, b, float(split[b - 1]))
            j = 0
            for fn, inputs, kw, post, post_period, lookback, warmup, _k in plan:
                lo = max(0, a - warmup) - base
                res = fn(*[arrays[c][lo:] for c in inputs], **kw)
                res = res if isinstance(res, tuple) else (res,)
                if post is not None:
                    res = (post(res[0], timeperiod=post_period),)
                skip = a - base - lo
                for r in res:
                    if r.dtype.kind in "iu":
                        r = r.astype(np.float64)
                        r[:lookback] = np.nan
                    out[j, a - start:b - start] = r[skip:]
                    j += 1
        values += out.shape[1] * n_out
    return n_symbols * out.shape[1], values


def run_case(case: str, n_symbols: int, n_sessions: int, folder: str, chunk: int) -> dict:
    import resource

    from etl.factors import technical as T

    def cpu() -> float:  # this process + its waited-for workers
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))

    days, events = sessions(n_sessions)
    c0, t0 = cpu(), time.perf_counter()
    if case == "full":
        rows = values = 0
        for r, v in T.compute_technical_many(frames(n_symbols, days, events), n_jobs=2, chunk_size=chunk, sink=ParquetSink(folder)):
            rows, values = rows + r, values + v
    elif case == "incremental":
        window = T.MAX_WARMUP + 1
        parts = list(T.compute_technical_many(frames(n_symbols, days, events, window), n_jobs=2, chunk_size=chunk, start_session=days[-1]))
        day = pd.concat(parts, ignore_index=True)
        ParquetSink(folder)(day)
        rows, values = len(day), len(day) * len(T.OUTPUT_NAMES)
    elif case == "bare-full":
        rows, values = bare_loop(n_symbols, days, None, last_only=False)
    elif case == "bare-full-2":  # the machine's own limit with both cores: half the symbols each
        import multiprocessing as mp

        half = n_symbols // 2
        with mp.get_context("fork").Pool(2) as pool:
            parts = pool.starmap(bare_loop, [(half, days, None, False, 0), (n_symbols - half, days, None, False, half)])
        rows, values = sum(p[0] for p in parts), sum(p[1] for p in parts)
    elif case == "bare-incremental":
        rows, values = bare_loop(n_symbols, days, T.MAX_WARMUP + 1, last_only=True)
    else:
        raise SystemExit(f"unknown case {case}")
    return {"case": case, "seconds": time.perf_counter() - t0, "cpu": cpu() - c0, "rows": rows, "values": values}


# ------------------------------------------------------------------ measuring

def measured(case: str, n_symbols: int, n_sessions: int, folder: str, chunk: int) -> dict:
    """Run one case in a fresh interpreter; poll the RSS of its process tree."""
    import psutil

    out = Path(folder) / f"{case}.json"
    cmd = [sys.executable, __file__, "--case", case, "--symbols", str(n_symbols), "--sessions", str(n_sessions),
           "--folder", folder, "--chunk", str(chunk), "--json", str(out)]
    proc = subprocess.Popen(cmd)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"{case} failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    result["peak_gb"] = peak / 1e9
    return result


def check_equal(folder: str, n_sessions: int, symbols: list[int], chunk: int) -> bool:
    """The Parquet written by the full run == the bare loop's values (float32)."""
    import talib

    from etl.factors import technical as T
    from etl.factors.core import cumulative_factors

    days, _ = sessions(n_sessions)
    for i in symbols:
        raw, rows = generate(i, days)
        split, _ = cumulative_factors(days, rows)
        got = {}
        for view in sorted({f.view for f in T.FACTORS}):
            t = pd.read_parquet(Path(folder) / view / f"S{i // chunk * chunk:04d}.parquet")  # the file of i's chunk
            t = t[t["symbol"] == f"S{i:04d}"]
            got.update({c: t[c].to_numpy() for c in t.columns if c.startswith("ta_")})
        for a, b in T.split_regimes(split):
            arrays = T.scaled_window(raw, split, 0, b, float(split[b - 1]))
            for call in T.calls_for():
                res = getattr(talib, call.func)(*(arrays[c] for c in call.inputs), **dict(call.kwargs))
                res = res if isinstance(res, tuple) else (res,)
                if call.post:
                    res = (getattr(talib, call.post)(res[0], timeperiod=call.post_period),)
                for name, r in zip(call.outputs, res, strict=True):
                    integer = r.dtype.kind in "iu"
                    r = r.astype(np.float64)
                    if integer:
                        r[: call.lookback] = np.nan
                    r[np.isinf(r)] = np.nan
                    mine, ref = got[name][a:b].astype(np.float64), r[a:b]
                    # whole history here, the warm-up window there: equal within 1e-6 of the scale
                    scale = np.nanmax(np.abs(ref), initial=0.0)
                    ok = (np.isnan(mine) == np.isnan(ref)) & ((np.abs(mine - ref) <= 1e-6 * np.maximum(np.abs(ref), scale)) | np.isnan(ref))
                    if not ok.all():
                        print(f"DIFFERENT: symbol {i} {name}", file=sys.stderr)
                        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="40 symbols full, 300 incremental")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--case")
    ap.add_argument("--symbols", type=int)
    ap.add_argument("--sessions", type=int, default=2520)
    ap.add_argument("--folder")
    ap.add_argument("--chunk", type=int, default=8, help="symbols per chunk of the full run")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.case:  # a child run
        Path(args.json).write_text(json.dumps(run_case(args.case, args.symbols, args.sessions, args.folder, args.chunk)))
        return

    from etl.factors import technical as T

    n_full, n_inc = (40, 300) if args.quick else (500, 3000)
    work = Path(tempfile.mkdtemp(prefix="alpha-factors-bench-"))
    try:
        results = {}
        for case, n, chunk in (("full", n_full, args.chunk), ("bare-full", n_full, args.chunk), ("bare-full-2", n_full, args.chunk),
                               ("incremental", n_inc, 50), ("bare-incremental", n_inc, 50)):
            folder = work / case
            folder.mkdir()
            results[case] = measured(case, n, args.sessions, str(folder), chunk)
            r = results[case]
            print(f"{case}: {r['seconds']:.1f} s, cpu {r['cpu']:.1f} s, {r['values'] / r['seconds']:,.0f} values/s, peak {r['peak_gb']:.2f} GB", flush=True)
        equal = check_equal(str(work / "full"), args.sessions, [0, 1, 2, 3, 5, 8], args.chunk)
        written = sum(p.stat().st_size for p in (work / "full").rglob("*.parquet")) / 1e9
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(label, case, ref):
        r = results[case]
        ratio = r["seconds"] / results[ref]["seconds"]
        cpu_ratio = r["cpu"] / results[ref]["cpu"]
        return (f"| {label} | {r['rows']:,} | {r['values']:,} | {r['seconds']:.1f} s | {r['cpu']:.1f} s | "
                f"{r['values'] / r['seconds'] / 1e6:.2f} M/s | {r['peak_gb']:.2f} GB | {ratio:.2f}x | {cpu_ratio:.2f}x |")

    n_features = len(T.OUTPUT_NAMES)
    n_split = sum(generate(i, sessions(args.sessions)[0])[1] is not None for i in range(n_full))
    md = [
        "## Factor library: the TA-Lib grid, full and incremental",
        "",
        f"`benchmarks/factors.py{' --quick' if args.quick else ''}`, run {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC on this machine "
        f"({os.cpu_count()} cores, Python {platform.python_version()}). {n_features:,} features ({len(T.FACTORS)} TA-Lib calls) per "
        f"symbol-session; generated bars (GBM, {n_split} of {n_full} symbols with a split, seeded) on the last {args.sessions:,} XNYS sessions to {END}.",
        "Each run in a fresh process; peak = the largest sum of RSS over the run's process tree (parent + 2 workers), polled every 50 ms, "
        "imports included. The bare loop is the speed limit: the same TA-Lib calls on the same windows (per split regime, each "
        "factor from its warm-up), one process, copied into a preallocated float32 array and discarded.",
        "",
        "| run | rows | feature values | wall time | CPU time | values/s (wall) | peak RSS | wall vs bare | CPU vs bare |",
        "|---|---|---|---|---|---|---|---|---|",
        row(f"nightly full: {n_full} symbols x {args.sessions:,} sessions, compute_technical_many (2 processes) + frames + Parquet per view", "full", "bare-full"),
        row("bare loop, same calls, 1 process", "bare-full", "bare-full"),
        row("bare loop split over 2 processes (what both cores give on this VM)", "bare-full-2", "bare-full"),
        row(f"one-day incremental: {n_inc:,} symbols, {T.MAX_WARMUP + 1:,}-session windows, last session, 2 processes + Parquet", "incremental", "bare-incremental"),
        row("bare loop, same calls, 1 process", "bare-incremental", "bare-incremental"),
        "",
        f"Full run output: {written:.2f} GB of Parquet (float32, LZ4), one file per view per chunk of {args.chunk} symbols. "
        f"Values {'checked equal' if equal else 'DIFFERENT'} (Parquet vs TA-Lib on the whole history, 1e-6) for 6 symbols before reporting. "
        "Target: within 1.5x of the bare loop using both cores. The two vCPUs of this VM do not give twice one: the bare loop "
        f"split over 2 processes runs {results['bare-full']['seconds'] / results['bare-full-2']['seconds']:.2f}x faster than on one. "
        "CPU vs bare = the work beyond TA-Lib: output frames, Parquet encoding and page-cache writes (about as much as the "
        "TA-Lib calls for the full run), building and pickling each symbol's bars for the workers (incremental).",
        "",
    ]
    from benchmarks.report import replace_section

    replace_section(Path(args.out), "factors", md)
    print("\n".join(md))
    if not equal:
        raise SystemExit("values differ from the bare loop")


if __name__ == "__main__":
    main()
