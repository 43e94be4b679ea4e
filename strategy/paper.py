"""A paper broker that fills like the backtest.

An order received before a session's open fills at that session's open, in
the backtest's total-return price scale (``open_tr = close_tr * open /
close``, :func:`strategy.backtest.total_return_prices`), with the backtest's
slippage (``price * (1 +/- slippage)``) and fees (``fees * notional``). It
runs vectorbt's own order kernel (``execute_order_nb``) in vectorbt's own
call sequence (sells before buys, ``insert_argsort_nb`` over the same
approximate order values), so a buy that the cash cannot cover is cut to what
the cash buys exactly as in the backtest.

An order of a symbol that was not listed at its decision (no bar within the
TTL of the newest bar known) has no open to fill at: it fills at the symbol's
last close, the backtest's delisting cash-out
(:func:`strategy.backtest.execution_prices`, the one rule for both).

Fills need the session's bar, which is known at the session's availability
time (close + delay): the broker settles a session's orders the first time it
is asked (``order``, ``account``) at or after that time, never earlier, and
stamps the fill with the session's open. ``submit`` is idempotent on
``client_order_id``. State (orders, cash, positions) is kept with
SQLAlchemy, so a broker survives the process that used it, as a real one
does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa

from etl.core import clock as xclock
from etl.core.config import DEFAULT_CALENDAR
from etl.core.errors import ArgumentError
from etl.storage.state import open_engine
from strategy.broker import Account, BrokerError, Fill, Order, OrderStatus
from strategy.ledger import from_key, ts_key


class PriceBook:
    """Total-return closes and opens per session (rows: availability times, UTC) and
    symbol (sorted columns), each row usable only from its availability time on."""

    def __init__(self, close_tr: pd.DataFrame, open_tr: pd.DataFrame, calendar: str = DEFAULT_CALENDAR):
        if not close_tr.index.equals(open_tr.index) or not close_tr.columns.equals(open_tr.columns):
            raise ArgumentError("close_tr and open_tr must have the same rows and columns")
        from strategy.backtest import execution_prices

        self.close_tr = close_tr
        self.open_tr = open_tr
        self.close_ff = close_tr.ffill()
        self.exec_tr = execution_prices(close_tr, open_tr)  # the open, or a delisted symbol's last close
        self.calendar = calendar
        tz = xclock.get_calendar(calendar).tz
        self.times = pd.DatetimeIndex(close_tr.index)
        self.sessions = self.times.tz_convert(tz).normalize().tz_localize(None)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, calendar: str = DEFAULT_CALENDAR) -> PriceBook:
        from strategy.backtest import total_return_prices

        return cls(*total_return_prices(frame, calendar=calendar), calendar=calendar)

    @classmethod
    def from_history(cls, client, symbols: list[str], start, end) -> PriceBook:
        from strategy.backtest import OPEN, SESSION, decision_frame

        hist = client.history(symbols, ["bars_daily:close", "technicals:ret_1d", OPEN, SESSION], start=start, end=end)
        return cls.from_frame(decision_frame(hist), client.settings.calendar)

    @property
    def symbols(self) -> list[str]:
        return list(self.close_tr.columns)

    @property
    def last_time(self) -> pd.Timestamp:
        return self.times[-1]

    def valuation(self, now) -> pd.Series:
        """Each symbol's last total-return close known at ``now`` (NaN before its first bar)."""
        i = int(np.searchsorted(self.times.values, pd.Timestamp(now).tz_convert("UTC").to_datetime64(), side="right")) - 1
        if i < 0:
            return pd.Series(np.nan, index=self.close_tr.columns)
        return self.close_ff.iloc[i]

    def session_row(self, session: pd.Timestamp) -> int | None:
        hits = np.flatnonzero(self.sessions == pd.Timestamp(session))
        return int(hits[0]) if len(hits) else None

    def fill_prices(self, session: pd.Timestamp, now) -> tuple[pd.Series, pd.Series] | None:
        """(the fill prices of ``session``: its open_tr, or a delisted symbol's last close; the
        valuation price before it) once the session's bar is known at ``now``; None while it is
        not (or the book does not reach it)."""
        i = self.session_row(session)
        if i is None or self.times[i] > pd.Timestamp(now):
            return None
        before = self.close_ff.iloc[i - 1] if i > 0 else pd.Series(np.nan, index=self.close_tr.columns)
        return self.exec_tr.iloc[i], before


class HistoryPrices:
    """A :class:`PriceBook` from ``alpha.history`` anchored at ``start``, refetched when a
    later time is asked for (the live paper broker)."""

    def __init__(self, client, symbols: list[str], start):
        self.client, self.symbols_asked, self.start = client, list(symbols), start
        self._book: PriceBook | None = None
        self._end: pd.Timestamp | None = None

    def book(self, now) -> PriceBook:
        day = pd.Timestamp(now).tz_convert("America/New_York").tz_localize(None).normalize()
        if self._book is None or self._end is None or day > self._end:
            self._book = PriceBook.from_history(self.client, self.symbols_asked, self.start, day)
            self._end = day
        return self._book


_META = sa.MetaData()
P_ORDERS = sa.Table(
    "paper_orders", _META,
    sa.Column("client_order_id", sa.String(64), primary_key=True),
    sa.Column("broker_order_id", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("decision_time", sa.String(40), nullable=False),
    sa.Column("submitted_at", sa.String(40), nullable=False),
    sa.Column("fill_session", sa.String(10), nullable=False, index=True),   # YYYY-MM-DD
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("filled_qty", sa.Float, nullable=False, default=0.0),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("fee", sa.Float, nullable=True),
    sa.Column("filled_at", sa.String(40), nullable=True),
    sa.Column("reason", sa.String(200), nullable=True),
)
P_ACCOUNT = sa.Table(
    "paper_account", _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("cash", sa.Float, nullable=False),
    sa.Column("free_cash", sa.Float, nullable=False),
)
P_POSITIONS = sa.Table(
    "paper_positions", _META,
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("debt", sa.Float, nullable=False),
)


def _wall_clock() -> pd.Timestamp:
    return xclock.utc_now()


class PaperBroker:
    """:class:`strategy.broker.Broker` filling at the next session's open like the backtest."""

    name = "paper"

    def __init__(self, prices: PriceBook | HistoryPrices, *, fees: float = 0.0005, slippage: float = 0.0005,
                 init_cash: float = 1_000_000.0, url: str = "sqlite://", clock: Callable[[], pd.Timestamp] | None = None,
                 calendar: str = DEFAULT_CALENDAR):
        if fees < 0 or slippage < 0:
            raise BrokerError(f"fees and slippage must be >= 0, got fees={fees}, slippage={slippage}")
        self.prices = prices
        self.fees, self.slippage, self.init_cash = float(fees), float(slippage), float(init_cash)
        self.calendar = calendar
        self.clock = clock or _wall_clock
        self.url = url
        self.engine = open_engine(url, _META, setting="paper broker url", store="paper broker")
        with self.engine.begin() as conn:
            if conn.execute(sa.select(P_ACCOUNT.c.id)).first() is None:
                conn.execute(P_ACCOUNT.insert().values(id=1, cash=self.init_cash, free_cash=self.init_cash))

    def dispose(self) -> None:
        self.engine.dispose()

    def book(self, now=None) -> PriceBook:
        now = self.clock() if now is None else now
        return self.prices.book(now) if isinstance(self.prices, HistoryPrices) else self.prices

    # ------------------------------------------------------------ the Broker protocol
    def submit(self, order: Order) -> OrderStatus:
        if not np.isfinite(order.qty) or order.qty == 0:
            raise BrokerError(f"order {order.client_order_id}: qty must be a non-zero number of shares, got {order.qty}")
        if order.order_type != "market":
            raise BrokerError(f"order {order.client_order_id}: the paper broker takes market orders only, got {order.order_type!r}")
        now = pd.Timestamp(self.clock()).tz_convert("UTC")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(P_ORDERS).where(P_ORDERS.c.client_order_id == order.client_order_id)).first()
            if row is not None:
                return _status(row._mapping)
            if order.symbol not in self.book(now).symbols:
                raise BrokerError(f"order {order.client_order_id}: no prices for {order.symbol!r} in the paper broker's book")
            conn.execute(P_ORDERS.insert().values(
                client_order_id=order.client_order_id, broker_order_id=f"paper-{uuid.uuid4().hex[:16]}", symbol=order.symbol,
                qty=float(order.qty), decision_time=ts_key(order.decision_time), submitted_at=ts_key(now),
                fill_session=self._fill_session(now).strftime("%Y-%m-%d"), status="accepted", filled_qty=0.0))
            row = conn.execute(sa.select(P_ORDERS).where(P_ORDERS.c.client_order_id == order.client_order_id)).first()
        return _status(row._mapping)

    def order(self, client_order_id: str) -> OrderStatus | None:
        self.settle()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(P_ORDERS).where(P_ORDERS.c.client_order_id == client_order_id)).first()
        return None if row is None else _status(row._mapping)

    def account(self) -> Account:
        now = self.clock()
        self.settle(now)
        cash, positions = self._state()
        value = self.book(now).valuation(now)
        equity = cash + sum(q * float(value.get(s, np.nan)) for s, q in positions.items() if q != 0)
        return Account(cash=cash, equity=equity, positions={s: q for s, q in positions.items() if q != 0})

    # ------------------------------------------------------------ beyond the protocol
    def fill(self, client_order_id: str) -> Fill | None:
        """The fill of an order (price with slippage, fee in currency), once filled."""
        self.settle()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(P_ORDERS).where(P_ORDERS.c.client_order_id == client_order_id)).first()
        if row is None or row.status != "filled":
            return None
        return Fill(client_order_id=row.client_order_id, symbol=row.symbol, qty=row.filled_qty, price=row.price, fee=row.fee,
                    time=from_key(row.filled_at))

    def orders(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(P_ORDERS).order_by(P_ORDERS.c.fill_session, P_ORDERS.c.symbol)).all()
        return pd.DataFrame([dict(r._mapping) for r in rows], columns=[c.name for c in P_ORDERS.columns])

    def _fill_session(self, now: pd.Timestamp) -> pd.Timestamp:
        """The first session whose open is after ``now`` (an order fills at that open)."""
        cal = xclock.get_calendar(self.calendar)
        day = now.tz_convert(cal.tz).tz_localize(None).normalize()
        candidates = xclock.sessions_in_range(day, day + pd.Timedelta(days=14), self.calendar)
        opens = xclock.session_opens(candidates, self.calendar)
        later = candidates[opens > now]
        if len(later) == 0:
            raise BrokerError(f"no {self.calendar} session opens within two weeks after {now}")
        return later[0]

    def _state(self, conn=None) -> tuple[float, dict[str, float]]:
        def read(c):
            cash = c.execute(sa.select(P_ACCOUNT.c.cash).where(P_ACCOUNT.c.id == 1)).scalar_one()
            return cash, {s: q for s, q in c.execute(sa.select(P_POSITIONS.c.symbol, P_POSITIONS.c.qty)).all()}
        if conn is not None:
            return read(conn)
        with self.engine.connect() as c:
            return read(c)

    def settle(self, now=None) -> int:
        """Fill every accepted order whose session's bar is known at ``now`` (session by
        session, each in one transaction). Returns how many orders were settled."""
        now = pd.Timestamp(self.clock() if now is None else now).tz_convert("UTC")
        with self.engine.connect() as conn:
            sessions = [r[0] for r in conn.execute(sa.select(P_ORDERS.c.fill_session).where(P_ORDERS.c.status == "accepted")
                                                   .distinct().order_by(P_ORDERS.c.fill_session)).all()]
        book = self.book(now) if sessions else None
        done = 0
        for session in sessions:
            prices = book.fill_prices(pd.Timestamp(session), now)
            if prices is None:
                if pd.Timestamp(session) < book.sessions[0] or (pd.Timestamp(session) <= book.sessions[-1] and book.session_row(pd.Timestamp(session)) is None):
                    done += self._expire(session, "no bar for the fill session in the price book")
                    continue
                break  # not known yet; later sessions neither
            done += self._fill_session_orders(session, book, *prices)
        return done

    def _expire(self, session: str, reason: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(P_ORDERS.update().where(P_ORDERS.c.fill_session == session, P_ORDERS.c.status == "accepted")
                                .values(status="expired", reason=reason)).rowcount

    def _fill_session_orders(self, session: str, book: PriceBook, opens: pd.Series, val_prices: pd.Series) -> int:
        from vectorbt.portfolio.enums import (
            Direction,
            OrderSide,
            OrderStatus,
            OrderStatusInfo,
            ProcessOrderState,
            SizeType,
        )
        from vectorbt.portfolio.nb import execute_order_nb, order_nb

        cols = book.symbols
        fill_time = xclock.session_opens(pd.DatetimeIndex([pd.Timestamp(session)]), self.calendar)[0]
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(P_ORDERS).where(P_ORDERS.c.fill_session == session, P_ORDERS.c.status == "accepted")).all()
            by_symbol = {r.symbol: r for r in rows}
            cash = conn.execute(sa.select(P_ACCOUNT.c.cash).where(P_ACCOUNT.c.id == 1)).scalar_one()
            free_cash = conn.execute(sa.select(P_ACCOUNT.c.free_cash).where(P_ACCOUNT.c.id == 1)).scalar_one()
            held = {r.symbol: (r.qty, r.debt) for r in conn.execute(sa.select(P_POSITIONS)).all()}
            position = np.array([held.get(c, (0.0, 0.0))[0] for c in cols], dtype=float)
            debt = np.array([held.get(c, (0.0, 0.0))[1] for c in cols], dtype=float)
            price = opens.reindex(cols).to_numpy(dtype=float)
            vp = val_prices.reindex(cols).to_numpy(dtype=float)
            size = np.array([by_symbol[c].qty if c in by_symbol and np.isfinite(price[k]) else 0.0 for k, c in enumerate(cols)])
            # vectorbt's automatic call sequence: sort by approximate order value (sells first)
            seq = call_sequence(size * vp)
            for k in seq:
                col = cols[k]
                state = ProcessOrderState(cash=cash, position=position[k], debt=debt[k], free_cash=free_cash,
                                          val_price=vp[k], value=np.nan, oidx=0, lidx=0)
                order = order_nb(size=size[k], price=price[k], size_type=SizeType.Amount, direction=Direction.Both,
                                 fees=self.fees, slippage=self.slippage)
                exec_state, result = execute_order_nb(state, order)
                cash, free_cash = exec_state.cash, exec_state.free_cash
                position[k], debt[k] = exec_state.position, exec_state.debt
                row = by_symbol.get(col)
                if row is None:
                    continue
                if result.status == OrderStatus.Filled:
                    signed = result.size if result.side == OrderSide.Buy else -result.size
                    values = dict(status="filled", filled_qty=float(signed), price=float(result.price), fee=float(result.fees),
                                  filled_at=ts_key(fill_time))
                elif not np.isfinite(price[k]):
                    values = dict(status="expired", reason=f"no open price for {col} on {session}")
                else:
                    values = dict(status="rejected", reason=f"{OrderStatusInfo._fields[result.status_info]} at the open of {session}")
                conn.execute(P_ORDERS.update().where(P_ORDERS.c.client_order_id == row.client_order_id).values(**values))
            conn.execute(P_ACCOUNT.update().where(P_ACCOUNT.c.id == 1).values(cash=float(cash), free_cash=float(free_cash)))
            conn.execute(P_POSITIONS.delete())
            new = [{"symbol": c, "qty": float(position[k]), "debt": float(debt[k])} for k, c in enumerate(cols) if position[k] != 0 or debt[k] != 0]
            if new:
                conn.execute(P_POSITIONS.insert(), new)
        return len(rows)


def call_sequence(values: np.ndarray) -> np.ndarray:
    """The order in which a session's orders execute: vectorbt's ``insert_argsort_nb`` (a
    stable insertion sort by approximate order value, NaN last), except that values equal
    within vectorbt's own tolerance (1e-9 relative) count as ties and keep column order.

    The backtest sorts ``weight x equity - position x price``; the broker only sees the
    shares, ``(weight x equity / price - position) x price``, equal up to rounding: without
    the tolerance, equal weights (an exact tie in the backtest) would be ordered by rounding
    noise, and which buy the cash cuts short would differ."""
    from vectorbt.utils.math_ import is_close_nb

    a = np.array(values, dtype=float)
    idx = np.arange(len(a))
    for j in range(1, len(a)):
        a_j, i_j, i = a[j], idx[j], j - 1
        while i >= 0 and ((a[i] > a_j and not is_close_nb(a[i], a_j)) or np.isnan(a[i])):
            a[i + 1], idx[i + 1] = a[i], idx[i]
            i -= 1
        a[i + 1], idx[i + 1] = a_j, i_j
    return idx


def _status(row) -> OrderStatus:
    return OrderStatus(
        client_order_id=row["client_order_id"], broker_order_id=row["broker_order_id"], symbol=row["symbol"], qty=row["qty"],
        status=row["status"], filled_qty=row["filled_qty"] or 0.0, filled_avg_price=row["price"],
        submitted_at=from_key(row["submitted_at"]), filled_at=from_key(row["filled_at"]),
    )
