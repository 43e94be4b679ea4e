"""A strategy's tearsheet: one self-contained HTML page and one PNG a quant can look at rather than read.

:func:`write_tearsheet` renders what it is given (daily returns, an optional benchmark, target
weights, metrics computed elsewhere, regime slices, the run's parameters); it computes only what
it draws. Sections, in order:

1. **Headline numbers**: strategy and benchmark side by side, every number through
   :func:`research.report_html.format_number`.
2. **Equity**: growth of 1 for the strategy and the benchmark; each line's legend and end label
   carry its total return, so every return of the table is also in the plot (log scale on request,
   or by default when a curve spans more than 10x).
3. **Drawdown**: the underwater curves, the deepest point of each labelled.
4. **Rolling risk**: Sharpe and annualised volatility over the trailing 126 sessions, with the
   full-period values as dashed lines ("not enough history" below 126 returns).
5. **Monthly returns**: years x months heatmap of compounded returns (:func:`monthly_returns`),
   with the year's compounded return beside it.
6. **Exposure and turnover** from the target weights.
7. **Regimes**: each regime table, and a bar chart of Sharpe and max drawdown per regime.
8. **Parameters** and **notes** (the caller's, plus the checks below).

The rules of what is drawn:

- Returns are placed on session dates: a tz-aware index (decision times) is converted to the
  exchange calendar's time zone and normalised to the date; a naive index is taken as dates.
  Two returns on one session are refused.
- The benchmark is aligned to the strategy's sessions (its other sessions are dropped); a missing
  benchmark return is drawn as a gap.
- Growth compounds the returns that are there: a missing return adds no change to the level and
  leaves a gap in the line (it is not a zero return in any statistic).
- Drawdown at t is ``growth_t / max(1, max_{s<=t} growth_s) - 1``: the start counts as a peak.
- Rolling Sharpe is mean / std (ddof 1) x sqrt(252) and rolling volatility std x sqrt(252), over
  the last 126 sessions, only where all 126 returns are present (risk-free rate 0).
- Exposure at t: gross = sum |w|, net = sum w (no target is no position); turnover at t =
  sum |w_t - w_{t-1}| / 2 (one-way, a share of the book), as :mod:`research.metrics` counts it.
- Checks: where a total return or max drawdown in ``metrics`` (or ``benchmark_metrics``) does
  not read the same as the one drawn (after :func:`format_number`), a note under the headline
  table says so, naming both: a number the plot cannot show is flagged, not hidden.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etl.core.config import DEFAULT_CALENDAR
from etl.factors.regime import ANNUAL
from etl.storage.atomic import atomic_path, atomic_write_text
from research.report_html import (
    ReportInputError,
    figure_tag,
    format_number,
    image_tag,
    new_figure,
    notes_html,
    page,
    png_bytes,
    table_html,
)

__all__ = [
    "HEADLINE",
    "ROLLING_WINDOW",
    "SECTIONS",
    "TearsheetInputError",
    "drawdown",
    "drawdown_episodes",
    "growth",
    "monthly_heatmap",
    "monthly_returns",
    "session_index",
    "write_tearsheet",
]

#: the trailing window of the rolling Sharpe and volatility, in sessions (about half a year)
ROLLING_WINDOW = 126
#: the window of the turnover's moving average, in sessions (about a month)
TURNOVER_WINDOW = 21
#: the section headings, in page order
SECTIONS = ("Headline numbers", "Equity", "Drawdown", "Rolling risk", "Monthly returns",
            "Exposure and turnover", "Regimes", "Parameters", "Notes")
#: headline rows in order: metric key -> label (keys not listed follow in the caller's order)
HEADLINE: dict[str, str] = {
    "start": "First session",
    "end": "Last session",
    "sessions": "Sessions",
    "total_return": "Total return",
    "ann_return": "Annualised return",
    "ann_vol": "Annualised volatility",
    "sharpe": "Sharpe",
    "sharpe_ci": "Sharpe 95 % interval",
    "sortino": "Sortino",
    "calmar": "Calmar",
    "max_drawdown": "Max drawdown",
    "turnover": "Turnover",
    "exposure": "Exposure",
    "hit_rate": "Hit rate",
    "psr": "Probabilistic Sharpe (PSR)",
    "dsr": "Deflated Sharpe (DSR)",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STRATEGY_COLOR = "#1f5fa8"
_BENCH_COLOR = "#8c8c8c"
_DOWN_COLOR = "#c0392b"


class TearsheetInputError(ReportInputError):
    """The tearsheet was given inputs it cannot draw (returns not indexed by time, duplicated
    sessions, an empty series). Names the argument and what it must be."""


# ----------------------------------------------------------------------------- pure pieces


def session_index(index: pd.Index, name: str = "returns", calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """Session dates (naive, midnight) of a time index: a tz-aware index is converted to the
    exchange ``calendar``'s time zone and normalised (a decision at 16:15 New York is that day's
    session), a naive one is normalised as it is. Refuses an index that is not of times."""
    if not isinstance(index, pd.DatetimeIndex):
        raise TearsheetInputError(f"tearsheet: {name} must be indexed by time (a DatetimeIndex of decision times or "
                                  f"session dates), got {type(index).__name__}")
    if index.tz is not None:
        from etl.core import clock

        index = index.tz_convert(clock.get_calendar(calendar).tz).tz_localize(None)
    return index.normalize()


def _on_sessions(series: pd.Series, name: str, calendar: str) -> pd.Series:
    if not isinstance(series, pd.Series):
        raise TearsheetInputError(f"tearsheet: {name} must be a pandas Series of daily returns, got {type(series).__name__}")
    days = session_index(series.index, name, calendar)
    if days.has_duplicates:
        dup = days[days.duplicated()][0]
        raise TearsheetInputError(f"tearsheet: {name} has two returns on session {dup:%Y-%m-%d}; pass one return "
                                  f"per session (daily returns, e.g. portfolio.returns())")
    out = pd.Series(pd.to_numeric(series, errors="coerce").to_numpy(dtype=float), index=days, name=series.name)
    return out.sort_index()


def growth(returns: pd.Series) -> pd.Series:
    """Growth of 1 invested at the start: the running product of ``1 + r`` over the returns
    that are there. NaN where the return is missing (a gap in the line; the level carries on)."""
    r = returns.astype(float)
    level = (1.0 + r.fillna(0.0)).cumprod()
    return level.where(r.notna())


def drawdown(returns: pd.Series) -> pd.Series:
    """The underwater curve: growth over its running peak, minus 1, with the start (1) counted
    as a peak. NaN where the return is missing."""
    r = returns.astype(float)
    level = (1.0 + r.fillna(0.0)).cumprod()
    peak = np.maximum.accumulate(np.maximum(level.to_numpy(), 1.0)) if len(level) else level.to_numpy()
    return (level / peak - 1.0).where(r.notna())


def drawdown_episodes(returns: pd.Series, top: int = 5) -> pd.DataFrame:
    """The ``top`` deepest drawdowns of the growth curve, deepest first. An episode is a run of
    sessions below the running peak (:func:`drawdown` < 0): ``peak`` is the session before the run
    (the first session when the run starts with the series), ``trough`` the session of its lowest
    point, ``recovery`` the first session back at the peak (NaT while not recovered), ``drawdown``
    the depth (negative), ``sessions`` the run's length in sessions with a return."""
    r = returns.astype(float).dropna()
    dd = drawdown(r)
    under = (dd < 0).to_numpy()
    rows = []
    starts = np.flatnonzero(under & ~np.concatenate(([False], under[:-1])))
    for start in starts:
        stop = start
        while stop + 1 < len(under) and under[stop + 1]:
            stop += 1
        run = dd.iloc[start: stop + 1]
        rows.append({
            "peak": dd.index[start - 1] if start > 0 else dd.index[0],
            "trough": run.idxmin(),
            "recovery": dd.index[stop + 1] if stop + 1 < len(dd) else pd.NaT,
            "drawdown": float(run.min()),
            "sessions": int(stop - start + 1),
        })
    frame = pd.DataFrame(rows, columns=["peak", "trough", "recovery", "drawdown", "sessions"])
    return frame.sort_values("drawdown", kind="stable").head(top).reset_index(drop=True)


def monthly_returns(returns: pd.Series) -> pd.DataFrame:
    """Compounded return of each calendar month: ``prod(1 + r) - 1`` over the month's returns
    that are present; NaN for a month without any. Rows: the years from the first return's to
    the last's (``year``, int); columns: the months 1..12 (``month``). ``returns`` must be
    indexed by session date (see :func:`session_index`)."""
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise TearsheetInputError("monthly_returns: returns must be indexed by session date (a DatetimeIndex)")
    r = returns.astype(float).dropna()
    if r.empty:
        return pd.DataFrame(index=pd.Index([], dtype="int64", name="year"),
                            columns=pd.Index(range(1, 13), name="month"), dtype=float)
    monthly = (1.0 + r).groupby([r.index.year, r.index.month]).prod() - 1.0
    monthly.index.names = ["year", "month"]
    table = monthly.unstack("month")
    years = pd.Index(range(int(r.index.year.min()), int(r.index.year.max()) + 1), name="year")
    return table.reindex(index=years, columns=pd.Index(range(1, 13), name="month")).astype(float)


def _yearly(returns: pd.Series) -> pd.Series:
    r = returns.astype(float).dropna()
    return (1.0 + r).groupby(r.index.year).prod() - 1.0


def _rolling(returns: pd.Series, window: int) -> tuple[pd.Series, pd.Series]:
    roll = returns.astype(float).rolling(window, min_periods=window)
    mean, std = roll.mean(), roll.std(ddof=1)
    vol = std * math.sqrt(ANNUAL)
    sharpe = (mean / std.where(std > 0)) * math.sqrt(ANNUAL)
    return sharpe, vol


def _exposure_turnover(weights: pd.DataFrame) -> pd.DataFrame:
    # research.metrics' rules: no target is no position (0); turnover is one-way, sum |dw| / 2
    w = weights.astype(float).fillna(0.0)
    gross = w.abs().sum(axis=1)
    net = w.sum(axis=1)
    turnover = w.diff().abs().sum(axis=1) / 2.0
    if len(turnover):
        turnover.iloc[0] = np.nan  # no target before the first: its change is not known
    return pd.DataFrame({"gross": gross, "net": net, "turnover": turnover})


# ----------------------------------------------------------------------------- figures


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _end_label(ax, series: pd.Series, text: str, color: str, dy: float) -> None:
    valid = series.dropna()
    if valid.empty:
        return
    ax.annotate(text, xy=(valid.index[-1], valid.iloc[-1]), xytext=(4, dy), textcoords="offset points",
                va="center", ha="left", fontsize=9, color=color, fontweight="bold")


def _main_figure(title: str, strat: pd.Series, bench: pd.Series | None, benchmark_name: str,
                 log_scale: bool | None, subtitle: str):
    fig, (ax_eq, ax_dd) = new_figure(11.0, 7.0, nrows=2, sharex=True, margins=(0.8, 0.95, 0.75, 0.4),
                                     gridspec_kw={"height_ratios": [2.6, 1.2], "hspace": 0.06})
    fig.suptitle(title, fontsize=13, fontweight="bold")
    curves = [("strategy", strat, _STRATEGY_COLOR, 1.5)]
    if bench is not None:
        curves.append((benchmark_name, bench, _BENCH_COLOR, 1.2))
    levels = {name: growth(r) for name, r, _, _ in curves}
    spans = [lv.max() / lv.min() for lv in levels.values() if lv.notna().any() and lv.min() > 0]
    if log_scale is None:
        log_scale = bool(spans) and max(spans) > 10.0
    ends = {name: lv.dropna().iloc[-1] for name, lv in levels.items() if lv.notna().any()}
    for name, r, color, lw in curves:
        level = levels[name]
        if name in ends:
            total = format_number("total_return", ends[name] - 1.0)
            ax_eq.plot(level.index, level.to_numpy(), color=color, lw=lw, label=f"{name}  {total}")
            # two end labels side by side: the higher curve's label a little up, the lower's a little down
            dy = 0.0 if len(ends) < 2 else (6.0 if ends[name] >= max(ends.values()) else -6.0)
            _end_label(ax_eq, level, total, color, dy)
        dd = drawdown(r)
        if dd.notna().any():
            if name == "strategy":
                ax_dd.fill_between(dd.index, dd.to_numpy() * 100.0, 0.0, color=_DOWN_COLOR, alpha=0.45, lw=0,
                                   label=f"{name}")
            else:
                ax_dd.plot(dd.index, dd.to_numpy() * 100.0, color=color, lw=1.0, label=name)
            low_at = dd.idxmin()
            ax_dd.annotate(f"{name} {format_number('max_drawdown', dd.min())}", xy=(low_at, dd.min() * 100.0),
                           xytext=(6, -2 if name == "strategy" else 10), textcoords="offset points", fontsize=8.5,
                           color=_DOWN_COLOR if name == "strategy" else "#555")
    ax_eq.axhline(1.0, color="#999", lw=0.6)
    if log_scale:
        ax_eq.set_yscale("log")
    ax_eq.set_ylabel("growth of 1" + (" (log scale)" if log_scale else ""))
    ax_eq.set_title(subtitle, fontsize=9.5, color="#444")
    ax_eq.grid(alpha=0.3)
    if ends:
        ax_eq.legend(loc="upper left", fontsize=9, frameon=False)
    else:
        _no_data(ax_eq, "no returns to draw")
    ax_dd.axhline(0.0, color="#999", lw=0.6)
    ax_dd.set_ylabel("drawdown (%)")
    ax_dd.grid(alpha=0.3)
    if ax_dd.get_legend_handles_labels()[0]:
        ax_dd.legend(loc="lower left", fontsize=8, frameon=False)
    ax_eq.margins(x=0.08)
    return fig


def _rolling_figure(strat: pd.Series, bench: pd.Series | None, benchmark_name: str, metrics: Mapping[str, float],
                    bench_metrics: Mapping[str, float]):
    fig, (ax_s, ax_v) = new_figure(11.0, 5.0, nrows=2, sharex=True, margins=(0.8, 0.25, 0.45, 0.4),
                                   gridspec_kw={"hspace": 0.08})
    fig.suptitle(f"Rolling {ROLLING_WINDOW}-session Sharpe and annualised volatility", fontsize=11)
    series = [("strategy", strat, _STRATEGY_COLOR, metrics)]
    if bench is not None and bench.notna().sum() >= ROLLING_WINDOW:
        series.append((benchmark_name, bench, _BENCH_COLOR, bench_metrics))
    for name, r, color, m in series:
        sharpe, vol = _rolling(r, ROLLING_WINDOW)
        ax_s.plot(sharpe.index, sharpe.to_numpy(), color=color, lw=1.1, label=name)
        ax_v.plot(vol.index, vol.to_numpy() * 100.0, color=color, lw=1.1, label=name)
        full_sharpe, full_vol = m.get("sharpe"), m.get("ann_vol")
        if full_sharpe is not None and np.isfinite(full_sharpe):
            ax_s.axhline(full_sharpe, color=color, lw=0.9, ls="--",
                         label=f"{name} full period {format_number('sharpe', full_sharpe)}")
        if full_vol is not None and np.isfinite(full_vol):
            ax_v.axhline(full_vol * 100.0, color=color, lw=0.9, ls="--",
                         label=f"{name} full period {format_number('ann_vol', full_vol)}")
    ax_s.axhline(0.0, color="#999", lw=0.6)
    ax_s.set_ylabel("Sharpe")
    ax_v.set_ylabel("volatility (%)")
    for ax in (ax_s, ax_v):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncol=2, framealpha=0.85)
    return fig


def monthly_heatmap(returns: pd.Series):
    """The monthly returns heatmap of session-indexed ``returns``: :func:`monthly_returns` as
    years x months cells annotated with the return in percent (one decimal, signed), and each
    year's compounded return in a column of its own at the right. A matplotlib ``Figure``."""
    from matplotlib.colors import TwoSlopeNorm

    table, yearly = monthly_returns(returns), _yearly(returns)
    n = len(table)
    fig, (ax_m, ax_y) = new_figure(11.0, 1.0 + 0.32 * n, ncols=2, margins=(0.6, 0.15, 0.45, 0.35),
                                   gridspec_kw={"width_ratios": [12, 1.4], "wspace": 0.03})
    fig.suptitle("Monthly returns (%), compounded; the year's return at the right", fontsize=11)
    cmap = "RdYlGn"
    for ax, values, labels in ((ax_m, table.to_numpy(dtype=float), list(_MONTHS)),
                               (ax_y, yearly.reindex(table.index).to_numpy(dtype=float)[:, None], ["Year"])):
        finite = np.abs(values[np.isfinite(values)])
        bound = float(np.quantile(finite, 0.95)) if finite.size else 0.01
        bound = max(bound, 1e-4)
        ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
        ax.set_xticks(range(len(labels)), labels, fontsize=8.5)
        ax.set_yticks(range(n), [str(y) for y in table.index], fontsize=8.5)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = abs(v) > 0.6 * bound
                ax.text(j, i, f"{100.0 * v:+.1f}", ha="center", va="center", fontsize=7.5,
                        color="white" if dark else "#222")
    ax_y.set_yticks(range(n), [""] * n)
    return fig


def _exposure_figure(frame: pd.DataFrame, metrics: Mapping[str, float]):
    fig, (ax_e, ax_t) = new_figure(11.0, 4.6, nrows=2, sharex=True, margins=(0.8, 0.25, 0.45, 0.4),
                                   gridspec_kw={"hspace": 0.08})
    fig.suptitle("Exposure and turnover of the target weights", fontsize=11)
    long_only = bool(np.allclose(frame["gross"].fillna(0.0), frame["net"].fillna(0.0)))
    ax_e.plot(frame.index, frame["gross"].to_numpy() * 100.0, color=_STRATEGY_COLOR, lw=1.0,
              label="gross = net (long only)" if long_only else "gross (sum |w|)")
    if not long_only:
        ax_e.plot(frame.index, frame["net"].to_numpy() * 100.0, color="#e67e22", lw=1.0, label="net (sum w)")
    if metrics.get("exposure") is not None and np.isfinite(metrics["exposure"]):
        ax_e.axhline(metrics["exposure"] * 100.0, color="#555", lw=0.9, ls="--",
                     label=f"exposure (headline) {format_number('exposure', metrics['exposure'])}")
    ax_e.axhline(0.0, color="#999", lw=0.6)
    ax_e.set_ylabel("exposure (% of book)")
    ax_t.plot(frame.index, frame["turnover"].to_numpy() * 100.0, color="#bbb", lw=0.6, label="per session (one-way, sum |Δw| / 2)")
    mean = frame["turnover"].rolling(TURNOVER_WINDOW, min_periods=1).mean()
    ax_t.plot(mean.index, mean.to_numpy() * 100.0, color="#333", lw=1.1, label=f"{TURNOVER_WINDOW}-session mean")
    ax_t.set_ylabel("turnover (% of book)")
    for ax in (ax_e, ax_t):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncol=3, framealpha=0.85)
    return fig


def _regime_figure(column: str, table: pd.DataFrame):
    present = [c for c in ("sharpe", "max_drawdown") if c in table.columns]
    fig, axes = new_figure(9.0, 2.8, ncols=max(len(present), 1), margins=(0.6, 0.2, 0.65, 0.4),
                           gridspec_kw={"wspace": 0.25})
    axes = np.atleast_1d(axes)
    fig.suptitle(f"By {column.replace('_', ' ')}", fontsize=11)
    names = [str(i) for i in table.index]
    for ax, col in zip(axes, present, strict=False):
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        scale = 100.0 if col == "max_drawdown" else 1.0
        colors = [_DOWN_COLOR if (col == "max_drawdown" or v < 0) else _STRATEGY_COLOR for v in values]
        bars = ax.bar(names, np.nan_to_num(values * scale, nan=0.0), color=colors, alpha=0.8)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(format_number(col, v), xy=(bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 3 if bar.get_height() >= 0 else -11), textcoords="offset points",
                        ha="center", fontsize=8.5)
        ax.axhline(0.0, color="#999", lw=0.6)
        ax.set_title("Sharpe" if col == "sharpe" else "max drawdown (%)", fontsize=10)
        ax.margins(y=0.2)
        ax.tick_params(axis="x", labelsize=8.5)
        ax.grid(axis="y", alpha=0.3)
    if not present:
        _no_data(axes[0], "no sharpe or max_drawdown column")
    return fig


# ----------------------------------------------------------------------------- the page


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _headline(metrics: Mapping[str, Any], bench_metrics: Mapping[str, Any] | None, strat: pd.Series,
              bench: pd.Series | None, benchmark_name: str) -> str:
    def period(r: pd.Series | None) -> dict[str, Any]:
        valid = r.dropna() if r is not None else pd.Series(dtype=float)
        if valid.empty:
            return {"start": None, "end": None, "sessions": None}
        return {"start": valid.index[0], "end": valid.index[-1], "sessions": int(len(valid))}

    columns = [("Strategy", {**period(strat), **metrics})]
    if bench_metrics is not None or bench is not None:
        columns.append((benchmark_name, {**period(bench), **(bench_metrics or {})}))
    extra = [k for _, m in columns for k in m if k not in HEADLINE and k not in ("sharpe_ci_low", "sharpe_ci_high")]
    order = list(HEADLINE) + list(dict.fromkeys(extra))
    rows: dict[str, dict[str, Any]] = {}
    for key in order:
        row = {}
        for col, m in columns:
            if key == "sharpe_ci":
                lo, hi = m.get("sharpe_ci_low"), m.get("sharpe_ci_high")
                row[col] = (f"{format_number('ratio', lo)} to {format_number('ratio', hi)}"
                            if _finite(lo) or _finite(hi) else None)
            else:
                row[col] = m.get(key)
        if any(v is not None for v in row.values()):
            rows[key] = row
    frame = pd.DataFrame.from_dict(rows, orient="index", dtype=object)
    labels = {k: HEADLINE.get(k, k.replace("_", " ")) for k in frame.index}
    return table_html(frame, {"sharpe_ci": "text"}, format_by="row", labels=labels)


def _checks(metrics: Mapping[str, Any], bench_metrics: Mapping[str, Any] | None, strat: pd.Series,
            bench: pd.Series | None, benchmark_name: str) -> list[str]:
    """Notes where a headline total return or max drawdown does not read as the one drawn."""
    out = []
    pairs = [("strategy", metrics, strat)]
    if bench is not None and bench_metrics:
        pairs.append((f"benchmark {benchmark_name}", bench_metrics, bench))
    for who, m, r in pairs:
        if not r.notna().any():
            continue
        drawn = {"total_return": growth(r).dropna().iloc[-1] - 1.0, "max_drawdown": float(drawdown(r).min())}
        for key, value in drawn.items():
            if _finite(m.get(key)):
                given, shown = format_number(key, m[key]), format_number(key, value)
                if given != shown:
                    out.append(f"The {who}'s {key} in the headline table ({given}) differs from the one compounded from "
                               f"the daily returns drawn here ({shown}): the metrics cover another window or other returns.")
    if bench is not None and not bench.notna().any():
        out.append(f"The benchmark {benchmark_name} has no return on any of the strategy's sessions: it is not drawn.")
    return out


def _params_html(params: Mapping[str, Any]) -> str:
    if not params:
        return _empty("No parameters given.")
    rows = []
    for key, value in params.items():
        if isinstance(value, Mapping):  # one level of nesting: each value by its own name
            text = "; ".join(f"{k}: {format_number(str(k), v)}" for k, v in value.items())
        else:
            text = format_number(key, value)
        rows.append({"parameter": str(key), "value": text})
    return table_html(rows, {"value": "text"}, index=False)


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def write_tearsheet(
    out_dir: Path,
    *,
    title: str,
    returns: pd.Series,
    benchmark: pd.Series | None = None,
    benchmark_name: str = "benchmark",
    weights: pd.DataFrame | None = None,
    metrics: Mapping[str, float] | None = None,
    benchmark_metrics: Mapping[str, float] | None = None,
    regime_tables: Mapping[str, pd.DataFrame] | None = None,
    params: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    log_scale: bool | None = None,
    calendar: str = DEFAULT_CALENDAR,
    dpi: int = 100,
) -> dict[str, Path]:
    """Write ``tearsheet.html`` (self-contained: figures embedded) and ``tearsheet.png`` (the equity
    and drawdown figure) into ``out_dir`` (created if needed; each file written atomically), and
    return ``{"html": path, "png": path}``.

    ``returns``: the strategy's daily returns indexed by tz-aware decision time or by session date
    (see the module doc for the rules). ``benchmark``: the benchmark's daily returns, indexed the
    same way, or None. ``weights``: decision time x symbol target weights (for exposure and
    turnover), or None. ``metrics`` / ``benchmark_metrics``: headline numbers already computed
    (``total_return``, ``ann_return``, ``ann_vol``, ``sharpe``, ``sharpe_ci_low``/``_high``,
    ``sortino``, ``calmar``, ``max_drawdown``, ``turnover``, ``exposure``, ``hit_rate``, ``psr``,
    ``dsr``, and any other key, formatted by :func:`research.report_html.kind_of` of its name).
    ``regime_tables``: per regime column a table with the regimes as rows (columns such as
    ``sessions``, ``ann_return``, ``sharpe``, ``max_drawdown``, ``exposure``). ``params``: the
    run's parameters, shown as a table. ``notes``: lines shown at the end. ``log_scale``: the
    equity axis; None picks log when a curve spans more than 10x.

    Short or empty inputs render: fewer than 126 returns say "not enough history" in the rolling
    section; an all-NaN benchmark, no weights or no regime tables each say so in their section.
    Raises :class:`TearsheetInputError` for returns that are empty or not indexed by time.
    """
    metrics = dict(metrics or {})
    bench_metrics = dict(benchmark_metrics) if benchmark_metrics is not None else None
    regime_tables = dict(regime_tables or {})
    params = dict(params or {})
    strat = _on_sessions(returns, "returns", calendar)
    if strat.empty:
        raise TearsheetInputError("tearsheet: returns is empty, nothing to report; pass the strategy's daily returns "
                                  "over a window with at least one session")
    bench = None
    if benchmark is not None:
        bench = _on_sessions(benchmark, "benchmark", calendar).reindex(strat.index)
    drawn_bench = bench if bench is not None and bench.notna().any() else None
    exposure = None
    if weights is not None:
        if not isinstance(weights, pd.DataFrame):
            raise TearsheetInputError(f"tearsheet: weights must be a DataFrame (decision time x symbol) or None, "
                                      f"got {type(weights).__name__}")
        if not weights.empty:
            w = weights.set_axis(session_index(weights.index, "weights", calendar))
            exposure = _exposure_turnover(w[~w.index.duplicated(keep="last")].sort_index())
    for column, rt in regime_tables.items():
        if rt is not None and not isinstance(rt, pd.DataFrame):
            raise TearsheetInputError(f"tearsheet: regime_tables[{column!r}] must be a DataFrame (regimes x metrics), "
                                      f"got {type(rt).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    valid = strat.dropna()
    span = (f"{format_number('date', valid.index[0])} to {format_number('date', valid.index[-1])}, "
            f"{format_number('sessions', len(valid))} session{'s' if len(valid) > 1 else ''}" if len(valid) else "no returns")
    vs = f" vs {benchmark_name}" if drawn_bench is not None else ""
    subtitle = f"{span}{vs}"
    sections: list[tuple[str, str]] = []

    checks = _checks(metrics, bench_metrics, strat, bench, benchmark_name)
    sections.append(("Headline numbers", _headline(metrics, bench_metrics, strat, bench, benchmark_name)
                     + notes_html(checks)))

    # equity and drawdown: the main figure, also written as the PNG
    fig = _main_figure(title, strat, drawn_bench, benchmark_name, log_scale, subtitle)
    try:
        main_png = png_bytes(fig, dpi=dpi)
    finally:
        fig.clear()
    png = out_dir / "tearsheet.png"
    with atomic_path(png) as tmp:
        Path(tmp).write_bytes(main_png)
    sections.append(("Equity", image_tag(
        main_png, f"Growth of 1 and drawdown: strategy{vs}",
        caption="Growth of 1 compounded from the daily returns; legend and line ends show each total return. "
                "Below: the underwater curve, the deepest drawdown of each labelled.")))
    drawdown_html = ""
    for name, r in [("strategy", strat)] + ([(benchmark_name, drawn_bench)] if drawn_bench is not None else []):
        episodes = drawdown_episodes(r)
        drawdown_html += f"<h3>{html.escape(name)}: deepest drawdowns</h3>" + (
            table_html(episodes, {"peak": "date", "trough": "date", "recovery": "date"}, index=False,
                       labels={"sessions": "sessions under water"})
            if not episodes.empty else _empty("No drawdown: every session closed at a new high."))
    sections.append(("Drawdown", "<p>The underwater curves are the lower panel of the equity figure. A drawdown "
                     "not yet recovered has no recovery date.</p>" + drawdown_html))

    # rolling risk
    if valid.size < ROLLING_WINDOW:
        rolling_html = _empty(f"Not enough history for the rolling {ROLLING_WINDOW}-session Sharpe and volatility: "
                              f"{format_number('sessions', valid.size)} sessions with a return.")
    else:
        rolling_html = figure_tag(_rolling_figure(strat, drawn_bench, benchmark_name, metrics, bench_metrics or {}),
                                  f"Rolling {ROLLING_WINDOW}-session Sharpe and volatility", dpi=dpi)
    sections.append(("Rolling risk", rolling_html))

    # monthly heatmap
    table = monthly_returns(strat)
    if table.empty:
        monthly_html = _empty("No returns: no monthly table.")
    else:
        monthly_html = figure_tag(monthly_heatmap(strat), "Monthly returns heatmap", dpi=dpi)
    sections.append(("Monthly returns", monthly_html))

    # exposure and turnover
    if exposure is None:
        exposure_html = _empty("No target weights given: no exposure or turnover.")
    else:
        exposure_html = figure_tag(_exposure_figure(exposure, metrics), "Exposure and turnover", dpi=dpi,
                                   caption="Gross = sum of |weight|, net = sum of weights, turnover = sum of "
                                           "|change of weight| per session, as a share of the book.")
    sections.append(("Exposure and turnover", exposure_html))

    # regimes
    parts = []
    for column, rt in regime_tables.items():
        if rt is None or rt.empty:
            continue
        heading = f"<h3>By {html.escape(column.replace('_', ' '))}</h3>"
        labels = {c: c.replace("_", " ") for c in map(str, rt.columns)}
        parts.append(heading + table_html(rt.rename_axis("regime"), labels=labels)
                     + figure_tag(_regime_figure(column, rt), f"Sharpe and max drawdown by {column}", dpi=dpi))
    sections.append(("Regimes", "".join(parts) or _empty("No regime slices given.")))

    sections.append(("Parameters", _params_html(params)))
    sections.append(("Notes", notes_html(notes, cls="plain") or _empty("No notes.")))
    text = page(title, sections, subtitle=subtitle)
    html_path = atomic_write_text(out_dir / "tearsheet.html", text)
    return {"html": html_path, "png": png}

