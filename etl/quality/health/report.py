"""The report: every check over the store (``run_health``), the per-symbol summary, the breached
thresholds and the JSON; the HTML is ``html_report``'s."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR, Settings
from etl.quality.errors import HealthCheckError
from etl.quality.health.coverage import check_coverage, coverage_stats
from etl.quality.health.dividends import check_dividends
from etl.quality.health.duplicates import check_duplicates, latest_versions
from etl.quality.health.frames import BARS_TABLE, PRICE_COLUMNS, day, finding, findings_frame, prepare_bars
from etl.quality.health.html_report import MAX_PLOTS, outlier_plots, to_html
from etl.quality.health.nan_rates import check_nan_rates
from etl.quality.health.outliers import check_outliers
from etl.quality.health.sources import check_sources, source_disagreements
from etl.quality.health.staleness import check_stale
from etl.quality.health.table_checks import TableProfile
from etl.quality.health.thresholds import CHECK_THRESHOLD, COUNT_THRESHOLDS, resolve_thresholds
from etl.storage.atomic import atomic_write_text


@dataclass
class HealthReport:
    """What :func:`run_health` found: every finding, the summary written to health.json, the
    files written, and each breached threshold (``"name=value: n finding(s), e.g. ..."``)."""

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
        disagree = s.get("source_disagreements", {}).get("bars", 0)
        if disagree:
            parts.append(f"{disagree} bar(s) on which two sources disagree (the canonical source is used);")
        parts.append(f"{counts.get('error', 0)} error(s), {counts.get('warning', 0)} warning(s).")
        if self.failed:
            parts.append("Breached: " + "; ".join(f.split(":")[0] for f in self.failed) + ".")
        else:
            parts.append("No threshold breached.")
        if self.paths.get("html"):
            parts.append(f"Report: {self.paths['html']}")
        return " ".join(parts)


def check_bars(
    bars: pd.DataFrame, actions: pd.DataFrame | None = None, calendar=DEFAULT_CALENDAR,
    thresholds: Mapping | None = None, latest=None, coverage: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every bar check on one frame (the pure core of :func:`run_health`); ``coverage``: the
    :func:`coverage_stats` of ``bars`` when already computed."""
    parts = [
        check_duplicates(bars),
        check_coverage(bars, calendar, thresholds, coverage),
        check_nan_rates(bars, thresholds),
        check_stale(bars, calendar, thresholds, latest),
    ]
    unique = prepare_bars(bars).drop_duplicates(["symbol", "session"], keep="last")
    parts += [check_outliers(unique, actions, thresholds), check_dividends(unique, actions, thresholds)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else findings_frame([])


def run_health(settings: Settings, strict: bool = False, thresholds: Mapping | None = None,
               now: pd.Timestamp | None = None, calendar=None, chunk_symbols: int = 64,
               step: Callable[[str, int, int], None] | None = None) -> HealthReport:
    """Check the whole store, write ``reports/health/health.{json,html}`` and
    return the report; ``strict=True`` raises :class:`HealthCheckError` naming
    each breached threshold (after the files are written).

    The daily bars are read and checked ``chunk_symbols`` symbols at a time (whole
    buckets, :func:`etl.storage.bars.symbol_chunks`), the other tables one
    partition at a time where a version key cannot span partitions: memory follows
    the chunk, not the store, and the report is the one a single pass over
    everything gives. ``step("health", chunks done, chunks)`` follows the bar chunks."""
    from etl.storage import tables
    from etl.storage.actions import current_events
    from etl.storage.bars import bars_overview, symbol_chunks

    th = resolve_thresholds(thresholds)
    now = pd.Timestamp(now) if now is not None else clock.utc_now()
    calendar = calendar or settings.calendar
    parts: list[pd.DataFrame] = []
    summary: dict = {
        "home": str(settings.home), "generated_at": now.isoformat(), "calendar": calendar if isinstance(calendar, str) else dict(calendar),
        "thresholds": th, "tables": {}, "symbols": {}, "bars": 0,
        "source_disagreements": {"tolerance": settings.source_tolerance, "bars": 0, "fields": 0, "listed": []},
    }
    symbols, last_session = bars_overview(settings)
    per_symbol: dict[str, dict] = {}
    if symbols:
        actions = current_events(settings)
        profile = TableProfile(tables.BARS_DAILY)
        chunks = symbol_chunks(symbols, chunk_symbols)
        for k, chunk in enumerate(chunks, 1):
            found, bars, all_versions, coverage, disagreements = _check_chunk(settings, chunk, actions, calendar, th, last_session)
            parts.append(found)
            _add_disagreements(summary["source_disagreements"], disagreements)
            profile.add(all_versions)
            summary["bars"] += len(bars)
            per_symbol.update(_symbol_summary(bars, found, calendar, coverage))
            del bars, all_versions
            if step:
                step("health", k, len(chunks))
        f, tsum = profile.result(now, th)
        parts.append(f.loc[f["check"] != "duplicate_key"])  # the bar duplicate check covers the version key
        summary["tables"][BARS_TABLE] = tsum
    for table in tables.ALL.values():
        if table.name == BARS_TABLE:
            if not symbols:
                summary["tables"][table.name] = {"rows": 0, "present": False}
            continue
        try:
            profile = _profile_table(settings, table)
        except (OSError, ValueError) as exc:
            parts.append(findings_frame([finding("unreadable", None, None, None, None, f"cannot read: {exc}", "error", table.name)]))
            summary["tables"][table.name] = {"rows": None, "present": True, "error": str(exc)}
            continue
        if not profile.rows:
            summary["tables"][table.name] = {"rows": 0, "present": False}
            continue
        f, tsum = profile.result(now, th)
        parts.append(f)
        summary["tables"][table.name] = {"present": True, **tsum}
    parts = [p for p in parts if len(p)]
    findings = pd.concat(parts, ignore_index=True) if parts else findings_frame([])
    findings = findings.sort_values(["severity", "table", "check", "symbol", "date"], kind="stable",
                                    na_position="first").reset_index(drop=True)
    if symbols:
        summary["symbols"] = dict(sorted(per_symbol.items()))
    summary["counts"] = {sev: int((findings["severity"] == sev).sum()) for sev in ("error", "warning")}
    failed = _failed(findings, th)
    summary["failed"] = failed
    out_dir = settings.reports / "health"
    plots = outlier_plots(_plotted_bars(settings, findings), findings) if symbols else {}
    paths = {
        "json": atomic_write_text(out_dir / "health.json", _to_json(summary, findings)),
        "html": atomic_write_text(out_dir / "health.html", to_html(summary, findings, plots)),
    }
    report = HealthReport(findings=findings, summary=summary, paths=paths, failed=failed)
    if strict and failed:
        raise HealthCheckError(failed, str(paths["html"]))
    return report


def _check_chunk(settings: Settings, chunk: list[str], actions: pd.DataFrame, calendar, th: dict, last_session):
    """Every bar check of one chunk of symbols: ``(findings, latest bars, all canonical versions,
    coverage stats of the latest bars or None, source disagreements)``. The bar checks see the
    canonical versions (what the features use); the source check compares every source's."""
    from etl.storage.bars import read_silver_bars
    from etl.storage.canonical import canonical_versions, priority_history

    every_source = read_silver_bars(settings, chunk, versions="all", sources="all")
    all_versions = canonical_versions(every_source, priority_history(settings))
    disagreements = source_disagreements(every_source, all_versions, settings.source_tolerance)
    del every_source
    latest = prepare_bars(latest_versions(all_versions))
    mine = actions[actions["symbol"].isin(chunk)] if actions is not None and len(actions) else actions
    coverage = coverage_stats(latest, calendar)
    found = check_bars(latest, mine, calendar, th, latest=last_session, coverage=coverage)
    if len(disagreements):
        found = pd.concat([found, check_sources(disagreements)], ignore_index=True)
    bars = latest.drop_duplicates(["symbol", "session"], keep="last")
    # the summary's coverage is of the unique bars: the same figures unless a bar had two latest versions
    return found, bars, all_versions, coverage if len(bars) == len(latest) else None, disagreements


#: disagreeing fields listed in the summary (and the page) at most: the first in (symbol, session) order
MAX_LISTED_DISAGREEMENTS = 500


def _add_disagreements(into: dict, found: pd.DataFrame) -> None:
    """Count one chunk's source disagreements into the summary and keep the first
    :data:`MAX_LISTED_DISAGREEMENTS` of all (in symbol, session order: the same list whatever
    the chunks)."""
    if found is None or found.empty:
        return
    into["bars"] += int(found[["symbol", "session", "other_source"]].drop_duplicates().shape[0])
    into["fields"] += len(found)
    rows = [{**r, "session": day(r["session"])} for r in found.to_dict("records")]
    listed = into["listed"] + rows
    listed.sort(key=lambda r: (r["symbol"], r["session"], r["other_source"], r["field"]))
    into["listed"] = listed[:MAX_LISTED_DISAGREEMENTS]


def _profile_table(settings: Settings, table) -> TableProfile:
    """A silver table's :class:`TableProfile`: read partition by partition when its partition
    columns lead its version key (no key spans two partitions, and the partitions come in key
    order), else whole."""
    from etl.storage import silver

    profile = TableProfile(table)
    if table.partition and tuple(table.key[:len(table.partition)]) == tuple(table.partition):
        for frame in silver.read_partitions(settings, table):
            profile.add(frame)
    else:
        frame = silver.read(settings, table)
        if not frame.empty:
            profile.add(frame)
    return profile


def _plotted_bars(settings: Settings, findings: pd.DataFrame) -> pd.DataFrame:
    """The latest bars of the symbols whose outliers the report plots."""
    from etl.storage.bars import read_silver_bars

    flagged = findings[(findings["check"] == "outlier") & (findings["severity"] == "error")].head(MAX_PLOTS)
    if flagged.empty:
        return prepare_bars(pd.DataFrame(columns=["symbol", "session", "close"]))
    versions = read_silver_bars(settings, sorted(set(flagged["symbol"].astype(str))), versions="all")
    return prepare_bars(latest_versions(versions)).drop_duplicates(["symbol", "session"], keep="last")


def _symbol_summary(bars: pd.DataFrame, findings: pd.DataFrame, calendar, coverage=None) -> dict:
    stats, _ = coverage if coverage is not None else coverage_stats(bars, calendar)
    bar_findings = findings[findings["table"] == BARS_TABLE]
    by_symbol = dict(tuple(bars.groupby("symbol", sort=False)))
    found = dict(tuple(bar_findings.groupby("symbol", sort=False)))
    none = bar_findings.iloc[:0]
    out = {}
    for s in stats.itertuples():
        g = by_symbol[s.symbol]
        mine = found.get(s.symbol, none)
        nan = float(g[[c for c in PRICE_COLUMNS if c in g]].isna().any(axis=1).mean())
        out[s.symbol] = {
            "calendar": s.calendar, "first": day(s.first), "last": day(s.last), "bars": int(s.bars),
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


