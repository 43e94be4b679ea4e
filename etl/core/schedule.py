"""When the nightly job runs and which session it closes, from the exchange calendar.

A session's data is complete once the exchange has closed and the slowest
configured source has published it: close + the longest ``delay_minutes`` of
the ``[[ingest]]`` sources (or the bar delay). The nightly cron fires that long
after the regular close, plus a margin, in the exchange's own time zone (so
daylight saving never shifts it); on an early-close day it simply runs later
than needed. Whatever time it runs, it processes the last session whose data
is complete at that moment, so a run on a holiday or a rerun is a no-op.
"""

from __future__ import annotations

import math

import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import ConfigError


def longest_delay_minutes(settings: Settings) -> int:
    delays = [settings.bar_delay_minutes] + [s.delay_minutes for s in settings.ingest if s.delay_minutes is not None]
    return max(delays)


def nightly_cron(settings: Settings) -> tuple[str, str]:
    """``(cron, time zone)``: weekdays at the regular close + longest delay + margin."""
    cal = clock.get_calendar(settings.calendar)
    close = cal.close_times[-1][1]           # the regular close, local time
    minutes = close.hour * 60 + close.minute + longest_delay_minutes(settings) + settings.nightly_margin_minutes
    minutes = int(math.ceil(minutes / 5) * 5)
    if minutes >= 24 * 60:
        raise ConfigError(
            f"close + delay + margin runs past midnight ({minutes // 60}:{minutes % 60:02d}); lower delay_minutes or nightly_margin_minutes"
        )
    return f"{minutes % 60} {minutes // 60} * * 1-5", str(cal.tz)


def last_complete_session(settings: Settings, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest session (naive date) whose close + longest delay is at or before ``now``."""
    now = clock.utc_now() if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        raise ConfigError(f"now must carry a time zone, got {now}")
    delay = pd.Timedelta(minutes=longest_delay_minutes(settings))
    today = now.tz_convert("UTC").tz_localize(None)
    sessions = clock.sessions_in_range(today - pd.Timedelta(days=15), today, settings.calendar)
    if len(sessions) == 0:
        raise ConfigError(f"no {settings.calendar} session in the 15 days before {now}")
    ready = clock.session_closes(sessions, settings.calendar) + delay <= now
    if not ready.any():
        raise ConfigError(f"no {settings.calendar} session complete by {now}")
    return pd.Timestamp(sessions[ready][-1])


def resolve_session(settings: Settings, session=None, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The session a nightly run closes: ``session`` (checked: a session of the calendar whose
    data is complete by ``now``) or, without one, :func:`last_complete_session`."""
    last = last_complete_session(settings, now)
    if session is None:
        return last
    try:
        day = pd.Timestamp(session)
    except (TypeError, ValueError):
        raise ConfigError(f"session must be a date YYYY-MM-DD, got {session!r}") from None
    day = day.tz_localize(None).normalize() if day.tzinfo is not None else day.normalize()
    if not clock.is_session(pd.DatetimeIndex([day]), settings.calendar)[0]:
        before = clock.sessions_in_range(day - pd.Timedelta(days=15), day - pd.Timedelta(days=1), settings.calendar)
        hint = f"; the last one before is {before[-1]:%Y-%m-%d}" if len(before) else ""
        raise ConfigError(f"{day:%Y-%m-%d} is not a {settings.calendar} session{hint}")
    if day > last:
        raise ConfigError(f"session {day:%Y-%m-%d} is not complete yet (close + {longest_delay_minutes(settings)} min); "
                          f"the last complete one is {last:%Y-%m-%d}")
    return day
