"""Series that stopped: the last bar behind the store's latest session, or a close repeated with volume."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR
from etl.quality.health.frames import calendar_for, day, finding, findings_frame, fmt, prepare_bars
from etl.quality.health.thresholds import resolve_thresholds


def check_stale(bars: pd.DataFrame, calendar=DEFAULT_CALENDAR, thresholds: Mapping | None = None, latest=None) -> pd.DataFrame:
    """Series whose last bar lags the store's latest session (or ``latest``) by
    more than ``stale_sessions`` sessions, and closes repeated for
    ``flat_sessions`` sessions or more while volume > 0."""
    th = resolve_thresholds(thresholds)
    frame = prepare_bars(bars)
    rows = []
    if frame.empty:
        return findings_frame(rows)
    latest = pd.Timestamp(latest) if latest is not None else frame["session"].max()
    for symbol, g in frame.groupby("symbol", sort=True):
        last = g["session"].max()
        behind = clock.sessions_in_range(last.normalize() + pd.Timedelta(days=1), latest, calendar_for(symbol, calendar))
        if len(behind) > th["stale_sessions"]:
            rows.append(finding(
                "stale", symbol, last, len(behind), th["stale_sessions"],
                f"last bar {day(last)} is {len(behind)} sessions before the store's latest session {day(latest)} "
                f"(no bars from {day(behind[0])} to {day(behind[-1])})", "error"))
        if "volume" in g.columns:
            close = g["close"].to_numpy(dtype=float)
            vol = g["volume"].to_numpy(dtype=float)
            same = np.zeros(len(g), dtype=bool)
            same[1:] = (close[1:] == close[:-1]) & (vol[1:] > 0)
            for start, length in _runs(same):
                if length >= th["flat_sessions"]:
                    sess = g["session"].iloc[start]
                    end = g["session"].iloc[start + length - 1]
                    rows.append(finding(
                        "flat", symbol, sess, length, th["flat_sessions"],
                        f"close {fmt(close[start])} unchanged for {length} sessions with volume > 0 "
                        f"({day(sess)} to {day(end)})", "error" if length >= 4 * th["flat_sessions"] else "warning"))
    return findings_frame(rows)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))
