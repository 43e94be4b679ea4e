"""Settings and the exchange clock."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings, parse_redis_url
from etl.core.errors import ConfigError


def test_availability_honours_dst_early_closes_and_delay():
    days = pd.DatetimeIndex(["2014-01-02", "2014-06-06", "2014-11-28", "2014-12-24", "2014-07-03"])
    got = clock.availability_times(days, 15)
    assert [t.strftime("%Y-%m-%d %H:%M") for t in got] == [
        "2014-01-02 21:15",  # 16:00 EST
        "2014-06-06 20:15",  # 16:00 EDT
        "2014-11-28 18:15",  # day after Thanksgiving: 13:00 close
        "2014-12-24 18:15",  # Christmas Eve: 13:00 close
        "2014-07-03 17:15",  # eve of Independence Day: 13:00 EDT close
    ]
    assert str(got.dtype) == "datetime64[us, UTC]"
    assert clock.availability_times(days[:1], 0)[0] == pd.Timestamp("2014-01-02 21:00", tz="UTC")


def test_holidays_are_not_sessions():
    mask = clock.is_session(pd.DatetimeIndex(["2014-11-27", "2014-12-25", "2001-09-11", "2014-06-07", "2014-06-09"]))
    assert mask.tolist() == [False, False, False, False, True]
    with pytest.raises(ValueError, match="not XNYS sessions"):
        clock.session_closes(pd.DatetimeIndex(["2014-12-25"]))


def test_settings_from_file_and_environment(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('bar_delay_minutes = 30\nredis_url = "redis://:s3cret@10.0.0.5:6380/2"\n')
    s = load_settings(tmp_path)
    assert s.bar_delay_minutes == 30 and s.online_store_kind == "redis"
    monkeypatch.setenv("ALPHA_BAR_DELAY_MINUTES", "5")
    assert load_settings(tmp_path).bar_delay_minutes == 5
    monkeypatch.setenv("ALPHA_HOME", str(tmp_path))
    assert load_settings().home == tmp_path.resolve()


def test_bad_settings_are_clear(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("bar_delay = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("ALPHA_BAR_DELAY_MINUTES", "soon")
    with pytest.raises(ConfigError, match="whole number"):
        load_settings(tmp_path)
    monkeypatch.delenv("ALPHA_BAR_DELAY_MINUTES")
    monkeypatch.setenv("ALPHA_REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigError, match="redis://"):
        load_settings(tmp_path)


def test_redis_url_to_feast_connection_string():
    assert parse_redis_url("redis://127.0.0.1:6379/0") == "127.0.0.1:6379,db=0"
    assert parse_redis_url("redis://:p%40ss@host:7000") == "host:7000,password=p@ss"
    assert parse_redis_url("rediss://h/1") == "h:6379,db=1,ssl=true"


def test_delay_reaches_the_silver_event_time(tmp_path, lean_root):
    from etl.sources.archive import ingest_lean
    from etl.storage.bars import read_silver_bars

    (tmp_path / "config.toml").write_text("bar_delay_minutes = 60\n")
    settings = load_settings(tmp_path)
    ingest_lean(settings, lean_root, ["SPY"])
    bars = read_silver_bars(settings).set_index("session")
    assert bars.loc["2014-11-28", "event_timestamp"] == pd.Timestamp("2014-11-28 19:00", tz="UTC")


def test_utc_microseconds_refuse_naive_times_and_convert_aware_ones_exactly():
    from etl.core.errors import NaiveTimestampError, NotASessionError

    ny = pd.Series(pd.to_datetime(["2021-03-31 16:15:00.123456", "2014-01-02 16:15:00.000000"]).tz_localize("America/New_York"))
    got = clock.to_utc_us(ny)
    assert str(got.dtype) == "datetime64[us, UTC]"
    assert got.tolist() == [pd.Timestamp("2021-03-31 20:15:00.123456", tz="UTC"), pd.Timestamp("2014-01-02 21:15", tz="UTC")]
    assert clock.epoch_us(ny).tolist() == [1617221700123456, 1388697300000000]
    assert clock.epoch_us(pd.DatetimeIndex(ny)).tolist() == [1617221700123456, 1388697300000000]
    assert clock.epoch_us(pd.Series([pd.NaT, ny[1]]).dt.tz_convert("UTC")).tolist() == [-(2**63), 1388697300000000]
    back = clock.from_epoch_us([1617221700123456, 0])
    assert str(back.dtype) == "datetime64[us, UTC]"
    assert back.tolist() == [pd.Timestamp("2021-03-31 20:15:00.123456", tz="UTC"), pd.Timestamp("1970-01-01", tz="UTC")]
    assert clock.to_utc("2021-03-31 16:15-04:00", "t") == pd.Timestamp("2021-03-31 20:15", tz="UTC")
    assert str(clock.to_utc(ny[0], "t").tz) == "UTC"
    assert clock.instant_us(ny[0], "t") == 1617221700123456
    naive = pd.Series(pd.to_datetime(["2021-03-31 16:15"]))
    for call in (lambda: clock.to_utc_us(naive), lambda: clock.epoch_us(naive), lambda: clock.to_utc_us(pd.DatetimeIndex(naive)),
                 lambda: clock.epoch_us(["2021-03-31 16:15"])):
        with pytest.raises(NaiveTimestampError, match="without a time zone"):
            call()
    with pytest.raises(NaiveTimestampError, match=r"t=Timestamp\('2021-03-31 16:15:00'\) has no time zone"):
        clock.to_utc(naive[0], "t")
    with pytest.raises(NaiveTimestampError, match="has no time zone"):
        clock.instant_us(naive[0], "t")
    with pytest.raises(NotASessionError, match="not XNYS sessions"):  # an AlphaError that is still a ValueError
        clock.session_closes(pd.DatetimeIndex(["2014-12-25"]))


def test_utc_microseconds_of_arrow_columns():
    import pyarrow as pa

    from etl.core.errors import NaiveTimestampError

    ny = pa.chunked_array([pa.array([1_617_221_700_123_456_000, None], type=pa.timestamp("ns", tz="America/New_York"))])
    assert clock.epoch_us(ny).tolist() == [1617221700123456, -(2**63)]  # Arrow holds UTC instants
    assert clock.epoch_us(pa.array([5], type=pa.timestamp("us", tz="UTC"))).tolist() == [5]
    with pytest.raises(NaiveTimestampError, match="without a time zone"):
        clock.epoch_us(pa.array([5], type=pa.timestamp("us")))
