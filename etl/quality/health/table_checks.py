"""The checks of the other silver tables: rows, NaN rates, newest event, missing times, duplicate keys."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from etl.quality.health.frames import finding, findings_frame
from etl.quality.health.thresholds import resolve_thresholds


def check_table(frame: pd.DataFrame, table, now: pd.Timestamp, thresholds: Mapping | None = None) -> tuple[pd.DataFrame, dict]:
    """Row count, NaN rate per column, newest event, duplicate keys of one silver table."""
    th = resolve_thresholds(thresholds)
    rows = []
    nan_rates = {c: float(frame[c].isna().mean()) for c in frame.columns} if len(frame) else {}
    latest = None
    if "event_timestamp" in frame.columns and len(frame):
        ev = pd.to_datetime(frame["event_timestamp"], utc=True)
        latest = ev.max()
        missing = int(ev.isna().sum())
        if missing:
            rows.append(finding("missing_event_timestamp", None, None, missing, 0,
                                 f"{missing} row(s) without event_timestamp: not point-in-time usable", "error", table.name))
        if pd.notna(latest):
            age = (now - latest) / pd.Timedelta(days=1)
            if age > th["table_stale_days"]:
                rows.append(finding("table_stale", None, latest.tz_convert(None), age, th["table_stale_days"],
                                     f"newest event_timestamp {latest:%Y-%m-%d %H:%M} UTC is {age:.0f} days old", "warning",
                                     table.name))
    key = [c for c in table.key if c in frame.columns]
    dup_keys = 0
    if len(key) == len(table.key) and len(frame):
        values = [c for c in frame.columns if c != "created_timestamp"]
        distinct = frame.drop_duplicates(values)
        dups = distinct.duplicated(key, keep=False)
        dup_keys = int(distinct.loc[dups, key].drop_duplicates().shape[0])
        if dup_keys:
            example = distinct.loc[dups, key].iloc[0].to_dict()
            rows.append(finding("duplicate_key", None, None, dup_keys, 0,
                                 f"{dup_keys} key(s) {list(table.key)} with conflicting rows, e.g. {example}", "error", table.name))
    summary = {
        "rows": len(frame), "columns": len(frame.columns),
        "latest_event_timestamp": latest.isoformat() if latest is not None and pd.notna(latest) else None,
        "nan_rates": nan_rates, "max_nan_rate": max(nan_rates.values(), default=0.0), "duplicate_keys": dup_keys,
    }
    return findings_frame(rows), summary

