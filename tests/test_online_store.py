"""sdk/online.py against a real redis-server and real Feast: the same bytes as Feast's Redis
store, only changed winners written (corrections and late rows included), TTL / max_age /
stale flags, password, TLS, Redis down, and Redis killed in the middle of a materialize."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core.errors import OnlineStoreError
from tests.servers import RedisServer, free_port, no_redis

SYMBOLS = ["AAPL", "SPY", "IBM"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = RedisServer(tmp_path_factory.mktemp("online_redis")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory, lean_root, server):
    """A small warehouse (AAPL, SPY, IBM: every view) registered with Feast, nothing online yet."""
    from etl.core.config import load_settings
    from etl.jobs import compute_factors
    from etl.serving import feast_store
    from etl.sources.archive import ingest_lean

    home = tmp_path_factory.mktemp("online_home")
    (home / "config.toml").write_text(f'redis_url = "{server.url}"\n')
    settings = load_settings(home)
    ingest_lean(settings, lean_root, SYMBOLS)
    compute_factors(settings)
    feast_store.apply(settings)
    return home


def _copy_home(src: Path, dst: Path, url: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for sub in ("gold", "feast"):
        shutil.copytree(src / sub, dst / sub, dirs_exist_ok=True)
    (dst / "config.toml").write_text(f'redis_url = "{url}"\n')
    return dst


def _settings(home: Path):
    from etl.core.config import load_settings

    return load_settings(home)


def _refs_sample() -> list[str]:
    """Many features across views: symbol views, market views, strings, ints, bools, float32."""
    from etl.factors import registry

    refs = []
    for name, view in registry.views().items():
        by_dtype: dict[str, list[str]] = {}
        for o in view.outputs:
            by_dtype.setdefault(o.dtype, []).append(o.name)
        for names in by_dtype.values():
            refs += [f"{name}:{n}" for n in names[:3]]
    return refs


def _offline_latest(settings, view: str, now: pd.Timestamp) -> pd.DataFrame:
    """The winner per entity computed here, independently, with pandas sorting."""
    from etl.factors import registry

    info = registry.views()[view]
    frame = pd.read_parquet(settings.gold / view)
    frame = frame.reset_index(drop=True).assign(_pos=np.arange(len(frame)))
    frame = frame[(frame["event_timestamp"] <= now) & (frame["known_timestamp"] <= now)]
    frame = frame.sort_values([info.entity, "event_timestamp", "known_timestamp", "created_timestamp", "_pos"], kind="stable")
    return frame.groupby(info.entity).tail(1).set_index(info.entity)


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and np.isnan(a)):
        return b is None or (isinstance(b, float) and np.isnan(b))
    return a == b


@pytest.fixture(scope="module")
def materialized(home, server):
    from etl.serving import redis_writer

    settings = _settings(home)
    report = redis_writer.materialize(settings, full=True)
    return settings, report


def test_layout_bytes_equal_feasts_own_helpers():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.timestamp_pb2 import Timestamp

    from etl.serving import redis_codec

    key = EntityKey(join_keys=["symbol"], entity_values=[Value(string_val="AAPL")])
    assert redis_codec.entity_key("symbol", "AAPL") == serialize_entity_key(key, 3) + b"alpha_warehouse"
    assert redis_codec.field_key("technicals", "rsi_14") == _mmh3("technicals:rsi_14")
    values = {"float64": [1.5, 0.0, -2.25, np.nan], "float32": [np.float32(0.1), np.float32(-3), np.nan, 0.0],
              "int64": [0, -1, 2**40, None], "bool": [True, False, None, True], "string": ["AAPL", "", None, "é"]}
    attr = {"float64": "double_val", "float32": "float_val", "int64": "int64_val", "bool": "bool_val", "string": "string_val"}
    for dtype, vals in values.items():
        ours = redis_codec.encode_column(pd.Series(vals, dtype=object if dtype in ("int64", "bool", "string") else None), dtype)
        theirs = [b"" if v is None or (isinstance(v, float) and np.isnan(v)) else Value(**{attr[dtype]: v}).SerializeToString() for v in vals]
        assert ours == theirs, dtype
        assert [redis_codec.decode_value(b) for b in ours][:2] == [Value.FromString(b).__getattribute__(attr[dtype]) for b in theirs][:2]
    for ts in [pd.Timestamp("2021-03-31 20:15:00.123456", tz="UTC"), pd.Timestamp("1998-07-16 20:15", tz="UTC")]:
        proto = Timestamp()
        proto.FromDatetime(ts.to_pydatetime())
        us = ts.value // 1000
        assert redis_codec.encode_timestamp(us) == proto.SerializeToString()
        assert redis_codec.decode_timestamp(proto.SerializeToString()) == us


def test_reader_equals_feast_get_online_features(materialized):
    from etl.serving.feast_store import feature_store
    from sdk import online

    settings, report = materialized
    assert report.entities_written > 0 and report.views == 22
    refs = _refs_sample()
    assert len(refs) > 60
    ours = online.read_latest(settings, SYMBOLS, refs, allow_stale=True, now="wall")
    store = feature_store(settings)
    raw = store.get_online_features(features=refs, entity_rows=[{"symbol": s, "market": "US"} for s in SYMBOLS],
                                    full_feature_names=True).to_dict(include_event_timestamps=True)
    compared = 0
    for ref in refs:
        view, _, feat = ref.partition(":")
        theirs = raw[f"{view}__{feat}"]
        mine = ours[feat].tolist()
        assert all(_same(a, b) for a, b in zip(mine, theirs, strict=True)), (ref, mine, theirs)
        compared += sum(v is not None for v in theirs)
        ts = raw.get(f"{view}__{feat}_event_timestamp") or raw.get(f"{view}__{feat}__ts")
        if ts is not None:
            secs = pd.Series(ts, dtype="float64")
            mine_s = [0 if pd.isna(t) else t.value // 10**9 for t in ours[feat + "__ts"]]  # Feast: 0 = no value
            assert mine_s == secs.astype("int64").tolist(), ref
    assert compared > 100
    assert {type(v) for v in ours["session_date"]} == {str}


def test_online_equals_offline_latest(materialized):
    from etl.factors import registry
    from sdk import online

    settings, report = materialized
    now = report.now
    compared = set()
    for view in ["bars_daily", "technicals", "ta_momentum", "macro_daily", "regime_daily", "options_daily"]:
        info = registry.views()[view]
        expected = _offline_latest(settings, view, now)
        if expected.empty:  # no source data for that family in this small warehouse
            continue
        compared.add(view)
        refs = [f"{view}:{o.name}" for o in info.outputs]
        keys = list(expected.index) if info.entity == "symbol" else ["US"]
        entities = keys if info.entity == "symbol" else ["AAPL"]
        got = online.read_latest(settings, entities, refs, allow_stale=True, now=now)
        for o in info.outputs:
            for i, key in enumerate(keys):
                want = expected.loc[key, o.name]
                want = None if pd.isna(want) else (float(np.float32(want)) if o.dtype == "float32" else want)
                assert _same(got[o.name].iloc[i], want), (view, o.name, key)
            assert (got[o.name + "__ts"] == pd.Series([expected.loc[k, "event_timestamp"] for k in keys])).all()
    assert {"bars_daily", "technicals", "ta_momentum", "regime_daily"} <= compared


def _append_rows(settings, view: str, rows: pd.DataFrame) -> None:
    """Rows appended as a build run appends them: a new part file of a new committed run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl.gold import layout

    runs = layout.read_runs(settings)
    run = runs["last_run"] + 1
    schema = pq.read_schema(layout.parts(settings, view)[-1])
    table = pa.Table.from_pandas(rows[schema.names].reset_index(drop=True), schema=schema, preserve_index=False)
    pq.write_table(table, layout.view_dir(settings, view) / layout.part_name(run, "test", 0))
    runs["last_run"] = run
    layout.write_runs(settings, runs)


def test_correction_same_event_time_and_late_rows(home, server, tmp_path):
    """A restatement with the same event time reaches Redis through us, not through Feast
    (feast-dev/feast#2795); a late row with an old event time is not missed (#4133)."""
    from etl.serving import feast_store, redis_writer
    from sdk import online

    srv = RedisServer(tmp_path / "r").start()
    try:
        work = _copy_home(home, tmp_path / "h", srv.url)
        settings = _settings(work)
        first = redis_writer.materialize(settings)
        assert first.entities_written > 0
        again = redis_writer.materialize(settings)
        assert again.entities_written == 0 and again.entities_skipped == first.entities_written + first.entities_skipped

        bars = pd.read_parquet(settings.gold / "bars_daily")
        last = bars[bars["symbol"] == "AAPL"].sort_values(["event_timestamp", "known_timestamp"]).tail(1).copy()
        now = pd.Timestamp.now(tz="UTC").floor("s")
        last["close"] = 999.25
        last["known_timestamp"] = now - pd.Timedelta(seconds=2)
        last["created_timestamp"] = now - pd.Timedelta(seconds=2)
        _append_rows(settings, "bars_daily", last)

        # Feast's own materialize (a second, Feast-written copy in another Redis db) skips the correction
        feast_home = _copy_home(home, tmp_path / "fh", srv.url.rsplit("/", 1)[0] + "/1")
        fsettings = _settings(feast_home)
        store = feast_store.feature_store(fsettings)
        start, end = pd.Timestamp("1990-01-01", tz="UTC").to_pydatetime(), (now - pd.Timedelta(seconds=5)).to_pydatetime()
        store.materialize(start_date=start, end_date=end, feature_views=["bars_daily"])
        _append_rows(fsettings, "bars_daily", last)
        store.materialize(start_date=start, end_date=now.to_pydatetime(), feature_views=["bars_daily"])
        feast_close = store.get_online_features(features=["bars_daily:close"], entity_rows=[{"symbol": "AAPL"}]).to_dict()["close"][0]
        assert feast_close == pytest.approx(122.15)  # Feast kept the old value

        fixed = redis_writer.materialize(settings, now=now)
        assert fixed.per_view["bars_daily"]["written"] == 1 and fixed.entities_written == 1
        got = online.read_latest(settings, ["AAPL", "SPY"], ["bars_daily:close"], allow_stale=True, now=now)
        assert got["close"].tolist()[0] == 999.25
        assert got["close__ts"].iloc[0] == last["event_timestamp"].iloc[0]
        # and Feast reads what we wrote
        ours_via_feast = feast_store.feature_store(settings).get_online_features(
            features=["bars_daily:close"], entity_rows=[{"symbol": "AAPL"}]).to_dict()["close"][0]
        assert ours_via_feast == 999.25

        # a late row: a newer session for IBM created after the last run but with an event time
        # before that run (an incremental time window [last run, now] would miss it)
        ibm = bars[bars["symbol"] == "IBM"].sort_values("event_timestamp").tail(1).copy()
        ibm["event_timestamp"] = ibm["event_timestamp"] + pd.Timedelta(hours=1)
        ibm["close"] = 123.5
        ibm["known_timestamp"] = ibm["event_timestamp"]
        ibm["created_timestamp"] = now + pd.Timedelta(seconds=1)
        _append_rows(settings, "bars_daily", ibm)
        late = redis_writer.materialize(settings, now=now + pd.Timedelta(seconds=5))
        assert late.entities_written == 1
        got = online.read_latest(settings, ["IBM"], ["bars_daily:close"], allow_stale=True, now=now)
        assert got["close"].iloc[0] == 123.5
        assert redis_writer.materialize(settings, now=now + pd.Timedelta(seconds=6)).entities_written == 0
        full = redis_writer.materialize(settings, full=True, now=now + pd.Timedelta(seconds=6))
        assert full.entities_skipped == 0 and full.entities_written == again.entities_skipped
    finally:
        srv.stop()


def test_ttl_max_age_and_stale_flags_on_literal_times(materialized):
    from sdk import online

    settings, _ = materialized
    refs = ["bars_daily:close", "technicals:rsi_14", "regime_daily:" + _first_output("regime_daily")]
    base = online.read_latest(settings, ["AAPL"], refs, allow_stale=True, now="wall")
    ts = base["close__ts"].iloc[0]
    assert ts == pd.Timestamp("2021-03-31 20:15", tz="UTC")
    close = base["close"].iloc[0]
    # exactly at the TTL edge the value is still valid, one microsecond later it is missing
    edge = ts + pd.Timedelta(days=10)
    assert online.read_latest(settings, ["AAPL"], refs, now=edge)["close"].iloc[0] == close
    late = online.read_latest(settings, ["AAPL"], refs, now=edge + pd.Timedelta(microseconds=1))
    assert np.isnan(late["close"].iloc[0]) and late["close__ts"].iloc[0] == ts
    stale = online.read_latest(settings, ["AAPL"], refs, now=edge + pd.Timedelta(microseconds=1), allow_stale=True)
    assert stale["close"].iloc[0] == close and bool(stale["close__stale"].iloc[0]) is True
    assert list(stale.columns[:4]) == ["symbol", "close", "close__ts", "close__stale"]
    # max_age tighter than the TTL
    day2 = ts + pd.Timedelta(days=2)
    assert online.read_latest(settings, ["AAPL"], refs, now=day2, max_age="3D")["close"].iloc[0] == close
    masked = online.read_latest(settings, ["AAPL"], refs, now=day2, max_age="36h")
    assert np.isnan(masked["close"].iloc[0]) and np.isnan(masked["rsi_14"].iloc[0])
    flagged = online.read_latest(settings, ["AAPL"], refs, now=day2, max_age=pd.Timedelta(hours=36), allow_stale=True)
    assert flagged["close__stale"].tolist() == [True] and flagged["close"].iloc[0] == close
    # a value from after `now` is not known yet
    before = online.read_latest(settings, ["AAPL"], refs, now=ts - pd.Timedelta(seconds=1), allow_stale=True)
    assert np.isnan(before["close"].iloc[0]) and before["close__stale"].tolist() == [False]
    with pytest.raises(Exception, match="max_age"):
        online.read_latest(settings, ["AAPL"], refs, max_age="soon")
    with pytest.raises(Exception, match="time zone"):
        online.read_latest(settings, ["AAPL"], refs, now=pd.Timestamp("2021-04-01"))


def _first_output(view: str) -> str:
    from etl.factors import registry

    return registry.views()[view].outputs[0].name


def test_alpha_latest_on_redis_uses_the_same_rules(materialized):
    from sdk import connect

    settings, _ = materialized
    client = connect(settings.home)
    out = client.latest(["AAPL", "SPY"], ["bars_daily:close", "bars_daily:session_date"], max_age="1D", allow_stale=True, now="warehouse")
    assert out.columns.tolist() == ["symbol", "close", "close__ts", "close__stale", "session_date", "session_date__ts", "session_date__stale"]
    assert out["session_date"].tolist() == ["2021-03-31", "2021-03-31"] and not out["close__stale"].any()
    wall = client.latest(["AAPL"], ["bars_daily:close"])
    assert np.isnan(wall["close"].iloc[0])  # default = wall clock: 2021 data is years older than the TTL
    with pytest.raises(Exception, match="unknown feature"):
        client.latest(["AAPL"], ["bars_daily:nope"])
    with pytest.raises(Exception, match="unknown symbol"):
        client.latest(["NOPE"], ["bars_daily:close"])


def test_password_url_env_and_wrong_password(home, tmp_path, monkeypatch):
    from etl.serving import redis_writer
    from etl.serving.feast_store import feature_store
    from sdk import online

    srv = RedisServer(tmp_path / "r", "--requirepass", "s3cret")
    srv.start({"port": srv.port, "password": "s3cret"})
    try:
        with_url = _settings(_copy_home(home, tmp_path / "a", f"redis://:s3cret@127.0.0.1:{srv.port}/0"))
        report = redis_writer.materialize(with_url, views=["bars_daily"])
        assert report.entities_written == 3
        assert online.read_latest(with_url, ["SPY"], ["bars_daily:close"], now="warehouse")["close"].iloc[0] == pytest.approx(396.33)
        # Feast's own path gets the same password
        feast_close = feature_store(with_url).get_online_features(features=["bars_daily:close"], entity_rows=[{"symbol": "SPY"}]).to_dict()
        assert feast_close["close"] == [pytest.approx(396.33)]

        env_home = _copy_home(home, tmp_path / "b", srv.url)
        monkeypatch.setenv("ALPHA_REDIS_PASSWORD", "s3cret")
        with_env = _settings(env_home)
        assert "s3cret" not in (env_home / "config.toml").read_text() and "s3cret" not in repr(with_env)
        assert online.read_latest(with_env, ["SPY"], ["bars_daily:close"], now="warehouse")["close"].iloc[0] == pytest.approx(396.33)
        assert "password=s3cret" in with_env.feast_redis_connection

        monkeypatch.setenv("ALPHA_REDIS_PASSWORD", "wrong")
        with pytest.raises(OnlineStoreError, match="password"):
            online.read_latest(_settings(env_home), ["SPY"], ["bars_daily:close"])
        monkeypatch.delenv("ALPHA_REDIS_PASSWORD")
        with pytest.raises(OnlineStoreError, match=f"127.0.0.1:{srv.port}"):
            redis_writer.materialize(_settings(env_home), views=["bars_daily"])
    finally:
        srv.stop()


def test_tls(home, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        no_redis("no redis-server binary on PATH")
    if shutil.which("openssl") is None:
        pytest.skip("TLS test not run: no openssl binary to make certificates")
    probe = subprocess.run([binary, "--port", "0", "--tls-port", str(free_port()), "--tls-cert-file", "/nonexistent"],
                           capture_output=True, text=True, timeout=10)
    if "Bad directive" in probe.stdout + probe.stderr or "not compiled" in probe.stdout + probe.stderr:
        pytest.skip(f"TLS test not run: this redis-server build has no TLS support ({(probe.stdout + probe.stderr).strip()[:120]})")
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([binary, "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port), "--dir", str(tmp_path),
                             "--tls-cert-file", str(certs / "cert.pem"), "--tls-key-file", str(certs / "key.pem"),
                             "--tls-ca-cert-file", str(certs / "cert.pem"), "--tls-auth-clients", "no", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        work = _copy_home(home, tmp_path / "h", f"rediss://127.0.0.1:{port}/0")
        with open(work / "config.toml", "a") as fh:
            fh.write(f'redis_ssl_ca_certs = "{certs / "cert.pem"}"\n')
        from etl.serving import redis_writer
        from etl.serving.feast_store import feature_store
        from sdk import online

        settings = _settings(work)
        deadline = time.time() + 10
        while True:
            try:
                report = redis_writer.materialize(settings, views=["bars_daily"])
                break
            except OnlineStoreError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        assert report.entities_written == 3
        assert online.read_latest(settings, ["SPY"], ["bars_daily:close"], now="warehouse")["close"].iloc[0] == pytest.approx(396.33)
        assert "ssl=true" in settings.feast_redis_connection
        feast = feature_store(settings).get_online_features(features=["bars_daily:close"], entity_rows=[{"symbol": "SPY"}]).to_dict()
        assert feast["close"] == [pytest.approx(396.33)]
        # plain redis:// against the TLS port: a clear error, not a hang
        plain = _settings(_copy_home(home, tmp_path / "p", f"redis://127.0.0.1:{port}/0"))
        with pytest.raises(OnlineStoreError, match=f"127.0.0.1:{port}"):
            online.read_latest(plain, ["SPY"], ["bars_daily:close"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_down_is_a_clear_error_within_the_timeout(home, tmp_path):
    from etl.serving import redis_writer
    from sdk import connect, online

    dead = _settings(_copy_home(home, tmp_path / "d", f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(OnlineStoreError, match="is redis-server running"):
        online.read_latest(dead, ["AAPL"], ["bars_daily:close"])
    with pytest.raises(OnlineStoreError, match="cannot connect"):
        connect(dead.home).latest(["AAPL"], ["bars_daily:close"])
    with pytest.raises(OnlineStoreError, match="127.0.0.1"):
        redis_writer.materialize(dead, views=["bars_daily"])
    # a port that accepts connections but never answers: bounded by redis_timeout_seconds
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        work = _copy_home(home, tmp_path / "s", f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        with open(work / "config.toml", "a") as fh:
            fh.write("redis_timeout_seconds = 0.5\n")
        with pytest.raises(OnlineStoreError, match="no answer within 0.5 s"):
            online.read_latest(_settings(work), ["AAPL"], ["bars_daily:close"])


def test_redis_killed_mid_materialize_then_rerun(home, tmp_path):
    """kill -9 the redis-server while our materialize is writing; restart it on the same
    AOF; the rerun completes and the online values equal the offline latest values."""
    from etl.factors import registry
    from etl.serving import redis_writer
    from sdk import online

    srv = RedisServer(tmp_path / "data").start()
    settings = _settings(_copy_home(home, tmp_path / "h", srv.url))
    killed = threading.Event()
    batches = []

    def progress(view: str, written: int) -> None:  # after the 5th pipeline, kill -9 from another thread
        batches.append((view, written))
        if len(batches) == 5:
            threading.Thread(target=lambda: (srv.kill9(), killed.set())).start()
            killed.wait(10)

    with pytest.raises(OnlineStoreError, match="writing"):
        redis_writer.materialize(settings, full=True, batch_keys=1, progress=progress)
    assert killed.is_set() and len(batches) == 5
    srv.start()
    try:
        report = redis_writer.materialize(settings)
        assert report.entities_written > 0
        now = report.now
        for view in ["bars_daily", "technicals", "ta_overlap", "macro_daily"]:
            info = registry.views()[view]
            expected = _offline_latest(settings, view, now)
            if expected.empty:
                continue
            keys = list(expected.index) if info.entity == "symbol" else ["US"]
            got = online.read_latest(settings, keys if info.entity == "symbol" else ["AAPL"],
                                     [f"{view}:{o.name}" for o in info.outputs], allow_stale=True, now=now)
            for o in info.outputs[:40]:
                for i, key in enumerate(keys):
                    want = expected.loc[key, o.name]
                    want = None if pd.isna(want) else (float(np.float32(want)) if o.dtype == "float32" else want)
                    assert _same(got[o.name].iloc[i], want), (view, o.name, key)
        assert redis_writer.materialize(settings).entities_written == 0
    finally:
        srv.stop()


def test_one_freshness_rule_for_both_online_backends():
    from sdk.online import _NAT, limit_us, stale_mask

    day = 86_400_000_000
    assert limit_us(10 * 86_400, None) == 10 * day
    assert limit_us(10 * 86_400, pd.Timedelta("36h")) == 36 * 3_600_000_000  # max_age tighter than the TTL
    assert limit_us(86_400, pd.Timedelta("3D")) == day                        # the TTL tighter than max_age
    now = 100 * day
    ts = np.array([now - 2 * day, now - 2 * day - 1, now, now + 1, _NAT], dtype=np.int64)
    stale, hide = stale_mask(ts, 2 * day, now, allow_stale=False)
    assert stale.tolist() == [False, True, False, False, False]   # exactly at the limit: still fresh
    assert hide.tolist() == [False, True, False, True, False]     # after now: not knowable yet
    stale, hide = stale_mask(ts, 2 * day, now, allow_stale=True)
    assert stale.tolist() == [False, True, False, False, False]
    assert hide.tolist() == [False, False, False, True, False]    # stale kept (flagged), the future still hidden
