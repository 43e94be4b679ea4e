"""Data health: is the warehouse's data complete, fresh and plausible?

``run_health(settings)`` reads the silver store and writes
``reports/health/health.json`` and ``health.html`` (both atomically). It reads
the daily bars a chunk of 64 symbols at a time and the other tables a partition
at a time where it can, so its memory follows the chunk, not the store; the
report is the one a single pass would give. The checks are pure: a bars frame (and optionally a corporate-actions frame) in,
a findings frame out. What each check does, the thresholds and how to read
the report: docs/health.md.

Modules, by concept: ``thresholds``; ``frames`` (the bars and findings frames
every check shares); the bar checks ``coverage``, ``nan_rates``,
``staleness``, ``duplicates``, ``outliers`` and ``dividends`` (over
``actions`` and ``moves``: a symbol's moves after its corporate actions);
``sources`` (two sources' bars of one symbol-session that disagree);
``table_checks`` (the other silver tables); ``report`` (``run_health``, the
summary, JSON) and ``html_report`` (the page and its plots).
"""

from __future__ import annotations

from etl.quality.errors import BarsFrameError, HealthCheckError
from etl.quality.health.coverage import check_coverage, coverage_stats
from etl.quality.health.dividends import check_dividends
from etl.quality.health.duplicates import check_duplicates, latest_versions
from etl.quality.health.frames import BAR_VALUE_COLUMNS, FINDING_COLUMNS, PRICE_COLUMNS
from etl.quality.health.nan_rates import check_nan_rates
from etl.quality.health.outliers import SPLIT_RATIOS, check_outliers
from etl.quality.health.report import HealthReport, check_bars, run_health
from etl.quality.health.sources import check_sources, source_disagreements
from etl.quality.health.staleness import check_stale
from etl.quality.health.table_checks import check_table
from etl.quality.health.thresholds import CHECK_THRESHOLD, COUNT_THRESHOLDS, DEFAULT_THRESHOLDS, resolve_thresholds

__all__ = [
    "BAR_VALUE_COLUMNS",
    "CHECK_THRESHOLD",
    "COUNT_THRESHOLDS",
    "DEFAULT_THRESHOLDS",
    "FINDING_COLUMNS",
    "PRICE_COLUMNS",
    "SPLIT_RATIOS",
    "BarsFrameError",
    "HealthCheckError",
    "HealthReport",
    "check_bars",
    "check_coverage",
    "check_dividends",
    "check_duplicates",
    "check_nan_rates",
    "check_outliers",
    "check_sources",
    "check_stale",
    "check_table",
    "coverage_stats",
    "latest_versions",
    "resolve_thresholds",
    "run_health",
    "source_disagreements",
]
