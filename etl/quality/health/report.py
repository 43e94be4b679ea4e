"""The report: every check over the store (``run_health``), the per-symbol summary, the breached
thresholds and the JSON; the HTML is ``html_report``'s."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR, Settings
from etl.core.errors import NotIngestedError
from etl.quality.errors import HealthCheckError
from etl.quality.health.actions import corporate_actions_from_factors
from etl.quality.health.coverage import check_coverage, coverage_stats
from etl.quality.health.dividends import check_dividends
from etl.quality.health.duplicates import check_duplicates, latest_versions
from etl.quality.health.frames import BARS_TABLE, PRICE_COLUMNS, day, finding, findings_frame, prepare_bars
from etl.quality.health.html_report import outlier_plots, to_html
from etl.quality.health.nan_rates import check_nan_rates
from etl.quality.health.outliers import check_outliers
from etl.quality.health.staleness import check_stale
from etl.quality.health.table_checks import check_table
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
    thresholds: Mapping | None = None, latest=None,
) -> pd.DataFrame:
    """Every bar check on one frame (the pure core of :func:`run_health`)."""
    parts = [
        check_duplicates(bars),
        check_coverage(bars, calendar, thresholds),
        check_nan_rates(bars, thresholds),
        check_stale(bars, calendar, thresholds, latest),
    ]
    unique = prepare_bars(bars).drop_duplicates(["symbol", "session"], keep="last")
    parts += [check_outliers(unique, actions, thresholds), check_dividends(unique, actions, thresholds)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else findings_frame([])


def run_health(settings: Settings, strict: bool = False, thresholds: Mapping | None = None,
               now: pd.Timestamp | None = None, calendar=None) -> HealthReport:
    """Check the whole store, write ``reports/health/health.{json,html}`` and
    return the report; ``strict=True`` raises :class:`HealthCheckError` naming
    each breached threshold (after the files are written)."""
    from etl.storage import silver, tables
    from etl.storage.actions import read_corporate_actions
    from etl.storage.bars import read_silver_bars

    th = resolve_thresholds(thresholds)
    now = pd.Timestamp(now) if now is not None else clock.utc_now()
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
        bars = prepare_bars(latest).drop_duplicates(["symbol", "session"], keep="last")
        summary["bars"] = len(bars)
        f, tsum = check_table(all_versions, tables.BARS_DAILY, now, th)
        parts.append(f.loc[f["check"] != "duplicate_key"])  # the bar duplicate check covers the version key
        summary["tables"][BARS_TABLE] = tsum
    for table in tables.ALL.values():
        if table.name == BARS_TABLE:
            if all_versions is None:
                summary["tables"][table.name] = {"rows": 0, "present": False}
            continue
        try:
            frame = silver.read(settings, table)
        except (OSError, ValueError) as exc:
            parts.append(findings_frame([finding("unreadable", None, None, None, None, f"cannot read: {exc}", "error", table.name)]))
            summary["tables"][table.name] = {"rows": None, "present": True, "error": str(exc)}
            continue
        if frame.empty:
            summary["tables"][table.name] = {"rows": 0, "present": False}
            continue
        f, tsum = check_table(frame, table, now, th)
        parts.append(f)
        summary["tables"][table.name] = {"present": True, **tsum}
    parts = [p for p in parts if len(p)]
    findings = pd.concat(parts, ignore_index=True) if parts else findings_frame([])
    findings = findings.sort_values(["severity", "table", "check", "symbol", "date"], kind="stable",
                                    na_position="first").reset_index(drop=True)
    if bars is not None:
        summary["symbols"] = _symbol_summary(bars, findings, calendar)
    summary["counts"] = {sev: int((findings["severity"] == sev).sum()) for sev in ("error", "warning")}
    failed = _failed(findings, th)
    summary["failed"] = failed
    out_dir = settings.reports / "health"
    plots = outlier_plots(bars, findings) if bars is not None else {}
    paths = {
        "json": atomic_write_text(out_dir / "health.json", _to_json(summary, findings)),
        "html": atomic_write_text(out_dir / "health.html", to_html(summary, findings, plots)),
    }
    report = HealthReport(findings=findings, summary=summary, paths=paths, failed=failed)
    if strict and failed:
        raise HealthCheckError(failed, str(paths["html"]))
    return report


def _symbol_summary(bars: pd.DataFrame, findings: pd.DataFrame, calendar) -> dict:
    stats, _ = coverage_stats(bars, calendar)
    bar_findings = findings[findings["table"] == BARS_TABLE]
    out = {}
    for s in stats.itertuples():
        g = bars[bars["symbol"] == s.symbol]
        mine = bar_findings[bar_findings["symbol"] == s.symbol]
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


