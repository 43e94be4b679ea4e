"""Generated universes of daily bars in the CSV folder format, for benchmarks/nightly.py.

One ``<SYMBOL>.csv`` per symbol with the header ``date,open,high,low,close,volume``
(the format of ``etl/sources/csv_folder.py`` and docs/ingestion.md): raw prices in
cents, whole-share volumes, one row per XNYS session from ``START`` to ``END``.
Prices are a geometric Brownian motion seeded per symbol (the model of
``benchmarks/factors.generate``, without splits: a CSV folder carries no corporate
actions), so a universe is the same bytes on every run.

Each path is generated through ``NEXT`` (the session after ``END``): the base
files stop at ``END`` and :func:`append_next_session` adds the ``NEXT`` bar,
the continuation of the same path. :func:`revise` changes one past close in a
few files, as a vendor's correction would.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

START, END, NEXT = "2015-01-02", "2024-12-31", "2025-01-02"
SEED = 20_150_102
HEADER = "date,open,high,low,close,volume\n"
CACHE = Path("/tmp/alpha-bench")


def sessions(start: str = START, end: str = NEXT) -> pd.DatetimeIndex:
    from etl.core import clock

    return clock.sessions_in_range(start, end)


def symbol(i: int) -> str:
    return f"S{i:04d}"


def generate(i: int, n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Raw OHLCV of symbol ``i`` over ``n`` sessions: GBM in cents, seeded by (seed, i).

    Every bar passes the warehouse's checks: prices >= 0.01, low <= open, close <= high.
    """
    open_, high, low, close, volume = gbm(np.random.default_rng([seed, i]), n)
    open_, high, low, close = (np.maximum(np.round(a, 2), 0.01) for a in (open_, high, low, close))
    high = np.maximum(high, np.maximum(open_, close))   # rounding must not break low <= open, close <= high
    low = np.minimum(low, np.minimum(open_, close))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume.astype(np.int64)}


def gbm(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Open, high, low, close and volume of ``n`` sessions of geometric Brownian motion (a
    random volatility, overnight gaps, intraday ranges), drawn from ``rng`` in a fixed order
    (benchmarks/factors.py draws its bars with it too)."""
    sigma = rng.uniform(0.01, 0.035)
    logret = rng.normal(0.0003, sigma, n)
    close = rng.uniform(10, 300) * np.exp(np.cumsum(logret))
    gap = np.exp(rng.normal(0, sigma / 3, n))
    open_ = np.r_[close[0], close[:-1]] * gap
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, sigma / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, sigma / 2, n)))
    volume = np.round(rng.lognormal(13.5, 0.5, n))
    return open_, high, low, close, volume


def _price(x: float) -> str:
    return repr(round(float(x), 2))


def bar_line(day: pd.Timestamp, bar: dict[str, np.ndarray], j: int) -> str:
    return (f"{day:%Y-%m-%d},{_price(bar['open'][j])},{_price(bar['high'][j])},{_price(bar['low'][j])},"
            f"{_price(bar['close'][j])},{int(bar['volume'][j])}\n")


def write_symbol(path: Path, dates, bar: dict[str, np.ndarray]) -> None:
    """One CSV file (``dates``: a pyarrow string array), written by Arrow's C++ CSV writer
    (no Python loop over rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table({"date": dates, **{k: pa.array(v) for k, v in bar.items()}})
    with open(path, "wb") as fh:
        fh.write(HEADER.encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))



def base_universe(n_symbols: int, seed: int = SEED, cache: Path = CACHE, log=print) -> Path:
    """The folder of ``n_symbols`` files from START to END, generated once per parameters
    under ``cache`` (a ``done.json`` written last marks a complete folder). Read-only:
    copy it before appending or revising (:func:`working_copy`)."""
    import pyarrow as pa

    folder = cache / f"universe-{n_symbols}-{START}-{END}-seed{seed}"
    done = folder / "done.json"
    if done.exists():
        log(f"  universe {folder} (reused)")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    days = sessions()
    base = len(days) - 1   # NEXT is generated, not written
    dates = pa.array(days[:base].strftime("%Y-%m-%d"))
    t0 = time.perf_counter()
    for i in range(n_symbols):
        bar = generate(i, len(days), seed)
        write_symbol(folder / f"{symbol(i)}.csv", dates, {k: v[:base] for k, v in bar.items()})
    done.write_text(json.dumps({"symbols": n_symbols, "start": START, "end": END, "seed": seed, "sessions": base}))
    size = sum(p.stat().st_size for p in folder.glob("*.csv"))
    log(f"  universe {folder}: {n_symbols} symbols x {base:,} sessions, {size / 1e6:,.0f} MB in {time.perf_counter() - t0:.1f} s")
    return folder


def working_copy(base: Path, dest: Path) -> Path:
    """A writable copy of a base universe (the CSV files only)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in sorted(base.glob("*.csv")):
        shutil.copyfile(p, dest / p.name)
    return dest


def append_next_session(folder: Path, n_symbols: int, seed: int = SEED) -> pd.Timestamp:
    """Append the NEXT session's bar (the continuation of each path) to every file."""
    days = sessions()
    for i in range(n_symbols):
        bar = generate(i, len(days), seed)
        with open(folder / f"{symbol(i)}.csv", "a") as fh:
            fh.write(bar_line(days[-1], bar, len(days) - 1))
    return days[-1]


def revised_symbols(n_symbols: int, fraction: float = 0.01, seed: int = SEED) -> list[int]:
    """Which symbols a revision touches: ``fraction`` of them (at least one), seeded."""
    k = max(1, round(n_symbols * fraction))
    return sorted(np.random.default_rng([seed, 1]).choice(n_symbols, size=k, replace=False).tolist())


def revise(folder: Path, symbols: list[int], back: int = 5) -> pd.Timestamp:
    """Raise the close of the bar ``back`` rows before each file's last row by 1 % (and the
    high with it when needed); every other row is left byte for byte. The revised date."""
    day = None
    for i in symbols:
        path = folder / f"{symbol(i)}.csv"
        lines = path.read_text().splitlines(keepends=True)
        j = len(lines) - 1 - back
        date, o, h, lo, c, v = lines[j].rstrip("\n").split(",")
        new_close = round(float(c) * 1.01 + 0.01, 2)
        lines[j] = f"{date},{o},{_price(max(float(h), new_close))},{lo},{_price(new_close)},{v}\n"
        path.write_text("".join(lines))
        day = pd.Timestamp(date)
    return day
