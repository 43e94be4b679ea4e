"""Purged and embargoed splits of labelled rows in time (López de Prado, *Advances in
Financial Machine Learning*, ch. 7).

Each row has a label interval from its ``start`` (the decision time, when its features
were read) to its ``end`` (``fwd_known``: when its label became knowable). The label is
made of what happened after the decision, so the information of a row is the half-open
interval ``(start, end]``; two rows overlap when ``start_a < end_b`` and ``start_b < end_a``.
A label that ends exactly when another row's decision is taken does not overlap it: it
was known at that decision.

Folds are cut on the distinct start times (a cross-section of symbols at one decision
time is never split between train and test):

* :func:`purged_kfold`: ``n_splits`` contiguous test blocks. The test block's span runs
  from its first decision time to the last end of its labels; every training row whose
  interval overlaps the span is purged, and the rows starting within the ``embargo``
  after the span's end are dropped (their features may still carry what the test
  labels measured, e.g. a 20-session momentum).
* :func:`walk_forward_splits`: an expanding window; the distinct decision times cut in
  ``n_splits + 1`` blocks, block ``i`` tested on the rows whose label ended by its first
  decision time ``T`` (``end <= T``), moved earlier by the embargo.

``embargo`` is a ``pd.Timedelta`` (with datetime times) or an int: that many distinct
start times (sessions). The indices yielded are positions in the input order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from etl.core.errors import ArgumentError

__all__ = ["Embargo", "known_cutoff", "purged_kfold", "walk_forward_splits"]

#: an embargo: a duration, or a number of sessions (distinct decision times)
Embargo = pd.Timedelta | int

_NEVER = np.iinfo(np.int64).min


def _as_numbers(values, name: str) -> tuple[np.ndarray, bool]:
    """Times as int64 nanoseconds (datetimes, tz-aware in UTC) or numbers as float64; and
    whether they were datetimes. Missing values are refused."""
    series = pd.Series(values).reset_index(drop=True)
    if series.isna().any():
        raise ArgumentError(f"{name} is missing in {int(series.isna().sum())} row(s); drop the rows without a "
                            f"label (fwd_known NaT) before splitting")
    if pd.api.types.is_datetime64_any_dtype(series):
        target = "datetime64[ns, UTC]" if getattr(series.dt, "tz", None) is not None else "datetime64[ns]"
        return series.astype(target).array.asi8.copy(), True
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float), False
    raise ArgumentError(f"{name} must be datetimes or numbers, got dtype {series.dtype}")


def _intervals(start_times, end_times) -> tuple[np.ndarray, np.ndarray, bool]:
    start, s_time = _as_numbers(start_times, "start_times")
    end, e_time = _as_numbers(end_times, "end_times")
    if s_time != e_time:
        raise ArgumentError("start_times and end_times must both be datetimes or both numbers")
    if len(start) != len(end):
        raise ArgumentError(f"start_times ({len(start)}) and end_times ({len(end)}) must have one value per row")
    if (end < start).any():
        i = int(np.flatnonzero(end < start)[0])
        raise ArgumentError(f"row {i} ends before it starts; end_times (fwd_known) must be >= start_times")
    if s_time:
        start, end = start.astype(np.int64), end.astype(np.int64)
    return start, end, s_time


def _check_embargo(embargo, is_time: bool) -> Embargo:
    if isinstance(embargo, bool):
        raise ArgumentError(f"embargo={embargo!r} must be a number of sessions (int >= 0) or a pd.Timedelta")
    if isinstance(embargo, (int, np.integer)):
        if embargo < 0:
            raise ArgumentError(f"embargo={embargo} must be >= 0 sessions")
        return int(embargo)
    if isinstance(embargo, pd.Timedelta):
        if not is_time:
            raise ArgumentError("a pd.Timedelta embargo needs datetime start/end times; pass sessions (an int)")
        if embargo < pd.Timedelta(0):
            raise ArgumentError(f"embargo={embargo} must be >= 0")
        return embargo
    raise ArgumentError(f"embargo={embargo!r} must be a number of sessions (int >= 0) or a pd.Timedelta")


def _check_splits(n_splits, n_times: int, least: int, what: str) -> int:
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < least:
        raise ArgumentError(f"n_splits={n_splits!r} must be an int >= {least}")
    if n_splits > n_times:
        raise ArgumentError(f"n_splits={n_splits} {what} but there are {n_times} distinct start times")
    return int(n_splits)


def known_cutoff(times: np.ndarray, position: int, embargo: Embargo):
    """The latest label end usable for a decision at ``times[position]`` (``times``: the sorted
    distinct decision times): that time itself, moved earlier by the embargo -- ``embargo``
    sessions (``times[position - embargo]``, or nothing before the first time) or a duration.
    ``None`` when no label can be used yet."""
    if isinstance(embargo, pd.Timedelta):
        at = times[position]
        return at - (embargo.value if isinstance(at, (int, np.integer)) else embargo)
    back = position - int(embargo)
    return times[back] if back >= 0 else None


def purged_kfold(start_times, end_times, n_splits: int, embargo: Embargo = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(train_idx, test_idx)`` for each of ``n_splits`` contiguous test blocks of decision
    times, in time order (see the module doc): no training interval overlaps the test
    block's span, and no training row starts within ``embargo`` after it."""
    start, end, is_time = _intervals(start_times, end_times)
    embargo = _check_embargo(embargo, is_time)
    uniq = np.unique(start)
    n_splits = _check_splits(n_splits, len(uniq), 2, "blocks are asked for")
    pos = np.searchsorted(uniq, start)
    for block in np.array_split(np.arange(len(uniq)), n_splits):
        lo, hi = int(block[0]), int(block[-1])
        test = (pos >= lo) & (pos <= hi)
        span_start, span_end = uniq[lo], end[test].max()
        overlap = (start < span_end) & (end > span_start)
        if isinstance(embargo, pd.Timedelta):
            embargoed = (start >= span_end) & (start < span_end + embargo.value)
        else:
            first_after = int(np.searchsorted(uniq, span_end, side="left"))
            embargoed = (pos >= first_after) & (pos < first_after + embargo)
        train = ~test & ~overlap & ~embargoed
        yield np.flatnonzero(train), np.flatnonzero(test)


def walk_forward_splits(start_times, end_times, n_splits: int, *, embargo: Embargo = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window ``(train_idx, test_idx)``: the distinct decision times cut in
    ``n_splits + 1`` contiguous blocks; block ``i >= 1`` is tested, trained on every row that
    started before its first decision time ``T`` and whose label ended by
    :func:`known_cutoff` (``T``, moved earlier by the embargo). A fold with no such row yet
    is skipped."""
    start, end, is_time = _intervals(start_times, end_times)
    embargo = _check_embargo(embargo, is_time)
    uniq = np.unique(start)
    n_splits = _check_splits(n_splits, len(uniq) - 1, 1, "test blocks (and one block to train on first) are asked for")
    pos = np.searchsorted(uniq, start)
    for block in np.array_split(np.arange(len(uniq)), n_splits + 1)[1:]:
        first = int(block[0])
        cutoff = known_cutoff(uniq, first, embargo)
        if cutoff is None:
            continue
        train = (start < uniq[first]) & (end <= cutoff)
        if not train.any():
            continue
        test = (pos >= first) & (pos <= int(block[-1]))
        yield np.flatnonzero(train), np.flatnonzero(test)
