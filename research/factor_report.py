"""``alpha factor-report FEATURE``: any feature's predictive power on ``alpha.history`` and its
point-in-time labels, as a page a person would rather look at than read.

The factor is the feature's value at each session's decision time (point-in-time, within its
view's TTL); the labels are forward total returns over each horizon (:mod:`research.labels`,
computed from ``ret_1d`` as known at each session); the regime of a decision time is the market
volatility regime known at that time (``regime_daily:regime_vol``). Rows whose value is a bar
carried over from an earlier session (a delisted or halted symbol within the TTL) are left out:
they are not a new observation. The numbers are :func:`research.factor_eval.factor_report`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from etl.core.errors import ArgumentError
from research.factor_eval import FactorReport, factor_report
from research.labels import forward_returns

REGIME_NAMES = {0: "low vol", 1: "normal vol", 2: "high vol"}


def evaluate_feature(client, feature: str, start, end, *, symbols: Sequence[str] | None = None,
                     horizons: Sequence[int] = (1, 5, 21), quantiles: int = 5) -> tuple[FactorReport, pd.DataFrame]:
    """(the report, the factor frame) of ``feature`` ("view:name") over [start, end]."""
    if not isinstance(feature, str) or feature.count(":") != 1:
        raise ArgumentError(f"feature must be a 'view:name' reference (see `alpha features list`), got {feature!r}")
    symbols = list(symbols or client.symbols())
    name = feature.split(":", 1)[1]
    refs = list(dict.fromkeys([feature, "technicals:ret_1d", "bars_daily:session_date"]))
    pad = pd.Timestamp(end) + pd.Timedelta(days=2 * max(horizons) + 14)
    hist = client.history(symbols, refs, start=start, end=pad).rename(columns={"event_timestamp": "decision_time"})
    labels = forward_returns(hist, horizons)
    frame = pd.concat([hist[["symbol", "decision_time", name, "session_date"]], labels], axis=1)
    frame = frame[frame["decision_time"] <= client.entity_frame(symbols[:1], start, end)["event_timestamp"].max()]
    own = frame["session_date"].notna() & ~frame.duplicated(["symbol", "session_date"], keep="first")
    frame = frame[own]
    factor = frame[["symbol", "decision_time"]].assign(value=pd.to_numeric(frame[name], errors="coerce"))
    forward = frame[["symbol", "decision_time", *[f"fwd_ret_{h}" for h in horizons]]]
    regimes = client.history(["SPY"], ["regime_daily:regime_vol"], start=start, end=end)
    regime = regimes.set_index("event_timestamp")["regime_vol"].dropna().astype(int).map(REGIME_NAMES)
    times = pd.DatetimeIndex(sorted(factor["decision_time"].unique()))
    regime = regime.reindex(regime.index.union(times)).ffill().reindex(times).dropna()
    factor = factor[factor["decision_time"].isin(regime.index)]
    report = factor_report(factor, forward, horizons, quantiles=quantiles, regimes=regime)
    return report, factor


def write_factor_report(out_dir: Path, feature: str, report: FactorReport, params: dict) -> Path:
    """``factor_report.html`` (+ ``factor_report.json``, every number) in ``out_dir``."""
    import numpy as np

    from research.report_html import figure_tag, new_figure, page, table_html

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "factor_report.json").write_text(json.dumps(
        {"feature": feature, "params": params, "numbers": {k: (None if v != v else v) for k, v in report.to_dict().items()}},
        indent=1, default=str))
    horizons = list(report.horizons)
    fig, ax = new_figure(10, 3.4)
    for h in horizons:
        rolling = report.ic[h].rolling(63, min_periods=20).mean()
        ax.plot(rolling.index, rolling.to_numpy(), lw=1.1, label=f"{h}-session horizon")
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_ylabel("rank IC, 63-session mean")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ic_plot = figure_tag(fig, alt="rolling rank IC by horizon")
    fig, ax = new_figure(10, 3.2)
    q = report.quantile_returns
    width = 0.8 / len(horizons)
    for i, h in enumerate(horizons):
        ax.bar(np.arange(len(q.index)) + i * width, q[h].to_numpy() * 1e4, width=width, label=f"{h}-session")
    ax.set_xticks(np.arange(len(q.index)) + 0.4 - width / 2)
    ax.set_xticklabels([f"Q{k}" for k in q.index])
    ax.set_ylabel("mean forward return (bp)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    quant_plot = figure_tag(fig, alt="mean forward return by quantile")
    fig, ax = new_figure(6, 3)
    decay = report.ic_summary["mean"]
    ax.plot(decay.index, decay.to_numpy(), marker="o")
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xlabel("horizon (sessions)")
    ax.set_ylabel("mean rank IC")
    ax.grid(alpha=0.3)
    decay_plot = figure_tag(fig, alt="IC decay by horizon")
    summary = report.ic_summary.reset_index().rename(columns={"index": "horizon"})
    summary.columns = [str(c) for c in summary.columns]
    regimes = report.by_regime.reset_index() if report.by_regime is not None else pd.DataFrame()
    spread = pd.DataFrame({"horizon": horizons, "mean spread (top - bottom)": [report.spread[h].mean() for h in horizons]})
    notes = [f"Top-quantile turnover {report.turnover.mean():.1%} per session; rank autocorrelation "
             f"{report.autocorrelation.mean():.2f} (lag 1).",
             "IC t-stats of horizons over one session overstate the evidence (overlapping windows, about sqrt(h))."]
    html = page(f"Factor report: {feature}", [
        ("Rank IC by horizon", table_html(summary, formats={"horizon": "count", "n": "count", "hit": "share"}) + ic_plot),
        ("Quantile returns", table_html(spread, formats={"horizon": "count", "mean spread (top - bottom)": "pct"}) + quant_plot),
        ("Decay", decay_plot),
        ("By volatility regime (known at each decision time)", table_html(regimes, formats={regimes.columns[0]: "text", "horizon": "count", "n": "count", "hit": "share"}) if len(regimes) else "<p>no regime view</p>"),
        ("Notes", "<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"),
    ], subtitle=", ".join(f"{k} {v}" for k, v in params.items()))
    path = out_dir / "factor_report.html"
    path.write_text(html)
    return path
