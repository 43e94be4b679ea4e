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

from etl import clock
from etl.config import Settings
from etl.errors import ConfigError


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
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        raise ConfigError(f"now must carry a time zone, got {now}")
    delay = pd.Timedelta(minutes=longest_delay_minutes(settings))
    sessions = clock.sessions_in_range(now.tz_convert("UTC").tz_localize(None) - pd.Timedelta(days=15), now.tz_convert("UTC").tz_localize(None), settings.calendar)
    if len(sessions) == 0:
        raise ConfigError(f"no {settings.calendar} session in the 15 days before {now}")
    ready = clock.session_closes(sessions, settings.calendar) + delay <= now
    if not ready.any():
        raise ConfigError(f"no {settings.calendar} session complete by {now}")
    return pd.Timestamp(sessions[ready][-1])
