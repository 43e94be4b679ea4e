"""Coverage against the exchange calendar: missing sessions, gaps, bars on days that are not sessions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR
from etl.quality.health.frames import calendar_for, day, finding, findings_frame, prepare_bars
from etl.quality.health.thresholds import resolve_thresholds


def coverage_stats(bars: pd.DataFrame, calendar=DEFAULT_CALENDAR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per symbol: first/last bar, expected and present sessions, coverage;
    and every run of missing sessions (symbol, start, end, length)."""
    frame = prepare_bars(bars)
    rows, gaps = [], []
    for symbol, g in frame.groupby("symbol", sort=True):
        days = pd.DatetimeIndex(g["session"].dt.normalize().unique())
        cal = calendar_for(symbol, calendar)
        expected = clock.sessions_in_range(days.min(), days.max(), cal)
        present = expected.isin(days)
        off = days[~days.isin(expected)]
        missing_pos = np.flatnonzero(~present)
        runs = np.split(missing_pos, np.flatnonzero(np.diff(missing_pos) != 1) + 1) if len(missing_pos) else []
        for run in runs:
            gaps.append({"symbol": symbol, "start": expected[run[0]], "end": expected[run[-1]], "length": len(run)})
        rows.append({
            "symbol": symbol, "calendar": cal, "first": days.min(), "last": days.max(), "bars": len(g),
            "expected": len(expected), "present": int(present.sum()),
            "coverage": float(present.mean()) if len(expected) else float("nan"),
            "gaps": len(runs), "max_gap": max((len(r) for r in runs), default=0),
            "off_calendar": len(off), "off_calendar_days": [day(d) for d in off[:5]],
        })
    stats = pd.DataFrame(rows, columns=["symbol", "calendar", "first", "last", "bars", "expected", "present",
                                        "coverage", "gaps", "max_gap", "off_calendar", "off_calendar_days"])
    return stats, pd.DataFrame(gaps, columns=["symbol", "start", "end", "length"])


def check_coverage(bars: pd.DataFrame, calendar=DEFAULT_CALENDAR, thresholds: Mapping | None = None,
                   stats: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Coverage per symbol against the exchange calendar, each gap with its
    length, and bars dated on days that are not sessions (``stats``: the
    :func:`coverage_stats` of ``bars`` when already computed)."""
    th = resolve_thresholds(thresholds)
    stats, gaps = stats if stats is not None else coverage_stats(bars, calendar)
    rows = []
    for s in stats.itertuples():
        if s.coverage < th["min_coverage"]:
            rows.append(finding(
                "coverage", s.symbol, s.first, s.coverage, th["min_coverage"],
                f"{s.present} of {s.expected} {s.calendar} sessions from {day(s.first)} to {day(s.last)} "
                f"({s.coverage:.2%}) are present", "error"))
        if s.off_calendar:
            rows.append(finding(
                "off_calendar", s.symbol, s.first, s.off_calendar, 0,
                f"{s.off_calendar} bar(s) on days that are not {s.calendar} sessions, e.g. {', '.join(s.off_calendar_days)}",
                "warning"))
    for gp in gaps.itertuples():
        severity = "error" if gp.length > th["max_gap_sessions"] else "warning"
        rows.append(finding(
            "gap", gp.symbol, gp.start, gp.length, th["max_gap_sessions"],
            f"{gp.length} session(s) missing from {day(gp.start)} to {day(gp.end)}", severity))
    return findings_frame(rows)
