"""strategy.alpaca.AlpacaBroker over real HTTP against Alpaca's documented
responses (tests/fixtures/vendors/alpaca, see its README) replayed by a local
server that checks the APCA-API-KEY-ID / APCA-API-SECRET-KEY headers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import ConfigError
from strategy.alpaca import AlpacaBroker
from strategy.broker import Account, Broker, BrokerError, Fill, Order
from tests.vendor_server import FIXTURES, ReplayServer, Reply

FIX = FIXTURES / "alpaca"
KEY_ID = "PKTEST0000ALPHAWH"
SECRET = "paper-secret-5f1e9c"
AAPL = "trend_rsi-2024-03-08-AAPL"
SPY = "trend_rsi-2024-03-08-SPY"
DECIDED = pd.Timestamp("2024-03-08 21:05", tz="UTC")
BY_CLIENT_ID = "/v2/orders:by_client_order_id"


def reply(name: str, status: int = 200, **headers) -> Reply:
    return Reply(status, (FIX / name).read_bytes(), headers=headers)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def _replay():
    with ReplayServer(api_key=KEY_ID, key_header="APCA-API-KEY-ID", required_headers={"APCA-API-SECRET-KEY": SECRET}) as srv:
        yield srv


@pytest.fixture
def server(_replay):
    _replay.reset()
    _replay.add_fixtures("alpaca")
    return _replay


@pytest.fixture
def settings(tmp_path, server, monkeypatch):
    monkeypatch.setenv("ALPACA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALPACA_API_SECRET_KEY", SECRET)
    for var in ("ALPHA_ALPACA_BASE_URL", "ALPHA_ALPACA_RATE"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[vendors.alpaca]\nbase_url = "{server.url}"\nrate = 100\nbackoff = 0.01\n')
    return load_settings(home)


@pytest.fixture
def slept():
    return []


@pytest.fixture
def broker(settings, slept):
    with AlpacaBroker(settings, sleep=slept.append) as b:
        yield b


def posts(server) -> list[dict]:
    return [c.json() for c in server.calls if c.method == "POST"]


def test_it_is_a_broker(broker):
    assert isinstance(broker, Broker)
    assert broker.name == "alpaca"


def test_submit_a_buy_and_a_sell(server, broker):
    server.add("/v2/orders", [reply("order_AAPL_accepted.json"), reply("order_SPY_accepted.json")], method="POST")
    buy = broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    sell = broker.submit(Order(SPY, "SPY", -5.0, DECIDED))
    assert posts(server) == [
        {"symbol": "AAPL", "qty": "10", "side": "buy", "type": "market", "time_in_force": "opg", "client_order_id": AAPL},
        {"symbol": "SPY", "qty": "5", "side": "sell", "type": "market", "time_in_force": "opg", "client_order_id": SPY},
    ]
    # each POST came after a look-up of its client_order_id, with both key headers and a JSON body
    assert [(c.method, c.path, c.query) for c in server.calls] == [
        ("GET", BY_CLIENT_ID, {"client_order_id": AAPL}), ("POST", "/v2/orders", {}),
        ("GET", BY_CLIENT_ID, {"client_order_id": SPY}), ("POST", "/v2/orders", {}),
    ]
    post = server.calls[1]
    assert post.headers["apca-api-key-id"] == KEY_ID and post.headers["apca-api-secret-key"] == SECRET
    assert post.headers["content-type"] == "application/json"
    assert (buy.client_order_id, buy.broker_order_id, buy.symbol, buy.qty, buy.status) == (
        AAPL, "7b7653c4-7468-494a-aeb3-d5f255789473", "AAPL", 10.0, "accepted")
    assert buy.filled_qty == 0.0 and buy.filled_avg_price is None and buy.filled_at is None
    assert buy.submitted_at == ts("2024-03-08 21:05:12.123456") and str(buy.submitted_at.tz) == "UTC"
    assert (sell.symbol, sell.qty, sell.status, sell.client_order_id) == ("SPY", -5.0, "accepted", SPY)


def test_a_resubmitted_order_is_returned_without_a_second_post(server, broker):
    server.add(BY_CLIENT_ID, reply("order_AAPL_new.json"), {"client_order_id": AAPL}, method="GET")
    again = broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    assert again.status == "new" and again.broker_order_id == "7b7653c4-7468-494a-aeb3-d5f255789473"
    assert posts(server) == []
    assert len(server.calls) == 1


def test_a_duplicate_client_order_id_answer_returns_the_existing_order(server, broker):
    """The order landed but its answer was lost (a retried POST): Alpaca says 422
    'client_order_id must be unique' and the existing order is returned."""
    server.add(BY_CLIENT_ID, [reply("error_404_order.json", 404), reply("order_AAPL_accepted.json")], {"client_order_id": AAPL})
    server.add("/v2/orders", reply("error_422_duplicate.json", 422), method="POST")
    status = broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    assert (status.client_order_id, status.status, status.qty) == (AAPL, "accepted", 10.0)
    assert [c.method for c in server.calls] == ["GET", "POST", "GET"]  # looked up, posted once, fetched


def test_refused_keys_are_a_broker_error_and_not_retried(server, settings, slept, monkeypatch):
    monkeypatch.setenv("ALPACA_API_SECRET_KEY", "not-the-secret-77")
    broker = AlpacaBroker(settings, sleep=slept.append)
    with pytest.raises(BrokerError, match="refused the API keys") as info:
        broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    message = str(info.value)
    assert "HTTP 401" in message and "ALPACA_API_KEY_ID" in message and "ALPACA_API_SECRET_KEY" in message
    assert "not-the-secret-77" not in message and KEY_ID not in message
    assert len(server.calls) == 1 and slept == [] and posts(server) == []
    with pytest.raises(BrokerError, match="refused the API keys"):
        broker.account()


def test_a_403_without_an_alpaca_code_means_the_keys(server, broker):
    server.add("/v2/account", Reply(403, b'{"message": "forbidden."}'))
    with pytest.raises(BrokerError, match=r"refused the API keys.*HTTP 403.*forbidden"):
        broker.account()
    assert len(server.calls) == 1


@pytest.mark.parametrize(
    ("fixture", "status", "text"),
    [("error_403_buying_power.json", 403, "insufficient buying power (HTTP 403, code 40310000)"),
     ("error_422_invalid.json", 422, 'asset "ZZZZ" not found (HTTP 422, code 42210000)')],
    ids=["403-buying-power", "422-invalid"],
)
def test_a_refused_order_carries_alpacas_message(server, broker, slept, fixture, status, text):
    server.add("/v2/orders", reply(fixture, status), method="POST")
    with pytest.raises(BrokerError) as info:
        broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    assert str(info.value) == f"alpaca refused order {AAPL} (buy 10 AAPL): {text}"
    assert len(posts(server)) == 1 and slept == []  # not retried


def test_a_422_buying_power_answer_carries_the_message(server, broker):
    server.add("/v2/orders", Reply(422, b'{"code": 42210000, "message": "insufficient buying power"}'), method="POST")
    with pytest.raises(BrokerError, match=r"refused order .*: insufficient buying power \(HTTP 422"):
        broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    assert len(posts(server)) == 1


def test_429_then_200_is_retried_after_retry_after(server, broker, slept):
    server.add("/v2/orders", [reply("error_429.json", 429, **{"Retry-After": "2"}), reply("order_AAPL_accepted.json")], method="POST")
    status = broker.submit(Order(AAPL, "AAPL", 10, DECIDED))
    assert status.status == "accepted"
    assert slept == [2.0]  # Alpaca's Retry-After, not our backoff
    assert len(posts(server)) == 2 and posts(server)[0] == posts(server)[1]  # the same client_order_id both times


def test_500_is_retried_then_succeeds(server, broker, slept):
    server.add("/v2/orders", [Reply(500, b'{"code": 50010000, "message": "internal server error"}'), reply("order_AAPL_accepted.json")], method="POST")
    server.add("/v2/account", [Reply(503, b"busy"), Reply(502, b"bad gateway"), reply("account.json")])
    assert broker.submit(Order(AAPL, "AAPL", 10, DECIDED)).status == "accepted"
    assert broker.account().cash == 98631.19
    assert len(posts(server)) == 2 and len(slept) == 3
    assert [c.path for c in server.calls].count("/v2/account") == 3


def test_exhausted_retries_are_a_broker_error(server, settings, slept):
    (settings.home / "config.toml").write_text(
        (settings.home / "config.toml").read_text() + "max_retries = 1\n")
    broker = AlpacaBroker(load_settings(settings.home), sleep=slept.append)
    server.add("/v2/account", Reply(503, b"busy"))
    with pytest.raises(BrokerError, match=r"alpaca is unavailable .*still failing after 2 attempts \(HTTP 503\)"):
        broker.account()


@pytest.mark.parametrize(
    ("fixture", "status", "filled", "price", "filled_at"),
    [("order_AAPL_accepted.json", "accepted", 0.0, None, None),
     ("order_AAPL_new.json", "new", 0.0, None, None),
     ("order_AAPL_filled.json", "filled", 10.0, 172.94, pd.Timestamp("2024-03-11 13:30:00.412345598", tz="UTC"))],
)
def test_order_status_mapping(server, broker, fixture, status, filled, price, filled_at):
    server.add(BY_CLIENT_ID, reply(fixture), {"client_order_id": AAPL})
    got = broker.order(AAPL)
    assert (got.status, got.filled_qty, got.filled_avg_price, got.filled_at) == (status, filled, price, filled_at)
    assert (got.client_order_id, got.symbol, got.qty) == (AAPL, "AAPL", 10.0)
    assert got.submitted_at == ts("2024-03-08 21:05:12.123456")


def test_a_filled_sell_has_negative_quantities(server, broker):
    server.add(BY_CLIENT_ID, reply("order_SPY_filled.json"), {"client_order_id": SPY})
    got = broker.order(SPY)
    assert (got.status, got.qty, got.filled_qty, got.filled_avg_price) == ("filled", -5.0, -5.0, 512.19)
    assert got.filled_at == ts("2024-03-11 13:30:00.725003")


def test_an_unknown_order_is_none(server, broker):
    assert broker.order("trend_rsi-2024-03-08-MSFT") is None
    assert server.calls[0].query == {"client_order_id": "trend_rsi-2024-03-08-MSFT"}


def test_an_unknown_status_is_a_clear_error(server, broker):
    body = json.loads((FIX / "order_AAPL_new.json").read_text()) | {"status": "teleported"}
    server.add(BY_CLIENT_ID, Reply(200, json.dumps(body).encode()))
    with pytest.raises(BrokerError, match="status 'teleported'"):
        broker.order(AAPL)


def test_account_and_positions(server, broker):
    account = broker.account()
    assert account == Account(cash=98631.19, equity=100099.14, positions={"AAPL": 10.0, "SPY": -5.0})
    assert [(c.method, c.path) for c in server.calls] == [("GET", "/v2/account"), ("GET", "/v2/positions")]


def test_fills_from_activities(server, broker):
    fills = broker.fills()
    assert fills == [
        Fill(AAPL, "AAPL", 4.0, 172.93, 0.0, ts("2024-03-11 13:30:00.412345")),
        Fill(AAPL, "AAPL", 6.0, 172.9466666666666667, 0.0, ts("2024-03-11 13:30:00.415102")),
        Fill(SPY, "SPY", -5.0, 512.19, 0.0, ts("2024-03-11 13:30:00.725003")),
    ]
    assert server.calls[0].query == {"direction": "asc", "page_size": "100"}
    # one order look-up per Alpaca order id, for our client_order_id
    assert sorted(c.path for c in server.calls[1:]) == [
        "/v2/orders/7b7653c4-7468-494a-aeb3-d5f255789473", "/v2/orders/c2bd4ec1-5d3c-4c3e-9a6b-1f4d3e1f9a20"]


def test_fills_follow_page_tokens(server, broker):
    one = json.loads((FIX / "activities_FILL.json").read_text())[2]
    page1 = [one | {"id": f"20240311093000725::{i:04d}"} for i in range(100)]
    server.add("/v2/account/activities/FILL", Reply(200, json.dumps(page1).encode()), {"direction": "asc", "page_size": "100"})
    server.add("/v2/account/activities/FILL", Reply(200, json.dumps([one]).encode()),
               {"direction": "asc", "page_size": "100", "page_token": "20240311093000725::0099"})
    fills = broker.fills()
    assert len(fills) == 101 and {f.client_order_id for f in fills} == {SPY}
    assert [c.path for c in server.calls].count("/v2/account/activities/FILL") == 2


def test_fills_after_a_time(server, broker):
    assert len(broker.fills(after=pd.Timestamp("2024-03-11 09:00", tz="America/New_York"))) == 3
    assert server.calls[0].query["after"] == "2024-03-11T13:00:00.000000Z"
    with pytest.raises(BrokerError, match="tz-aware"):
        broker.fills(after=pd.Timestamp("2024-03-11"))


@pytest.mark.parametrize(
    ("order", "text"),
    [(Order(AAPL, "AAPL", 2.5, DECIDED), "whole number of shares"),
     (Order(AAPL, "AAPL", 0, DECIDED), "non-zero"),
     (Order(AAPL, "AAPL", 1, DECIDED, order_type="limit"), "only market orders"),
     (Order("x" * 129, "AAPL", 1, DECIDED), "client_order_id must be 1..128")],
    ids=["fractional", "zero", "limit", "long-id"],
)
def test_orders_alpaca_cannot_take_are_refused_before_any_request(server, broker, order, text):
    with pytest.raises(BrokerError, match=text):
        broker.submit(order)
    assert server.calls == []


def test_missing_keys_are_a_config_error(server, settings, monkeypatch):
    from etl.core.config import PROJECT_ROOT
    from etl.core.http import secret

    monkeypatch.delenv("ALPACA_API_SECRET_KEY")
    if secret("ALPACA_API_SECRET_KEY", settings.home) is not None:
        pytest.skip(f"ALPACA_API_SECRET_KEY is set in {PROJECT_ROOT / '.env'}")
    with pytest.raises(ConfigError, match=r"ALPACA_API_KEY_ID and ALPACA_API_SECRET_KEY.*ALPACA_API_SECRET_KEY is not set"):
        AlpacaBroker(settings)
    monkeypatch.delenv("ALPACA_API_KEY_ID")
    with pytest.raises(ConfigError, match="ALPACA_API_KEY_ID and ALPACA_API_SECRET_KEY are not set"):
        AlpacaBroker(settings)
    assert server.calls == []


def test_the_live_endpoint_needs_an_explicit_opt_in(settings):
    with pytest.raises(ConfigError, match="live .*allow_live = true"):
        AlpacaBroker(settings, base_url="https://api.alpaca.markets")
    assert AlpacaBroker(settings).base_url == settings.vendor("alpaca")["base_url"]
