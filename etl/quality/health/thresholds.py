"""The health thresholds: their defaults, which check breaches which, and overrides.
What each one means: docs/health.md."""

from __future__ import annotations

import math
from collections.abc import Mapping

from etl.core.errors import ConfigError

DEFAULT_THRESHOLDS: dict[str, float] = {
    "min_coverage": 0.98,
    "max_gap_sessions": 5,
    "max_nan_rate_prices": 0.0,
    "stale_sessions": 5,
    "flat_sessions": 5,
    "max_error_outliers": 0,
    "max_duplicates": 0,
    "max_bad_dividends": 0,
    "max_dividend_yield": 0.30,
    "min_annual_dividend_yield": 0.001,
    "table_stale_days": 7,
    "max_missing_event_timestamps": 0,
    "max_unreadable_tables": 0,
    # outlier detection (log-ratio units unless noted)
    "spike_min_move": math.log(1.5),    # a spike moves at least +50% / -33%
    "spike_sigmas": 10.0,               # ... and at least this many robust daily sigmas
    "spike_reversal": 0.5,              # the next bar takes back at least half of it
    "split_tolerance": 0.05,            # |log(ratio) - log(split ratio)| to count as split-like
    "unit_tolerance": 0.2,              # |log(ratio) - log(100)| to count as a 100x unit error
    "split_window_sessions": 10,        # how far a recorded split may be from a matching move
    "jump_min_move": math.log(3.0),     # any move of 3x or 1/3 is at least a warning
    "dividend_drop_min_yield": 0.05,    # a 5%+ dividend should show in the ex-date price
    "dividend_duplicate_days": 7,
}

#: the threshold each check breaches when one of its findings is an error
CHECK_THRESHOLD = {
    "coverage": "min_coverage",
    "gap": "max_gap_sessions",
    "nan_rate": "max_nan_rate_prices",
    "stale": "stale_sessions",
    "flat": "flat_sessions",
    "outlier": "max_error_outliers",
    "duplicate": "max_duplicates",
    "dividend": "max_bad_dividends",
    "table_stale": "table_stale_days",
    "duplicate_key": "max_duplicates",
    "missing_event_timestamp": "max_missing_event_timestamps",
    "unreadable": "max_unreadable_tables",
}

#: thresholds that are a number of tolerated error findings
COUNT_THRESHOLDS = frozenset({
    "max_error_outliers", "max_duplicates", "max_bad_dividends", "max_missing_event_timestamps", "max_unreadable_tables",
})


def resolve_thresholds(thresholds: Mapping | None = None) -> dict:
    """The defaults overridden by ``thresholds``; an unknown name is a ConfigError."""
    out = dict(DEFAULT_THRESHOLDS)
    for name, value in (thresholds or {}).items():
        if name not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"unknown health threshold {name!r}; known: {sorted(DEFAULT_THRESHOLDS)}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"health threshold {name} must be a number, got {value!r}") from None
    return out
