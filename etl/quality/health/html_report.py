"""The HTML report: a table per symbol and silver table, every finding, a plot of each error outlier."""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import pandas as pd

from etl.quality.health.frames import day

#: outliers plotted in the report, the first error outliers of the sorted findings
MAX_PLOTS = 12


def outlier_plots(bars: pd.DataFrame, findings: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Small PNGs (base64) of the close around each error outlier."""
    flagged = findings[(findings["check"] == "outlier") & (findings["severity"] == "error")].head(MAX_PLOTS)
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
        out[(r.symbol, day(r.date))] = base64.b64encode(buf.getvalue()).decode("ascii")
    return out


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f0f0f0}.bad{background:#fbd5d5}.warn{background:#fff1c2}.ok{color:#286b28}
img{display:block}
"""


def to_html(summary: dict, findings: pd.DataFrame, plots: dict) -> str:
    """The report page: ``summary`` and ``findings`` as :func:`~etl.quality.health.run_health`
    built them, ``plots`` from :func:`outlier_plots`."""
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
    out += _disagreements_html(summary.get("source_disagreements") or {})
    out.append(f"<h2>Findings ({len(findings)})</h2>")
    if len(findings):
        out.append("<table><tr><th>severity</th><th>table</th><th>check</th><th>symbol</th><th>date</th><th>value</th>"
                   "<th>threshold</th><th>detail</th></tr>")
        for r in findings.itertuples():
            date = "" if pd.isna(r.date) else day(r.date)
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


def _disagreements_html(d: dict) -> list[str]:
    """The bars two sources disagree on: both values and sources, which one the features use."""
    if not d.get("bars"):
        return []
    e = html.escape
    listed = d.get("listed", [])
    out = [f"<h2>Source disagreements ({d['bars']} bar(s), {d['fields']} field(s))</h2>"
           f"<p>Two sources' newest versions of a bar further apart than the tolerance ({d['tolerance']:.4g} relative for "
           f"prices, more for volume). The features use the canonical source (<code>[source_priority] bars_daily</code>); "
           f"the other source's bar is kept in silver and never restates them."
           + (f" The first {len(listed)} are listed." if len(listed) < d["fields"] else "") + "</p>",
           "<table><tr><th>symbol</th><th>session</th><th>field</th><th>canonical source</th><th>canonical value</th>"
           "<th>other source</th><th>other value</th><th>relative difference</th></tr>"]
    for r in listed:
        rel = r["rel_diff"]
        rel_text = "inf" if rel is None or not math.isfinite(rel) else f"{rel:.3%}"
        out.append(f"<tr class='warn'><td>{e(r['symbol'])}</td><td>{e(r['session'])}</td><td>{e(r['field'])}</td>"
                   f"<td>{e(r['canonical_source'])}</td><td>{r['canonical_value']:.6g}</td><td>{e(r['other_source'])}</td>"
                   f"<td>{r['other_value']:.6g}</td><td>{rel_text}</td></tr>")
    out.append("</table>")
    return out
