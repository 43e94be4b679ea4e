"""The live loop: at each exchange-calendar decision time, features -> the same
strategy function as the backtest -> target weights -> orders -> broker -> ledger.

- :func:`run_session` is one decision: reconcile what the broker did since the
  last one (fills), decide once (targets and orders written to the ledger in
  one transaction, orders ``pending``), send the pending orders (marked
  ``submitted`` after the broker acknowledged them), snapshot the account.
  Running it again for the same decision time decides and sends nothing new.
- :func:`run_live` sleeps until each decision time (a session's availability
  time: close + the bar delay, on the warehouse's calendar) and runs
  :func:`run_session`; the clock and the sleep are injectable.
- :func:`replay` is the shadow replay: the same loop over past sessions on
  ``alpha.history`` with a :class:`~strategy.paper.PaperBroker` and a fresh
  ledger. Its fills equal the vectorbt backtest's (:func:`compare_fills`).

Sizing is the backtest's (vectorbt ``targetpercent`` with ``val_price=-inf``):
equity = cash + positions at the decision session's (total-return) close;
an order of ``target x equity / close - position`` shares, only for a symbol
whose target changed since the previous decision. A symbol whose features are
stale (older than the view's TTL relative to the decision time) or missing is
blocked: its order is written to the ledger as ``blocked`` with the reason,
and not sent.

The symbols of a decision are the members of the universe at its time
(:mod:`strategy.universe`; ``symbols`` are intersected with them): a delisted
symbol is neither asked for nor reported stale, and one info line per decision
counts the symbols left out. A symbol that leaves the universe with a non-zero
previous target gets target 0 and an order closing its position (not blocked:
leaving needs no features), as the backtest sells it.
"""

from __future__ import annotations

import logging
import os
import signal
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock as xclock
from etl.core.config import DEFAULT_CALENDAR
from etl.core.errors import AlphaError, LookAheadError, NaiveTimestampError
from strategy.backtest import OPEN, SESSION, decision_frame, feature_names, universe_frame
from strategy.broker import BrokerError, Order
from strategy.ledger import BLOCKED, EXPIRED, PENDING, REJECTED, SUBMITTED, Ledger, PlannedOrder
from strategy.live import TTL, judge_freshness
from strategy.paper import PaperBroker, PriceBook
from strategy.universe import LISTED, universe_at

log = logging.getLogger("alpha.live")

#: test hook: at these points the loop writes the step name to $ALPHA_LIVE_STEP_FILE and
#: waits to be killed (the fault tests SIGKILL it there); see docs/live.md
HOOK_ENV, STEP_FILE_ENV = "ALPHA_LIVE_PAUSE_AT", "ALPHA_LIVE_STEP_FILE"
HOOKS = ("after_pending", "after_send", "after_submit")


class LiveLoopError(AlphaError):
    """The live loop cannot run as asked (no prices, a bad time, an unknown strategy)."""


def _hook(step: str) -> None:
    if os.environ.get(HOOK_ENV) != step:
        return
    path = os.environ.get(STEP_FILE_ENV)
    if path:
        Path(path).write_text(step)
    log.warning("paused at %s (pid %d) for a fault test", step, os.getpid())
    signal.pause()  # until killed


@dataclass
class SessionReport:
    decision_time: pd.Timestamp
    decided: bool                        # False: this decision was already in the ledger
    sent: list[str] = field(default_factory=list)        # client ids sent to the broker in this run
    blocked: dict[str, str] = field(default_factory=dict)  # symbol -> reason, for orders not sent
    stale: dict[str, str] = field(default_factory=dict)    # every symbol with stale or missing features
    fills: int = 0                       # fills recorded in this run
    expired: list[str] = field(default_factory=list)
    targets: pd.Series | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # symbols not in the universe at this time, and why
    exits: list[str] = field(default_factory=list)          # symbols that left the universe with a target: closed

    def line(self) -> str:
        held = {} if self.targets is None else {s: w for s, w in self.targets.items() if w > 0}
        parts = [f"{self.decision_time:%Y-%m-%d %H:%M}Z", "decided" if self.decided else "already decided",
                 f"{len(self.sent)} sent", f"{self.fills} fill(s) recorded"]
        if self.exits:
            parts.append("left the universe " + ", ".join(self.exits))
        if self.blocked:
            parts.append("blocked " + ", ".join(f"{s} ({r})" for s, r in self.blocked.items()))
        if held:
            parts.append("targets " + ", ".join(f"{s} {w:.1%}" for s, w in held.items()))
        return "; ".join(parts)


def client_order_id(strategy: str, decision_time, symbol: str) -> str:
    """Deterministic: one order per strategy, decision session and symbol."""
    day = pd.Timestamp(decision_time).tz_convert("America/New_York").strftime("%Y%m%d")
    return f"{strategy}-{day}-{symbol}"[:48]


def _utc(ts, what: str) -> pd.Timestamp:
    try:
        return xclock.to_utc(ts, what)
    except NaiveTimestampError:  # the live loop's own error and message (a LiveLoopError)
        raise LiveLoopError(f"{what} {ts!r} has no time zone; pass a tz-aware time (UTC)") from None


# ------------------------------------------------------------------ features
def latest_features(client, symbols: list[str], strategy, decision_time, ttl: pd.Timedelta = TTL) -> tuple[pd.DataFrame, dict[str, str]]:
    """``alpha.latest`` at a decision time: values older than ``ttl`` before it, newer than it
    (not knowable yet) or missing become NaN; returns the frame and why each symbol is stale."""
    t = _utc(decision_time, "decision_time")
    latest = client.latest(symbols, strategy.FEATURES, now=t, allow_stale=True)  # judged against t below
    frame, reasons = judge_freshness(latest, feature_names(strategy), t, ttl)
    frame["decision_time"] = t
    return frame, reasons


def history_features_at(client, symbols: list[str], strategy, decision_time) -> tuple[pd.DataFrame, dict[str, str]]:
    """``alpha.history`` at one decision time (point-in-time within the view's TTL)."""
    t = _utc(decision_time, "decision_time")
    entities = pd.DataFrame({"symbol": symbols, "event_timestamp": [t] * len(symbols)})
    frame = decision_frame(client.history(entities, strategy.FEATURES))
    return frame, _missing_reasons(frame, strategy)


def _missing_reasons(frame: pd.DataFrame, strategy) -> dict[str, str]:
    out = {}
    for _, row in frame.iterrows():
        gone = [n for n in feature_names(strategy) if pd.isna(row[n])]
        if gone:
            out[row["symbol"]] = ", ".join(gone) + " missing or older than the TTL"
    return out


# ------------------------------------------------------------------ one session
def run_session(client, broker, ledger: Ledger, strategy, decision_time, *, symbols: list[str] | None = None,
                features: pd.DataFrame | None = None, source: str = "latest", prices: PriceBook | None = None,
                now=None, universe: str | None = LISTED) -> SessionReport:
    """One decision at ``decision_time`` (see the module doc). ``features`` (rows of the
    strategy's features at this decision time for the universe's members, e.g. a replay's slice)
    else ``source``: ``"latest"`` (online store) or ``"history"`` (offline store at that time), for
    the members of ``universe`` at that time among ``symbols`` (default: all; ``universe=None``:
    every symbol asked). ``prices``: the valuation prices (default: the paper broker's book).
    ``now``: the time the loop acts at (default: the decision time) -- a pending order is
    (re)sent only before its fill session opens."""
    t = _utc(decision_time, "decision_time")
    now = t if now is None else _utc(now, "now")
    name = strategy.NAME
    report = SessionReport(decision_time=t, decided=False)

    # 1. what happened since the last decision: fills of submitted orders, stale pending orders
    _reconcile(broker, ledger, name, now, report)

    # 2. decide, once per decision time
    if not ledger.has_decision(name, t):
        if features is not None:
            frame = features.copy()
            if (frame["decision_time"] > t).any():
                raise LookAheadError(f"feature rows after the decision time {t} were passed to run_session")
            stale = _missing_reasons(frame, strategy)
        else:
            if source not in ("latest", "history"):
                raise LiveLoopError(f"source must be 'latest' or 'history', got {source!r}")
            chosen = universe_at(client, t, symbols=symbols, universe=universe)
            report.left_out = dict(chosen.left_out)
            if chosen.left_out:
                log.info("%s", chosen.line())
            if not chosen.members:
                frame, stale = pd.DataFrame({"symbol": pd.Series(dtype=object), **{n: pd.Series(dtype=float) for n in feature_names(strategy)}}), {}
            elif source == "latest":
                frame, stale = latest_features(client, chosen.members, strategy, t)
            else:
                frame, stale = history_features_at(client, chosen.members, strategy, t)
        frame = frame.reset_index(drop=True)
        frame["decision_time"] = t
        frame["target_weight"] = strategy.target_positions(frame) if len(frame) else pd.Series(dtype=float)
        # symbols that left the universe with a non-zero target: target 0, their positions closed
        previous = ledger.previous_targets(name, t)
        members = set(frame["symbol"])
        exits = sorted(s for s, w in (previous or {}).items() if s not in members and w != 0)
        if exits:
            gone = pd.DataFrame({"symbol": exits, "decision_time": t, "target_weight": 0.0})
            frame = pd.concat([frame, gone], ignore_index=True) if len(frame) else gone
        report.exits = exits
        report.targets = frame.set_index("symbol")["target_weight"].sort_index()
        report.stale = dict(stale)
        planned, cash, equity = _plan(broker, ledger, name, t, frame, stale, prices, exits=set(exits), previous=previous)
        targets = pd.DataFrame({"symbol": frame["symbol"], "weight": frame["target_weight"],
                                "fresh": ~frame["symbol"].isin(list(stale))})
        if ledger.record_decision(name, t, targets, planned, cash=cash, equity=equity):
            report.decided = True
            for p in planned:
                if p.status == BLOCKED:
                    report.blocked[p.symbol] = p.note or "stale"
                    log.warning("%s %s: %s not traded: %s", name, t, p.symbol, p.note)
            _hook("after_pending")

    # 3. send what is pending (this decision's orders, or ones a killed run left behind)
    _send_pending(broker, ledger, name, now, report, client.settings.calendar if client is not None else DEFAULT_CALENDAR)
    _hook("after_submit")

    # 4. the account as the broker sees it now
    acct = broker.account()
    ledger.snapshot(name, now, acct.cash, acct.equity, acct.positions)
    return report


def _plan(broker, ledger: Ledger, name: str, t: pd.Timestamp, frame: pd.DataFrame, stale: dict[str, str],
          prices: PriceBook | None, *, exits: set[str] = frozenset(), previous: dict[str, float] | None = None,
          ) -> tuple[list[PlannedOrder], float, float]:
    """Orders of this decision: vectorbt's targetpercent sizing at the decision's close. A symbol
    in ``exits`` (it left the universe) is sold whole: targetpercent 0 is ``-position`` shares,
    whatever the price (a delisted symbol's features are gone)."""
    from vectorbt.utils.math_ import is_close_nb

    acct = broker.account()
    if prices is None and isinstance(broker, PaperBroker):
        prices = broker.book(t)
    if prices is not None:
        cols = prices.symbols
        vp = prices.valuation(t).reindex(cols).to_numpy(dtype=float)
    else:  # a real broker: raw shares at the last close the features carry
        cols = sorted(frame["symbol"])
        closes = frame.set_index("symbol")["close"] if "close" in frame.columns else pd.Series(np.nan, index=frame["symbol"])
        vp = closes.reindex(cols).to_numpy(dtype=float)
    pos = np.array([float(acct.positions.get(c, 0.0)) for c in cols])
    pos = np.where(np.abs(pos) <= 1e-12, 0.0, pos)  # vectorbt's numerical snap of a position to 0
    value = acct.cash
    for k in range(len(cols)):  # summed in column order, as vectorbt does
        if pos[k] != 0 and np.isfinite(vp[k]):  # (the book's prices are forward-filled: never NaN where held)
            value += pos[k] * vp[k]
    weights = frame.set_index("symbol")["target_weight"]
    planned: list[PlannedOrder] = []
    for sym in sorted(frame["symbol"]):
        w = float(weights[sym])
        if previous is not None and sym in previous and previous[sym] == w:
            continue  # target unchanged: no order, the position drifts
        cid = client_order_id(name, t, sym)
        k = cols.index(sym) if sym in cols else None
        if sym in exits:
            qty = -(pos[k] if k is not None else float(acct.positions.get(sym, 0.0)))
            if qty != 0 and not is_close_nb(qty, 0.0):
                planned.append(PlannedOrder(cid, sym, qty, PENDING, "left the universe: position closed"))
            continue
        if k is None or not np.isfinite(vp[k]):
            if w != 0 or sym in stale:
                planned.append(PlannedOrder(cid, sym, None, BLOCKED, stale.get(sym, "no price to size the order")))
            continue
        qty = w * value
        qty /= vp[k]
        qty -= pos[k]
        if sym in stale:
            planned.append(PlannedOrder(cid, sym, qty, BLOCKED, f"stale: {stale[sym]}"))
            continue
        if qty == 0 or is_close_nb(qty, 0.0):
            continue
        planned.append(PlannedOrder(cid, sym, qty, PENDING))
    return planned, float(acct.cash), float(value)


def _fill_window_open(decision_time: pd.Timestamp, now: pd.Timestamp, calendar: str = DEFAULT_CALENDAR) -> bool:
    """Whether an order decided at ``decision_time`` can still make its fill session's open."""
    cal = xclock.get_calendar(calendar)
    day = decision_time.tz_convert(cal.tz).tz_localize(None).normalize()
    nxt = xclock.next_session(pd.DatetimeIndex([day]), calendar)
    return bool(now < xclock.session_opens(nxt, calendar)[0])


def _send_pending(broker, ledger: Ledger, name: str, now: pd.Timestamp, report: SessionReport,
                  calendar: str = DEFAULT_CALENDAR) -> None:
    for row in ledger.open_orders(name):
        if row["status"] != PENDING:
            continue
        decided = pd.Timestamp(row["decision_time"])
        cid = row["client_order_id"]
        existing = broker.order(cid)
        if existing is None and not _fill_window_open(decided, now, calendar):
            ledger.mark(cid, EXPIRED, note=f"not sent before the fill session's open (restarted at {now})")
            report.expired.append(cid)
            continue
        order = Order(client_order_id=cid, symbol=row["symbol"], qty=float(row["qty"]), decision_time=decided)
        try:
            status = existing or broker.submit(order)
        except BrokerError as exc:
            ledger.mark(cid, REJECTED, note=str(exc))
            log.error("%s: %s rejected: %s", name, cid, exc)
            continue
        _hook("after_send")
        ledger.mark(cid, SUBMITTED, broker_order_id=status.broker_order_id, submitted_at=status.submitted_at or now)
        if existing is None:
            report.sent.append(cid)


def _reconcile(broker, ledger: Ledger, name: str, now: pd.Timestamp, report: SessionReport) -> None:
    """Record the fills (and final states) of submitted orders; leave pending ones to _send_pending."""
    for row in ledger.open_orders(name):
        if row["status"] != SUBMITTED:
            continue
        cid = row["client_order_id"]
        status = broker.order(cid)
        if status is None:  # marked submitted but the broker never heard of it: send again
            ledger.mark(cid, PENDING, note="broker did not know the order; re-sending")
            continue
        if status.status == "filled":
            fill = broker.fill(cid) if hasattr(broker, "fill") else None
            if fill is None:
                price = float(status.filled_avg_price)
                fee = getattr(broker, "fees", 0.0) * abs(status.filled_qty) * price
                fill_time = status.filled_at or now
                qty = status.filled_qty
            else:
                price, fee, fill_time, qty = fill.price, fill.fee, fill.time, fill.qty
            if ledger.record_fill(name, cid, row["symbol"], qty, price, fee, fill_time):
                report.fills += 1
        elif status.status in ("canceled", "rejected", "expired"):
            ledger.mark(cid, EXPIRED if status.status == "expired" else REJECTED, note=f"broker: {status.status}")


# ------------------------------------------------------------------ the loop
def decision_times(start, end, settings) -> pd.DatetimeIndex:
    """The availability time (close + bar delay, UTC) of every session in [start, end]."""
    sessions = xclock.sessions_in_range(start, end, settings.calendar)
    return xclock.availability_times(sessions, settings.bar_delay_minutes, settings.calendar) if len(sessions) else pd.DatetimeIndex([], tz="UTC")


def next_decision_time(now, settings) -> pd.Timestamp:
    """The first decision time at or after ``now``."""
    now = _utc(now, "now")
    day = now.tz_convert("America/New_York").tz_localize(None).normalize()
    times = decision_times(day - pd.Timedelta(days=1), day + pd.Timedelta(days=14), settings)
    later = times[times >= now]
    if len(later) == 0:
        raise LiveLoopError(f"no {settings.calendar} session within two weeks after {now}")
    return later[0]


def run_live(client, broker, ledger: Ledger, strategy, *, symbols: list[str] | None = None, once: bool = False,
             max_sessions: int | None = None, now: Callable[[], pd.Timestamp] | None = None,
             sleep: Callable[[float], None] = _time.sleep, on_session: Callable[[SessionReport], None] | None = None,
             source: str = "latest", universe: str | None = LISTED) -> list[SessionReport]:
    """Sleep until each decision time and run :func:`run_session` there, on the members of
    ``universe`` at each (``symbols`` intersected with them). ``once``: only the next decision
    (now, if a decision time has passed today and is not decided yet)."""
    now = now or xclock.utc_now
    settings = client.settings
    reports: list[SessionReport] = []
    while max_sessions is None or len(reports) < max_sessions:
        current = _utc(now(), "now")
        t = next_decision_time(current, settings)
        if once:
            # the latest decision time that has passed (today's or the previous session's), if not decided
            past = decision_times(current - pd.Timedelta(days=10), current, settings)
            past = past[past <= current]
            if len(past) and not ledger.has_decision(strategy.NAME, past[-1]):
                t = past[-1]
        while (wait := (t - _utc(now(), "now")).total_seconds()) > 0:
            sleep(min(wait, 3600.0))
        report = run_session(client, broker, ledger, strategy, t, symbols=symbols, source=source, now=max(_utc(now(), "now"), t),
                             universe=universe)
        reports.append(report)
        if on_session:
            on_session(report)
        log.info("%s", report.line())
        if once:
            break
        # never decide the same time twice: wait past it before looking for the next one
        while _utc(now(), "now") <= t:
            sleep(1.0)
    return reports


# ------------------------------------------------------------------ shadow replay
class _SimClock:
    def __init__(self):
        self.now: pd.Timestamp | None = None

    def __call__(self) -> pd.Timestamp:
        return self.now


@dataclass
class ReplayResult:
    orders: pd.DataFrame      # the ledger's orders
    fills: pd.DataFrame       # the ledger's fills, with the session filled
    reports: list[SessionReport]
    ledger: Ledger
    broker: PaperBroker


def replay(client, strategy, start, end, fees: float = 0.0005, slippage: float = 0.0005, *, init_cash: float = 1_000_000.0,
           symbols: list[str] | None = None, ledger_url: str = "sqlite://", broker_url: str = "sqlite://",
           on_session: Callable[[SessionReport], None] | None = None, universe: str | None = LISTED) -> ReplayResult:
    """The live loop over the sessions in [start, end] on ``alpha.history``: one history call for
    the range (the backtest's: the members of ``universe`` at each session), each session given
    only its own rows (asserted: no row after its decision time), a :class:`PaperBroker` on the
    same prices and a fresh ledger."""
    frame = universe_frame(client, strategy, start, end, symbols=symbols, universe=universe)
    book = PriceBook.from_frame(frame, client.settings.calendar)
    sim = _SimClock()
    broker = PaperBroker(book, fees=fees, slippage=slippage, init_cash=init_cash, url=broker_url, clock=sim,
                         calendar=client.settings.calendar)
    ledger = Ledger(ledger_url)
    if not ledger.decisions(strategy.NAME).empty:
        raise LiveLoopError(f"the replay needs a fresh ledger; {ledger.display_url} already has decisions of {strategy.NAME}")
    execution = {OPEN.split(":")[1]: OPEN, SESSION.split(":")[1]: SESSION}  # the execution model's, not the strategy's
    keep = [c for c in frame.columns if c not in execution or execution[c] in strategy.FEATURES]
    reports = []
    for t, rows in frame[keep].groupby("decision_time", sort=True):
        if (rows["decision_time"] > t).any():  # each session sees only what was known at its decision time
            raise LookAheadError(f"replay row after its decision time {t}")
        sim.now = t
        report = run_session(client, broker, ledger, strategy, t, features=rows, prices=book)
        reports.append(report)
        if on_session:
            on_session(report)
    fills = ledger.fills(strategy.NAME)
    tz = xclock.get_calendar(client.settings.calendar).tz
    fills["session"] = pd.DatetimeIndex(fills["time"]).tz_convert(tz).normalize().tz_localize(None)
    return ReplayResult(orders=ledger.orders(strategy.NAME), fills=fills, reports=reports, ledger=ledger, broker=broker)


def compare_fills(replay_fills: pd.DataFrame, backtest_orders: pd.DataFrame, rtol: float = 1e-9) -> pd.DataFrame:
    """Session by session: the replay's fills against the backtest's orders. One row per
    (session, symbol) present in either, with both sides and whether they agree (qty, price,
    fee within ``rtol`` relative)."""
    cols = ["session", "symbol", "qty", "price", "fee"]
    a = replay_fills[cols].set_index(["session", "symbol"])
    b = backtest_orders[cols].set_index(["session", "symbol"])
    both = a.join(b, how="outer", lsuffix="_replay", rsuffix="_backtest").sort_index()
    ok = pd.Series(True, index=both.index)
    for c in ("qty", "price", "fee"):
        x, y = both[f"{c}_replay"], both[f"{c}_backtest"]
        ok &= x.notna() & y.notna() & ((x - y).abs() <= rtol * np.maximum(x.abs(), y.abs()))
    both["equal"] = ok
    return both.reset_index()
