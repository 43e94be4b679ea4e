"""The broker interface the live loop trades through.

A broker takes orders identified by OUR ``client_order_id`` (deterministic:
strategy, decision session, symbol), so a restarted live loop that submits
the same order again is answered with the existing order, never a second one.
Implementations: :class:`strategy.paper.PaperBroker` (fills at the next
session's open with the backtest's fee and slippage model) and
:class:`strategy.alpaca.AlpacaBroker` (Alpaca's paper-trading REST API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd

from etl.core.errors import BrokerError  # the broker's error: an AlphaError, so the CLI prints its message

__all__ = ["Account", "Broker", "BrokerError", "Fill", "Order", "OrderStatus"]


@dataclass(frozen=True)
class Order:
    client_order_id: str          # ours, deterministic; the idempotency key
    symbol: str
    qty: float                    # signed shares: + buy, - sell
    decision_time: pd.Timestamp   # tz-aware UTC: when the strategy decided
    order_type: str = "market"    # market orders, executed at the next session's open ("opg")


@dataclass(frozen=True)
class OrderStatus:
    client_order_id: str
    broker_order_id: str
    symbol: str
    qty: float
    status: str                   # "new", "accepted", "filled", "partially_filled", "canceled", "rejected", "expired"
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    submitted_at: pd.Timestamp | None = None
    filled_at: pd.Timestamp | None = None


@dataclass(frozen=True)
class Fill:
    client_order_id: str
    symbol: str
    qty: float                    # signed shares filled
    price: float                  # per share, slippage included
    fee: float                    # currency
    time: pd.Timestamp            # tz-aware UTC


@dataclass(frozen=True)
class Account:
    cash: float
    equity: float
    positions: dict[str, float]   # symbol -> signed shares


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit(self, order: Order) -> OrderStatus:
        """Send ``order``; if an order with the same ``client_order_id`` exists, return it unchanged."""
        ...

    def order(self, client_order_id: str) -> OrderStatus | None:
        """The order with this client id, or None if the broker never received it."""
        ...

    def account(self) -> Account:
        ...
