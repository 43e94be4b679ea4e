"""Alpaca's paper-trading REST API (Trading API v2) as a :class:`strategy.broker.Broker`.

Configuration (``[vendors.alpaca]``, ``ALPACA_API_KEY_ID`` /
``ALPACA_API_SECRET_KEY``), what each method sends and reads, the errors and
the limits are in docs/alpaca.md.
"""

from __future__ import annotations

import json
import logging
import math
from urllib.parse import quote

import pandas as pd

from etl.core.errors import ConfigError, VendorAuthError, VendorError, VendorUnavailableError
from etl.core.http import Fetched, HttpClient, RateLimiter, secret
from strategy.broker import Account, BrokerError, Fill, Order, OrderStatus

log = logging.getLogger("alpha.alpaca")

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_HOST = "api.alpaca.markets"
KEY_ENV = "ALPACA_API_KEY_ID"
SECRET_ENV = "ALPACA_API_SECRET_KEY"
PAGE_SIZE = 100            # Alpaca's maximum for account activities
MAX_CLIENT_ORDER_ID = 128  # Alpaca's limit on client_order_id

# Alpaca order status -> ours (strategy.broker.OrderStatus.status)
STATUS = {
    "new": "new",
    "accepted": "accepted",
    "pending_new": "accepted",
    "accepted_for_bidding": "accepted",
    "calculated": "accepted",
    "held": "accepted",
    "stopped": "accepted",
    "suspended": "accepted",
    "pending_cancel": "accepted",
    "pending_replace": "accepted",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "canceled": "canceled",
    "replaced": "canceled",
    "expired": "expired",
    "rejected": "rejected",
}


class AlpacaBroker:
    """The live loop's broker on an Alpaca paper account."""

    name = "alpaca"

    def __init__(self, settings, base_url: str | None = None, *, sleep=None):
        cfg = settings.vendor("alpaca")
        home = getattr(settings, "home", None)
        key_id, secret_key = secret(KEY_ENV, home), secret(SECRET_ENV, home)
        missing = [n for n, v in ((KEY_ENV, key_id), (SECRET_ENV, secret_key)) if not v]
        if missing:
            raise ConfigError(
                f"alpaca needs {KEY_ENV} and {SECRET_ENV} (the paper account's key id and secret); "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in the environment or in a .env file"
            )
        url = str(base_url or cfg.get("base_url") or PAPER_URL).rstrip("/")
        if url.split("://", 1)[-1].split("/", 1)[0].lower() == LIVE_HOST and not cfg.get("allow_live"):
            raise ConfigError(
                f"{url} is Alpaca's live (real money) API; this adapter is meant for paper trading "
                f"({PAPER_URL}). Set allow_live = true under [vendors.alpaca] if you really mean it."
            )
        self.base_url = url
        self._secret = secret_key
        opts = {"sleep": sleep} if sleep is not None else {}
        self._http = HttpClient(
            source="alpaca",
            base_url=url,
            api_key=key_id,       # no key_param: sent in a header only, but masked in every message
            headers={"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key, "Accept": "application/json"},
            limiter=RateLimiter(float(cfg.get("rate", 3.0)), burst=int(cfg.get("burst", 5))),
            max_retries=int(cfg.get("max_retries", 4)),
            backoff=float(cfg.get("backoff", 0.5)),
            timeout=float(cfg.get("timeout", 20.0)),
            redact_values=(secret_key,),
            **opts,
        )

    def __repr__(self) -> str:
        return f"AlpacaBroker({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AlpacaBroker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ interface

    def submit(self, order: Order) -> OrderStatus:
        body = self._order_body(order)
        existing = self.order(order.client_order_id)
        if existing is not None:
            if existing.symbol != order.symbol or existing.qty != float(order.qty):
                log.warning("alpaca: %s already exists as %s %+g, not the %s %+g asked now; returning the existing order",
                            order.client_order_id, existing.symbol, existing.qty, order.symbol, order.qty)
            return existing
        fetched, answer = self._call(lambda: self._http.post_json("/v2/orders", body, accept=(403, 422)), "POST /v2/orders")
        if 200 <= fetched.status < 300:
            return self._status(answer, fetched)
        message = _message(answer)
        what = f"order {order.client_order_id} ({body['side']} {body['qty']} {order.symbol})"
        if fetched.status == 422 and "client_order_id must be unique" in message.lower():
            existing = self.order(order.client_order_id)
            if existing is None:
                raise BrokerError(f"alpaca: {what} was refused as a duplicate client_order_id, but no order with that id can be found")
            log.info("alpaca: %s was already submitted (a retried POST?); returning the existing order", order.client_order_id)
            return existing
        if fetched.status == 403 and not _has_code(answer):
            raise self._refused(fetched)
        detail = f"{message} (HTTP {fetched.status}" + (f", code {answer['code']}" if _has_code(answer) else "") + ")"
        raise BrokerError(f"alpaca refused {what}: {detail}")

    def order(self, client_order_id: str) -> OrderStatus | None:
        fetched = self._call(
            lambda: self._http.request("GET", "/v2/orders:by_client_order_id", {"client_order_id": client_order_id}, accept=(403, 404)),
            "GET /v2/orders:by_client_order_id",
        )
        if fetched.status == 404:
            return None
        if fetched.status == 403:
            raise self._refused(fetched)
        return self._status(self._json(fetched), fetched)

    def account(self) -> Account:
        acct = self._get("/v2/account")
        if not isinstance(acct, dict):
            raise BrokerError(f"alpaca: /v2/account returned a JSON {type(acct).__name__}, not the account object")
        positions = self._get("/v2/positions")
        if not isinstance(positions, list):
            raise BrokerError(f"alpaca: /v2/positions returned a JSON {type(positions).__name__}, not a list of positions")
        held: dict[str, float] = {}
        for p in positions:
            symbol = _text(p, "symbol", "position").strip()
            held[symbol] = held.get(symbol, 0.0) + _num(p, "qty", "position")
        return Account(cash=_num(acct, "cash", "account"), equity=_num(acct, "equity", "account"), positions=held)

    def fills(self, after: pd.Timestamp | None = None) -> list[Fill]:
        """Every execution (after ``after``, tz-aware, if given), oldest first.
        ``fee`` is 0.0: Alpaca charges no commission on US equities."""
        params: dict = {"direction": "asc", "page_size": str(PAGE_SIZE)}
        if after is not None:
            if after.tzinfo is None:
                raise BrokerError(f"alpaca: fills(after={after}) needs a tz-aware timestamp")
            params["after"] = after.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        activities: list[dict] = []
        while True:
            page = self._get("/v2/account/activities/FILL", params)
            if not isinstance(page, list):
                raise BrokerError(f"alpaca: /v2/account/activities/FILL returned a JSON {type(page).__name__}, not a list")
            activities.extend(page)
            if len(page) < PAGE_SIZE:
                break
            params = {**params, "page_token": _text(page[-1], "id", "activity")}
        client_ids: dict[str, str] = {}
        out = []
        for a in activities:
            if a.get("activity_type", "FILL") != "FILL":
                continue
            order_id = _text(a, "order_id", "activity")
            if order_id not in client_ids:
                client_ids[order_id] = _text(self._get(f"/v2/orders/{quote(order_id, safe='')}"), "client_order_id", "order")
            side = _text(a, "side", "activity")
            sign = _sign(side, "activity")
            out.append(Fill(
                client_order_id=client_ids[order_id],
                symbol=_text(a, "symbol", "activity"),
                qty=sign * _num(a, "qty", "activity"),
                price=_num(a, "price", "activity"),
                fee=0.0,  # Alpaca: commission-free US equities
                time=_time(a, "transaction_time", "activity"),
            ))
        return sorted(out, key=lambda f: f.time)

    # -------------------------------------------------------------- helpers

    def _order_body(self, order: Order) -> dict:
        cid = order.client_order_id
        if not isinstance(cid, str) or not cid or len(cid) > MAX_CLIENT_ORDER_ID:
            raise BrokerError(f"alpaca: client_order_id must be 1..{MAX_CLIENT_ORDER_ID} characters, got {cid!r}")
        if order.order_type != "market":
            raise BrokerError(f"alpaca: order {cid}: only market orders at the open are supported, not {order.order_type!r}")
        qty = float(order.qty)
        if not math.isfinite(qty) or qty == 0 or not qty.is_integer():
            raise BrokerError(f"alpaca: order {cid}: qty must be a non-zero whole number of shares "
                              f"(opening-auction orders cannot be fractional), got {order.qty!r}")
        if not order.symbol or not order.symbol.strip():
            raise BrokerError(f"alpaca: order {cid} has no symbol")
        return {
            "symbol": order.symbol,
            "qty": str(int(abs(qty))),
            "side": "buy" if qty > 0 else "sell",
            "type": "market",
            "time_in_force": "opg",
            "client_order_id": cid,
        }

    def _call(self, fn, what: str):
        try:
            return fn()
        except VendorAuthError as exc:
            raise BrokerError(f"alpaca refused the API keys ({what}): {exc}. Check {KEY_ENV} / {SECRET_ENV} "
                              f"(paper keys for {PAPER_URL}, live keys for the live API).") from None
        except VendorUnavailableError as exc:
            raise BrokerError(f"alpaca is unavailable ({what}): {exc}") from None
        except VendorError as exc:
            raise BrokerError(f"alpaca: {what} failed: {exc}") from None

    def _get(self, path: str, params: dict | None = None):
        fetched = self._call(lambda: self._http.request("GET", path, params, accept=(403,)), f"GET {path}")
        if fetched.status == 403:
            raise self._refused(fetched)
        return self._json(fetched)

    def _refused(self, fetched: Fetched) -> BrokerError:
        snippet = fetched.body[:200].decode("utf-8", "replace").replace(self._secret, "***")
        return BrokerError(f"alpaca refused the API keys: {fetched.url} answered HTTP {fetched.status}: {snippet}. "
                           f"Check {KEY_ENV} / {SECRET_ENV} and that they belong to {self.base_url}.")

    def _json(self, fetched: Fetched):
        try:
            return fetched.json()
        except VendorError as exc:
            raise BrokerError(str(exc)) from None

    def _status(self, obj: object, fetched: Fetched) -> OrderStatus:
        if not isinstance(obj, dict):
            raise BrokerError(f"alpaca: {fetched.url} returned a JSON {type(obj).__name__}, not an order object")
        raw = _text(obj, "status", "order")
        sign = _sign(_text(obj, "side", "order"), "order")
        filled = sign * (_num(obj, "filled_qty", "order") if obj.get("filled_qty") is not None else 0.0)
        if raw == "done_for_day":  # no more executions today
            status = "partially_filled" if filled else "accepted"
        elif raw in STATUS:
            status = STATUS[raw]
        else:
            raise BrokerError(f"alpaca: order {obj.get('client_order_id')!r} has status {raw!r}, which this adapter does not know")
        price = obj.get("filled_avg_price")
        return OrderStatus(
            client_order_id=_text(obj, "client_order_id", "order"),
            broker_order_id=_text(obj, "id", "order"),
            symbol=_text(obj, "symbol", "order"),
            qty=sign * _num(obj, "qty", "order"),
            status=status,
            filled_qty=filled,
            filled_avg_price=None if price is None else _num(obj, "filled_avg_price", "order"),
            submitted_at=_time(obj, "submitted_at", "order", required=False),
            filled_at=_time(obj, "filled_at", "order", required=False),
        )


# ------------------------------------------------------------------ parsing

def _message(answer: object) -> str:
    if isinstance(answer, dict) and answer.get("message"):
        return str(answer["message"])
    return json.dumps(answer)[:200]


def _has_code(answer: object) -> bool:
    return isinstance(answer, dict) and isinstance(answer.get("code"), int) and not isinstance(answer.get("code"), bool)


def _text(obj: object, key: str, what: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise BrokerError(f"alpaca: {what} has no {key} (got {value!r}): not the documented shape")
    return value


def _num(obj: dict, key: str, what: str) -> float:
    """Alpaca sends numbers as strings ("172.94"); plain JSON numbers are accepted too."""
    value = obj.get(key)
    try:
        out = None if isinstance(value, bool) or value is None else float(value)
    except (TypeError, ValueError):
        out = None
    if out is None:
        raise BrokerError(f"alpaca: {what} field {key} is not a number: {value!r}")
    if not math.isfinite(out):
        raise BrokerError(f"alpaca: {what} field {key} is not finite: {value!r}")
    return out


def _sign(side: str, what: str) -> int:
    if side == "buy":
        return 1
    if side in ("sell", "sell_short"):
        return -1
    raise BrokerError(f"alpaca: {what} side {side!r} is neither buy nor sell")


def _time(obj: dict, key: str, what: str, *, required: bool = True) -> pd.Timestamp | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise BrokerError(f"alpaca: {what} has no {key}")
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise BrokerError(f"alpaca: {what} field {key} is not a timestamp: {value!r}") from None
    if ts.tzinfo is None:
        raise BrokerError(f"alpaca: {what} field {key} has no time zone: {value!r}")
    return ts.tz_convert("UTC")
