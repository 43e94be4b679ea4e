"""Bad SDK input raises a clear error from the one AlphaError root."""

from __future__ import annotations

import pandas as pd
import pytest

from sdk import (
    AlphaError,
    EmptyInputError,
    NaiveTimestampError,
    NotIngestedError,
    UnknownFeatureError,
    UnknownSymbolError,
    connect,
)

T = pd.Timestamp("2014-06-09 20:15", tz="UTC")


def frame(symbols, ts):
    return pd.DataFrame({"symbol": symbols, "event_timestamp": ts})


def test_unknown_symbol(client):
    with pytest.raises(UnknownSymbolError, match="ZZZZ"):
        client.history(frame(["AAPL", "ZZZZ"], [T, T]), ["technicals:rsi_14"])
    with pytest.raises(UnknownSymbolError, match="ZZZZ"):
        client.latest(["ZZZZ"], ["technicals:rsi_14"])


def test_unknown_features(client):
    with pytest.raises(UnknownFeatureError, match="technicals:nope"):
        client.history(frame(["AAPL"], [T]), ["technicals:nope"])
    with pytest.raises(UnknownFeatureError, match="rsi_14"):
        client.latest(["AAPL"], ["rsi_14"])  # missing the view
    with pytest.raises(UnknownFeatureError, match="no_such_service"):
        client.history(frame(["AAPL"], [T]), "no_such_service")


def test_naive_timestamps_are_rejected_with_a_fix(client):
    with pytest.raises(NaiveTimestampError, match="tz_localize"):
        client.history(frame(["AAPL"], [pd.Timestamp("2014-06-09 16:15")]), ["technicals:rsi_14"])


def test_empty_inputs(client):
    with pytest.raises(EmptyInputError):
        client.history(frame([], pd.to_datetime([], utc=True)), ["technicals:rsi_14"])
    with pytest.raises(EmptyInputError):
        client.history(frame(["AAPL"], [T]), [])
    with pytest.raises(EmptyInputError):
        client.latest([], ["technicals:rsi_14"])
    with pytest.raises(EmptyInputError, match="start= and end="):
        client.history(["AAPL"], ["technicals:rsi_14"])
    with pytest.raises(EmptyInputError, match="lacks column"):
        client.history(pd.DataFrame({"symbol": ["AAPL"]}), ["technicals:rsi_14"])


def test_every_error_shares_the_root():
    for cls in (EmptyInputError, NaiveTimestampError, NotIngestedError, UnknownFeatureError, UnknownSymbolError):
        assert issubclass(cls, AlphaError)


def test_empty_warehouse_says_what_to_run(tmp_path):
    empty = connect(tmp_path / "empty")
    with pytest.raises(NotIngestedError, match="alpha"):
        empty.history(["AAPL"], ["technicals:rsi_14"], start="2014-01-02", end="2014-01-10")


def test_feature_service_returns_every_feature(client):
    got = client.history(frame(["AAPL"], [T]), "daily_v1")
    for col in ("open", "close", "volume", "ticker", "rsi_14", "sma_20", "macd", "atr_14", "bb_pctb_20", "ret_21d", "rv_21d"):
        assert col in got.columns
    assert got["close"].iloc[0] == pytest.approx(93.70)


def test_full_feature_names(client):
    got = client.history(frame(["AAPL"], [T]), ["technicals:rsi_14", "bars_daily:close"], full_feature_names=True)
    assert {"technicals__rsi_14", "bars_daily__close"} <= set(got.columns)


def test_client_does_no_io_until_used(tmp_path):
    c = connect(tmp_path / "nothing-here")
    assert "nothing-here" in repr(c)
    assert not (tmp_path / "nothing-here").exists()


CATALOG = {  # etl.serving.catalog's shape: views with features (and dtypes), services as refs
    "views": {"bars_daily": {"entity": "symbol", "features": {"close": "float64", "ticker": "string"}},
              "bars_daily_lag1": {"entity": "symbol", "features": {"close_lag1": "float64"}}},
    "services": {"daily_v1": ["bars_daily:close", "bars_daily:ticker"]},
}


def test_one_rule_resolves_feature_refs():
    from etl.serving.catalog import is_service, resolve_refs

    feast_shaped = {"views": {v: {"features": list(info["features"])} for v, info in CATALOG["views"].items()},
                    "services": CATALOG["services"]}
    for catalog in (CATALOG, feast_shaped):  # the JSON catalog of `latest` on Redis, Feast's registry of history
        assert resolve_refs(catalog, "daily_v1") == ["bars_daily:close", "bars_daily:ticker"]
        assert resolve_refs(catalog, "bars_daily:close") == ["bars_daily:close"]
        assert resolve_refs(catalog, ("bars_daily_lag1:close_lag1", "bars_daily:ticker")) == ["bars_daily_lag1:close_lag1", "bars_daily:ticker"]
        with pytest.raises(EmptyInputError, match="no features asked for"):
            resolve_refs(catalog, [])
        with pytest.raises(UnknownFeatureError, match=r"unknown feature service 'daily_v9'; registered services: \['daily_v1'\]"):
            resolve_refs(catalog, "daily_v9")
        with pytest.raises(UnknownFeatureError, match=r"unknown feature\(s\) \['close', 'bars_daily:', 3\]; use 'view:feature', "
                           r"e.g. one of \['bars_daily:close', 'bars_daily:ticker', 'bars_daily_lag1:close_lag1'\]"):
            resolve_refs(catalog, ["bars_daily:close", "close", "bars_daily:", 3])
        with pytest.raises(UnknownFeatureError, match="feature refs repeated"):
            resolve_refs(catalog, ["bars_daily:close", "bars_daily:close"])
    assert is_service("daily_v1") and not is_service("bars_daily:close") and not is_service(["daily_v1"])


def test_history_and_both_latest_paths_resolve_alike(client):
    from etl.serving.catalog import load_catalog, resolve_refs

    served = load_catalog(client.settings)  # what `latest` reads on Redis
    for features in ("daily_v1", "leakage_v2", ["technicals:rsi_14", "technicals_lag1:rsi_14_lag1"]):
        assert client._resolve(features)[1] == resolve_refs(served, features)
    for bad in (["technicals:nope"], "no_such_service", ["rsi_14"], ["bars_daily:close"] * 2, [3]):
        with pytest.raises(UnknownFeatureError) as feast_side:
            client.history(frame(["AAPL"], [T]), bad)
        with pytest.raises(UnknownFeatureError) as sqlite_side:
            client.latest(["AAPL"], bad)
        with pytest.raises(UnknownFeatureError) as redis_side:
            resolve_refs(served, bad)
        assert str(feast_side.value) == str(sqlite_side.value) == str(redis_side.value)


def test_new_error_classes_keep_their_builtin_bases():
    from etl.core.errors import (
        ArgumentError,
        BrokerError,
        DeclarationError,
        MissingColumnError,
        NotASessionError,
        UnsupportedError,
    )
    from strategy.broker import BrokerError as StrategyBrokerError

    assert StrategyBrokerError is BrokerError and issubclass(BrokerError, AlphaError)
    assert issubclass(MissingColumnError, KeyError) and issubclass(MissingColumnError, ValueError)
    assert str(MissingColumnError("source has no column(s) ['x']")) == "source has no column(s) ['x']"  # not KeyError's repr
    assert issubclass(NotASessionError, ArgumentError) and issubclass(ArgumentError, ValueError)
    assert issubclass(UnsupportedError, TypeError) and issubclass(UnsupportedError, NotImplementedError)
    for cls in (ArgumentError, DeclarationError, MissingColumnError, UnsupportedError):
        assert issubclass(cls, AlphaError)


def test_store_errors_classify_by_class():
    import redis

    from etl.serving.redis_conn import store_errors

    errors = store_errors()
    assert isinstance(redis.ConnectionError("down"), errors) and isinstance(ConnectionRefusedError(), errors)
    assert not isinstance(ValueError("redis"), errors)
