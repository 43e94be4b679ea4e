"""Versions and duplicates: the latest version of each bar, and (symbol, session)s present twice."""

from __future__ import annotations

import pandas as pd

from etl.quality.health.frames import day, finding, findings_frame, prepare_bars


def latest_versions(all_versions: pd.DataFrame) -> pd.DataFrame:
    """The rows of each (symbol, session) with the latest ``known_timestamp``
    (two rows there are a conflict the duplicate check reports)."""
    if "known_timestamp" not in all_versions.columns:
        return all_versions
    newest = all_versions.groupby(["symbol", "session"])["known_timestamp"].transform("max")
    return all_versions.loc[all_versions["known_timestamp"] == newest].reset_index(drop=True)


def check_duplicates(bars: pd.DataFrame) -> pd.DataFrame:
    """(symbol, session) pairs present more than once."""
    frame = prepare_bars(bars)
    counts = frame.groupby(["symbol", "session"], sort=True).size()
    rows = [
        finding("duplicate", sym, sess, int(n), 1, f"{int(n)} rows for {sym} on {day(sess)}", "error")
        for (sym, sess), n in counts[counts > 1].items()
    ]
    return findings_frame(rows)
