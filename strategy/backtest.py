"""Backtest a strategy with vectorbt on ``alpha.history``.

Decisions are taken at each session's availability time (close + delay) from
point-in-time features; orders execute at the NEXT session's OPEN. Prices for
P&L are a total-return index built from the point-in-time ``ret_1d`` (splits
and dividends applied as they happened), so a split is not a loss; the open
is put in the same scale (``open_tr = close_tr * open / close``) and the book
is valued at closes.

Orders are sized with what was known at the decision: vectorbt's
``targetpercent`` with ``val_price=-inf``, i.e. target weight x (cash + the
positions valued at the decision session's close) / that close, then filled
at the next open with slippage and fees (partially, when the open gapped up
and the cash does not cover every buy). The paper broker
(:mod:`strategy.paper`) runs the same kernel on the same prices, so the
shadow replay (:func:`strategy.live_loop.replay`) equals this backtest order
by order. A symbol is traded at t+1 only when its target changed at t and all
its features were present (fresh, within the view's TTL) at t -- the live
loop's staleness block.

The symbols are the universe known at each decision time
(:mod:`strategy.universe`, ``universe="listed"`` by default): the history is
asked for member rows only, so a symbol has a target only while it is a
member (NaN in ``targets`` elsewhere). A member that leaves has target 0 (no
features are needed to know that) and is sold like any target change. Prices
are each session's own bar (``bars_daily:session_date`` is the decision's
session), never a bar carried over by the point-in-time join, so a halted or
delisted symbol has no open to trade at and its total-return index does not
compound a stale ``ret_1d``. vectorbt ignores an order whose price is NaN and
values a position at the (forward-filled) close it is given, so a position in
a delisted symbol would be held and valued at its last close forever: an
order for a symbol that was not listed at the decision (no bar within the TTL
of the newest bar known, :func:`execution_prices`) fills at its last close
instead of an open, the delisting cash-out (zipline closes positions at an
asset's ``auto_close_date`` the same way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core.config import DEFAULT_CALENDAR
from strategy import trend_rsi
from strategy.universe import LISTED, TTL, member_entities


@dataclass
class BacktestResult:
    stats: dict
    report_dir: Path
    files: dict[str, Path]
    targets: pd.DataFrame        # decision_time x symbol target weights
    features: pd.DataFrame       # the long frame the strategy saw
    returns: pd.Series           # the portfolio's daily returns, by decision time
    by_regime: dict[str, pd.DataFrame]  # metrics sliced by the market regime known at each session's start
    orders: pd.DataFrame | None = None  # one row per fill: decision_time, session, fill_time (its open), symbol, qty (signed), price, fee

    def summary(self) -> str:
        s = self.stats
        lines = [f"{'period':>24}: {str(s.get('Start'))[:10]} .. {str(s.get('End'))[:10]}",
                 f"{'total return':>24}: {s.get('Total Return [%]', float('nan')):+,.1f} %   Sharpe {s.get('Sharpe Ratio', float('nan')):.2f}"
                 f"   max drawdown -{s.get('Max Drawdown [%]', float('nan')):.1f} %",
                 f"{'trades':>24}: {s.get('Total Trades', 0):,}   fees paid ${s.get('Total Fees Paid') or 0:,.0f}"]
        for column, table in self.by_regime.items():
            lines.append(f"{'by ' + column:>24}: " + "; ".join(
                f"{name} {int(r.sessions)} sessions, ann. return {r.ann_return:+.1%}, Sharpe {r.sharpe:.2f}, max DD {r.max_drawdown:.1%}"
                for name, r in table.iterrows()))
        return "\n".join(lines)


def decision_frame(history: pd.DataFrame) -> pd.DataFrame:
    out = history.rename(columns={"event_timestamp": "decision_time"})
    return out


#: the bar field the fills execute at (fetched through alpha.history beside the strategy's features)
OPEN = "bars_daily:open"
#: the session of the bar the point-in-time join returned: prices count only on their own session
SESSION = "bars_daily:session_date"


def history_features(strategy) -> list[str]:
    """The strategy's features plus what the execution model needs (the open, close, ret_1d and
    the bar's session)."""
    need = ["bars_daily:close", "technicals:ret_1d", OPEN, SESSION]
    return list(strategy.FEATURES) + [f for f in need if f not in strategy.FEATURES]


def universe_frame(client, strategy, start, end, *, symbols: list[str] | None = None, universe: str | None = LISTED) -> pd.DataFrame:
    """The long frame a backtest or a replay decides on: ``alpha.history`` of the strategy's
    features (and the execution model's) for the members of ``universe`` at each session's
    decision time in [start, end] (:func:`strategy.universe.member_entities`), ``decision_time``
    for ``event_timestamp``."""
    entities = member_entities(client, start, end, symbols=symbols, universe=universe)
    return decision_frame(client.history(entities, history_features(strategy)))


def feature_names(strategy) -> list[str]:
    return [f.split(":", 1)[1] for f in strategy.FEATURES]


def own_session(frame: pd.DataFrame, time_col: str = "decision_time", calendar: str = DEFAULT_CALENDAR) -> pd.Series:
    """True where a row's bar is its decision session's own (``session_date`` equals the session
    of ``time_col`` on the calendar); all True when the frame has no ``session_date``."""
    if "session_date" not in frame.columns:
        return pd.Series(True, index=frame.index)
    from etl.core import clock

    tz = clock.get_calendar(calendar).tz
    day = pd.DatetimeIndex(frame[time_col]).tz_convert(tz).strftime("%Y-%m-%d")
    return pd.Series(np.asarray(frame["session_date"].astype(object) == np.asarray(day, dtype=object)), index=frame.index)


def total_return_prices(frame: pd.DataFrame, time_col: str = "decision_time",
                        calendar: str = DEFAULT_CALENDAR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Total-return close and open per decision time (rows) and symbol (columns, sorted).

    The close index compounds the point-in-time ``ret_1d`` from 100 at the
    first row; ``open_tr = close_tr * open / close`` (same scale). NaN where a
    symbol has no bar of that session (:func:`own_session`: a bar the join
    carried over from an earlier session is not a price of this one). Symbols
    without any bar are dropped.
    """
    prices = frame[[time_col, "symbol", "close", "open", "ret_1d"]].copy()
    prices.loc[~own_session(frame, time_col, calendar), ["close", "open", "ret_1d"]] = np.nan
    wide = prices.pivot(index=time_col, columns="symbol", values=["close", "open", "ret_1d"]).sort_index()
    close, opn, rets = wide["close"], wide["open"], wide["ret_1d"].reindex_like(wide["close"])
    listed = close.notna()
    growth = (1.0 + rets.where(listed)).where(listed)
    index = growth.fillna(1.0).cumprod().where(listed) * 100.0
    open_tr = index * opn / close
    keep = index.notna().any()
    return index.loc[:, keep], open_tr.loc[:, keep]


def execution_prices(close_tr: pd.DataFrame, open_tr: pd.DataFrame, ttl: pd.Timedelta = TTL) -> pd.DataFrame:
    """The price an order executed in each row (session) fills at, NaN where it cannot fill:
    the session's open; for a symbol without an open whose newest bar at the row before (the
    decision) is older than ``ttl`` before the newest bar of any symbol then (not listed: the
    rule of :mod:`strategy.universe` on these prices), its last close -- the delisting
    cash-out. The backtest and the paper broker (:class:`strategy.paper.PriceBook`) both fill
    at these prices."""
    if close_tr.empty:
        return open_tr.copy()
    from etl.core import clock

    times = clock.epoch_us(pd.DatetimeIndex(close_tr.index)).astype(np.float64)  # exact below 2**53 us
    last = pd.DataFrame(np.where(close_tr.notna().to_numpy(), times[:, None], np.nan),
                        index=close_tr.index, columns=close_tr.columns).ffill()
    newest = last.max(axis=1)
    unlisted = last.isna() | last.lt(newest - pd.Timedelta(ttl).value / 1000.0, axis=0)
    cash_out = unlisted.shift(1, fill_value=False).astype(bool) & open_tr.isna()
    return open_tr.where(~cash_out, close_tr.ffill().shift(1))


def fresh_mask(frame: pd.DataFrame, strategy, time_col: str = "decision_time") -> pd.DataFrame:
    """True where every feature of the strategy has a value (else stale or missing: blocked)."""
    names = feature_names(strategy)
    fresh = frame[names].notna().all(axis=1)
    return frame.assign(_fresh=fresh).pivot(index=time_col, columns="symbol", values="_fresh").sort_index()


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
    universe: str | None = LISTED,
    report: bool = True,
) -> BacktestResult:
    """Backtest ``strategy`` on the members of ``universe`` (``"listed"``, a named universe, or
    None: every symbol asked) at each session in [start, end]; ``symbols`` (default: the
    warehouse's) are intersected with the membership (module doc)."""
    import vectorbt as vbt
    from vectorbt.portfolio.enums import SizeType

    frame = universe_frame(client, strategy, start, end, symbols=symbols, universe=universe)
    frame["target_weight"] = strategy.target_positions(frame)
    targets = frame.pivot(index="decision_time", columns="symbol", values="target_weight").sort_index()

    # total-return close and open per symbol; NaN where the symbol has no bar of that session
    index, open_tr = total_return_prices(frame, calendar=client.settings.calendar)
    targets = targets.reindex(columns=index.columns)
    member = frame.assign(_m=True).pivot(index="decision_time", columns="symbol", values="_m").reindex_like(targets).notna()
    # a symbol outside the universe has target 0, known without features (so never blocked as stale)
    weights = targets.where(member, 0.0)
    fresh = fresh_mask(frame, strategy).reindex_like(targets).eq(True) | ~member
    price = execution_prices(index, open_tr)
    # decided at t, executed at t+1's open (a delisted symbol: its last close); an order only when
    # the target changed at t (positions drift in between), all the symbol's features were fresh
    # at t, and t+1 has a price. Elsewhere a no-op order of 0 shares.
    decided = weights.shift(1)
    trade = decided.ne(decided.shift(1)) & fresh.shift(1, fill_value=False) & price.notna()
    trade.iloc[0] = False
    size = decided.where(trade, 0.0)
    size_type = pd.DataFrame(np.where(trade, SizeType.TargetPercent, SizeType.Amount), index=size.index, columns=size.columns)

    pf = vbt.Portfolio.from_orders(
        close=index.ffill(),
        price=price,
        size=size,
        size_type=size_type,
        val_price=-np.inf,   # size with the decision session's close: known at the decision
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
    by_regime = regime_slices(client, returns, str(frame["symbol"].iloc[0]), start, end)
    out_dir = Path(out_dir or client.settings.reports / "backtest" / strategy.NAME)
    if report:
        out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(strategy=strategy.NAME, universe=universe, symbols=list(index.columns), start=str(start), end=str(end), fees=fees,
                  slippage=slippage)
    files = _write_report(pf, stats, targets, out_dir, params, by_regime, index) if report else {}
    return BacktestResult(stats=stats, report_dir=out_dir, files=files, targets=targets, features=frame, returns=returns,
                          by_regime=by_regime, orders=orders_frame(pf, client.settings.calendar))


def orders_frame(pf, calendar: str = DEFAULT_CALENDAR) -> pd.DataFrame:
    """The fills of a vectorbt portfolio: decided at the row before, filled at the row's session open."""
    from etl.core import clock

    rec = pf.orders.records
    times = pf.wrapper.index
    columns = pf.wrapper.columns
    sign = np.where(rec["side"] == 0, 1.0, -1.0)
    tz = clock.get_calendar(calendar).tz
    session = pd.DatetimeIndex(times[rec["idx"]]).tz_convert(tz).normalize().tz_localize(None)
    out = pd.DataFrame(
        {
            "decision_time": pd.DatetimeIndex(times[np.maximum(rec["idx"] - 1, 0)]),
            "session": session,
            "fill_time": clock.session_opens(session, calendar),
            "symbol": np.asarray(columns)[rec["col"]],
            "qty": rec["size"] * sign,
            "price": rec["price"],
            "fee": rec["fees"],
        }
    )
    return out.sort_values(["session", "symbol"], kind="stable").reset_index(drop=True)


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
    from etl.core.errors import UnknownFeatureError
    from etl.factors.regime import slice_metrics

    try:
        # from a little before the start: the first session's return falls under the regime of the session before it
        before = pd.Timestamp(start) - pd.Timedelta(days=14)
        regimes = client.history([symbol], [f"regime_daily:{c}" for c in REGIMES], start=before, end=end)
    except UnknownFeatureError:
        return {}
    from etl.core import clock

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


def _benchmark(index: pd.DataFrame) -> tuple[pd.Series, str]:
    """SPY's total return when SPY is in the backtest, else the members bought and held
    equally weighted (the mean of their total returns at each session)."""
    rets = index.pct_change(fill_method=None)
    if "SPY" in rets.columns:
        return rets["SPY"], "SPY total return"
    return rets.mean(axis=1), "members, equal weight"


def _write_report(pf, stats: dict, targets: pd.DataFrame, out_dir: Path, params: dict, by_regime: dict[str, pd.DataFrame],
                  index: pd.DataFrame) -> dict[str, Path]:
    """The tearsheet (research.tearsheet: equity against the benchmark, drawdown, rolling Sharpe
    and volatility, monthly returns, exposure and turnover, regimes; every number formatted) and
    ``stats.json`` (vectorbt's statistics, the metrics, the regime slices)."""
    from research.metrics import performance
    from research.tearsheet import write_tearsheet

    returns = pf.returns()
    weights = targets.reindex(returns.index)
    metrics = performance(returns, weights=weights)
    bench, bench_name = _benchmark(index)
    bench = bench.reindex(returns.index)
    bench_metrics = performance(bench.dropna()) if bench.notna().sum() > 2 else None
    files = write_tearsheet(out_dir, title=f"Backtest: {params['strategy']} on {len(params['symbols'])} symbols", returns=returns,
                            benchmark=bench, benchmark_name=bench_name, weights=weights, metrics=metrics,
                            benchmark_metrics=bench_metrics, regime_tables=by_regime,
                            params={k: v for k, v in params.items() if k != "symbols"} | {"symbols": len(params["symbols"])},
                            notes=[f"vectorbt: {stats.get('Total Trades', 0):,} trades, fees paid "
                                   f"${stats.get('Total Fees Paid') or 0:,.0f}; decided at each session's close + delay, filled "
                                   "at the next open.",
                                   "Regime slices: each session's return under the regime known at its start."])
    stats_path = out_dir / "stats.json"
    regimes_json = {c: json.loads(t.to_json(orient="index")) for c, t in by_regime.items()}
    stats_path.write_text(json.dumps({"params": params, "stats": stats, "metrics": metrics, "benchmark": bench_name,
                                      "benchmark_metrics": bench_metrics, "by_regime": regimes_json}, indent=1, default=str))
    return {"png": files["png"], "html": files["html"], "stats": stats_path}
