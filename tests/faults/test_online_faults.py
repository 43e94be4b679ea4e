"""Issue 16, online store faults: time zones on SQLite, a cold SQLite read without Feast, Redis
digests outliving the data (deleted / evicted keys, a restart without persistence), and an
emptied SQLite store. Each test breaks a home of its own (``home_copy``) or its own redis-server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core.errors import OnlineStoreError
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ALPHA = str(Path(sys.executable).with_name("alpha"))
SYMBOLS = ["AAPL", "IBM", "SPY"]
REFS = ["technicals:rsi_14", "bars_daily:close"]
LAST = pd.Timestamp("2021-03-31 20:15", tz="UTC")


def _run(args: list[str], home: Path, tz: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TZ": tz, "ALPHA_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return out


def _latest_cli(home: Path, tz: str) -> pd.DataFrame:
    out = _run([ALPHA, "latest", ",".join(SYMBOLS), ",".join(REFS), "--now", "warehouse", "--json"], home, tz)
    assert out.returncode == 0, out.stderr[-2000:]
    frame = pd.DataFrame(json.loads(out.stdout))
    for col in ("rsi_14__ts", "close__ts"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _feast_in(home: Path, tz: str) -> dict:
    """Feast's own get_online_features in a process running under ``tz``."""
    code = ("import json, sys; from etl.core.config import load_settings; from etl.serving.feast_store import feature_store;"
            f"raw = feature_store(load_settings({str(home)!r})).get_online_features(features={REFS!r}, "
            f"entity_rows=[{{'symbol': s}} for s in {SYMBOLS!r}]).to_dict(include_event_timestamps=True);"
            "print(json.dumps({k: [str(x) for x in v] for k, v in raw.items()}))")
    out = _run([sys.executable, "-c", code], home, tz)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check_demo_values(frame: pd.DataFrame) -> None:
    row = frame.set_index("symbol").loc["AAPL"]
    assert row["rsi_14"] == pytest.approx(47.7317, abs=1e-4) and row["close"] == pytest.approx(122.15)
    assert (frame["rsi_14__ts"] == LAST).all() and (frame["close__ts"] == LAST).all()


# ------------------------------------------------------------------ 1. time zones (SQLite)
@pytest.mark.slow
def test_sqlite_online_times_are_utc_whatever_the_machines_time_zone(home_copy):
    """Fault: nightly under TZ=UTC, `TZ=Asia/Tokyo alpha latest ... --now warehouse` gave NaN at
    2021-04-01 05:15Z (and the reverse). Now: the nightly in Tokyo, read in UTC, Tokyo and New
    York (ours and Feast's reader) and the reverse: the same values at 2021-03-31 20:15Z."""
    home = home_copy.home
    settings = home_copy
    settings.online_sqlite_path.unlink()
    (settings.feast_dir / "materialized.json").unlink()
    nightly = _run([ALPHA, "nightly"], home, "Asia/Tokyo")
    assert nightly.returncode == 0, nightly.stderr[-3000:]
    assert "online (sqlite): materialized" in nightly.stdout
    stored = sqlite3.connect(settings.online_sqlite_path).execute(
        'SELECT DISTINCT event_ts FROM "alpha_warehouse_technicals" WHERE entity_key = ?',
        [b"\x01\x00\x00\x00\x02\x00\x00\x00\x06\x00\x00\x00symbol\x02\x00\x00\x00\x04\x00\x00\x00AAPL"]).fetchall()
    assert stored == [(int(LAST.timestamp()),)]  # true epoch seconds, not Tokyo's wall time
    frames = {tz: _latest_cli(home, tz) for tz in ("UTC", "Asia/Tokyo", "America/New_York")}
    for frame in frames.values():
        _check_demo_values(frame)
        pd.testing.assert_frame_equal(frame, frames["UTC"])
    feast_utc = _feast_in(home, "UTC")  # Feast's own reader agrees
    assert float(feast_utc["rsi_14__ts"][0]) == LAST.timestamp()
    live = _run([ALPHA, "live", "--once"], home, "Asia/Tokyo")  # was all cash
    assert live.returncode == 0 and "targets: AAPL 25.0%" in live.stdout, live.stdout[-1500:]

    # the reverse: written under UTC, read in Tokyo (ours and Feast's)
    again = _run([ALPHA, "materialize", "--full"], home, "UTC")
    assert again.returncode == 0, again.stderr[-2000:]
    _check_demo_values(_latest_cli(home, "Asia/Tokyo"))
    feast_tokyo = _feast_in(home, "Asia/Tokyo")
    assert float(feast_tokyo["rsi_14__ts"][0]) == LAST.timestamp()
    assert float(feast_tokyo["rsi_14"][0]) == pytest.approx(47.7317, abs=1e-4)


@pytest.mark.slow
def test_a_store_written_in_local_time_by_the_old_path_is_detected_and_rewritten(home_copy):
    """A home materialized by the buggy path under Tokyo time (event_ts 9 h early, no UTC marker):
    `alpha latest` says so and what to run, the doctor check lists it, and the nightly's
    materialize step rewrites it (not skipped as 'gold unchanged')."""
    from etl.jobs import materialize_if_needed
    from etl.serving.online_check import online_problems
    from sdk import connect

    settings = home_copy
    conn = sqlite3.connect(settings.online_sqlite_path)
    with conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'alpha_warehouse_%'").fetchall():
            conn.execute(f'UPDATE "{table}" SET event_ts = event_ts - 9 * 3600, created_ts = created_ts - 9 * 3600')
        conn.execute("DROP TABLE alpha_online_meta")
    conn.close()
    with pytest.raises(OnlineStoreError, match=r"time zone.*alpha materialize --full"):
        connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    assert any("local time zone" in p and "alpha materialize --full" in p for p in online_problems(settings))
    out = materialize_if_needed(settings)
    assert "skipped" not in out and "local time" in out["repaired"]
    _check_demo_values(connect(settings.home).latest(SYMBOLS, REFS, now="warehouse"))
    assert online_problems(settings) == []
    assert "skipped" in materialize_if_needed(settings)  # whole again: the next nightly skips


# ------------------------------------------------------------------ 2. SQLite read without Feast
def test_sqlite_direct_reader_equals_feasts_get_online_features(warehouse):
    """Every view's features, read from the session warehouse with sqlite3, equal Feast's
    get_online_features (values and event times), with the same freshness rule and frame shape."""
    from etl.serving.catalog import load_catalog
    from sdk import connect, online

    settings = warehouse["settings"]
    client = connect(settings.home)
    catalog = load_catalog(settings)
    symbols = ["AAPL", "SPY", "IBM", "GOOGL", "UW"]
    compared = 0
    for view, info in catalog["views"].items():
        refs = [f"{view}:{f}" for f in info["features"]]
        for now in ("warehouse", "wall"):
            ours = online.read_latest(settings, symbols, refs, allow_stale=True, now=now, full_feature_names=True)
            theirs = client._latest_feast(symbols, refs, max_age=None, allow_stale=True, now=now, full_feature_names=True)
            assert list(ours.columns) == list(theirs.columns), view
            for col in ours.columns:
                a, b = ours[col].tolist(), theirs[col].tolist()
                same = [(x == y) or (pd.isna(x) and pd.isna(y)) for x, y in zip(a, b, strict=True)]
                assert all(same), (view, col, a, b)
            compared += int(ours.filter(like="__ts").notna().to_numpy().sum())
    assert compared > 1000
    # no Feast import on the read path of a fresh process
    code = ("import sys; from sdk import connect;"
            f"f = connect({str(settings.home)!r}).latest({SYMBOLS!r}, {REFS!r}, now='warehouse');"
            "assert f['rsi_14'].notna().all(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'feast'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-1500:]


# ------------------------------------------------------------------ 3. Redis: digests and data together
@pytest.fixture
def redis_home(home_copy, tmp_path):
    """``home_copy`` turned into a Redis home on a redis-server of this test (no persistence:
    a restart loses everything), fully materialized."""
    from etl.core.config import load_settings
    from etl.jobs import materialize_if_needed

    srv = RedisServer(tmp_path / "redis", "--appendonly", "no").start()
    (home_copy.home / "config.toml").write_text(f'redis_url = "{srv.url}"\n')
    (home_copy.feast_dir / "materialized.json").unlink()
    settings = load_settings(home_copy.home)
    materialize_if_needed(settings)
    yield settings, srv
    srv.stop()


def _redis(srv):
    import redis

    return redis.Redis(host="127.0.0.1", port=srv.port)


def _read(settings, symbols=SYMBOLS):
    from sdk import connect

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = connect(settings.home).latest(symbols, REFS, now="warehouse", allow_stale=True)
    return frame, [w for w in caught if w.category.__name__ == "NotMaterializedWarning"]


@pytest.mark.redis
def test_redis_deleted_key_is_flagged_and_repaired_by_the_next_nightly(redis_home):
    """Fault: DEL one entity key: `alpha materialize` said 'unchanged', the nightly skipped, latest
    gave NaN with __stale=False. Now latest warns and lists it, the doctor check names it, and the
    nightly's materialize step (gold unchanged) rewrites exactly that entity."""
    from etl.jobs import materialize_if_needed
    from etl.serving import redis_codec
    from etl.serving.online_check import online_problems

    settings, srv = redis_home
    before, warned = _read(settings)
    assert not warned and before["rsi_14"].notna().all()
    r = _redis(srv)
    assert r.delete(redis_codec.entity_key("symbol", "IBM")) == 1
    frame, warned = _read(settings)
    assert warned and "IBM" in str(warned[0].message) and frame.attrs["not_materialized"] == ["IBM"]
    assert np.isnan(frame.set_index("symbol").loc["IBM", "rsi_14"])
    assert any("IBM" in p and "alpha materialize" in p for p in online_problems(settings))
    out = materialize_if_needed(settings)
    assert "skipped" not in out and "missing" in out["repaired"]
    views = out["report"]["per_view"]
    assert out["report"]["entities_written"] == sum(1 for v in views.values() if v["written"]) > 0
    assert all(v["written"] <= 1 for v in views.values())
    after, warned = _read(settings)
    assert not warned
    pd.testing.assert_frame_equal(after, before)
    assert online_problems(settings) == [] and "skipped" in materialize_if_needed(settings)


@pytest.mark.redis
def test_redis_evicted_keys_under_maxmemory_allkeys_lru_are_repaired(redis_home):
    """Redis evicts keys (maxmemory + allkeys-lru): readers are told, the doctor names the policy,
    and once memory is back the nightly's materialize step rewrites what was evicted."""
    from etl.jobs import materialize_if_needed
    from etl.serving import redis_codec
    from etl.serving.online_check import online_problems

    settings, srv = redis_home
    before, _ = _read(settings)
    r = _redis(srv)
    keys_before = r.dbsize()
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory-policy", "allkeys-lru")
    r.config_set("maxmemory", str(int(used * 0.8)))
    r.set("alpha:test:trigger", "x")  # a write makes Redis evict down to maxmemory
    assert r.dbsize() < keys_before
    problems = online_problems(settings)
    assert any("allkeys-lru" in p for p in problems), problems
    assert any("alpha materialize" in p for p in problems)
    every = ["AAPL", "SPY", "IBM", "GOOGL", "UW"]
    gone = [s for s in every if not r.exists(redis_codec.entity_key("symbol", s))]
    if len(gone) < len(every):
        frame, warned = _read(settings, every)
        assert frame.attrs.get("not_materialized", []) == gone and bool(warned) == bool(gone)
    else:  # every symbol evicted (and the marker): the empty-store error
        with pytest.raises(OnlineStoreError, match="alpha materialize"):
            _read(settings, every)
    r.config_set("maxmemory", "0")  # the operator gives Redis its memory back
    out = materialize_if_needed(settings)
    assert "skipped" not in out and out["report"]["entities_written"] > 0
    after, warned = _read(settings)
    assert not warned
    pd.testing.assert_frame_equal(after, before)


@pytest.mark.redis
def test_redis_restarted_without_persistence_is_an_error_and_repaired(redis_home):
    """An empty Redis after a restart: latest raises a clear OnlineStoreError (not NaN), and the
    nightly's materialize step rewrites everything although gold is unchanged."""
    from etl.jobs import materialize_if_needed
    from etl.serving.online_check import online_problems
    from sdk import connect

    settings, srv = redis_home
    before, _ = _read(settings)
    srv.stop()
    srv.start()
    assert _redis(srv).dbsize() == 0
    with pytest.raises(OnlineStoreError, match=r"holds nothing.*alpha materialize"):
        connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    out = _run([ALPHA, "latest", "AAPL", "technicals:rsi_14"], settings.home, "UTC")
    assert out.returncode == 1 and "holds nothing" in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert any("holds nothing" in p for p in online_problems(settings))
    out = materialize_if_needed(settings)
    assert "skipped" not in out and "holds nothing" in out["repaired"]
    after, warned = _read(settings)
    assert not warned
    pd.testing.assert_frame_equal(after, before)


# ------------------------------------------------------------------ 4. SQLite emptied
@pytest.mark.slow
def test_emptied_sqlite_store_is_a_clear_error_and_repaired(home_copy):
    """Fault: an emptied SQLite store gave OperationalError: no such table, the nightly skipped,
    `alpha materialize` failed until `alpha apply`. Now: a clear error naming the fix, the doctor
    check lists it, the nightly's materialize step repairs it, and materialize recreates the
    registry and tables itself."""
    from etl.jobs import materialize_if_needed
    from etl.serving import feast_store
    from etl.serving.online_check import online_problems
    from sdk import connect

    settings = home_copy
    before = connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    settings.online_sqlite_path.write_bytes(b"")  # emptied: a valid, table-less SQLite file
    with pytest.raises(OnlineStoreError, match=r"no table for .*alpha materialize"):
        connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    out = _run([ALPHA, "latest", "AAPL", "technicals:rsi_14"], settings.home, "UTC")
    assert out.returncode == 1 and "alpha materialize" in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert any("lacks the table" in p for p in online_problems(settings))
    out = materialize_if_needed(settings)
    assert "skipped" not in out and "table" in out["repaired"]
    pd.testing.assert_frame_equal(connect(settings.home).latest(SYMBOLS, REFS, now="warehouse"), before)

    # tables present but emptied
    conn = sqlite3.connect(settings.online_sqlite_path)
    with conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'alpha_warehouse_%'").fetchall():
            conn.execute(f'DELETE FROM "{table}"')
    conn.close()
    with pytest.raises(OnlineStoreError, match=r"holds nothing.*alpha materialize"):
        connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    assert any("holds nothing" in p for p in online_problems(settings))

    # materialize with neither the online store nor the registry (no `alpha apply` first)
    settings.online_sqlite_path.unlink()
    settings.registry_path.unlink()
    with pytest.raises(OnlineStoreError, match=r"no online store .*alpha materialize"):
        connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    t0 = time.perf_counter()
    feast_store.materialize(settings)
    print(f"materialize from nothing: {time.perf_counter() - t0:.1f} s")
    pd.testing.assert_frame_equal(connect(settings.home).latest(SYMBOLS, REFS, now="warehouse"), before)
    assert online_problems(settings) == []


def test_sqlite_symbol_deleted_from_the_store_is_flagged_and_repaired_by_the_nightly(home_copy):
    """As on Redis: a symbol whose rows are gone from the SQLite store (deleted by hand, or never
    materialized) comes back missing with a NotMaterializedWarning naming it, not as a silent NaN;
    the nightly's materialize step puts it back."""
    from etl.jobs import materialize_if_needed
    from etl.serving.sqlite_online import sqlite_entity_key
    from sdk import NotMaterializedWarning, connect

    settings = home_copy
    before = connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    conn = sqlite3.connect(settings.online_sqlite_path)
    with conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'alpha_warehouse_%'").fetchall():
            conn.execute(f'DELETE FROM "{table}" WHERE entity_key = ?', (sqlite_entity_key("symbol", "IBM"),))
    conn.close()
    with pytest.warns(NotMaterializedWarning, match=r"IBM"):
        got = connect(settings.home).latest(SYMBOLS, REFS, now="warehouse")
    assert got.attrs["not_materialized"] == ["IBM"]
    assert got.set_index("symbol").loc["IBM", [r.split(":")[1] for r in REFS]].isna().all()
    assert got.set_index("symbol").drop(index="IBM").notna().all().all()   # the others untouched
    out = materialize_if_needed(settings)
    assert "skipped" not in out, out
    pd.testing.assert_frame_equal(connect(settings.home).latest(SYMBOLS, REFS, now="warehouse"), before)
