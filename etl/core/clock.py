"""The exchange calendar is the clock.

A daily bar becomes knowable at its session's close on the exchange calendar
(early closes and holidays honoured, from ``exchange_calendars``) plus a
delay. Every timestamp leaving this module is tz-aware UTC with microsecond
resolution (DuckDB and Feast cannot materialize nanosecond UTC columns).
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
import pandas as pd

from etl.core.config import DEFAULT_CALENDAR

CALENDAR_START = "1990-01-01"


@lru_cache(maxsize=4)
def get_calendar(name: str = DEFAULT_CALENDAR):
    import exchange_calendars as xcals

    end = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=365)).strftime("%Y-%m-%d")
    try:
        return xcals.get_calendar(name, start=CALENDAR_START, end=end)
    except ValueError:  # a calendar that cannot reach back to CALENDAR_START (XTKS: 1997) starts at its earliest date
        earliest = type(xcals.get_calendar(name)).bound_min()
        if earliest is None:
            raise
        return xcals.get_calendar(name, start=max(pd.Timestamp(CALENDAR_START), earliest), end=end)


def to_utc_us(values) -> pd.Series | pd.DatetimeIndex:
    """Tz-aware datetimes (a Series, else anything a DatetimeIndex takes) as UTC at microsecond
    resolution. The one conversion of the warehouse: naive times raise NaiveTimestampError, they
    are never taken as UTC."""
    from etl.core.errors import NaiveTimestampError

    if isinstance(values, pd.Series):
        if not isinstance(values.dtype, pd.DatetimeTZDtype):
            if not len(values):
                return values.astype("datetime64[us, UTC]")
            if pd.api.types.is_datetime64_any_dtype(values):
                raise NaiveTimestampError(f"times without a time zone ({values.dtype}); localize them first")
            values = pd.to_datetime(values)
            if not isinstance(values.dtype, pd.DatetimeTZDtype):
                raise NaiveTimestampError("times without a time zone; localize them first")
        return values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        raise NaiveTimestampError("times without a time zone; localize them first")
    return index.tz_convert("UTC").astype("datetime64[us, UTC]")


def epoch_us(values) -> np.ndarray:
    """Tz-aware datetimes as int64 microseconds since the epoch (UTC), see :func:`to_utc_us`;
    missing times as int64 min (NaT). An Arrow timestamp array or column is converted in Arrow
    (no pandas round trip: the Redis writer reads whole gold columns), by the same rule: a
    column without a time zone raises NaiveTimestampError."""
    pa = sys.modules.get("pyarrow")  # an Arrow array can only exist if pyarrow is imported
    if pa is not None and isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _arrow_epoch_us(values)
    out = to_utc_us(values)
    return (out.array if isinstance(out, pd.Series) else out).asi8


def _arrow_epoch_us(values) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    from etl.core.errors import NaiveTimestampError

    col = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_timestamp(col.type):
        raise NaiveTimestampError(f"expected a tz-aware timestamp column, got {col.type}")
    if col.type.tz is None:
        raise NaiveTimestampError(f"times without a time zone ({col.type}); localize them first")
    # Arrow keeps tz-aware times as UTC instants: a (safe) cast to microseconds is the conversion
    us = pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz)), pa.int64())
    if us.null_count:
        us = pc.fill_null(us, np.iinfo(np.int64).min)
    return us.to_numpy(zero_copy_only=False)


def from_epoch_us(us) -> pd.DatetimeIndex:
    """int64 microseconds since the epoch as tz-aware UTC times (microsecond resolution)."""
    return pd.DatetimeIndex(np.asarray(us, dtype=np.int64).view("M8[us]")).tz_localize("UTC")


def require_utc(values: pd.Series, column: str) -> pd.Series:
    """A time column as tz-aware UTC, or a clear error: never guess a time zone, never
    accept a missing time. Shared by the SDK and the offline store."""
    from etl.core.errors import EmptyInputError, NaiveTimestampError

    ts = values
    if not pd.api.types.is_datetime64_any_dtype(ts):
        try:
            ts = pd.to_datetime(ts)
        except (ValueError, TypeError) as exc:
            raise NaiveTimestampError(f"{column} is not a datetime column: {exc}") from None
    if getattr(ts.dt, "tz", None) is None:
        raise NaiveTimestampError(
            f"{column} has no time zone; the warehouse never guesses one. Fix with "
            f"df['{column}'] = df['{column}'].dt.tz_localize('America/New_York') "
            "(or 'UTC'), whichever your clock meant."
        )
    if ts.isna().any():
        raise EmptyInputError(f"{column} is missing in {int(ts.isna().sum())} row(s)")
    return ts.dt.tz_convert("UTC")


def naive_date(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.normalize()


def sessions_in_range(start, end, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """Session dates (naive, midnight) from ``start`` to ``end`` inclusive."""
    cal = get_calendar(calendar)
    start, end = naive_date(start), naive_date(end)
    start = max(start, cal.first_session)
    end = min(end, cal.last_session)
    if start > end:
        return pd.DatetimeIndex([])
    return cal.sessions_in_range(start, end)


def is_session(dates: pd.DatetimeIndex, calendar: str = DEFAULT_CALENDAR) -> np.ndarray:
    """Boolean mask: which of ``dates`` are sessions of the calendar."""
    cal = get_calendar(calendar)
    dates = pd.DatetimeIndex(dates).normalize()
    return np.asarray(dates.isin(cal.sessions))


def session_closes(dates, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """UTC close time of each session date (early closes honoured)."""
    from etl.core.errors import NotASessionError

    cal = get_calendar(calendar)
    dates = pd.DatetimeIndex(dates).normalize()
    closes = cal.schedule["close"].reindex(dates)
    if closes.isna().any():
        bad = dates[np.asarray(closes.isna())][:5]
        raise NotASessionError(f"not {calendar} sessions: {[d.strftime('%Y-%m-%d') for d in bad]}")
    return pd.DatetimeIndex(closes).tz_convert("UTC")


def availability_times(dates, delay_minutes: int, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """When a daily bar of each session date could first be known: close + delay, UTC (us)."""
    closes = session_closes(dates, calendar)
    return to_utc_us(closes + pd.Timedelta(minutes=delay_minutes))


def session_opens(dates, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    cal = get_calendar(calendar)
    dates = pd.DatetimeIndex(dates).normalize()
    opens = cal.schedule["open"].reindex(dates)
    return to_utc_us(pd.DatetimeIndex(opens))


def next_session(dates, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """The first session strictly after each date."""
    cal = get_calendar(calendar)
    sessions = cal.sessions
    idx = np.searchsorted(sessions.values, pd.DatetimeIndex(dates).normalize().values, side="right")
    idx = np.minimum(idx, len(sessions) - 1)
    return pd.DatetimeIndex(sessions.values[idx])


def previous_session(dates, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """The last session strictly before each date (the first session for dates before it)."""
    cal = get_calendar(calendar)
    sessions = cal.sessions
    idx = np.searchsorted(sessions.values, pd.DatetimeIndex(dates).normalize().values, side="left") - 1
    idx = np.clip(idx, 0, len(sessions) - 1)
    return pd.DatetimeIndex(sessions.values[idx])


def utc_now() -> pd.Timestamp:
    """The wall clock, tz-aware UTC."""
    return pd.Timestamp.now(tz="UTC")


def utc_us(value=None, name: str = "now") -> pd.Timestamp:
    """One point in time (default: the wall clock) as tz-aware UTC at microsecond resolution, the
    write time of a silver row; a naive ``value`` raises NaiveTimestampError (see :func:`to_utc`)."""
    ts = utc_now() if value is None else to_utc(value, name)
    return to_utc_us(pd.DatetimeIndex([ts]))[0]


def to_utc(value, name: str) -> pd.Timestamp:
    """One point in time as tz-aware UTC, or a clear error naming the argument: a naive time is
    never taken as UTC (or anything else)."""
    from etl.core.errors import NaiveTimestampError

    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise NaiveTimestampError(f"{name}={value!r} has no time zone; pass a tz-aware time, e.g. pd.Timestamp(..., tz='UTC')")
    return ts.tz_convert("UTC")


def instant_us(value, name: str) -> int:
    """One point in time as int64 microseconds since the epoch (UTC), see :func:`to_utc`: the
    scalar twin of :func:`epoch_us` (~3 us, not ~0.2 ms: ``latest`` calls it per read)."""
    return int(to_utc(value, name).value // 1000)
