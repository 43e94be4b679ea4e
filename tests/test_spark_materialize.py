"""Materialization to Redis with the scan of gold on Spark (etl.serving.spark_rows) leaves Redis
byte for byte as the local reader does: a full run, an incremental run over a new build run
with ties (the same times in two part files, two rows of one file) and late rows, rows known
after ``now`` deferred alike, the same reports, and a damaged part the same GoldDamagedError.

One warehouse of the shipped Lean data (AAPL, SPY, IBM: every view) is read by two homes: the
local one and a Spark one (engine = "spark", its gold a link to the first's), each writing to its
own database of the tests' redis-server.
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

LOCAL_DB, SPARK_DB = 11, 12          # databases of the shared redis-server only this module uses
SYMBOLS = ["AAPL", "SPY", "IBM"]


def _db_url(redis_url: str, db: int) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="module")
def homes(tmp_path_factory, lean_root, redis_url, spark):
    """(local settings, spark settings): one gold, two homes, two empty Redis databases."""
    import redis

    from etl.core.config import load_settings
    from etl.jobs import compute_factors
    from etl.sources.archive import ingest_lean
    from tests.conftest import spark_toml

    local_home = tmp_path_factory.mktemp("mat_local")
    (local_home / "config.toml").write_text(f'redis_url = "{_db_url(redis_url, LOCAL_DB)}"\n')
    local = load_settings(local_home)
    ingest_lean(local, lean_root, SYMBOLS)
    compute_factors(local)
    spark_home = tmp_path_factory.mktemp("mat_spark")
    (spark_home / "config.toml").write_text(spark_toml(_db_url(redis_url, SPARK_DB)))
    (spark_home / "gold").symlink_to(local.gold, target_is_directory=True)
    on_spark = load_settings(spark_home)
    assert (local.engine, on_spark.engine) == ("local", "spark")
    for db in (LOCAL_DB, SPARK_DB):
        redis.Redis.from_url(_db_url(redis_url, db)).flushdb()
    return local, on_spark


def _dump(settings) -> dict:
    """Every key of the home's Redis database with every field (HGETALL), bytes as stored; the
    marker's fields that name the home and the wall-clock time of the run left out."""
    import redis

    from etl.serving.redis_codec import marker_key

    client = redis.Redis.from_url(settings.redis_url)
    out = {}
    for key in client.scan_iter(count=1000):
        assert client.type(key) == b"hash", key
        fields = client.hgetall(key)
        if key == marker_key().encode():
            fields = {k: v for k, v in fields.items() if k not in (b"materialized_at", b"home")}
        out[key] = fields
    return out


def _report(report) -> dict:
    out = report.as_dict()
    out.pop("seconds")
    return out


def _stored(settings, view: str, symbol: str, feature: str):
    """One stored value and its event time, decoded from the Redis hash."""
    import redis

    from etl.serving.redis_codec import decode_timestamp, decode_value, entity_key, field_key, ts_key

    raw = redis.Redis.from_url(settings.redis_url).hmget(entity_key("symbol", symbol), field_key(view, feature), ts_key(view))
    return decode_value(raw[0]), decode_timestamp(raw[1])


def _append_run(settings, view: str, parts: list[pd.DataFrame]) -> int:
    """A new committed build run writing ``parts`` (one part file each, in order) to ``view``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl.gold import layout

    runs = layout.read_runs(settings)
    run = runs["last_run"] + 1
    schema = pq.read_schema(layout.parts(settings, view)[-1])
    for chunk, rows in enumerate(parts):
        table = pa.Table.from_pandas(rows[schema.names].reset_index(drop=True), schema=schema, preserve_index=False)
        path = layout.view_dir(settings, view) / layout.part_name(run, "test", chunk)
        pq.write_table(table, path)
        runs.setdefault(layout.PARTS, {}).setdefault(view, {})[path.name] = {
            "size": path.stat().st_size, "rows": table.num_rows, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    runs["last_run"] = run
    layout.write_runs(settings, runs)
    return run


@pytest.fixture(scope="module")
def full(homes):
    """A full materialize of every view by each engine, as known at the same time."""
    from etl.serving import redis_writer

    local, on_spark = homes
    now = pd.Timestamp.now(tz="UTC").floor("s")
    by_local = redis_writer.materialize(local, full=True, now=now)
    by_spark = redis_writer.materialize(on_spark, full=True, now=now)   # engine from the home: spark
    return by_local, by_spark


def test_full_materialize_same_bytes_and_reports(homes, full):
    from etl.serving.catalog import build_catalog

    local, on_spark = homes
    by_local, by_spark = full
    assert by_local.entities_written > 0 and by_local.values_written > 0
    assert by_local.views == len(build_catalog(local)["views"])
    assert _report(by_spark) == _report(by_local)
    dumped = _dump(local)
    assert len(dumped) == len(SYMBOLS) + 2            # the symbols, the market entity, the marker
    assert _dump(on_spark) == dumped
    # and it is the winner: each symbol's last bar as known now, picked here with pandas
    bars = pd.read_parquet(local.gold / "bars_daily")
    for symbol in SYMBOLS:
        last = bars[bars["symbol"] == symbol].sort_values(["event_timestamp", "known_timestamp"]).iloc[-1]
        assert _stored(on_spark, "bars_daily", symbol, "close") == (last["close"], last["event_timestamp"].value // 1000)


def test_incremental_run_with_ties_and_late_rows(homes, full):
    """A new build run of two part files: AAPL's winner restated with the very same times in
    both (the later file wins), IBM's next session twice in one file (the later row wins), SPY
    a late row (older event: loses) and a next session known only after ``now`` (deferred)."""
    from etl.serving import redis_writer, spark_rows
    from etl.serving.catalog import build_catalog

    local, on_spark = homes
    now = full[0].now + pd.Timedelta(minutes=1)
    bars = pd.read_parquet(local.gold / "bars_daily").sort_values(["event_timestamp", "known_timestamp"])
    last = {s: bars[bars["symbol"] == s].iloc[[-1]].copy() for s in SYMBOLS}
    since = _last_run(local)
    aapl_a, aapl_b = last["AAPL"].assign(close=111.5), last["AAPL"].assign(close=222.5)     # same event, known, created
    ibm_1 = last["IBM"].assign(close=1.0)
    ibm_1["event_timestamp"] += pd.Timedelta(days=1)
    ibm_1["known_timestamp"] = ibm_1["created_timestamp"] = now - pd.Timedelta(seconds=30)
    ibm_2 = ibm_1.assign(close=2.0)                                                        # the same times, a later row
    spy_late = bars[bars["symbol"] == "SPY"].iloc[[-5]].assign(close=5.5)
    spy_late["known_timestamp"] = spy_late["created_timestamp"] = now - pd.Timedelta(seconds=30)
    spy_future = last["SPY"].assign(close=7.5)
    spy_future["event_timestamp"] += pd.Timedelta(days=1)
    spy_future["known_timestamp"] = spy_future["created_timestamp"] = now + pd.Timedelta(hours=1)
    run = _append_run(local, "bars_daily", [pd.concat([aapl_a, ibm_1, ibm_2, spy_late, spy_future]), aapl_b])
    assert run == since + 1

    info = build_catalog(local)["views"]["bars_daily"]
    now_us = now.value // 1000
    want = redis_writer._read_view_rows(local, "bars_daily", info, now_us, since)
    got = spark_rows.read_view_rows(on_spark, "bars_daily", info, now_us, since)
    # the same tuple, in the local reader's order (by the winner's file: IBM and SPY in the first, AAPL in the second)
    assert got[0] == want[0] == ["IBM", "SPY", "AAPL"]
    assert np.array_equal(got[1], want[1]) and got[2] == want[2] and got[3] == want[3] and got[4] == want[4] == run

    by_local = redis_writer.materialize(local, now=now, since_run=since)
    by_spark = redis_writer.materialize(on_spark, now=now, since_run=since)
    assert _report(by_spark) == _report(by_local)
    assert by_local.deferred_run == run
    assert by_local.per_view["bars_daily"] == {"written": 2, "skipped": 1}     # AAPL, IBM; SPY's late row loses
    assert _dump(on_spark) == _dump(local)
    assert _stored(on_spark, "bars_daily", "AAPL", "close")[0] == 222.5
    assert _stored(on_spark, "bars_daily", "IBM", "close")[0] == 2.0
    assert _stored(on_spark, "bars_daily", "SPY", "close")[0] == last["SPY"]["close"].iloc[0]


def _last_run(settings) -> int:
    from etl.gold import layout

    return int(layout.read_runs(settings)["last_run"])


def test_now_before_known_times_defers_alike(homes, full, redis_url):
    """As known at a time inside the history: every later row deferred, the same winners."""
    import redis

    from etl.serving import redis_writer

    local, on_spark = homes
    for db in (LOCAL_DB, SPARK_DB):
        redis.Redis.from_url(_db_url(redis_url, db)).flushdb()
    now = pd.Timestamp("2020-06-15 12:00", tz="UTC")
    views = ["bars_daily", "ta_momentum", "regime_daily"]
    by_local = redis_writer.materialize(local, views=views, full=True, now=now)
    by_spark = redis_writer.materialize(on_spark, views=views, full=True, now=now)
    assert by_local.deferred_run == 1 and by_local.entities_written == 2 * len(SYMBOLS) + 1
    assert _report(by_spark) == _report(by_local)
    assert _dump(on_spark) == _dump(local)
    value, event_us = _stored(on_spark, "bars_daily", "AAPL", "close")
    assert event_us <= now.value // 1000


@pytest.mark.parametrize("damage", ["footer", "pages"])
def test_damaged_part_is_the_same_error(homes, tmp_path, damage):
    """A part overwritten in place (same size, so the run record's sizes still match): its
    footer, the same GoldDamagedError naming the file from both engines; its data pages, a
    GoldDamagedError from both (Spark's names the file too)."""
    from etl.core.config import load_settings
    from etl.core.errors import GoldDamagedError
    from etl.gold import layout
    from etl.serving import redis_writer

    local, _ = homes
    gold = tmp_path / "home" / "gold"
    gold.mkdir(parents=True)
    shutil.copy2(local.gold / layout.RUNS, gold / layout.RUNS)
    shutil.copytree(local.gold / "regime_daily", gold / "regime_daily")
    part = layout.parts(local, "regime_daily")[1]
    data = bytearray((gold / "regime_daily" / part.name).read_bytes())
    if damage == "footer":
        data[-300:-8] = b"\x07" * 292
    else:
        data[2000:6000] = b"\x07" * 4000
    (gold / "regime_daily" / part.name).write_bytes(bytes(data))
    (tmp_path / "home" / "config.toml").write_text(f'redis_url = "{local.redis_url}"\n')
    damaged = load_settings(tmp_path / "home")
    errors = []
    for engine in ("local", "spark"):
        with pytest.raises(GoldDamagedError) as caught:
            redis_writer.materialize(damaged, views=["regime_daily"], full=True, engine=engine)
        errors.append(str(caught.value))
    if damage == "footer":
        assert errors[0] == errors[1] and f"unreadable Parquet file {gold / 'regime_daily' / part.name}" in errors[0]
    else:
        assert all("a file there is damaged" in e and "alpha nightly" in e for e in errors) and part.name in errors[1]


def test_cli_engine_option(homes):
    from typer.testing import CliRunner

    from cli.app import app

    local, _ = homes
    out = CliRunner().invoke(app, ["materialize", "--home", str(local.home), "--engine", "dask"])
    assert out.exit_code == 1 and "--engine must be one of ['local', 'spark']" in out.output
