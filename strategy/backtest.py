"""Backtest a strategy with vectorbt on ``alpha.history``.

Decisions are taken at each session's availability time (close + delay) from
point-in-time features; orders execute at the NEXT session's close. Prices for
P&L are a total-return index built from the point-in-time ``ret_1d`` (splits
and dividends applied as they happened), so a split is not a loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from strategy import trend_rsi


@dataclass
class BacktestResult:
    stats: dict
    report_dir: Path
    files: dict[str, Path]
    targets: pd.DataFrame        # decision_time x symbol target weights
    features: pd.DataFrame       # the long frame the strategy saw
    returns: pd.Series           # the portfolio's daily returns, by decision time
    by_regime: dict[str, pd.DataFrame]  # metrics sliced by the market regime known at each session's start

    def summary(self) -> str:
        keys = ["Start", "End", "Total Return [%]", "Annualized Return [%]", "Sharpe Ratio", "Max Drawdown [%]", "Total Trades", "Total Fees Paid"]
        lines = [f"{k:>24}: {self.stats[k]}" for k in keys if k in self.stats]
        for column, table in self.by_regime.items():
            lines.append(f"{'by ' + column:>24}: " + "; ".join(
                f"{name} {int(r.sessions)} sessions, ann. return {r.ann_return:+.1%}, Sharpe {r.sharpe:.2f}, max DD {r.max_drawdown:.1%}"
                for name, r in table.iterrows()))
        return "\n".join(lines)


def decision_frame(history: pd.DataFrame) -> pd.DataFrame:
    out = history.rename(columns={"event_timestamp": "decision_time"})
    return out


def run_backtest(
    client,
    symbols: list[str] | None = None,
    start="2010-01-01",
    end="2021-03-31",
    fees: float = 0.0005,
    slippage: float = 0.0005,
    init_cash: float = 1_000_000.0,
    out_dir: Path | None = None,
    strategy=trend_rsi,
) -> BacktestResult:
    import vectorbt as vbt

    symbols = symbols or client.symbols()
    hist = client.history(symbols, strategy.FEATURES, start=start, end=end)
    frame = decision_frame(hist)
    frame["target_weight"] = strategy.target_positions(frame)
    targets = frame.pivot(index="decision_time", columns="symbol", values="target_weight").sort_index()
    rets = frame.pivot(index="decision_time", columns="symbol", values="ret_1d").reindex_like(targets)
    listed = frame.pivot(index="decision_time", columns="symbol", values="close").reindex_like(targets).notna()

    # total-return price index per symbol; NaN where the symbol has no bar
    growth = (1.0 + rets.where(listed)).where(listed)
    index = growth.fillna(1.0).cumprod().where(listed) * 100.0
    keep = index.notna().any()
    index, targets = index.loc[:, keep], targets.loc[:, keep]
    # decided at t, executed at t+1's close; an order only when the target changes
    # (positions drift in between) and never where the symbol has no price
    decided = targets.shift(1)
    size = decided.where(decided.ne(decided.shift(1)) & index.notna())
    size.iloc[0] = np.nan

    pf = vbt.Portfolio.from_orders(
        close=index.ffill(),
        size=size,
        size_type="targetpercent",
        fees=fees,
        slippage=slippage,
        init_cash=init_cash,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )
    stats = {k: _plain(v) for k, v in pf.stats().items()}
    returns = pf.returns()
    by_regime = regime_slices(client, returns, symbols[0], start, end)
    out_dir = Path(out_dir or client.settings.reports / "backtest" / strategy.NAME)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(strategy=strategy.NAME, symbols=list(index.columns), start=str(start), end=str(end), fees=fees, slippage=slippage)
    files = _write_report(pf, stats, targets, out_dir, params, by_regime)
    return BacktestResult(stats=stats, report_dir=out_dir, files=files, targets=targets, features=frame, returns=returns, by_regime=by_regime)


#: regime columns of ``regime_daily`` and the names of their values
REGIMES = {
    "regime_vol": {0: "low vol", 1: "normal vol", 2: "high vol"},
    "regime_trend": {-1: "down trend", 0: "flat", 1: "up trend"},
}


def regime_slices(client, returns: pd.Series, symbol: str, start, end) -> dict[str, pd.DataFrame]:
    """The strategy's daily returns sliced by the market regimes (``regime_daily``) as
    known at the start of each session (the previous session's regime; see
    :func:`etl.factors.regime.slice_metrics`). Empty when the warehouse has no
    regime view or no regime values in the range."""
    from etl.errors import UnknownFeatureError
    from etl.factors.regime import slice_metrics

    try:
        # from a little before the start: the first session's return falls under the regime of the session before it
        before = pd.Timestamp(start) - pd.Timedelta(days=14)
        regimes = client.history([symbol], [f"regime_daily:{c}" for c in REGIMES], start=before, end=end)
    except UnknownFeatureError:
        return {}
    from etl import clock

    tz = clock.get_calendar(client.settings.calendar).tz
    sessions = pd.DatetimeIndex(regimes["event_timestamp"]).tz_convert(tz).normalize().tz_localize(None)
    regimes = regimes.set_index(sessions)[list(REGIMES)]
    days = pd.DatetimeIndex(returns.index).tz_convert(tz).normalize().tz_localize(None)
    returns = pd.Series(returns.to_numpy(), index=days)
    out = {}
    for column, names in REGIMES.items():
        known = regimes[column].dropna()
        if known.empty:
            continue
        table = slice_metrics(returns, known.astype("int64").to_frame(), column)
        table.index = [names.get(int(v), str(v)) for v in table.index]
        table.index.name = column
        out[column] = table
    return out


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else round(float(v), 6)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (pd.Timestamp, pd.Timedelta)):
        return str(v)
    return v if isinstance(v, (int, str, type(None))) else str(v)


def _write_report(pf, stats: dict, targets: pd.DataFrame, out_dir: Path, params: dict, by_regime: dict[str, pd.DataFrame]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    value = pf.value()
    drawdown = pf.drawdown() * 100.0
    exposure = targets.sum(axis=1)
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 1]})
    axes[0].plot(value.index, value.values, color="#1f5fa8", lw=1.2)
    axes[0].set_ylabel("equity ($)")
    axes[0].set_title(f"{params['strategy']} on {len(params['symbols'])} symbols, fees {params['fees']:.2%}, slippage {params['slippage']:.2%}")
    axes[0].grid(alpha=0.3)
    axes[1].fill_between(drawdown.index, drawdown.values, 0, color="#c0392b", alpha=0.5)
    axes[1].set_ylabel("drawdown (%)")
    axes[1].grid(alpha=0.3)
    axes[2].plot(exposure.index, exposure.values, color="#555", lw=0.8)
    axes[2].set_ylabel("gross target")
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    png = out_dir / "equity_drawdown.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)

    stats_path = out_dir / "stats.json"
    regimes_json = {c: json.loads(t.to_json(orient="index")) for c, t in by_regime.items()}
    stats_path.write_text(json.dumps({"params": params, "stats": stats, "by_regime": regimes_json}, indent=1, default=str))
    rows = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in stats.items())
    regime_html = "".join(
        f"<h2>By {column.replace('_', ' ')} (known at the session's start)</h2>"
        + table.to_html(float_format=lambda x: f"{x:.4f}", border=0)
        for column, table in by_regime.items()
    ) or "<p>No market regime view in this warehouse: no regime slices.</p>"
    html = out_dir / "report.html"
    html.write_text(
        "<!doctype html><meta charset='utf-8'><title>Backtest report</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}</style>"
        f"<h1>Backtest: {params['strategy']}</h1><p>{json.dumps(params)}</p>"
        f"<img src='{png.name}' style='max-width:100%'><table>{rows}</table>{regime_html}"
    )
    return {"png": png, "html": html, "stats": stats_path}
