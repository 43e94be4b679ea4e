"""The grid's pandas face: one symbol's silver bars in, one float32 row per session out
(:func:`compute_technical`), or many symbols in forked processes, streamed
(:func:`compute_technical_many`). The arithmetic is :mod:`etl.factors.technical.engine`'s."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import FactorInputError
from etl.core.parallel import bounded_map
from etl.factors.core import cumulative_factors
from etl.factors.spec import Factor
from etl.factors.technical.engine import Plan, compute_into, finite, resolve_plan
from etl.factors.technical.grid import BAR_COLUMNS, FACTORS


def _check_bars(bars: pd.DataFrame) -> None:
    missing = [c for c in ("session", *BAR_COLUMNS, "event_timestamp") if c not in bars.columns]
    if missing:
        raise FactorInputError(f"technical: bars lack column(s) {missing}; pass silver bars (etl.storage.bars.read_silver_bars)")
    if "symbol" in bars.columns and bars["symbol"].nunique() > 1:
        raise FactorInputError(f"technical: compute_technical takes ONE symbol's bars, got {bars['symbol'].nunique()} symbols; group by symbol first")
    session = bars["session"]
    if not session.is_monotonic_increasing or session.duplicated().any():
        raise FactorInputError("technical: bars must be sorted by session without duplicates (one version per session)")


def _start_index(bars: pd.DataFrame, start_session) -> int:
    if start_session is None:
        return 0
    return int(np.searchsorted(bars["session"].to_numpy(), np.datetime64(pd.Timestamp(start_session)), side="left"))


def compute_technical(
    bars: pd.DataFrame,
    factor_rows: pd.DataFrame | None = None,
    factors: tuple[Factor, ...] = FACTORS,
    start_session=None,
) -> pd.DataFrame:
    """Every output of ``factors`` for ONE symbol, in the point-in-time price scale.

    ``bars``: one symbol's silver bars sorted by session (symbol, session, open,
    high, low, close, volume, event_timestamp, known_timestamp), raw prices;
    ``factor_rows``: that symbol's Lean factor rows (None: no splits).
    Returns one row per session >= ``start_session`` (default: every session),
    in order: symbol, event_timestamp, known_timestamp, then every output as
    float32 (NaN where undefined: TA-Lib's lookback, an infinite value).
    Give ``MAX_WARMUP`` sessions of history before ``start_session`` for the
    values of a whole-history computation.
    """
    _check_bars(bars)
    plan = resolve_plan(factors)
    start = _start_index(bars, start_session)
    block = np.empty((len(plan.names), len(bars) - start), dtype=np.float32)  # one contiguous row per output
    if block.shape[1]:
        _compute_into(bars, factor_rows, plan, start, block)
    return _frame([_meta(bars.iloc[start:])], finite(block), plan.names)


def _compute_into(bars: pd.DataFrame, factor_rows: pd.DataFrame | None, plan: Plan, start: int, out: np.ndarray) -> None:
    """One symbol's bars and factor rows as the kernel's arrays, then :func:`compute_into`."""
    split, _ = cumulative_factors(bars["session"], factor_rows)
    raw = {c: bars[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS}
    compute_into(raw, split, plan, start, out)


def _meta(bars: pd.DataFrame) -> pd.DataFrame:
    event = clock.epoch_us(bars["event_timestamp"])
    known = event
    if "known_timestamp" in bars.columns:
        # a row is as new as the newest bar version it could have used
        known = np.maximum(np.maximum.accumulate(clock.epoch_us(bars["known_timestamp"])), event)
    symbol = bars["symbol"].to_numpy() if "symbol" in bars.columns else np.full(len(bars), None, dtype=object)
    return pd.DataFrame({"symbol": symbol, "event_timestamp": clock.from_epoch_us(event), "known_timestamp": clock.from_epoch_us(known)})


def _frame(metas: list[pd.DataFrame], block: np.ndarray, names) -> pd.DataFrame:
    meta = metas[0] if len(metas) == 1 else pd.concat(metas, ignore_index=True)
    values = pd.DataFrame(block.T, columns=list(names), copy=False)  # pandas keeps the (outputs x rows) block as is
    return pd.concat([meta, values], axis=1, copy=False)


def _compute_chunk(args) -> pd.DataFrame | object:
    """Several symbols into ONE preallocated block (no per-symbol frames to concatenate)."""
    pairs, factors, start_session, sink = args
    plan = resolve_plan(factors if factors is not None else FACTORS)
    starts = []
    for bars, _rows in pairs:
        _check_bars(bars)
        starts.append(_start_index(bars, start_session))
    sizes = [len(bars) - s for (bars, _r), s in zip(pairs, starts, strict=True)]
    block = np.empty((len(plan.names), sum(sizes)), dtype=np.float32)
    offset = 0
    for (bars, rows), start, size in zip(pairs, starts, sizes, strict=True):
        if size:
            _compute_into(bars, rows, plan, start, block[:, offset : offset + size])
        offset += size
    frame = _frame([_meta(bars.iloc[s:]) for (bars, _r), s in zip(pairs, starts, strict=True)], finite(block), plan.names)
    return sink(frame) if sink is not None else frame


def _chunks(frames: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in frames:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def compute_technical_many(
    frames: Iterable[tuple[pd.DataFrame, pd.DataFrame | None]],
    n_jobs: int = 2,
    factors: tuple[Factor, ...] = FACTORS,
    start_session=None,
    chunk_size: int = 8,
    sink: Callable[[pd.DataFrame], object] | None = None,
) -> Iterator[pd.DataFrame | object]:
    """Compute many symbols in ``n_jobs`` forked processes, streaming.

    ``frames`` yields ``(bars, factor_rows)`` per symbol (consumed lazily).
    Yields, in input order, one frame per chunk of ``chunk_size`` symbols (the
    rows of :func:`compute_technical` for each symbol, one after the other) --
    or, with ``sink`` (a picklable callable, e.g. a Parquet writer),
    ``sink(frame)`` computed in the worker, so that only its small result
    crosses processes. At most ``2 * n_jobs`` chunks are in flight: memory
    stays bounded whatever the number of symbols.
    """
    fac = None if factors is FACTORS else factors
    jobs = ((chunk, fac, start_session, sink) for chunk in _chunks(frames, chunk_size))
    yield from bounded_map(_compute_chunk, jobs, n_jobs)
