"""The checks of the other silver tables: rows, NaN rates, newest event, missing times, duplicate keys.

A table can be checked in one frame (:func:`check_table`) or in pieces
(:class:`TableProfile`: ``add`` each piece, then ``result``) with the same
answer, as long as every version key lies in one piece (a table read partition
by partition where the partition columns are key columns, daily bars read
chunk by chunk of symbols).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from etl.quality.health.frames import finding, findings_frame
from etl.quality.health.thresholds import resolve_thresholds


class TableProfile:
    """What the table checks need of a table, gathered piece by piece."""

    def __init__(self, table):
        self.table = table
        self.rows = 0
        self.columns: list[str] = []
        self.missing_values: dict[str, int] = {}
        self.latest = None
        self.missing_events = 0
        self.dup_keys = 0
        self.example: dict | None = None

    def add(self, frame: pd.DataFrame) -> None:
        """Count one piece of the table."""
        for c in frame.columns:
            if c not in self.missing_values:
                self.columns.append(c)
                self.missing_values[c] = 0
            self.missing_values[c] += int(frame[c].isna().sum())
        self.rows += len(frame)
        if "event_timestamp" in frame.columns and len(frame):
            ev = pd.to_datetime(frame["event_timestamp"], utc=True)
            self.missing_events += int(ev.isna().sum())
            top = ev.max()
            if pd.notna(top) and (self.latest is None or top > self.latest):
                self.latest = top
        key = [c for c in self.table.key if c in frame.columns]
        if len(key) == len(self.table.key) and len(frame):
            values = [c for c in frame.columns if c != "created_timestamp"]
            distinct = frame.drop_duplicates(values)
            dups = distinct.duplicated(key, keep=False)
            n = int(distinct.loc[dups, key].drop_duplicates().shape[0])
            if n and self.example is None:
                self.example = distinct.loc[dups, key].iloc[0].to_dict()
            self.dup_keys += n

    def result(self, now: pd.Timestamp, thresholds: Mapping | None = None) -> tuple[pd.DataFrame, dict]:
        """The findings and the summary of the table (as :func:`check_table` gives them)."""
        th = resolve_thresholds(thresholds)
        name = self.table.name
        rows = []
        if self.missing_events:
            rows.append(finding("missing_event_timestamp", None, None, self.missing_events, 0,
                                f"{self.missing_events} row(s) without event_timestamp: not point-in-time usable", "error", name))
        latest = self.latest
        if latest is not None:
            age = (now - latest) / pd.Timedelta(days=1)
            if age > th["table_stale_days"]:
                rows.append(finding("table_stale", None, latest.tz_convert(None), age, th["table_stale_days"],
                                    f"newest event_timestamp {latest:%Y-%m-%d %H:%M} UTC is {age:.0f} days old", "warning", name))
        if self.dup_keys:
            rows.append(finding("duplicate_key", None, None, self.dup_keys, 0,
                                f"{self.dup_keys} key(s) {list(self.table.key)} with conflicting rows, e.g. {self.example}", "error", name))
        nan_rates = {c: self.missing_values[c] / self.rows for c in self.columns} if self.rows else {}
        summary = {
            "rows": self.rows, "columns": len(self.columns),
            "latest_event_timestamp": latest.isoformat() if latest is not None else None,
            "nan_rates": nan_rates, "max_nan_rate": max(nan_rates.values(), default=0.0), "duplicate_keys": self.dup_keys,
        }
        return findings_frame(rows), summary


def check_table(frame: pd.DataFrame, table, now: pd.Timestamp, thresholds: Mapping | None = None) -> tuple[pd.DataFrame, dict]:
    """Row count, NaN rate per column, newest event, duplicate keys of one silver table."""
    profile = TableProfile(table)
    profile.add(frame)
    return profile.result(now, thresholds)
