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
