"""The live loop's ledger: decisions, targets, orders, fills, positions and cash.

Stored with SQLAlchemy in SQLite at ``$ALPHA_HOME/state/ledger.db`` by
default, or in PostgreSQL when ``state_url`` (config.toml) or
``ALPHA_STATE_URL`` is set (the same database as the watermarks, tables
prefixed ``ledger_``). Every write is one transaction.

Restart semantics (see docs/live.md):

- a decision (its targets and every order it makes, as ``pending``) is
  written in ONE transaction before anything is sent, so a decision is either
  wholly recorded or not at all, and a second run for the same decision time
  decides nothing new;
- an order is ``pending`` before it is sent and ``submitted`` after the
  broker acknowledged it; a process killed in between re-sends it with the
  same ``client_order_id`` on restart, and the broker answers with the
  existing order (no duplicate);
- a fill is keyed by ``client_order_id``: recording it twice is a no-op.

Times are stored as fixed-width ISO strings in UTC (microseconds), so they
sort and compare as text on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from etl.core.errors import AlphaError, NaiveTimestampError
from etl.storage import state
from etl.storage.state import default_url, display_url, open_engine

#: order states of the ledger; "pending" = written, not yet acknowledged by the broker
PENDING, SUBMITTED, FILLED, BLOCKED, EXPIRED, REJECTED = "pending", "submitted", "filled", "blocked", "expired", "rejected"
OPEN_STATES = (PENDING, SUBMITTED)

_META = sa.MetaData()
DECISIONS = sa.Table(
    "ledger_decisions", _META,
    sa.Column("strategy", sa.String(64), primary_key=True),
    sa.Column("decision_time", sa.String(40), primary_key=True),
    sa.Column("cash", sa.Float, nullable=False),
    sa.Column("equity", sa.Float, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
TARGETS = sa.Table(
    "ledger_targets", _META,
    sa.Column("strategy", sa.String(64), primary_key=True),
    sa.Column("decision_time", sa.String(40), primary_key=True),
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("fresh", sa.Boolean, nullable=False),
)
ORDERS = sa.Table(
    "ledger_orders", _META,
    sa.Column("client_order_id", sa.String(64), primary_key=True),
    sa.Column("strategy", sa.String(64), nullable=False, index=True),
    sa.Column("decision_time", sa.String(40), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("qty", sa.Float, nullable=True),            # signed shares; NULL for a blocked order without a price
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("broker_order_id", sa.String(64), nullable=True),
    sa.Column("submitted_at", sa.String(40), nullable=True),
    sa.Column("note", sa.String(400), nullable=True),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
FILLS = sa.Table(
    "ledger_fills", _META,
    sa.Column("client_order_id", sa.String(64), primary_key=True),
    sa.Column("strategy", sa.String(64), nullable=False, index=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("fee", sa.Float, nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
)
POSITIONS = sa.Table(
    "ledger_positions", _META,
    sa.Column("strategy", sa.String(64), primary_key=True),
    sa.Column("time", sa.String(40), primary_key=True),
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("qty", sa.Float, nullable=False),
)
CASH = sa.Table(
    "ledger_cash", _META,
    sa.Column("strategy", sa.String(64), primary_key=True),
    sa.Column("time", sa.String(40), primary_key=True),
    sa.Column("cash", sa.Float, nullable=False),
    sa.Column("equity", sa.Float, nullable=False),
)


class LedgerError(AlphaError):
    """The ledger could not be opened or holds something inconsistent."""


def ts_key(ts) -> str:
    """A tz-aware time as the ledger stores it (:func:`etl.storage.state.ts_key`)."""
    try:
        return state.ts_key(ts)
    except NaiveTimestampError:
        raise LedgerError(f"naive time {ts!r}: the ledger stores tz-aware UTC times only") from None


from_key = state.from_key


def _now() -> str:
    return ts_key(pd.Timestamp.now(tz="UTC"))


@dataclass(frozen=True)
class PlannedOrder:
    """One row a decision writes: an order to send (``pending``) or one it blocks."""

    client_order_id: str
    symbol: str
    qty: float | None
    status: str                   # PENDING or BLOCKED
    note: str | None = None


class Ledger:
    def __init__(self, url: str):
        self.url = url
        self.engine = open_engine(url, _META, setting="ledger url", store="ledger")

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ decisions
    def has_decision(self, strategy: str, decision_time) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(DECISIONS.c.strategy).where(
                DECISIONS.c.strategy == strategy, DECISIONS.c.decision_time == ts_key(decision_time))).first()
        return row is not None

    def record_decision(self, strategy: str, decision_time, targets: pd.DataFrame, orders: list[PlannedOrder],
                        cash: float, equity: float) -> bool:
        """Write a decision with its targets (``symbol``, ``weight``, ``fresh``) and orders in one
        transaction. Returns False (writing nothing) when this decision is already recorded."""
        t = ts_key(decision_time)
        now = _now()
        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(DECISIONS.c.strategy).where(
                        DECISIONS.c.strategy == strategy, DECISIONS.c.decision_time == t)).first() is not None:
                    return False
                conn.execute(DECISIONS.insert().values(strategy=strategy, decision_time=t, cash=float(cash), equity=float(equity), created_at=now))
                if len(targets):
                    conn.execute(TARGETS.insert(), [
                        {"strategy": strategy, "decision_time": t, "symbol": s, "weight": float(w), "fresh": bool(f)}
                        for s, w, f in zip(targets["symbol"], targets["weight"], targets["fresh"], strict=True)])
                if orders:
                    conn.execute(ORDERS.insert(), [
                        {"client_order_id": o.client_order_id, "strategy": strategy, "decision_time": t, "symbol": o.symbol,
                         "qty": None if o.qty is None else float(o.qty), "status": o.status, "note": o.note, "updated_at": now}
                        for o in orders])
        except sa.exc.IntegrityError:  # another process recorded the same decision first
            return False
        return True

    def previous_targets(self, strategy: str, before) -> dict[str, float] | None:
        """The targets of the last decision strictly before ``before`` (None if there is none)."""
        t = ts_key(before)
        with self.engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(DECISIONS.c.decision_time)).where(
                DECISIONS.c.strategy == strategy, DECISIONS.c.decision_time < t)).scalar()
            if last is None:
                return None
            rows = conn.execute(sa.select(TARGETS.c.symbol, TARGETS.c.weight).where(
                TARGETS.c.strategy == strategy, TARGETS.c.decision_time == last)).all()
        return {s: w for s, w in rows}

    # ------------------------------------------------------------ orders
    def open_orders(self, strategy: str) -> list[dict]:
        """Orders that are pending or submitted (not yet filled, expired or rejected), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ORDERS).where(ORDERS.c.strategy == strategy, ORDERS.c.status.in_(OPEN_STATES))
                                .order_by(ORDERS.c.decision_time, ORDERS.c.client_order_id)).all()
        return [dict(r._mapping) for r in rows]

    def mark(self, client_order_id: str, status: str, *, broker_order_id: str | None = None,
             submitted_at=None, note: str | None = None) -> None:
        values = {"status": status, "updated_at": _now()}
        if broker_order_id is not None:
            values["broker_order_id"] = broker_order_id
        if submitted_at is not None:
            values["submitted_at"] = ts_key(submitted_at)
        if note is not None:
            values["note"] = note[:400]
        with self.engine.begin() as conn:
            n = conn.execute(ORDERS.update().where(ORDERS.c.client_order_id == client_order_id).values(**values)).rowcount
        if n != 1:
            raise LedgerError(f"no order {client_order_id!r} in the ledger at {self.display_url}")

    def record_fill(self, strategy: str, client_order_id: str, symbol: str, qty: float, price: float, fee: float, time) -> bool:
        """Record a fill and mark its order filled, in one transaction; False if already recorded."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(FILLS.c.client_order_id).where(FILLS.c.client_order_id == client_order_id)).first() is not None:
                return False
            conn.execute(FILLS.insert().values(client_order_id=client_order_id, strategy=strategy, symbol=symbol, qty=float(qty),
                                               price=float(price), fee=float(fee), time=ts_key(time)))
            conn.execute(ORDERS.update().where(ORDERS.c.client_order_id == client_order_id).values(status=FILLED, updated_at=_now()))
        return True

    def snapshot(self, strategy: str, time, cash: float, equity: float, positions: dict[str, float]) -> bool:
        """Cash, equity and positions at ``time``; False (nothing written) if that time is recorded."""
        t = ts_key(time)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(CASH.c.strategy).where(CASH.c.strategy == strategy, CASH.c.time == t)).first() is not None:
                return False
            conn.execute(CASH.insert().values(strategy=strategy, time=t, cash=float(cash), equity=float(equity)))
            rows = [{"strategy": strategy, "time": t, "symbol": s, "qty": float(q)} for s, q in sorted(positions.items()) if q != 0]
            if rows:
                conn.execute(POSITIONS.insert(), rows)
        return True

    # ------------------------------------------------------------ reading
    def _frame(self, table: sa.Table, strategy: str | None, order_by) -> pd.DataFrame:
        query = sa.select(table)
        if strategy is not None:
            query = query.where(table.c.strategy == strategy)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(*order_by)).all()
        frame = pd.DataFrame([dict(r._mapping) for r in rows], columns=[c.name for c in table.columns])
        for col in ("decision_time", "submitted_at", "time", "updated_at", "created_at"):
            if col in frame.columns:
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        return frame

    def orders(self, strategy: str | None = None) -> pd.DataFrame:
        return self._frame(ORDERS, strategy, [ORDERS.c.decision_time, ORDERS.c.symbol])

    def fills(self, strategy: str | None = None) -> pd.DataFrame:
        return self._frame(FILLS, strategy, [FILLS.c.time, FILLS.c.symbol])

    def targets(self, strategy: str | None = None) -> pd.DataFrame:
        return self._frame(TARGETS, strategy, [TARGETS.c.decision_time, TARGETS.c.symbol])

    def decisions(self, strategy: str | None = None) -> pd.DataFrame:
        return self._frame(DECISIONS, strategy, [DECISIONS.c.decision_time])

    def positions(self, strategy: str | None = None) -> pd.DataFrame:
        return self._frame(POSITIONS, strategy, [POSITIONS.c.time, POSITIONS.c.symbol])

    def cash(self, strategy: str | None = None) -> pd.DataFrame:
        return self._frame(CASH, strategy, [CASH.c.time])


def open_ledger(settings, url: str | None = None) -> Ledger:
    """The warehouse's ledger: ``url`` if given, else ``state_url`` (PostgreSQL), else SQLite
    at ``$ALPHA_HOME/state/ledger.db`` (as :func:`etl.storage.watermarks.open_watermarks`)."""
    return Ledger(url or default_url(settings, "ledger.db"))
