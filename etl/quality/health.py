"""Data health: is the warehouse's data complete, fresh and plausible?

``run_health(settings)`` reads the silver store and writes
``reports/health/health.json`` and ``health.html`` (both atomically). The check
functions are pure: a bars frame (``symbol``, ``session`` (naive date),
``open``, ``high``, ``low``, ``close``, ``volume``, optional ``dividends``)
and, optionally, a corporate-actions frame (``symbol``, ``ex_date``,
``split`` = new shares per old share, ``dividend`` = cash per share) in, a
findings frame out. One finding is one row: ``table, check, symbol, date,
value, threshold, detail, severity`` ("error" or "warning").

Checks on daily bars
- ``coverage``: sessions present / sessions the exchange calendar expects
  between the symbol's first and last bar (``calendar=`` per call: a name, or
  a mapping symbol -> name for a store that mixes exchanges).
- ``off_calendar``: bars dated on days that are not sessions (warning).
- ``gap``: each run of missing sessions, with its length.
- ``nan_rate``: the share of missing values per symbol and column.
- ``stale``: the symbol's last bar is more than ``stale_sessions`` sessions
  older than the store's latest session.
- ``flat``: the close unchanged for ``flat_sessions`` sessions or more while
  volume > 0 (a feed repeating its last print). Illiquid names whose close is
  a quoted mid repeat it for a week or two, so this is a warning, and an
  error from four times ``flat_sessions`` on.
- ``outlier``: on the close-to-close ratio, after letting a corporate action
  of that day explain the move (a split of s new shares per old one explains
  a ratio of 1/s; a dividend explains a drop of its amount):
  ``unit_100x`` a ratio near 100 or 1/100 (pence vs pounds, cents vs units);
  ``split_misaligned`` a ratio that matches a split recorded for the symbol
  within ``split_window_sessions``, but not on that day;
  ``spike`` an extreme move that the next bar takes back (error when the bar's
  whole high-low range is apart from both neighbours', else a warning);
  ``split_like`` a ratio near a split ratio (2, 3, 4, 5, 7, 10, 1/2, ...) with
  no corporate action and no overlap with the previous bar's range (error for
  ratios of 3 or more; 2 and 1/2 happen in real markets and are warnings);
  ``jump`` any other extreme move (warning).
- ``duplicate``: the same (symbol, session) more than once among the latest
  versions.
- ``dividend`` (when dividends are known): larger than ``max_dividend_yield``
  of the previous close without a matching fall in price; about 100x (or
  1/100) of the symbol's usual yield; a multiple of a nearby split's ratio
  (not split-adjusted); a trailing-year yield below
  ``min_annual_dividend_yield`` (a unit error the other way); a yield of at
  least ``dividend_drop_min_yield`` on an ex-date the price did not fall; two
  dividends within ``dividend_duplicate_days`` days.

Other silver tables (every table of ``etl.tables.ALL`` that has rows): row
count, NaN rate per column, newest ``event_timestamp`` (a warning when older
than ``table_stale_days``), rows without an ``event_timestamp`` and duplicate
version keys.

Default thresholds (``DEFAULT_THRESHOLDS``; pass ``thresholds={...}`` to
override any of them):

    min_coverage            0.98   coverage below is an error
    max_gap_sessions        5      a longer gap is an error (shorter: warning)
    max_nan_rate_prices     0.0    any missing open/high/low/close is an error
    stale_sessions          5      last bar more sessions behind is an error
    flat_sessions           5      this many unchanged closes with volume: warning (4x: error)
    max_error_outliers      0      more error-severity outliers than this is a breach
    max_duplicates          0      more duplicated (symbol, session)s or keys is a breach
    max_bad_dividends       0      more error-severity dividend findings is a breach
    max_dividend_yield      0.30   a dividend above 30% of the close is suspect
    min_annual_dividend_yield 0.001 trailing-year yield below 0.1% is suspect
    table_stale_days        7      newest event older than this: warning
    max_missing_event_timestamps 0 rows without event_timestamp are an error
    max_unreadable_tables   0      a table that cannot be read is an error

A finding of severity "error" breaches its threshold (for the ``max_*``
counts: more such findings than the count); ``HealthReport.failed`` names
each breached threshold and ``strict=True`` raises
:class:`HealthCheckError` with them (after writing the report).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import AlphaError, ConfigError, NotIngestedError
from etl.storage.atomic import atomic_write_text

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

FINDING_COLUMNS = ["table", "check", "symbol", "date", "value", "threshold", "detail", "severity"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
BAR_VALUE_COLUMNS = [*PRICE_COLUMNS, "volume"]
#: split ratios (new shares per old share, and their reverses) a bad series often shows
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
_MAX_PLOTS = 12
_BARS_TABLE = "bars_daily"


class HealthCheckError(AlphaError):
    """A data health threshold was breached (``alpha health --strict``)."""

    def __init__(self, failed: list[str], report_path: str | None = None):
        self.failed = list(failed)
        self.report_path = report_path
        lines = [f"data health check failed: {len(self.failed)} threshold(s) breached:"]
        lines += [f"  {f}" for f in self.failed]
        if report_path:
            lines.append(f"See the report for every finding: {report_path}")
        super().__init__("\n".join(lines))


@dataclass
class HealthReport:
    findings: pd.DataFrame
    summary: dict
    paths: dict[str, Path] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def text(self) -> str:
        """One paragraph for the CLI."""
        s = self.summary
        counts = s.get("counts", {})
        syms = s.get("symbols", {})
        parts = [f"Data health of {s.get('home')}:"]
        if syms:
            cov = [v["coverage"] for v in syms.values() if v.get("coverage") is not None]
            parts.append(
                f"{len(syms)} symbol(s), {s.get('bars', 0):,} daily bars"
                + (f", coverage {min(cov):.1%} (worst) to {max(cov):.1%}" if cov else "")
                + f", {sum(v['gaps'] for v in syms.values())} gap(s);"
            )
        else:
            parts.append("no daily bars;")
        present = [n for n, t in s.get("tables", {}).items() if t.get("rows")]
        parts.append(f"{len(present)} silver table(s) with rows;")
        parts.append(f"{counts.get('error', 0)} error(s), {counts.get('warning', 0)} warning(s).")
        if self.failed:
            parts.append("Breached: " + "; ".join(f.split(":")[0] for f in self.failed) + ".")
        else:
            parts.append("No threshold breached.")
        if self.paths.get("html"):
            parts.append(f"Report: {self.paths['html']}")
        return " ".join(parts)


# ------------------------------------------------------------------ helpers

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


def _findings(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    frame["date"] = pd.to_datetime(frame["date"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["threshold"] = pd.to_numeric(frame["threshold"], errors="coerce").astype("float64")
    return frame


def _finding(check, symbol, date, value, threshold, detail, severity, table=_BARS_TABLE) -> dict:
    return {"table": table, "check": check, "symbol": symbol, "date": date, "value": value,
            "threshold": threshold, "detail": detail, "severity": severity}


def _calendar_for(symbol: str, calendar) -> str:
    if isinstance(calendar, Mapping):
        return calendar.get(symbol, calendar.get("*", "XNYS"))
    return calendar or "XNYS"


def _prepare(bars: pd.DataFrame) -> pd.DataFrame:
    """Columns lower-cased, ``session`` naive, sorted by symbol and session."""
    missing = [c for c in ("symbol", "session") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars frame lacks column(s) {missing}")
    frame = bars.rename(columns={c: c.lower() for c in bars.columns if c.lower() in (*BAR_VALUE_COLUMNS, "dividends")})
    session = pd.to_datetime(frame["session"])
    if getattr(session.dt, "tz", None) is not None:
        session = session.dt.tz_localize(None)  # keep the exchange-local wall date
    frame = frame.assign(session=session, symbol=frame["symbol"].astype(str))
    return frame.sort_values(["symbol", "session"], kind="stable").reset_index(drop=True)


def _day(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# ----------------------------------------------------------------- coverage

def coverage_stats(bars: pd.DataFrame, calendar="XNYS") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per symbol: first/last bar, expected and present sessions, coverage;
    and every run of missing sessions (symbol, start, end, length)."""
    frame = _prepare(bars)
    rows, gaps = [], []
    for symbol, g in frame.groupby("symbol", sort=True):
        days = pd.DatetimeIndex(g["session"].dt.normalize().unique())
        cal = _calendar_for(symbol, calendar)
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
            "off_calendar": len(off), "off_calendar_days": [_day(d) for d in off[:5]],
        })
    stats = pd.DataFrame(rows, columns=["symbol", "calendar", "first", "last", "bars", "expected", "present",
                                        "coverage", "gaps", "max_gap", "off_calendar", "off_calendar_days"])
    return stats, pd.DataFrame(gaps, columns=["symbol", "start", "end", "length"])


def check_coverage(bars: pd.DataFrame, calendar="XNYS", thresholds: Mapping | None = None) -> pd.DataFrame:
    """Coverage per symbol against the exchange calendar, each gap with its
    length, and bars dated on days that are not sessions."""
    th = resolve_thresholds(thresholds)
    stats, gaps = coverage_stats(bars, calendar)
    rows = []
    for s in stats.itertuples():
        if s.coverage < th["min_coverage"]:
            rows.append(_finding(
                "coverage", s.symbol, s.first, s.coverage, th["min_coverage"],
                f"{s.present} of {s.expected} {s.calendar} sessions from {_day(s.first)} to {_day(s.last)} "
                f"({s.coverage:.2%}) are present", "error"))
        if s.off_calendar:
            rows.append(_finding(
                "off_calendar", s.symbol, s.first, s.off_calendar, 0,
                f"{s.off_calendar} bar(s) on days that are not {s.calendar} sessions, e.g. {', '.join(s.off_calendar_days)}",
                "warning"))
    for gp in gaps.itertuples():
        severity = "error" if gp.length > th["max_gap_sessions"] else "warning"
        rows.append(_finding(
            "gap", gp.symbol, gp.start, gp.length, th["max_gap_sessions"],
            f"{gp.length} session(s) missing from {_day(gp.start)} to {_day(gp.end)}", severity))
    return _findings(rows)


# ------------------------------------------------------------- NaN, stale

def check_nan_rates(bars: pd.DataFrame, thresholds: Mapping | None = None) -> pd.DataFrame:
    """Share of missing values per symbol and column (prices, volume, dividends)."""
    th = resolve_thresholds(thresholds)
    frame = _prepare(bars)
    cols = [c for c in (*BAR_VALUE_COLUMNS, "dividends") if c in frame.columns]
    rows = []
    for symbol, g in frame.groupby("symbol", sort=True):
        for col in cols:
            n = int(g[col].isna().sum())
            if n == 0:
                continue
            rate = n / len(g)
            is_price = col in PRICE_COLUMNS
            severity = "error" if is_price and rate > th["max_nan_rate_prices"] else "warning"
            first = g.loc[g[col].isna(), "session"].iloc[0]
            rows.append(_finding(
                "nan_rate", symbol, first, rate, th["max_nan_rate_prices"] if is_price else float("nan"),
                f"{col}: {n} of {len(g)} rows missing ({rate:.2%}), first on {_day(first)}", severity))
    return _findings(rows)


def check_stale(bars: pd.DataFrame, calendar="XNYS", thresholds: Mapping | None = None, latest=None) -> pd.DataFrame:
    """Series whose last bar lags the store's latest session (or ``latest``) by
    more than ``stale_sessions`` sessions, and closes repeated for
    ``flat_sessions`` sessions or more while volume > 0."""
    th = resolve_thresholds(thresholds)
    frame = _prepare(bars)
    rows = []
    if frame.empty:
        return _findings(rows)
    latest = pd.Timestamp(latest) if latest is not None else frame["session"].max()
    for symbol, g in frame.groupby("symbol", sort=True):
        last = g["session"].max()
        behind = clock.sessions_in_range(last.normalize() + pd.Timedelta(days=1), latest, _calendar_for(symbol, calendar))
        if len(behind) > th["stale_sessions"]:
            rows.append(_finding(
                "stale", symbol, last, len(behind), th["stale_sessions"],
                f"last bar {_day(last)} is {len(behind)} sessions before the store's latest session {_day(latest)} "
                f"(no bars from {_day(behind[0])} to {_day(behind[-1])})", "error"))
        if "volume" in g.columns:
            close = g["close"].to_numpy(dtype=float)
            vol = g["volume"].to_numpy(dtype=float)
            same = np.zeros(len(g), dtype=bool)
            same[1:] = (close[1:] == close[:-1]) & (vol[1:] > 0)
            for start, length in _runs(same):
                if length >= th["flat_sessions"]:
                    sess = g["session"].iloc[start]
                    end = g["session"].iloc[start + length - 1]
                    rows.append(_finding(
                        "flat", symbol, sess, length, th["flat_sessions"],
                        f"close {_fmt(close[start])} unchanged for {length} sessions with volume > 0 "
                        f"({_day(sess)} to {_day(end)})", "error" if length >= 4 * th["flat_sessions"] else "warning"))
    return _findings(rows)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


# --------------------------------------------------------------- duplicates

def check_duplicates(bars: pd.DataFrame) -> pd.DataFrame:
    """(symbol, session) pairs present more than once."""
    frame = _prepare(bars)
    counts = frame.groupby(["symbol", "session"], sort=True).size()
    rows = [
        _finding("duplicate", sym, sess, int(n), 1, f"{int(n)} rows for {sym} on {_day(sess)}", "error")
        for (sym, sess), n in counts[counts > 1].items()
    ]
    return _findings(rows)


# ----------------------------------------------------------------- outliers

def corporate_actions_from_factors(factors: pd.DataFrame | None) -> pd.DataFrame:
    """Lean factor-file rows (``etl.ingest.read_corporate_actions``) as events:
    ``symbol, ex_date, split, dividend``.

    A factor row applies to raw prices up to its date; the next row applies
    from the ex-date on. So the split at an ex-date is the ratio of the next
    row's split factor to this row's, and the dividend is
    ``reference_price * (1 - price_factor / next price_factor)``. The 20501231
    sentinel (both factors 1) follows the last stored row.
    """
    cols = ["symbol", "ex_date", "split", "dividend"]
    if factors is None or factors.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for symbol, g in factors.sort_values(["symbol", "factor_date"]).groupby("symbol", sort=True):
        pf = g["price_factor"].to_numpy(dtype=float)
        sf = g["split_factor"].to_numpy(dtype=float)
        ref = g["reference_price"].to_numpy(dtype=float)
        next_pf = np.append(pf[1:], 1.0)
        next_sf = np.append(sf[1:], 1.0)
        split = next_sf / sf
        dividend = ref * (1.0 - pf / next_pf)
        frame = pd.DataFrame({
            "symbol": symbol, "ex_date": pd.to_datetime(g["ex_date"]).to_numpy(),
            "split": np.round(split, 4), "dividend": np.round(dividend, 5),
        })
        keep = (np.abs(frame["split"] - 1.0) > 1e-6) | (frame["dividend"] > 1e-6)
        out.append(frame.loc[keep])
    events = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)
    events.loc[events["dividend"] <= 1e-6, "dividend"] = 0.0
    return events[cols].reset_index(drop=True)


def _actions_by_symbol(actions: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    if actions is None or len(actions) == 0:
        return {}
    a = actions.copy()
    a["ex_date"] = pd.to_datetime(a["ex_date"]).dt.normalize()
    for col, default in (("split", 1.0), ("dividend", 0.0)):
        a[col] = pd.to_numeric(a[col], errors="coerce").fillna(default) if col in a else default
    a.loc[a["split"] <= 0, "split"] = 1.0
    return {str(s): g for s, g in a.groupby("symbol", sort=False)}


@dataclass
class _Series:
    """One symbol's valid bars, with the move of each bar after corporate actions."""

    symbol: str
    frame: pd.DataFrame          # valid rows (close > 0), sorted
    x: np.ndarray                # log(close / previous close), corporate-action adjusted
    x_raw: np.ndarray            # unadjusted
    sigma: np.ndarray            # robust daily sigma around each bar
    overlap_prev: np.ndarray     # the bar's range overlaps the previous bar's range
    overlap_next: np.ndarray
    split_on: np.ndarray         # split recorded on the bar's day (1.0 = none)
    x_nodiv: np.ndarray          # the move after a split of that day, before any dividend
    splits: pd.DataFrame         # the symbol's recorded splits (ex_date, split)


def _series(symbol: str, g: pd.DataFrame, acts: pd.DataFrame | None) -> _Series:
    close = pd.to_numeric(g["close"], errors="coerce")
    valid = g.loc[np.isfinite(close) & (close > 0)].reset_index(drop=True)
    c = valid["close"].to_numpy(dtype=float)
    n = len(valid)
    day = valid["session"].dt.normalize()
    split_on = np.ones(n)
    div_on = np.zeros(n)
    splits = pd.DataFrame(columns=["ex_date", "split"])
    if acts is not None and len(acts):
        by_day = acts.groupby("ex_date").agg(split=("split", "prod"), dividend=("dividend", "sum"))
        split_on = day.map(by_day["split"]).fillna(1.0).to_numpy(dtype=float)
        div_on = day.map(by_day["dividend"]).fillna(0.0).to_numpy(dtype=float)
        splits = acts.loc[np.abs(np.log(acts["split"])) > 1e-6, ["ex_date", "split"]]
    prev = np.concatenate([[np.nan], c[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        x_raw = np.log(c / prev)
        cands = [x_raw, x_raw + np.log(split_on)]
        net = prev - div_on
        cands.append(np.where((div_on > 0) & (net > 0), np.log(c / np.where(net > 0, net, np.nan)), np.nan))
    stack = np.vstack(cands)
    pick = np.nanargmin(np.where(np.isnan(stack), np.inf, np.abs(stack)), axis=0)
    x = stack[pick, np.arange(n)] if n else x_raw
    # the move a split alone explains (for judging a dividend's ex-date)
    x_nodiv = np.where(np.abs(cands[1]) < np.abs(x_raw), cands[1], x_raw)
    absx = pd.Series(np.abs(x))
    sigma = (absx.rolling(63, center=True, min_periods=10).median() * 1.4826).to_numpy()
    overall = float(np.nanmedian(np.abs(x))) * 1.4826 if np.isfinite(x).any() else 0.0
    sigma = np.where(np.isfinite(sigma), sigma, overall)
    sigma = np.maximum(sigma, 0.01)
    lo, hi = _bar_range(valid)
    # the previous bar's range, rescaled by the corporate action when it explained the move
    scale = np.where(pick == 1, 1.0 / split_on, 1.0)
    prev_lo = np.concatenate([[np.nan], lo[:-1]]) * scale
    prev_hi = np.concatenate([[np.nan], hi[:-1]]) * scale
    overlap_prev = ~((lo > prev_hi) | (hi < prev_lo))  # NaN comparisons are False: unknown counts as overlap
    overlap_next = np.concatenate([overlap_prev[1:], [True]])
    return _Series(symbol, valid, x, x_raw, sigma, overlap_prev, overlap_next, split_on, x_nodiv, splits)


def _bar_range(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in PRICE_COLUMNS if c in frame.columns]
    values = frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    values = np.where(values > 0, values, np.nan)
    with np.errstate(all="ignore"):
        return np.nanmin(values, axis=1), np.nanmax(values, axis=1)


def _nearest_split_ratio(x: float) -> tuple[float, float]:
    """(ratio, |log distance|) of the split ratio (or reverse) nearest exp(x)."""
    logs = np.log(np.array(SPLIT_RATIOS))
    logs = np.concatenate([logs, -logs])
    i = int(np.argmin(np.abs(logs - x)))
    return float(np.exp(logs[i])), float(abs(logs[i] - x))


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.4g}x" if ratio >= 1 else f"1/{1 / ratio:.4g}"


def check_outliers(bars: pd.DataFrame, actions: pd.DataFrame | None = None, thresholds: Mapping | None = None) -> pd.DataFrame:
    """Implausible daily moves: 100x unit errors, moves that match a split
    recorded on another day, spikes that reverse, split-like ratios without a
    corporate action, and other extreme jumps. One finding per bar."""
    th = resolve_thresholds(thresholds)
    frame = _prepare(bars)
    acts = _actions_by_symbol(actions)
    rows = []
    for symbol, g in frame.groupby("symbol", sort=True):
        s = _series(symbol, g, acts.get(symbol))
        rows += _series_outliers(s, th)
    return _findings(rows)


def _series_outliers(s: _Series, th: dict) -> list[dict]:
    rows = []
    n = len(s.x)
    sessions = s.frame["session"]
    close = s.frame["close"].to_numpy(dtype=float)
    pos_of_day = {d: i for i, d in enumerate(sessions.dt.normalize())}
    split_pos = [(pos_of_day.get(r.ex_date), r.ex_date, float(r.split)) for r in s.splits.itertuples()]
    log100 = math.log(100.0)
    reverted = -1  # the bar that takes back a flagged move is the way back, not a second problem
    for t in range(1, n):
        x = s.x[t]
        if t == reverted or not np.isfinite(x) or abs(x) < min(th["split_tolerance"] * 3, th["spike_min_move"]):
            continue
        prev_close = close[t - 1]
        head = f"close {_fmt(close[t])} after {_fmt(prev_close)} ({_ratio_text(math.exp(s.x_raw[t]))})"
        apart = not s.overlap_prev[t]
        found = None  # (kind, severity, threshold, detail)
        # 1. currency unit: 100x or 1/100
        if abs(abs(x) - log100) <= th["unit_tolerance"]:
            found = ("unit_100x", "error", th["unit_tolerance"],
                     f"{head}: about {'100x' if x > 0 else '1/100'} the previous close, a currency-unit error (pence vs pounds, cents vs units)?")
        # 2. a recorded split of the symbol explains this ratio, but on another day
        if found is None and apart:
            for pos, ex_date, split in split_pos:
                want = -math.log(split)
                if abs(want) < 3 * th["split_tolerance"] or abs(x - want) > th["split_tolerance"]:
                    continue
                if pos == t:
                    continue
                dist = _session_distance(sessions, t, pos, ex_date)
                if dist <= th["split_window_sessions"]:
                    found = ("split_misaligned", "error", th["split_tolerance"],
                             f"{head} matches the split of {split:g} recorded on {_day(ex_date)}, "
                             f"{dist} session(s) away, not on this day: split applied on the wrong day or only partly?")
                    break
        # 3. spike: extreme and taken back by the next bar
        big = abs(x) >= max(th["spike_min_move"], th["spike_sigmas"] * s.sigma[t])
        if found is None and big and t + 1 < n and np.isfinite(s.x[t + 1]):
            nxt = s.x[t + 1]
            if np.sign(nxt) == -np.sign(x) and abs(nxt) >= th["spike_reversal"] * abs(x):
                isolated = apart and not s.overlap_next[t]
                found = ("spike", "error" if isolated else "warning", th["spike_min_move"],
                         f"{head}, then {_fmt(close[t + 1])} on {_day(sessions.iloc[t + 1])}: a spike that reverses"
                         + ("" if isolated else " (the bar's range overlaps a neighbour's, so it may be real)"))
        # 4. split-like ratio with no corporate action
        if found is None and apart:
            split_ratio, dist = _nearest_split_ratio(x)
            if dist <= th["split_tolerance"] and abs(math.log(split_ratio)) > 3 * th["split_tolerance"]:
                severe = abs(math.log(split_ratio)) >= math.log(3.0) - 1e-9
                found = ("split_like", "error" if severe else "warning", th["split_tolerance"],
                         f"{head} is close to a split ratio of {_ratio_text(split_ratio)} and no corporate action is "
                         f"recorded that day: an unapplied split?")
        # 5. any other extreme move
        if found is None and abs(x) >= max(th["jump_min_move"], th["spike_sigmas"] * s.sigma[t]):
            found = ("jump", "warning", th["jump_min_move"], f"{head}: an extreme move with no corporate action")
        if found:
            if t + 1 < n and np.sign(s.x[t + 1]) == -np.sign(x) and abs(s.x[t + 1]) >= th["spike_reversal"] * abs(x):
                reverted = t + 1
            kind, severity, threshold, detail = found
            rows.append(_finding("outlier", s.symbol, sessions.iloc[t], math.exp(s.x_raw[t]), threshold,
                                 f"{kind}: {detail}", severity))
    return rows


def _session_distance(sessions: pd.Series, t: int, pos: int | None, ex_date: pd.Timestamp) -> int:
    if pos is not None:
        return abs(pos - t)
    # the split's day has no bar: count the bars between
    idx = int(np.searchsorted(sessions.dt.normalize().to_numpy(), np.datetime64(ex_date)))
    return abs(idx - t) + (1 if idx <= t else 0)


# ---------------------------------------------------------------- dividends

def check_dividends(bars: pd.DataFrame, actions: pd.DataFrame | None = None, thresholds: Mapping | None = None) -> pd.DataFrame:
    """Dividend sanity (when the bars have a ``dividends`` column or the
    corporate actions carry dividends). One finding per dividend."""
    th = resolve_thresholds(thresholds)
    frame = _prepare(bars)
    acts = _actions_by_symbol(actions)
    if "dividends" not in frame.columns:
        if not acts:
            return _findings([])
        divs = pd.concat([a[["symbol", "ex_date", "dividend"]] for a in acts.values()], ignore_index=True)
        divs = divs.groupby(["symbol", "ex_date"], as_index=False)["dividend"].sum()
        frame = frame.merge(divs.rename(columns={"ex_date": "session", "dividend": "dividends"}),
                            on=["symbol", "session"], how="left")
        frame["dividends"] = frame["dividends"].fillna(0.0)
    rows = []
    for symbol, g in frame.groupby("symbol", sort=True):
        if not (pd.to_numeric(g["dividends"], errors="coerce") > 0).any():
            continue
        rows += _symbol_dividends(_series(symbol, g, acts.get(symbol)), th)
    return _findings(rows)


def _symbol_dividends(s: _Series, th: dict) -> list[dict]:
    f = s.frame
    div = pd.to_numeric(f["dividends"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    close = f["close"].to_numpy(dtype=float)
    sessions = f["session"]
    idx = np.flatnonzero(div > 0)
    idx = idx[idx > 0]  # a dividend needs the previous close to be judged
    if len(idx) == 0:
        return []
    prev = close[idx - 1]
    yields = div[idx] / prev
    # the ex-date move net of any split explained that day
    move = np.exp(s.x_nodiv[idx]) - 1.0
    rows = []
    days = sessions.iloc[idx].dt.normalize().to_numpy()
    first_day = sessions.iloc[0].normalize().to_datetime64()
    for k, t in enumerate(idx):
        y, m, d = yields[k], move[k], div[t]
        reasons, severity = [], "warning"
        others = np.delete(yields, k)
        usual = float(np.median(others)) if len(others) >= 2 else float("nan")
        head = f"dividend {_fmt(d)} on {_day(sessions.iloc[t])} is {y:.2%} of the previous close {_fmt(prev[k])}"
        fell = m <= -y / 2  # the ex-date price fell by at least half the dividend
        if np.isfinite(usual) and usual > 0:
            rel = y / usual
            if abs(abs(math.log10(rel)) - 2.0) <= 0.5:
                if rel > 1:
                    reasons.append(f"about 100x the symbol's usual yield {usual:.2%}: a currency-unit error?"
                                   + (f" (the price did fall {-m:.1%})" if fell else ""))
                    severity = "error" if not fell else severity
                else:  # small one-off payments (an AGM bonus, a stub distribution) are real
                    reasons.append(f"about 1/100 of the symbol's usual yield {usual:.2%}: a currency-unit error?")
            else:
                for r in s.splits.itertuples():
                    near = abs((pd.Timestamp(r.ex_date) - pd.Timestamp(days[k])).days) <= 2 * th["split_window_sessions"]
                    if near and abs(math.log(rel) - math.log(r.split)) <= 0.25 and abs(math.log(r.split)) >= math.log(2):
                        reasons.append(f"{rel:.3g}x the usual yield {usual:.2%}, the ratio of the split of {r.split:g} on "
                                       f"{_day(r.ex_date)}: not adjusted for the split?")
                        severity = "error"
                        break
        if y > th["max_dividend_yield"]:
            if fell:
                reasons.append(f"above {th['max_dividend_yield']:.0%} of the close, but the price fell {-m:.1%} that day (a special dividend?)")
            else:
                reasons.append(f"above {th['max_dividend_yield']:.0%} of the close and the price moved {m:+.1%}, not down by the dividend")
                severity = "error"
        elif y >= th["dividend_drop_min_yield"] and m > -y / 3:
            # how far the ex-date move is from the expected fall, in daily sigmas
            z = (m + y) / s.sigma[t]
            reasons.append(f"the price moved {m:+.1%} on the ex-date, not down by the dividend ({z:.1f} sigma)")
            if z >= 4:
                severity = "error"
        year_ago = days[k] - np.timedelta64(365, "D")
        if first_day <= year_ago:  # a full year of history: the trailing-year yield
            window = (days > year_ago) & (days <= days[k])
            annual = float(np.sum(div[idx][window]) / prev[k])
            if annual < th["min_annual_dividend_yield"]:
                reasons.append(f"the trailing-year dividends are only {annual:.3%} of the close: 100x too small?")
                severity = "error"
        elif y < th["min_annual_dividend_yield"] / 4:  # even paid quarterly it would not reach the minimum
            reasons.append(f"below a quarter of {th['min_annual_dividend_yield']:.1%} (the least plausible yearly yield): 100x too small?")
            severity = "error"
        near = np.abs((days - days[k]).astype("timedelta64[D]").astype(int)) <= th["dividend_duplicate_days"]
        near[k] = False
        for j in np.flatnonzero(near):
            other = div[idx[j]]
            same = abs(other - d) <= 0.02 * max(other, d)
            reasons.append(f"another dividend of {_fmt(other)} on {_day(days[j])}" + (": a duplicate?" if same else ""))
            if same:
                severity = "error"
        if reasons:
            rows.append(_finding("dividend", s.symbol, sessions.iloc[t], y, th["max_dividend_yield"],
                                 f"{head}; " + "; ".join(reasons), severity))
    return rows


# ---------------------------------------------------------------- all bars

def check_bars(
    bars: pd.DataFrame, actions: pd.DataFrame | None = None, calendar="XNYS",
    thresholds: Mapping | None = None, latest=None,
) -> pd.DataFrame:
    """Every bar check on one frame (the pure core of :func:`run_health`)."""
    parts = [
        check_duplicates(bars),
        check_coverage(bars, calendar, thresholds),
        check_nan_rates(bars, thresholds),
        check_stale(bars, calendar, thresholds, latest),
    ]
    unique = _prepare(bars).drop_duplicates(["symbol", "session"], keep="last")
    parts += [check_outliers(unique, actions, thresholds), check_dividends(unique, actions, thresholds)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else _findings([])


def latest_versions(all_versions: pd.DataFrame) -> pd.DataFrame:
    """The rows of each (symbol, session) with the latest ``known_timestamp``
    (two rows there are a conflict the duplicate check reports)."""
    if "known_timestamp" not in all_versions.columns:
        return all_versions
    newest = all_versions.groupby(["symbol", "session"])["known_timestamp"].transform("max")
    return all_versions.loc[all_versions["known_timestamp"] == newest].reset_index(drop=True)


# ----------------------------------------------------------- other tables

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
            rows.append(_finding("missing_event_timestamp", None, None, missing, 0,
                                 f"{missing} row(s) without event_timestamp: not point-in-time usable", "error", table.name))
        if pd.notna(latest):
            age = (now - latest) / pd.Timedelta(days=1)
            if age > th["table_stale_days"]:
                rows.append(_finding("table_stale", None, latest.tz_convert(None), age, th["table_stale_days"],
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
            rows.append(_finding("duplicate_key", None, None, dup_keys, 0,
                                 f"{dup_keys} key(s) {list(table.key)} with conflicting rows, e.g. {example}", "error", table.name))
    summary = {
        "rows": len(frame), "columns": len(frame.columns),
        "latest_event_timestamp": latest.isoformat() if latest is not None and pd.notna(latest) else None,
        "nan_rates": nan_rates, "max_nan_rate": max(nan_rates.values(), default=0.0), "duplicate_keys": dup_keys,
    }
    return _findings(rows), summary


# --------------------------------------------------------------- run_health

def run_health(settings: Settings, strict: bool = False, thresholds: Mapping | None = None,
               now: pd.Timestamp | None = None, calendar=None) -> HealthReport:
    """Check the whole store, write ``reports/health/health.{json,html}`` and
    return the report; ``strict=True`` raises :class:`HealthCheckError` naming
    each breached threshold (after the files are written)."""
    from etl.storage import silver, tables
    from etl.storage.actions import read_corporate_actions
    from etl.storage.bars import read_silver_bars

    th = resolve_thresholds(thresholds)
    now = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    calendar = calendar or settings.calendar
    parts: list[pd.DataFrame] = []
    summary: dict = {
        "home": str(settings.home), "generated_at": now.isoformat(), "calendar": calendar if isinstance(calendar, str) else dict(calendar),
        "thresholds": th, "tables": {}, "symbols": {}, "bars": 0,
    }
    bars = actions = None
    try:
        all_versions = read_silver_bars(settings, versions="all")
    except NotIngestedError:
        all_versions = None
    if all_versions is not None:
        latest = latest_versions(all_versions)
        actions = corporate_actions_from_factors(read_corporate_actions(settings))
        parts.append(check_bars(latest, actions, calendar, th))
        bars = _prepare(latest).drop_duplicates(["symbol", "session"], keep="last")
        summary["bars"] = len(bars)
        f, tsum = check_table(all_versions, tables.BARS_DAILY, now, th)
        parts.append(f.loc[f["check"] != "duplicate_key"])  # the bar duplicate check covers the version key
        summary["tables"][_BARS_TABLE] = tsum
    for table in tables.ALL.values():
        if table.name == _BARS_TABLE:
            if all_versions is None:
                summary["tables"][table.name] = {"rows": 0, "present": False}
            continue
        try:
            frame = silver.read(settings, table)
        except (OSError, ValueError) as exc:
            parts.append(_findings([_finding("unreadable", None, None, None, None, f"cannot read: {exc}", "error", table.name)]))
            summary["tables"][table.name] = {"rows": None, "present": True, "error": str(exc)}
            continue
        if frame.empty:
            summary["tables"][table.name] = {"rows": 0, "present": False}
            continue
        f, tsum = check_table(frame, table, now, th)
        parts.append(f)
        summary["tables"][table.name] = {"present": True, **tsum}
    parts = [p for p in parts if len(p)]
    findings = pd.concat(parts, ignore_index=True) if parts else _findings([])
    findings = findings.sort_values(["severity", "table", "check", "symbol", "date"], kind="stable",
                                    na_position="first").reset_index(drop=True)
    if bars is not None:
        summary["symbols"] = _symbol_summary(bars, findings, calendar)
    summary["counts"] = {sev: int((findings["severity"] == sev).sum()) for sev in ("error", "warning")}
    failed = _failed(findings, th)
    summary["failed"] = failed
    out_dir = settings.reports / "health"
    plots = _outlier_plots(bars, findings) if bars is not None else {}
    paths = {
        "json": atomic_write_text(out_dir / "health.json", _to_json(summary, findings)),
        "html": atomic_write_text(out_dir / "health.html", _to_html(summary, findings, plots)),
    }
    report = HealthReport(findings=findings, summary=summary, paths=paths, failed=failed)
    if strict and failed:
        raise HealthCheckError(failed, str(paths["html"]))
    return report


def _symbol_summary(bars: pd.DataFrame, findings: pd.DataFrame, calendar) -> dict:
    stats, _ = coverage_stats(bars, calendar)
    bar_findings = findings[findings["table"] == _BARS_TABLE]
    out = {}
    for s in stats.itertuples():
        g = bars[bars["symbol"] == s.symbol]
        mine = bar_findings[bar_findings["symbol"] == s.symbol]
        nan = float(g[[c for c in PRICE_COLUMNS if c in g]].isna().any(axis=1).mean())
        out[s.symbol] = {
            "calendar": s.calendar, "first": _day(s.first), "last": _day(s.last), "bars": int(s.bars),
            "expected_sessions": int(s.expected), "coverage": float(s.coverage), "gaps": int(s.gaps),
            "max_gap": int(s.max_gap), "nan_rate_prices": nan,
            "stale": bool((mine["check"] == "stale").any()),
            "outliers_error": int(((mine["check"] == "outlier") & (mine["severity"] == "error")).sum()),
            "outliers_warning": int(((mine["check"] == "outlier") & (mine["severity"] == "warning")).sum()),
            "dividend_errors": int(((mine["check"] == "dividend") & (mine["severity"] == "error")).sum()),
            "errors": int((mine["severity"] == "error").sum()),
        }
    return out


def _failed(findings: pd.DataFrame, th: dict) -> list[str]:
    errors = findings[findings["severity"] == "error"]
    out = []
    for name in dict.fromkeys(CHECK_THRESHOLD[c] for c in errors["check"] if c in CHECK_THRESHOLD):
        hits = errors[errors["check"].map(CHECK_THRESHOLD) == name]
        if name in COUNT_THRESHOLDS and len(hits) <= th[name]:
            continue
        first = hits.iloc[0]
        where = " ".join(str(v) for v in (first["table"], first["symbol"]) if v is not None and pd.notna(v))
        out.append(f"{name}={th[name]:g}: {len(hits)} finding(s), e.g. {where}: {first['detail']}")
    return out


# ----------------------------------------------------------------- writing

def _plain(value):
    """JSON-safe: NaN -> null, timestamps -> ISO strings, numpy -> Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _to_json(summary: dict, findings: pd.DataFrame) -> str:
    records = []
    for r in findings.to_dict("records"):
        r["date"] = None if pd.isna(r["date"]) else pd.Timestamp(r["date"]).strftime("%Y-%m-%d")
        records.append(r)
    doc = {"summary": summary, "failed": summary.get("failed", []), "findings": records}
    return json.dumps(_plain(doc), indent=2, allow_nan=False)


def _outlier_plots(bars: pd.DataFrame, findings: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Small PNGs (base64) of the close around each error outlier."""
    flagged = findings[(findings["check"] == "outlier") & (findings["severity"] == "error")].head(_MAX_PLOTS)
    if flagged.empty:
        return {}
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = {}
    for r in flagged.itertuples():
        g = bars[bars["symbol"] == r.symbol].reset_index(drop=True)
        hits = np.flatnonzero(g["session"].to_numpy() == np.datetime64(r.date))
        if not len(hits):
            continue
        t = int(hits[0])
        w = g.iloc[max(0, t - 15): t + 16]
        fig = Figure(figsize=(4.2, 1.6), dpi=80)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(111)
        ax.plot(w["session"], w["close"], lw=1, color="#345")
        ax.plot([g["session"].iloc[t]], [g["close"].iloc[t]], "o", color="#c00")
        if (w["close"] > 0).all() and w["close"].max() / w["close"].min() > 20:
            ax.set_yscale("log")
        ax.tick_params(labelsize=6)
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        out[(r.symbol, _day(r.date))] = base64.b64encode(buf.getvalue()).decode("ascii")
    return out


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f0f0f0}.bad{background:#fbd5d5}.warn{background:#fff1c2}.ok{color:#286b28}
img{display:block}
"""


def _to_html(summary: dict, findings: pd.DataFrame, plots: dict) -> str:
    e = html.escape
    failed = summary.get("failed", [])
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Data health</title><style>{_CSS}</style></head><body>",
           f"<h1>Data health</h1><p>Warehouse <code>{e(summary['home'])}</code>, generated {e(summary['generated_at'])}. "
           f"{summary['counts'].get('error', 0)} error(s), {summary['counts'].get('warning', 0)} warning(s).</p>"]
    if failed:
        out.append("<h2>Breached thresholds</h2><ul>" + "".join(f"<li class='bad'>{e(f)}</li>" for f in failed) + "</ul>")
    else:
        out.append("<p class='ok'>No threshold breached.</p>")
    th = summary["thresholds"]
    syms = summary.get("symbols", {})
    if syms:
        out.append("<h2>Daily bars per symbol</h2><table><tr><th>symbol</th><th>calendar</th><th>first</th><th>last</th>"
                   "<th>bars</th><th>coverage</th><th>gaps (max)</th><th>NaN % prices</th><th>stale</th>"
                   "<th>outliers error / warning</th><th>dividend errors</th></tr>")
        for sym, s in syms.items():
            cov_cls = "bad" if s["coverage"] < th["min_coverage"] else ""
            gap_cls = "bad" if s["max_gap"] > th["max_gap_sessions"] else ("warn" if s["gaps"] else "")
            nan_cls = "bad" if s["nan_rate_prices"] > th["max_nan_rate_prices"] else ""
            out.append(
                f"<tr><td>{e(sym)}</td><td>{e(s['calendar'])}</td><td>{s['first']}</td><td>{s['last']}</td><td>{s['bars']}</td>"
                f"<td class='{cov_cls}'>{s['coverage']:.2%}</td><td class='{gap_cls}'>{s['gaps']} ({s['max_gap']})</td>"
                f"<td class='{nan_cls}'>{s['nan_rate_prices']:.2%}</td><td class='{'bad' if s['stale'] else ''}'>{'yes' if s['stale'] else 'no'}</td>"
                f"<td class='{'bad' if s['outliers_error'] else ('warn' if s['outliers_warning'] else '')}'>"
                f"{s['outliers_error']} / {s['outliers_warning']}</td>"
                f"<td class='{'bad' if s['dividend_errors'] else ''}'>{s['dividend_errors']}</td></tr>")
        out.append("</table>")
    out.append("<h2>Silver tables</h2><table><tr><th>table</th><th>rows</th><th>newest event (UTC)</th>"
               "<th>max NaN % (column)</th><th>duplicate keys</th></tr>")
    for name, t in summary["tables"].items():
        if not t.get("rows"):
            out.append(f"<tr><td>{e(name)}</td><td colspan='4'>{'unreadable: ' + e(t['error']) if t.get('error') else 'no rows'}</td></tr>")
            continue
        rates = t.get("nan_rates", {})
        worst = max(rates, key=rates.get) if rates else ""
        stale = ((findings["table"] == name) & (findings["check"] == "table_stale")).any()
        out.append(
            f"<tr><td>{e(name)}</td><td>{t['rows']:,}</td><td class='{'warn' if stale else ''}'>{e(str(t.get('latest_event_timestamp')))}</td>"
            f"<td class='{'warn' if t.get('max_nan_rate', 0) > 0 else ''}'>{t.get('max_nan_rate', 0):.2%} {e(worst) if rates.get(worst) else ''}</td>"
            f"<td class='{'bad' if t.get('duplicate_keys') else ''}'>{t.get('duplicate_keys', 0)}</td></tr>")
    out.append("</table>")
    out.append(f"<h2>Findings ({len(findings)})</h2>")
    if len(findings):
        out.append("<table><tr><th>severity</th><th>table</th><th>check</th><th>symbol</th><th>date</th><th>value</th>"
                   "<th>threshold</th><th>detail</th></tr>")
        for r in findings.itertuples():
            date = "" if pd.isna(r.date) else _day(r.date)
            sym = "" if r.symbol is None or (isinstance(r.symbol, float) and math.isnan(r.symbol)) else str(r.symbol)
            plot = plots.get((sym, date))
            img = f"<img alt='close around {e(date)}' src='data:image/png;base64,{plot}'>" if plot else ""
            value = "" if pd.isna(r.value) else f"{r.value:.6g}"
            threshold = "" if pd.isna(r.threshold) else f"{r.threshold:.6g}"
            out.append(f"<tr class='{'bad' if r.severity == 'error' else 'warn'}'><td>{r.severity}</td><td>{e(r.table)}</td>"
                       f"<td>{e(r.check)}</td><td>{e(sym)}</td><td>{date}</td><td>{value}</td><td>{threshold}</td>"
                       f"<td>{e(r.detail)}{img}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
