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
    if name not in xcals.get_calendar_names(include_aliases=True):
        from etl.core.errors import ConfigError

        raise ConfigError(f"calendar {name!r} (config.toml calendar) is not an exchange calendar; use one of "
                          f"exchange_calendars' names, e.g. XNYS (the default), XNAS, XLON, XTKS, XHKG")
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
        ts = _parse_times(ts, column)
    if getattr(ts.dt, "tz", None) is None:
        raise NaiveTimestampError(
            f"{column} has no time zone; the warehouse never guesses one. Fix with "
            f"df['{column}'] = df['{column}'].dt.tz_localize('America/New_York') "
            "(or 'UTC'), whichever your clock meant."
        )
    if ts.isna().any():
        raise EmptyInputError(f"{column} is missing in {int(ts.isna().sum())} row(s)")
    return ts.dt.tz_convert("UTC")


def _parse_times(values: pd.Series, column: str) -> pd.Series:
    """Times given as strings or datetime objects, parsed: each with its own offset (``-05:00``
    in winter and ``-04:00`` in summer is one clock, New York's) converted to UTC; a column mixing
    times with and without an offset, a time beyond what pandas can hold (after 2262-04-11) or
    text that is no time is a clear error naming the column."""
    import warnings

    from etl.core.errors import ArgumentError, NaiveTimestampError

    def bad(exc: Exception) -> str:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # mixed offsets: handled below
            ts = pd.to_datetime(values)
        if ts.dtype == object:  # several UTC offsets: pandas keeps the objects; each is an instant
            present = ts.dropna()
            if any(getattr(v, "tzinfo", None) is None for v in present):
                raise NaiveTimestampError(
                    f"{column} mixes times with and without a time zone; the warehouse never guesses one: "
                    "give every time an offset (e.g. 2021-03-31T16:15-04:00) or a tz-aware datetime")
            ts = pd.to_datetime(values, utc=True)
    except pd.errors.OutOfBoundsDatetime as exc:
        raise ArgumentError(f"{column} has a time outside {_TIME_RANGE}, the range pandas and Feast compute "
                            f"with: {bad(exc)}") from None
    except (ValueError, TypeError) as exc:
        if _mixes_zones(values):
            raise NaiveTimestampError(
                f"{column} mixes times with and without a time zone; the warehouse never guesses one: "
                "give every time an offset (e.g. 2021-03-31T16:15-04:00) or a tz-aware datetime") from None
        raise NaiveTimestampError(f"{column} is not a column of times (tz-aware datetimes): {bad(exc)}") from None
    return ts


def _mixes_zones(values: pd.Series) -> bool:
    """Whether some of ``values`` parse as times with a zone and some without (an error path only:
    one parse per value)."""
    kinds = set()
    for v in values.dropna():
        try:
            kinds.add(pd.Timestamp(v).tzinfo is None)
        except (ValueError, TypeError):
            continue
        if len(kinds) == 2:
            return True
    return False


#: the times pandas holds at nanosecond resolution (and so Feast's point-in-time join)
_TIME_RANGE = f"{pd.Timestamp.min.ceil('D'):%Y-%m-%d} to {pd.Timestamp.max.floor('D'):%Y-%m-%d}"


def require_in_range(ts: pd.Series, column: str) -> None:
    """Tz-aware times within what pandas holds at nanosecond resolution (1677-09-22 to
    2262-04-11; a microsecond column can hold later ones, which Feast's join cannot), or an
    ArgumentError naming the column and the first time outside."""
    from etl.core.errors import ArgumentError

    if not len(ts):
        return
    tz = getattr(ts.dt, "tz", None)
    low, high = pd.Timestamp.min.ceil("us"), pd.Timestamp.max.floor("us")
    if tz is not None:
        low, high = low.tz_localize("UTC"), high.tz_localize("UTC")
    outside = (ts < low) | (ts > high)
    if outside.any():
        first = ts[outside].iloc[0]
        raise ArgumentError(f"{column} has {int(outside.sum())} time(s) outside {_TIME_RANGE}, the range pandas and "
                            f"Feast compute with, e.g. {first} (row {ts.index[outside.to_numpy()][0]}); "
                            "use times in that range")


def off_calendar_reasons(dates, calendar: str = DEFAULT_CALENDAR) -> list[str]:
    """Why each of ``dates`` (not sessions) is refused: ``"<date> is not a XNYS session"``, and for a
    date outside the calendar's range also that range (the warehouse's calendars start on
    1990-01-02 and end a year from today), so a pre-1990 bar is not reported as a mere holiday."""
    cal = get_calendar(calendar)
    first, last = cal.first_session, cal.last_session
    out = []
    for d in dates:
        try:
            day = naive_date(d)
        except (ValueError, TypeError):
            day = None
        reason = f"{d} is not a {calendar} session"
        if day is not None and day < first:
            reason += (f": the {calendar} calendar of the warehouse starts on {first:%Y-%m-%d} (it covers "
                       f"{first:%Y-%m-%d} to {last:%Y-%m-%d}); earlier bars cannot be stored")
        elif day is not None and day > last:
            reason += f": the {calendar} calendar of the warehouse ends on {last:%Y-%m-%d} (a year from today)"
        out.append(reason)
    return out


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
        span = f"{cal.first_session:%Y-%m-%d} to {cal.last_session:%Y-%m-%d}"
        outside = " (outside the calendar's range)" if ((bad < cal.first_session) | (bad > cal.last_session)).any() else ""
        raise NotASessionError(f"not {calendar} sessions{outside}: {[d.strftime('%Y-%m-%d') for d in bad]}; "
                               f"the warehouse's {calendar} calendar covers {span}")
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


def last_completed_session(delay_minutes: int = 0, calendar: str = DEFAULT_CALENDAR, now=None) -> pd.Timestamp:
    """The last session (naive date) whose daily bar is available at ``now`` (default: the wall
    clock): its close on the exchange calendar (early closes honoured) plus ``delay_minutes`` is
    at or before ``now``. A bar of any later session cannot be known yet (a bar dated tomorrow,
    or today's before its close and delay, is in the future)."""
    cal = get_calendar(calendar)
    at = utc_now() if now is None else to_utc(now, "now")
    closes = pd.DatetimeIndex(cal.schedule["close"])
    closes = closes.tz_localize("UTC") if closes.tz is None else closes.tz_convert("UTC")
    avail = (closes + pd.Timedelta(minutes=int(delay_minutes))).asi8
    i = int(np.searchsorted(avail, at.as_unit("ns").value, side="right")) - 1
    if i < 0:
        return pd.Timestamp(cal.first_session).normalize() - pd.Timedelta(days=1)
    return pd.Timestamp(cal.sessions[i]).normalize()
